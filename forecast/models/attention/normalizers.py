"""Score normalisers: softmax, and the sparse sparsemax and entmax-1.5.

Attention weights are a normaliser applied to scores over the last axis. Softmax never
gives an exact zero, so a map that "looks at" one step still spreads a little weight
everywhere. Sparsemax (Martins & Astudillo, 2016) is the Euclidean projection of the
scores onto the probability simplex, p = [z - tau]_+; entmax-1.5 (Peters et al., 2019)
sits between the two, p = [z / 2 - tau]_+^2. Both give exact zeros for low scores, so a
sparse map reads literally: the forecast used only the steps with non-zero weight.

Masking stays -inf based: a position whose score is -inf gets weight exactly 0 under every
normaliser (the sparse ones treat it as far below the rest before sorting, so it never
enters the support). Every row needs at least one finite score.

Both sparse maps are computed exactly by sorting (O(L log L) per row) and have closed-form
backward passes (`torch.autograd.Function`), on the support S:
sparsemax dz = g - mean_S(g); entmax-1.5 dz = s * g - s (s . g) / sum(s), s = sqrt(p).

>>> import torch
>>> z = torch.tensor([[2.0, 1.0, -1.0, float("-inf")]])
>>> sparsemax(z).tolist(), [round(v, 4) for v in entmax15(z)[0].tolist()]
([[1.0, 0.0, 0.0, 0.0]], [0.8307, 0.1693, 0.0, 0.0])
>>> [round(v, 4) for v in torch.softmax(z, -1)[0].tolist()]
[0.7054, 0.2595, 0.0351, 0.0]
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

_FAR = 1e4  # how far below a row's maximum a masked (-inf) score is placed


def _finite(z: Tensor) -> Tensor:
    """Scores with -inf replaced by a value far below the row's maximum, shifted so the
    maximum is 0 (both sparse maps are shift-invariant)."""
    top = z.amax(dim=-1, keepdim=True)
    if not bool(torch.isfinite(top).all()):
        raise ValueError("every row of attention scores needs at least one finite score")
    z = z - top
    return torch.where(torch.isneginf(z), torch.full_like(z, -_FAR), z)


def _threshold(z: Tensor, entmax: bool) -> Tensor:
    """tau [.., 1] of sparsemax (entmax=False) or entmax-1.5 on already halved scores."""
    srt, _ = torch.sort(z, dim=-1, descending=True)
    k = torch.arange(1, z.shape[-1] + 1, device=z.device, dtype=z.dtype)
    csum = srt.cumsum(dim=-1)
    if entmax:
        # tau_k solves sum_{i<=k} (z_i - tau)^2 = 1 for the top k scores.
        mean = csum / k
        var = (srt * srt).cumsum(dim=-1) / k - mean * mean
        tau = mean - torch.sqrt(torch.clamp((1.0 - k * var) / k, min=0.0))
    else:
        tau = (csum - 1.0) / k
    support = (tau <= srt).sum(dim=-1, keepdim=True).clamp(min=1)  # prefix of the sorted row
    return tau.gather(-1, support - 1)


class _Sparsemax(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, z: Tensor) -> Tensor:
        z = _finite(z)
        p = torch.clamp(z - _threshold(z, entmax=False), min=0.0)
        ctx.save_for_backward(p)
        return p

    @staticmethod
    def backward(ctx: Any, g: Tensor) -> Tensor:
        (p,) = ctx.saved_tensors
        on = (p > 0).to(g.dtype)
        mean = (g * on).sum(-1, keepdim=True) / on.sum(-1, keepdim=True)
        return on * (g - mean)


class _Entmax15(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, z: Tensor) -> Tensor:
        z = _finite(z) / 2.0
        p = torch.clamp(z - _threshold(z, entmax=True), min=0.0) ** 2
        ctx.save_for_backward(p)
        return p

    @staticmethod
    def backward(ctx: Any, g: Tensor) -> Tensor:
        (p,) = ctx.saved_tensors
        s = p.sqrt()
        return s * g - s * (s * g).sum(-1, keepdim=True) / s.sum(-1, keepdim=True)


def sparsemax(z: Tensor) -> Tensor:
    """Sparsemax over the last axis: the closest point of the simplex to the scores.

    Args:
        z: scores [..., L]; -inf marks a hidden position.
    """
    return _Sparsemax.apply(z)


def entmax15(z: Tensor) -> Tensor:
    """Entmax with alpha = 1.5 over the last axis: sparse, smoother than sparsemax.

    Args:
        z: scores [..., L]; -inf marks a hidden position.
    """
    return _Entmax15.apply(z)


def softmax(z: Tensor) -> Tensor:
    """Softmax over the last axis.

    Args:
        z: scores [..., L]; -inf marks a hidden position.
    """
    return torch.softmax(z, dim=-1)


NORMALIZERS: dict[str, Callable[[Tensor], Tensor]] = {
    "softmax": softmax,
    "sparsemax": sparsemax,
    "entmax15": entmax15,
}
"""Attention normalisers by name: scores [..., L] -> weights summing to 1 over L."""


def uniform(z: Tensor) -> Tensor:
    """Equal weight on every position whose score is not -inf (the ablation of a map).

    Args:
        z: scores [..., L].
    """
    allowed = (~torch.isneginf(z)).to(z.dtype)
    return allowed / allowed.sum(dim=-1, keepdim=True)


def get_normalizer(name: str) -> Callable[[Tensor], Tensor]:
    """The normaliser called `name`.

    Args:
        name: a key of `NORMALIZERS`.
    """
    if name not in NORMALIZERS:
        raise ValueError(
            f"unknown attention normalizer {name!r}; expected one of {list(NORMALIZERS)}"
        )
    return NORMALIZERS[name]
