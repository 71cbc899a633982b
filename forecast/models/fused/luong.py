"""The Luong decoder loop as one autograd node (see `forecast.models.fused`).

Step t runs the cell on [y_prev, known_t], then attends with its new state s_t: scores
scale * s_t^T k_j over keys k [B, L, D] (the encoder states for 'luong_dot', W h_j for
'luong_general'); h~_t = tanh(W_c [c_t; s_t]) and the head reads h~_t. This is the path
of teacher forcing below 1 and of free-running runs (training, evaluation, input
attributions); with full teacher forcing the decoder's one-call fast path runs instead.
"""

from __future__ import annotations

import torch
from torch import Tensor

from forecast.models.fused import steps

ORDER = ["memory", "keys", "h0", "c0", "last", "known", "truth", None,
         "W_ih", "W_hh", "b_ih", "b_hh", "W_c", "b_c", "W_o", "b_o", None]  # fmt: skip
"""The node's inputs, as `_forward` takes them (None: no gradient)."""


class _LuongDecode(torch.autograd.Function):
    """One autograd node for the whole Luong decoder loop."""

    @staticmethod
    def forward(ctx: torch.autograd.function.FunctionCtx, *inputs: Tensor | float | None) -> tuple:
        """`inputs`: `_forward`'s arguments before `keep`, in its order."""
        record, _ = _forward(*inputs, keep=True)
        (memory, keys, _, _, last, known, truth, use_truth,
         W_ih, W_hh, b_ih, b_hh, W_c, _, W_o, _, scale) = inputs  # fmt: skip
        pred, weights = record.outputs()
        lstm = steps.lstm_tape(record, W_ih, W_hh, b_ih, b_hh)
        S = torch.stack(record.states[1:])  # [H, B, D] each step's s_t, the query
        CS, H_tilde = record.extra(0), record.extra(1)  # [c_t; s_t] and h~_t of each step
        saved = (memory, keys, use_truth, W_ih, W_hh, W_c, W_o, weights)
        ctx.save_for_backward(*saved, S, CS, H_tilde, *lstm)
        ctx.mode = steps.feeding_mode(truth, use_truth)
        ctx.dims = (last.shape[1], known.shape[2])  # T, K
        ctx.scale = scale
        return pred, weights

    @staticmethod
    def backward(ctx, g_pred: Tensor | None, g_weights: Tensor | None):  # noqa: ANN001, ANN205
        steps.check_first_order()
        (memory, keys, use_truth, W_ih, W_hh, W_c, W_o, weights, S, CS, H_tilde,
         XH, dgates, dcell, forget) = ctx.saved_tensors  # fmt: skip
        T, K = ctx.dims
        mode, scale = ctx.mode, ctx.scale
        H, B, D = dcell.shape
        Dk = memory.shape[2]
        W_cat = torch.cat([W_ih, W_hh], dim=1)  # [4D, E + D]
        memory_t = memory.transpose(1, 2).contiguous()  # [B, Dk, L]: the fast bmm layout
        tanh_slope = (1.0 - H_tilde * H_tilde).unbind(0)  # tanh' of each step's h~
        g_preds, g_attn, w_steps, uses = steps.by_step(g_pred, g_weights, weights, use_truth)
        dgates, dcell, forget = dgates.unbind(0), dcell.unbind(0), forget.unbind(0)
        g_h = memory.new_zeros(B, D)  # gradient of h_t from step t + 1
        g_c = memory.new_zeros(B, D)
        g_fed = None  # gradient reaching prediction t from step t + 1
        zeros_y = memory.new_zeros(B, T)
        G_out, G_comb, G_gates, G_xh, G_ctx, G_e = [], [], [], [], [], []
        for t in reversed(range(H)):
            g_y = steps.output_grad(g_preds, g_fed, t, zeros_y)
            G_out.append(g_y)
            g_pre = (g_y @ W_o).mul_(tanh_slope[t])  # [B, D] before the tanh of h~
            G_comb.append(g_pre)
            g_cs = g_pre @ W_c  # [B, Dk + D]: W_c reads [c_t; s_t]
            g_context = g_cs[:, :Dk]
            g_attn_t = g_attn[t] if g_attn is not None else None
            g_e = steps.score_grad(g_context, memory_t, w_steps[t], g_attn_t)  # [B, 1, L]
            g_query = torch.bmm(g_e, keys).squeeze(1)  # [B, D], times scale below
            g_h = torch.add(g_h + g_cs[:, Dk:], g_query, alpha=scale)
            G, g_xh, g_c = steps.cell_backward(g_h, g_c, dgates[t], dcell[t], forget[t], W_cat)
            g_h = g_xh[:, T + K :]  # to h_{t-1}
            g_fed = steps.fed_back(g_xh[:, :T], mode, uses, t)
            G_gates.append(G)
            G_xh.append(g_xh)
            G_ctx.append(g_context)
            G_e.append(g_e)
        # every step's weight gradient at once, steps in forward order
        G_out = torch.stack(G_out[::-1]).view(H * B, T)
        G_comb = torch.stack(G_comb[::-1]).view(H * B, D)
        G_e = torch.cat(G_e[::-1], dim=1)  # [B, H, L]
        grads = steps.lstm_and_input_grads(G_gates, G_xh, XH, T, K, mode, use_truth)
        grads.update(
            memory=torch.bmm(weights.transpose(1, 2), torch.stack(G_ctx[::-1], dim=1)),
            keys=torch.bmm(G_e.transpose(1, 2), S.transpose(0, 1)).mul_(scale),  # [B, L, D]
            h0=g_h,
            c0=g_c,
            W_c=G_comb.t() @ CS.view(H * B, Dk + D),
            b_c=G_comb.sum(dim=0),
            W_o=G_out.t() @ H_tilde.view(H * B, D),
            b_o=G_out.sum(dim=0),
        )
        return steps.ordered(grads, ORDER, ctx.needs_input_grad)


def _forward(
    memory: Tensor,
    keys: Tensor,
    h0: Tensor,
    c0: Tensor,
    last: Tensor,
    known: Tensor,
    truth: Tensor | None,
    use_truth: Tensor | None,
    W_ih: Tensor,
    W_hh: Tensor,
    b_ih: Tensor,
    b_hh: Tensor,
    W_c: Tensor,
    b_c: Tensor,
    W_o: Tensor,
    b_o: Tensor,
    scale: float,
    keep: bool,
) -> tuple[steps.LoopRecord, None]:
    """The loop itself: its record, with [c_t; s_t] and h~_t as each step's extras
    (and None where the Bahdanau loop returns its activations)."""
    keys_t = keys.transpose(1, 2)  # [B, D, L]
    W_c_t, W_o_t = W_c.t(), W_o.t()
    knowns, truths, uses = steps.by_step(known, truth, use_truth)
    h, c, y_prev = h0, c0, last
    record = steps.LoopRecord(h0, c0, keep)
    for t in range(len(knowns)):
        x = torch.cat([y_prev, knowns[t]], dim=1)  # [B, E]
        h, c = torch.lstm_cell(x, (h, c), W_ih, W_hh, b_ih, b_hh)
        q = h * scale if scale != 1.0 else h
        w = torch.softmax(torch.bmm(q[:, None], keys_t), dim=2)  # [B, 1, L]
        context = torch.bmm(w, memory).squeeze(1)  # [B, Dk]
        cs = torch.cat([context, h], dim=1)  # [B, Dk + D]
        h_tilde = torch.tanh(torch.addmm(b_c, cs, W_c_t))  # [B, D]
        y = torch.addmm(b_o, h_tilde, W_o_t)  # [B, T]
        record.add(y, w, x, h, c, cs, h_tilde)
        y_prev = steps.feed(y, t, truths, uses)
    return record, None


def luong_decode(
    memory: Tensor,
    keys: Tensor,
    state: tuple[Tensor, Tensor],
    last: Tensor,
    known: Tensor,
    truth: Tensor | None,
    use_truth: Tensor | None,
    scale: float,
    lstm: torch.nn.LSTM,
    combine: torch.nn.Linear,
    head: torch.nn.Linear,
) -> tuple[Tensor, Tensor]:
    """Predictions [B, H, T] and attention weights [B, H, L] of a one-layer Luong
    decoder (dot or general score), as `Decoder.forward`'s step loop computes them, as
    one autograd node.

    Args:
        memory: encoder states [B, L, Dk] (the values).
        keys: [B, L, D], what each state s_t is scored against: `memory` for
            'luong_dot', W memory for 'luong_general' (`prepare_keys`, transposed back).
        state: initial (h, c), each [1, B, D].
        last: last observed target [B, T], the input of step 0.
        known: known-future covariates [B, H, K].
        truth: the true targets [B, H, T] fed back under teacher forcing, or None to
            feed back the model's own predictions.
        use_truth: [B, H, 1] bool, where the true value is fed (None: everywhere,
            when `truth` is given).
        scale: the attention's score scale (1/sqrt(D) or 1).
        lstm: the decoder's one-layer `nn.LSTM`.
        combine: W_c, the layer of h~ = tanh(W_c [c_t; s_t]).
        head: the output layer on h~.
    """
    params = (
        lstm.weight_ih_l0,
        lstm.weight_hh_l0,
        lstm.bias_ih_l0,
        lstm.bias_hh_l0,
        combine.weight,
        combine.bias,
        head.weight,
        head.bias,
    )
    h0, c0 = state[0][0], state[1][0]  # [B, D]
    inputs = (memory, keys, h0, c0, last, known, truth, use_truth, *params, scale)
    return steps.run_node(_LuongDecode, _forward, inputs)
