"""What both fused decoder loops share: the LSTM cell's tape and backward step, the
gradients of the decoder's inputs, the teacher-forcing bookkeeping, and how a node is
run (float32 under AMP, no tape without gradients).

Notation: B windows, H horizon, T targets, K known covariates, D hidden units, E the
LSTM cell's input width (its first T + K columns are [y_prev, known_t]).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor


class LoopRecord:
    """A decoder loop's outputs and, when `keep`, what backward needs of each step: the
    cell input x_t [B, E], the states h_t and c_t [B, D] (from h_0 and c_0 on), and the
    node's own `extra` tensors.

    Args:
        h0, c0: the initial state [B, D].
        keep: record the tape (only the outputs otherwise).
    """

    def __init__(self, h0: Tensor, c0: Tensor, keep: bool) -> None:
        self.keep = keep
        self.preds: list[Tensor] = []
        self.weights: list[Tensor] = []
        self.X: list[Tensor] = []
        self.states, self.cells = [h0], [c0]
        self.extras: list[tuple[Tensor, ...]] = []

    def add(self, y: Tensor, w: Tensor, x: Tensor, h: Tensor, c: Tensor, *extra: Tensor) -> None:
        """Step t's prediction y [B, T], weights w [B, 1, L], cell input, new state, extras."""
        self.preds.append(y)
        self.weights.append(w)
        if self.keep:
            self.X.append(x)
            self.states.append(h)
            self.cells.append(c)
            self.extras.append(extra)

    def outputs(self) -> tuple[Tensor, Tensor]:
        """Predictions [B, H, T] and weights [B, H, L]."""
        return torch.stack(self.preds, dim=1), torch.cat(self.weights, dim=1)

    def extra(self, i: int) -> Tensor:
        """The i-th extra tensor of every step, stacked [H, B, ...]."""
        return torch.stack([e[i] for e in self.extras])


def by_step(*tensors: Tensor | None) -> tuple[tuple[Tensor, ...] | None, ...]:
    """Each [B, H, ...] tensor split into its H steps (None stays None)."""
    return tuple(x.unbind(1) if x is not None else None for x in tensors)


def output_grad(g_preds: tuple | None, g_fed: Tensor | None, t: int, zeros: Tensor) -> Tensor:
    """Gradient of prediction t [B, T]: from the loss (`g_preds`; autograd passes zeros
    for an output the loss did not read, so None is rare; `zeros` [B, T] stands in) and
    from step t + 1 (`g_fed`)."""
    g_y = g_preds[t] if g_preds is not None else zeros
    return g_y if g_fed is None else g_y + g_fed


def feeding_mode(truth: Tensor | None, use_truth: Tensor | None) -> str:
    """'free' (own predictions fed back), 'truth' (true values) or 'mixed' (per window
    and step, where `use_truth` is True)."""
    if truth is None:
        return "free"
    return "truth" if use_truth is None else "mixed"


def feed(y: Tensor, t: int, truths: tuple | None, uses: tuple | None) -> Tensor:
    """The value fed into step t + 1 after predicting `y` [B, T] at step t."""
    if truths is None:
        return y
    if uses is None:
        return truths[t]
    return torch.where(uses[t], truths[t], y)


def fed_back(g_in: Tensor, mode: str, uses: tuple | None, t: int) -> Tensor | None:
    """The part of step t's input gradient `g_in` [B, T] that reaches prediction t - 1
    (None when nothing does)."""
    if t == 0 or mode == "truth":
        return None
    if mode == "free":
        return g_in
    return g_in.masked_fill(uses[t - 1], 0.0)  # teacher-forced windows: none


def lstm_tape(
    record: LoopRecord, W_ih: Tensor, W_hh: Tensor, b_ih: Tensor, b_hh: Tensor
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """The LSTM's part of the tape, for all H steps at once: the step inputs XH
    [H, B, E + D] (cell input, then h_{t-1}), its local derivatives dgates [H, B, 4D],
    dcell and forget [H, B, D]. The gates are computed again here in a few large ops,
    rather than kept from `torch.lstm_cell` in many small ones.

    Args:
        record: the loop's record (kept).
        W_ih, W_hh, b_ih, b_hh: the cell's weights (gates i, f, g, o as in nn.LSTM).
    """
    X, Hs, Cs = record.X, torch.stack(record.states), torch.stack(record.cells)  # [H + 1, B, D]
    H, B, D = Hs.shape[0] - 1, Hs.shape[1], Hs.shape[2]
    XH = torch.cat([torch.stack(X), Hs[:-1]], dim=2)  # [H, B, E + D]
    W_cat_t = torch.cat([W_ih, W_hh], dim=1).t()  # [E + D, 4D]
    pre = torch.addmm(b_ih + b_hh, XH.view(H * B, -1), W_cat_t).view(H, B, 4 * D)
    act = pre.sigmoid()  # g is a tanh
    g = pre[..., 2 * D : 3 * D].tanh()
    i, f, _, o = act.split(D, dim=2)
    tanh_c = Cs[1:].tanh()
    slope = act * (1.0 - act)  # sigmoid'
    slope[..., 2 * D : 3 * D] = 1.0 - g * g  # tanh'
    dgates = torch.cat([g, Cs[:-1], i, tanh_c], dim=2).mul_(slope)  # [H, B, 4D]
    dcell = o * (1.0 - tanh_c * tanh_c)
    return XH, dgates, dcell, f


def cell_backward(
    g_h: Tensor, g_c: Tensor, dgates: Tensor, dcell: Tensor, forget: Tensor, W_cat: Tensor
) -> tuple[Tensor, Tensor, Tensor]:
    """One LSTM step backwards: (gate gradients G [B, 4D], gradient of the step's
    inputs [B, E + D], gradient of c_{t-1}).

    dcell = o (1 - tanh^2 c); dgates folds each gate's derivative with the factor that
    multiplies it, so G = [g_c, g_c, g_c, g_h] * dgates.

    Args:
        g_h, g_c: gradients of the step's h_t and c_t [B, D].
        dgates, dcell, forget: the step's rows of `lstm_tape`.
        W_cat: [W_ih, W_hh] [4D, E + D].
    """
    g_c = torch.addcmul(g_c, g_h, dcell)
    G = torch.cat([g_c, g_c, g_c, g_h], dim=1).mul_(dgates)  # [B, 4D]
    return G, G @ W_cat, g_c * forget


def score_grad(g_context: Tensor, memory_t: Tensor, w: Tensor, g_w: Tensor | None) -> Tensor:
    """Gradient of step t's scores [B, 1, L] from those of its context and weights.

    Args:
        g_context: gradient of the context [B, Dk].
        memory_t: the values, transposed [B, Dk, L] (contiguous: the fast bmm layout).
        w: the step's softmax weights [B, L].
        g_w: gradient the loss gave the weights directly [B, L], or None.
    """
    g = torch.bmm(g_context[:, None], memory_t)  # [B, 1, L]: through the context
    if g_w is not None:
        g = g + g_w[:, None]
    w = w[:, None]
    return w * (g - (g * w).sum(dim=2, keepdim=True))  # the softmax's backward


def lstm_and_input_grads(
    G_gates: list[Tensor], G_xh: list[Tensor], XH: Tensor, T: int, K: int, mode: str,
    use_truth: Tensor | None,
) -> dict[str, Tensor | None]:  # fmt: skip
    """Gradients of the cell's weights and of the decoder's inputs from every step's
    gate and input gradients (collected from the last step to the first).

    Args:
        G_gates: each step's G [B, 4D], last step first.
        G_xh: each step's input gradient [B, E + D], last step first.
        XH: the tape's step inputs [H, B, E + D].
        T, K: targets and known covariates (the first T + K input columns).
        mode: `feeding_mode`.
        use_truth: [B, H, 1] bool in 'mixed' mode.
    """
    H, B, ED = XH.shape
    E = ED - G_gates[0].shape[1] // 4
    G_gates = torch.stack(G_gates[::-1]).view(H * B, -1)  # steps in forward order
    G_xh = torch.stack(G_xh[::-1])  # [H, B, E + D]
    g_W_cat = G_gates.t() @ XH.view(H * B, ED)  # [4D, E + D]
    g_b = G_gates.sum(dim=0)
    g_truth = None
    if mode != "free":  # step t's input was truth t - 1 (RevIN-scaled, so it has grad)
        g_truth = XH.new_zeros(B, H, T)
        g_true = G_xh[1:, :, :T].transpose(0, 1)  # [B, H - 1, T]
        if mode == "mixed":
            g_true = g_true.masked_fill(~use_truth[:, :-1], 0.0)
        g_truth[:, :-1] = g_true
    return {
        "W_ih": g_W_cat[:, :E],
        "W_hh": g_W_cat[:, E:],
        "b_ih": g_b,
        "b_hh": g_b,
        "last": G_xh[0, :, :T],
        "known": G_xh[:, :, T : T + K].transpose(0, 1),  # read by input attributions
        "truth": g_truth,
    }


def ordered(grads: dict, order: list[str | None], needs: tuple[bool, ...]) -> tuple:
    """`grads` in the node's input order, None where no gradient is needed."""
    return tuple(
        grads[name] if name is not None and need else None for name, need in zip(order, needs)
    )


def check_first_order() -> None:
    """Backward with `create_graph=True` runs with gradients on: the tape has no graph,
    so say so rather than return wrong second derivatives."""
    if torch.is_grad_enabled():
        raise RuntimeError(
            "the fused decoder loop has first derivatives only; for higher ones run the "
            "step loop: set decoder.use_fast_path = False"
        )


def run_node(
    node: type[torch.autograd.Function], forward: Callable[..., object], inputs: tuple
) -> tuple[Tensor, Tensor]:
    """`node.apply(*inputs)` when a gradient is needed, else `forward` without a tape
    (it returns a tuple that starts with its `LoopRecord`); under AMP in float32
    (the outputs then stay float32)."""
    device = inputs[0].device.type
    if torch.is_autocast_enabled(device):
        with torch.autocast(device, enabled=False):
            cast = tuple(
                x.float() if isinstance(x, Tensor) and x.is_floating_point() else x for x in inputs
            )
            return run_node(node, forward, cast)
    tensors = [x for x in inputs if isinstance(x, Tensor)]
    if torch.is_grad_enabled() and any(x.requires_grad for x in tensors):
        return node.apply(*inputs)
    return forward(*inputs, keep=False)[0].outputs()
