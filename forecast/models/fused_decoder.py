"""The Bahdanau decoder loop with a hand-written backward pass.

A Bahdanau decoder cannot run its horizon in one LSTM call: step t's input holds the
context attended with s_{t-1}. Under autograd each of its H steps records dozens of small
nodes; on a CPU their dispatch and the per-step gradients of the [B, L, A] score tensor
are most of a training step. `bahdanau_decode` runs the same arithmetic as
`Decoder.forward` (one LSTM layer, additive attention, head on [s_t; c_t]) as one
autograd node:

- forward runs the loop with `torch.lstm_cell` and keeps each step's inputs and states;
  the LSTM's local derivatives are then computed for all steps at once;
- backward walks the steps in reverse for what is truly sequential (the state, cell and
  fed-back prediction gradients, each step's score gradient) and computes every weight
  gradient afterwards as one matrix product over all steps, instead of H small ones;
- the attention's activations z_t [B, L, A] of every step are kept for backward while
  they fit in `KEEP_ACTIVATIONS_BYTES` (19 MB at the benchmark's size); beyond that
  backward computes them again, so memory stops growing with the horizon.

At the benchmark's size (B 32, L 96, H 24, D = A = 64, 2 threads) the decoder's forward
and backward fell from ~60 to ~30 ms and training throughput rose 1.6x
(`bench/bench_lstm.py`, variants `bahdanau` and `bahdanau_loop`).

`tests/test_fused_decoder.py` checks outputs and every gradient against the autograd
loop in float64, for each teacher-forcing mode. Under AMP the node computes in float32
(its predictions and weights come out in float32, where the loop's would be in the
autocast dtype); the training loop calls backward outside autocast, as it should. The
node has first derivatives only: a backward with `create_graph=True` raises.

Notation: B windows, L encoder steps, H horizon, T targets, K known covariates, D hidden
units, Dk key size, A attention size; E = T + K + Dk is the LSTM cell's input width.
"""

from __future__ import annotations

import torch
from torch import Tensor

KEEP_ACTIVATIONS_BYTES = 64 * 2**20
"""Largest [H, B, L, A] block of attention activations kept for backward; above it they
are recomputed (one more sigmoid per step: 6-7 % slower training at the benchmark's
size, measured by alternating the two batch by batch)."""


class _BahdanauDecode(torch.autograd.Function):
    """One autograd node for the whole decoder loop; see the module docstring."""

    @staticmethod
    def forward(ctx: torch.autograd.function.FunctionCtx, *inputs: Tensor | None) -> tuple:
        """`inputs`: `_forward`'s arguments before `keep`, in its order."""
        pred, weights, tape = _forward(*inputs, keep=True)
        (memory, keys2, _, _, last, known, truth, use_truth,
         W_s, v, W_ih, W_hh, b_ih, b_hh, W_o, _) = inputs  # fmt: skip
        saved = (memory, keys2, use_truth, W_s, v, W_ih, W_hh, W_o, weights, tape[-1])
        ctx.save_for_backward(*saved, *_tape(tape[:-1], W_ih, W_hh, b_ih, b_hh))
        ctx.mode = _mode(truth, use_truth)
        ctx.dims = (last.shape[1], known.shape[2])  # T, K
        return pred, weights

    @staticmethod
    def backward(ctx, g_pred: Tensor | None, g_weights: Tensor | None):  # noqa: ANN001, ANN205
        if torch.is_grad_enabled():  # create_graph=True: forward's tape has no graph
            raise RuntimeError(
                "the fused Bahdanau decoder has first derivatives only; for higher ones "
                "run the step loop: set decoder.use_fast_path = False"
            )
        (memory, keys2, use_truth, W_s, v, W_ih, W_hh, W_o, weights, Z,
         XH, dgates, dcell, forget, HC) = ctx.saved_tensors  # fmt: skip
        T, K = ctx.dims
        mode = ctx.mode
        H, B, D = dcell.shape
        A = v.shape[0]
        E = XH.shape[2] - D
        W_cat = torch.cat([W_ih, W_hh], dim=1)  # [4D, E + D]
        v2 = 2.0 * v  # the score is 2 v^T sigmoid(k2 + q2), q2 = h (2 W_s)^T
        VW = v2[:, None] * (2.0 * W_s)  # [A, D]: to h_{t-1} from sum_l g_e z (1 - z)
        H_prev = XH[:, :, E:]  # [H, B, D] the state (and query) each step started from
        memory_t = memory.transpose(1, 2).contiguous()  # [B, Dk, L]: the fast bmm layout
        if Z is None:  # recomputed step by step, from each step's query
            Q2 = (H_prev.reshape(H * B, D) @ (2.0 * W_s.t())).view(H, B, A).unbind(0)
            z = keys2.new_empty(keys2.shape)
        g_keys_acc = torch.zeros_like(keys2)  # sum_t g_e_t z_t (1 - z_t), [B, L, A]
        u = keys2.new_empty(keys2.shape)  # z_t (1 - z_t), contiguous
        # autograd passes zeros for an output the loss did not read, so None is rare
        g_preds = g_pred.unbind(1) if g_pred is not None else None
        g_attn = g_weights.unbind(1) if g_weights is not None else None
        w_steps = weights.unbind(1)  # [B, L] each
        uses = use_truth.unbind(1) if use_truth is not None else None
        dgates, dcell, forget = dgates.unbind(0), dcell.unbind(0), forget.unbind(0)
        g_h = memory.new_zeros(B, D)
        g_c = memory.new_zeros(B, D)
        g_fed = memory.new_zeros(B, T)  # gradient reaching prediction t from step t + 1
        G_out, G_gates, G_xh, G_ctx, G_r, G_v = [], [], [], [], [], []
        for t in reversed(range(H)):
            g_y = g_fed if g_preds is None else g_preds[t] + g_fed
            G_out.append(g_y)
            g_hc = g_y @ W_o  # [B, D + Dk]: the head reads [s_t; c_t]
            g_h = g_h + g_hc[:, :D]
            # LSTM cell: dcell = o (1 - tanh^2 c); dgates folds each gate's derivative
            # with the factor multiplying it, so G = [g_c, g_c, g_c, g_h] * dgates
            g_c = torch.addcmul(g_c, g_h, dcell[t])
            G = torch.cat([g_c, g_c, g_c, g_h], dim=1).mul_(dgates[t])  # [B, 4D]
            g_xh = G @ W_cat  # [B, E + D]: [y_prev, known, context, h_{t-1}]
            g_c = g_c * forget[t]
            g_context = g_hc[:, D:] + g_xh[:, T + K : E]  # [B, Dk]
            # attention: softmax, then the additive score
            g_w = torch.bmm(g_context[:, None], memory_t)  # [B, 1, L]
            if g_attn is not None:
                g_w = g_w + g_attn[t][:, None]
            w = w_steps[t][:, None]  # [B, 1, L]
            g_e = w * (g_w - (g_w * w).sum(dim=2, keepdim=True))  # softmax's backward
            if Z is None:
                torch.add(keys2, Q2[t][:, None], out=z).sigmoid_()  # [B, L, A]
            else:
                z = Z[t]
            G_v.append(torch.bmm(g_e, z))  # [B, 1, A], for v
            u = torch.addcmul(z, z, z, value=-1.0, out=u)  # z (1 - z)
            r = torch.bmm(g_e, u).squeeze(1)  # [B, A]
            g_keys_acc.addcmul_(u, g_e.transpose(1, 2))
            g_h = torch.addmm(g_xh[:, E:], r, VW)  # to h_{t-1}
            g_in = g_xh[:, :T]  # to the value fed in: y_{t-1} unless teacher-forced
            if mode == "free":
                g_fed = g_in
            elif mode == "mixed" and t > 0:
                g_fed = g_in.masked_fill(uses[t - 1], 0.0)
            G_gates.append(G)
            G_xh.append(g_xh)
            G_ctx.append(g_context)
            G_r.append(r)
        # every step's weight gradient at once, steps in forward order
        G_out = torch.stack(G_out[::-1]).view(H * B, T)
        G_gates = torch.stack(G_gates[::-1]).view(H * B, 4 * D)
        G_xh = torch.stack(G_xh[::-1])  # [H, B, E + D]
        G_r = torch.stack(G_r[::-1]).view(H * B, A)
        g_W_cat = G_gates.t() @ XH.view(H * B, E + D)  # [4D, E + D]
        g_b = G_gates.sum(dim=0)
        g_truth = None
        if mode != "free":  # step t's input was truth t - 1 (RevIN-scaled, so it has grad)
            g_truth = memory.new_zeros(B, H, T)
            g_true = G_xh[1:, :, :T].transpose(0, 1)  # [B, H - 1, T]
            if mode == "mixed":
                g_true = g_true.masked_fill(~use_truth[:, :-1], 0.0)
            g_truth[:, :-1] = g_true
        grads = {
            "memory": torch.bmm(weights.transpose(1, 2), torch.stack(G_ctx[::-1], dim=1)),
            "keys2": g_keys_acc.mul_(v2),
            "h0": g_h,
            "c0": g_c,
            "last": G_xh[0, :, :T],
            "known": G_xh[:, :, T : T + K].transpose(0, 1),  # read by input attributions
            "truth": g_truth,
            "W_s": (2.0 * v2)[:, None] * (G_r.t() @ H_prev.reshape(H * B, D)),
            "v": 2.0 * torch.stack(G_v).sum(dim=(0, 1, 2)),
            "W_ih": g_W_cat[:, :E],
            "W_hh": g_W_cat[:, E:],
            "b_ih": g_b,
            "b_hh": g_b,
            "W_o": G_out.t() @ HC.view(H * B, -1),
            "b_o": G_out.sum(dim=0),
        }
        order = ["memory", "keys2", "h0", "c0", "last", "known", "truth", None,
                 "W_s", "v", "W_ih", "W_hh", "b_ih", "b_hh", "W_o", "b_o"]  # fmt: skip
        return tuple(
            grads[name] if name is not None and need else None
            for name, need in zip(order, ctx.needs_input_grad)
        )


def _mode(truth: Tensor | None, use_truth: Tensor | None) -> str:
    if truth is None:
        return "free"
    return "truth" if use_truth is None else "mixed"


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
) -> tuple:
    """The loop itself: (predictions [B, H, T], weights [B, H, L], tape). With `keep`,
    the tape holds each step's inputs and states, else it is None.

    The tape ends with the [H, B, L, A] block of attention activations, or None when it
    would exceed `KEEP_ACTIVATIONS_BYTES` (backward then recomputes them).
    """
    B, L, A = keys2.shape
    W_s2_t = 2.0 * W_s.t()  # [D, A]: the doubled query of `_additive_score`
    v2 = 2.0 * v
    W_o_t = W_o.t()
    H = known.shape[1]
    Z = None  # every step's z_t, for backward
    if keep and H * keys2.numel() * keys2.element_size() <= KEEP_ACTIVATIONS_BYTES:
        Z = keys2.new_empty(H, B, L, A)
    scratch = keys2.new_empty(keys2.shape) if Z is None else None  # z_t, not kept
    knowns = known.unbind(1)
    truths = truth.unbind(1) if truth is not None else None
    uses = use_truth.unbind(1) if use_truth is not None else None
    h, c, y_prev = h0, c0, last
    preds, weights, X, states, cells, contexts = [], [], [], [h0], [c0], []
    for t in range(len(knowns)):
        z = Z[t] if Z is not None else scratch
        torch.add(keys2, (h @ W_s2_t)[:, None], out=z).sigmoid_()  # [B, L, A]
        w = torch.softmax(torch.mv(z.view(B * L, A), v2).view(B, L), dim=1)  # [B, L]
        context = torch.bmm(w[:, None], memory).squeeze(1)  # [B, Dk]
        x = torch.cat([y_prev, knowns[t], context], dim=1)  # [B, E]
        h, c = torch.lstm_cell(x, (h, c), W_ih, W_hh, b_ih, b_hh)
        y = torch.addmm(b_o, torch.cat([h, context], dim=1), W_o_t)  # [B, T]
        preds.append(y)
        weights.append(w)
        if keep:
            X.append(x)
            states.append(h)
            cells.append(c)
            contexts.append(context)
        if truths is None:
            y_prev = y
        elif uses is None:
            y_prev = truths[t]
        else:
            y_prev = torch.where(uses[t], truths[t], y)
    pred = torch.stack(preds, dim=1)  # [B, H, T]
    attn = torch.stack(weights, dim=1)  # [B, H, L]
    if not keep:
        return pred, attn, None
    return pred, attn, (X, states, cells, contexts, Z)


def _tape(
    tape: tuple, W_ih: Tensor, W_hh: Tensor, b_ih: Tensor, b_hh: Tensor
) -> tuple[Tensor, ...]:
    """What backward reads, for all H steps at once: the step inputs XH [H, B, E + D],
    the LSTM's local derivatives dgates [H, B, 4D], dcell and forget [H, B, D], and the
    head's inputs HC [H, B, D + Dk]. The gates are computed again here in a few large
    ops, rather than kept from `torch.lstm_cell` in many small ones."""
    X, states, cells, contexts = tape
    Hs, Cs = torch.stack(states), torch.stack(cells)  # [H + 1, B, D]
    H, B, D = Hs.shape[0] - 1, Hs.shape[1], Hs.shape[2]
    XH = torch.cat([torch.stack(X), Hs[:-1]], dim=2)  # [H, B, E + D]
    W_cat_t = torch.cat([W_ih, W_hh], dim=1).t()  # [E + D, 4D]
    pre = torch.addmm(b_ih + b_hh, XH.view(H * B, -1), W_cat_t).view(H, B, 4 * D)
    act = pre.sigmoid()  # gates (i, f, g, o) as in nn.LSTM; g is a tanh
    g = pre[..., 2 * D : 3 * D].tanh()
    i, f, _, o = act.split(D, dim=2)
    tanh_c = Cs[1:].tanh()
    slope = act * (1.0 - act)  # sigmoid'
    slope[..., 2 * D : 3 * D] = 1.0 - g * g  # tanh'
    dgates = torch.cat([g, Cs[:-1], i, tanh_c], dim=2).mul_(slope)  # [H, B, 4D]
    dcell = o * (1.0 - tanh_c * tanh_c)
    HC = torch.cat([Hs[1:], torch.stack(contexts)], dim=2)  # [H, B, D + Dk]
    return XH, dgates, dcell, f, HC


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
    decoder, as `Decoder.forward` computes them, as one autograd node.

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
    device = memory.device.type
    if torch.is_autocast_enabled(device):  # AMP: this node computes in float32
        with torch.autocast(device, enabled=False):
            return _run(tuple(_float(x) for x in inputs))
    return _run(inputs)


def _float(x: Tensor | None) -> Tensor | None:
    return x.float() if x is not None and x.is_floating_point() else x


def _run(inputs: tuple) -> tuple[Tensor, Tensor]:
    needs_grad = torch.is_grad_enabled() and any(x is not None and x.requires_grad for x in inputs)
    if needs_grad:
        return _BahdanauDecode.apply(*inputs)
    return _forward(*inputs, keep=False)[:2]
