"""The read decoder's read as one autograd node: softmax over lags, weighted sum.

`ReadDecoder._steps` (`forecast.models.lstm_read`) forms, for every window b, read
feature v, step h and input step l, the score s = prior[v, h, l] + content[b, h, l],
the weights a = softmax_l(s) and the read r[b, v, h] = sum_l a x[b, v, l]. a is the
decoder's largest tensor ([B, 2V, H, L]: 2 million numbers at batch 64, 7 features,
L=96, H=24). Under autograd its backward writes the gradient of a (an outer product
of the read's gradient with the values), then the softmax's gradient, then sums both
over the broadcast axes. The softmax's gradient has a closed form that needs neither:

    ds = a * g (x - r)        (sum_l a * g x = g r)

so backward is one pass over a, then a sum over the windows (the prior's gradient) and
over the features (the content's), and the values' gradient only when asked. The
arithmetic is the same as autograd's up to rounding; `tests/test_fused_decoder.py`
checks it in float64 and with `torch.autograd.gradcheck`. Under AMP the node computes
in float32. First derivatives only.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor


def row_read(a: Tensor, values_t: Tensor) -> Tensor:
    """r [B, 2V, H] = sum_l a[b, v, h, l] values_t[b, v, l] for a contiguous a
    [B, 2V, H, L]: per (window, feature) a row vector times a's transposed view, which
    oneDNN/MKL run several times faster than the matrix-vector product a @ x (measured
    in docs/benchmarks.md); the same sums up to rounding."""
    B, V2, H, L = a.shape
    rows = values_t.reshape(B * V2, 1, L)
    return torch.bmm(rows, a.reshape(B * V2, H, L).transpose(1, 2)).view(B, V2, H)


class _Read(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, prior: Tensor, content: Tensor, values_t: Tensor) -> Tensor:
        a = torch.softmax(prior + content[:, None], dim=-1)  # [B, 2V, H, L]
        B, V2, H, L = a.shape
        read = row_read(a, values_t)
        ctx.save_for_backward(a, values_t, read)
        return read

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx: Any, g: Tensor) -> tuple[Tensor | None, ...]:
        a, values_t, read = ctx.saved_tensors
        g_values = None
        if ctx.needs_input_grad[2]:  # [B, 2V, L]: sum_h g a, one row x matrix product each
            B, V2, H, L = a.shape
            g_values = torch.bmm(g.reshape(B * V2, 1, H), a.view(B * V2, H, L)).view(B, V2, L)
        ds = (values_t[:, :, None, :] - read[..., None]).mul_(a).mul_(g[..., None])
        g_prior = ds.sum(0) if ctx.needs_input_grad[0] else None  # [2V, H, L]
        g_content = ds.sum(1) if ctx.needs_input_grad[1] else None  # [B, H, L]
        return g_prior, g_content, g_values


def softmax_read(prior: Tensor, content: Tensor, values: Tensor) -> Tensor:
    """r [B, H, 2V] = sum_l softmax_l(prior[v, h, l] + content[b, h, l]) values[b, l, v],
    as one autograd node (see the module docstring).

    Args:
        prior: [2V, H, L] scores shared by the windows (the lag prior).
        content: [B, H, L] scores shared by the features (the attention's, gated).
        values: [B, L, 2V] what is read.
    """
    device = content.device.type
    if torch.is_autocast_enabled(device):
        with torch.autocast(device, enabled=False):
            return softmax_read(prior.float(), content.float(), values.float())
    values_t = values.transpose(1, 2).contiguous()  # [B, 2V, L]
    return _Read.apply(prior, content, values_t).transpose(1, 2)
