"""The Bahdanau decoder loop as one autograd node (see `forecast.models.fused`).

Step t attends with the previous state s_{t-1}: the score is 2 v^T sigmoid(k2 + q2)
with k2 = 2 W_h h_j (+ bias) prepared once and q2 = 2 W_s s_{t-1} (`additive_score`);
the context joins [y_prev, known_t] as the cell's input, and the head reads [s_t; c_t].
A is the attention size, Dk the encoder states' size.
"""

from __future__ import annotations

import torch
from torch import Tensor

from forecast.models.fused import steps

KEEP_ACTIVATIONS_BYTES = 64 * 2**20
"""Largest [H, B, L, A] block of attention activations kept for backward; above it they
are recomputed (one more sigmoid per step; the cost is in docs/benchmarks.md)."""

ORDER = ["memory", "keys2", "h0", "c0", "last", "known", "truth", None,
         "W_s", "v", "W_ih", "W_hh", "b_ih", "b_hh", "W_o", "b_o"]  # fmt: skip
"""The node's inputs, as `_forward` takes them (None: no gradient)."""


class _BahdanauDecode(torch.autograd.Function):
    """One autograd node for the whole Bahdanau decoder loop."""

    @staticmethod
    def forward(ctx: torch.autograd.function.FunctionCtx, *inputs: Tensor | None) -> tuple:
        """`inputs`: `_forward`'s arguments before `keep`, in its order."""
        record, Z = _forward(*inputs, keep=True)
        (memory, keys2, _, _, last, known, truth, use_truth,
         W_s, v, W_ih, W_hh, b_ih, b_hh, W_o, _) = inputs  # fmt: skip
        pred, weights = record.outputs()
        lstm = steps.lstm_tape(record, W_ih, W_hh, b_ih, b_hh)
        HC = record.extra(0)  # [H, B, D + Dk]: [s_t; c_t], the head's input
        saved = (memory, keys2, use_truth, W_s, v, W_ih, W_hh, W_o, weights, Z, HC)
        ctx.save_for_backward(*saved, *lstm)
        ctx.mode = steps.feeding_mode(truth, use_truth)
        ctx.dims = (last.shape[1], known.shape[2])  # T, K
        return pred, weights

    @staticmethod
    def backward(ctx, g_pred: Tensor | None, g_weights: Tensor | None):  # noqa: ANN001, ANN205
        steps.check_first_order()
        (memory, keys2, use_truth, W_s, v, W_ih, W_hh, W_o, weights, Z, HC,
         XH, dgates, dcell, forget) = ctx.saved_tensors  # fmt: skip
        T, K = ctx.dims
        mode = ctx.mode
        H, B, D = dcell.shape
        A = v.shape[0]
        E = XH.shape[2] - D
        W_cat = torch.cat([W_ih, W_hh], dim=1)  # [4D, E + D]
        v2 = 2.0 * v
        VW = v2[:, None] * (2.0 * W_s)  # [A, D]: to h_{t-1} from sum_l g_e z (1 - z)
        H_prev = XH[:, :, E:]  # [H, B, D] the state (and query) each step started from
        memory_t = memory.transpose(1, 2).contiguous()  # [B, Dk, L]: the fast bmm layout
        if Z is None:  # recomputed step by step, from each step's query
            Q2 = (H_prev.reshape(H * B, D) @ (2.0 * W_s.t())).view(H, B, A).unbind(0)
            z = keys2.new_empty(keys2.shape)
        g_keys_acc = torch.zeros_like(keys2)  # sum_t g_e_t z_t (1 - z_t), [B, L, A]
        u = keys2.new_empty(keys2.shape)  # z_t (1 - z_t), contiguous
        g_preds, g_attn, w_steps, uses = steps.by_step(g_pred, g_weights, weights, use_truth)
        dgates, dcell, forget = dgates.unbind(0), dcell.unbind(0), forget.unbind(0)
        g_h = memory.new_zeros(B, D)
        g_c = memory.new_zeros(B, D)
        g_fed = None  # gradient reaching prediction t from step t + 1
        zeros_y = memory.new_zeros(B, T)
        G_out, G_gates, G_xh, G_ctx, G_r, G_v = [], [], [], [], [], []
        for t in reversed(range(H)):
            g_y = steps.output_grad(g_preds, g_fed, t, zeros_y)
            G_out.append(g_y)
            g_hc = g_y @ W_o  # [B, D + Dk]: the head reads [s_t; c_t]
            g_h = g_h + g_hc[:, :D]
            G, g_xh, g_c = steps.cell_backward(g_h, g_c, dgates[t], dcell[t], forget[t], W_cat)
            g_context = g_hc[:, D:] + g_xh[:, T + K : E]  # [B, Dk]
            # attention: softmax, then the additive score
            g_attn_t = g_attn[t] if g_attn is not None else None
            g_e = steps.score_grad(g_context, memory_t, w_steps[t], g_attn_t)  # [B, 1, L]
            if Z is None:
                torch.add(keys2, Q2[t][:, None], out=z).sigmoid_()  # [B, L, A]
            else:
                z = Z[t]
            G_v.append(torch.bmm(g_e, z))  # [B, 1, A], for v
            u = torch.addcmul(z, z, z, value=-1.0, out=u)  # z (1 - z)
            r = torch.bmm(g_e, u).squeeze(1)  # [B, A]
            g_keys_acc.addcmul_(u, g_e.transpose(1, 2))
            g_h = torch.addmm(g_xh[:, E:], r, VW)  # to h_{t-1}
            g_fed = steps.fed_back(g_xh[:, :T], mode, uses, t)
            G_gates.append(G)
            G_xh.append(g_xh)
            G_ctx.append(g_context)
            G_r.append(r)
        # every step's weight gradient at once, steps in forward order
        G_out = torch.stack(G_out[::-1]).view(H * B, T)
        G_r = torch.stack(G_r[::-1]).view(H * B, A)
        grads = steps.lstm_and_input_grads(G_gates, G_xh, XH, T, K, mode, use_truth)
        grads.update(
            memory=torch.bmm(weights.transpose(1, 2), torch.stack(G_ctx[::-1], dim=1)),
            keys2=g_keys_acc.mul_(v2),
            h0=g_h,
            c0=g_c,
            W_s=(2.0 * v2)[:, None] * (G_r.t() @ H_prev.reshape(H * B, D)),
            v=2.0 * torch.stack(G_v).sum(dim=(0, 1, 2)),
            W_o=G_out.t() @ HC.view(H * B, -1),
            b_o=G_out.sum(dim=0),
        )
        return steps.ordered(grads, ORDER, ctx.needs_input_grad)


def _forward(
    memory: Tensor,
    keys2: Tensor,
    h0: Tensor,
    c0: Tensor,
    last: Tensor,
    known: Tensor,
    truth: Tensor | None,
    use_truth: Tensor | None,
    W_s: Tensor,
    v: Tensor,
    W_ih: Tensor,
    W_hh: Tensor,
    b_ih: Tensor,
    b_hh: Tensor,
    W_o: Tensor,
    b_o: Tensor,
    keep: bool,
) -> tuple[steps.LoopRecord, Tensor | None]:
    """The loop itself: its record (each step's [s_t; c_t] as the extra) and, when
    keeping, the [H, B, L, A] block of attention activations (None when not keeping
    or above `KEEP_ACTIVATIONS_BYTES`: backward then recomputes them)."""
    B, L, A = keys2.shape
    W_s2_t = 2.0 * W_s.t()  # [D, A]: the doubled query of `additive_score`
    v2 = 2.0 * v
    W_o_t = W_o.t()
    H = known.shape[1]
    Z = None  # every step's z_t, for backward
    if keep and H * keys2.numel() * keys2.element_size() <= KEEP_ACTIVATIONS_BYTES:
        Z = keys2.new_empty(H, B, L, A)
    scratch = keys2.new_empty(keys2.shape) if Z is None else None  # z_t, not kept
    knowns, truths, uses = steps.by_step(known, truth, use_truth)
    h, c, y_prev = h0, c0, last
    record = steps.LoopRecord(h0, c0, keep)
    for t in range(H):
        z = Z[t] if Z is not None else scratch
        torch.add(keys2, (h @ W_s2_t)[:, None], out=z).sigmoid_()  # [B, L, A]
        w = torch.softmax(torch.mv(z.view(B * L, A), v2).view(B, 1, L), dim=2)  # [B, 1, L]
        context = torch.bmm(w, memory).squeeze(1)  # [B, Dk]
        x = torch.cat([y_prev, knowns[t], context], dim=1)  # [B, E]
        h, c = torch.lstm_cell(x, (h, c), W_ih, W_hh, b_ih, b_hh)
        hc = torch.cat([h, context], dim=1)  # [B, D + Dk]
        y = torch.addmm(b_o, hc, W_o_t)  # [B, T]
        record.add(y, w, x, h, c, hc)
        y_prev = steps.feed(y, t, truths, uses)
    return record, Z


def bahdanau_decode(
    memory: Tensor,
    keys2: Tensor,
    state: tuple[Tensor, Tensor],
    last: Tensor,
    known: Tensor,
    truth: Tensor | None,
    use_truth: Tensor | None,
    attention: torch.nn.Module,
    lstm: torch.nn.LSTM,
    head: torch.nn.Linear,
) -> tuple[Tensor, Tensor]:
    """Predictions [B, H, T] and attention weights [B, H, L] of a one-layer Bahdanau
    decoder, as `Decoder.forward`'s step loop computes them, as one autograd node.

    Args:
        memory: encoder states [B, L, Dk] (the values).
        keys2: `attention.prepare_keys(memory)` [B, L, A].
        state: initial (h, c), each [1, B, D].
        last: last observed target [B, T], the input of step 0.
        known: known-future covariates [B, H, K].
        truth: the true targets [B, H, T] fed back under teacher forcing, or None to
            feed back the model's own predictions.
        use_truth: [B, H, 1] bool, where the true value is fed (None: everywhere,
            when `truth` is given).
        attention: the `BahdanauAttention` (W_s, v; its W_h is inside `keys2`).
        lstm: the decoder's one-layer `nn.LSTM`.
        head: the output layer on [s_t; c_t].
    """
    params = (
        attention.W_s.weight,
        attention.v.weight.squeeze(0),
        lstm.weight_ih_l0,
        lstm.weight_hh_l0,
        lstm.bias_ih_l0,
        lstm.bias_hh_l0,
        head.weight,
        head.bias,
    )
    h0, c0 = state[0][0], state[1][0]  # [B, D]
    inputs = (memory, keys2, h0, c0, last, known, truth, use_truth, *params)
    return steps.run_node(_BahdanauDecode, _forward, inputs)
