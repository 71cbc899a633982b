"""The classic attention decoder (Bahdanau / Luong) over the encoder states.

The decoder emits the H horizon steps one at a time from the previous target value and
the known-future covariates of the step being predicted, and attends over the encoder
states with the temporal attention named in the config (see `forecast.models.attention`):
Bahdanau attends with the previous state and feeds the context into the step; Luong
attends with the new state and predicts from h~ = tanh(W_c [c; s]). This is the
textbook design (`decoder="classic"`, the model `lstm_classic`); the toolkit's default
is the read decoder (`forecast.models.lstm_read`), whose maps say what the forecast read.

Teacher forcing is an argument of `forward`: at each step and for each window, the
previous value fed to the decoder is the true one with probability `teacher_forcing`,
otherwise the model's own prediction; 0 (evaluation) is free-running. How the steps are
computed is decided in one place, `ClassicDecoder.path`: with full teacher forcing and an
attention that does not feed the context into the step (Luong, or none) the decoder LSTM
runs over the whole horizon in one call and attention is one batched matmul
('one_call'); a one-layer decoder with Bahdanau or Luong dot/general softmax attention
(without dropout while training) runs its step loop as one autograd node with a
hand-written backward ('fused_bahdanau', 'fused_luong', `forecast.models.fused`); the
rest runs the autograd step loop ('loop'). All paths give the same numbers; for their
speed see bench/bench_lstm.py.

With a local attention ('local_m', 'local_p') the decoder also returns each step's
window centre p_t [B, H], in encoder positions (0 = oldest input).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from forecast.models.attention import (
    BahdanauAttention,
    LuongDotAttention,
    LuongGeneralAttention,
    create_attention,
)
from forecast.models.fused import bahdanau_decode, luong_decode

PATHS = ("one_call", "fused_bahdanau", "fused_luong", "loop")
State = tuple[Tensor, Tensor]  # (h, c), each [layers, B, D]


class ClassicDecoder(nn.Module):
    """LSTM decoder over the horizon with the temporal attention injected by name.

    Args:
        n_targets: T, predicted columns.
        n_known: K, known-future covariates fed at each step.
        key_dim: size of the encoder states.
        cfg: the model config.
    """

    def __init__(self, n_targets: int, n_known: int, key_dim: int, cfg: Any) -> None:
        super().__init__()
        D = cfg.hidden_size
        self.attention = create_attention(
            cfg.attention,
            D,
            key_dim,
            attention_dim=cfg.attention_dim,
            scale=cfg.attention_scale,
            window=cfg.attention_window,
            normalizer=cfg.normalizer,
        )
        # Bahdanau feeds the context into the step; Luong combines it with the new state.
        self.feeds_context = self.attention is not None and self.attention.uses_previous_state
        self.combines_context = self.attention is not None and not self.feeds_context
        in_dim = n_targets + n_known + (key_dim if self.feeds_context else 0)
        between = cfg.dropout if cfg.num_layers > 1 else 0.0
        self.lstm = nn.LSTM(in_dim, D, cfg.num_layers, batch_first=True, dropout=between)
        self.combine = nn.Linear(key_dim + D, D) if self.combines_context else None  # W_c
        self.head = nn.Linear(D + key_dim if self.feeds_context else D, n_targets)
        self.dropout = nn.Dropout(cfg.dropout)
        self.use_fast_path = True  # tests and benchmarks switch it off to compare

    def path(self, teacher_forcing: float) -> str:
        """How `forward` computes the steps at this teacher-forcing ratio, one of `PATHS`
        (the only place this is decided; all paths give the same numbers).

        Args:
            teacher_forcing: the ratio of the call.
        """
        if not self.use_fast_path:
            return "loop"
        if teacher_forcing >= 1.0 and not self.feeds_context:
            return "one_call"
        if self.lstm.num_layers != 1 or (self.dropout.training and self.dropout.p > 0):
            return "loop"
        if self.attention is None or self.attention.normalizer != "softmax":
            return "loop"
        if self.attention.uniform:  # an ablation: the fused nodes only know softmax
            return "loop"
        kind = type(self.attention)
        if kind is BahdanauAttention:
            return "fused_bahdanau"
        return "fused_luong" if kind in (LuongDotAttention, LuongGeneralAttention) else "loop"

    def _cell(self, x: Tensor, state: list[tuple[Tensor, Tensor]]) -> Tensor:
        """One step through every layer, in place on `state`, with `self.lstm`'s weights
        (so the step loop and the one-call fast path are the same function)."""
        for k in range(len(state)):
            if k > 0:
                x = nn.functional.dropout(x, self.lstm.dropout, self.training)
            weights = [getattr(self.lstm, f"{n}_l{k}") for n in ("weight_ih", "weight_hh")]
            biases = [getattr(self.lstm, f"{n}_l{k}") for n in ("bias_ih", "bias_hh")]
            state[k] = torch.lstm_cell(x, state[k], *weights, *biases)  # what LSTMCell calls
            x = state[k][0]
        return x  # [B, D] top layer

    def _output(self, s: Tensor, context: Tensor | None) -> Tensor:
        """Prediction from the decoder state s [B, (H,) D] and the context."""
        if self.combines_context:
            s = torch.tanh(self.combine(torch.cat([context, s], dim=-1)))  # h~ = tanh(W_c[c;s])
        elif self.feeds_context:
            s = torch.cat([s, context], dim=-1)
        return self.head(self.dropout(s))

    def forward(
        self,
        memory: Tensor,
        state: State,
        last: Tensor,
        future_known: Tensor,
        truth: Tensor | None,
        teacher_forcing: float,
        generator: torch.Generator | None,
    ) -> tuple[Tensor, Tensor | None, Tensor | None]:
        """Predictions [B, H, T], temporal attention [B, H, L] (None without attention)
        and, for the local attentions, each step's window centre [B, H] (else None).

        Args:
            memory: encoder states [B, L, Dk] (keys and values).
            state: initial (h, c) [layers, B, D].
            last: last observed target [B, T], the input of step 0.
            future_known: [B, H, K].
            truth: true future targets [B, H, T] (read only when teacher_forcing > 0).
            teacher_forcing: probability of feeding the true previous value.
            generator: random generator of the per-window, per-step draws.
        """
        H = future_known.shape[1]
        path = self.path(teacher_forcing)
        if path == "one_call":
            inputs = torch.cat([last[:, None], truth[:, :-1]], dim=1)  # [B, H, T] shifted
            s, _ = self.lstm(torch.cat([inputs, future_known], dim=-1), state)  # [B, H, D]
            context = weights = None
            if self.attention is not None:  # every step's query at once: one batched matmul
                context, weights = self.attention.attend_all(s, memory, memory, horizon=H)
            centres = getattr(self.attention, "last_positions", None)  # [B, H] local
            return self._output(s, context), weights, centres
        keys = self.attention.prepare_keys(memory) if self.attention is not None else None
        use_truth = None
        if 0.0 < teacher_forcing < 1.0:
            # Drawn on the generator's device (CPU in the training loop), then moved, so a
            # seeded run makes the same draws whichever device the network is on.
            where = generator.device if generator is not None else torch.device("cpu")
            draw = torch.rand(last.shape[0], H, 1, generator=generator, device=where)
            use_truth = (draw < teacher_forcing).to(last.device)  # [B, H, 1]
        if path != "loop":  # the step loop below as one autograd node
            fed = truth if teacher_forcing > 0.0 else None
            inputs = (state, last, future_known, fed, use_truth)
            if path == "fused_bahdanau":
                modules = (self.attention, self.lstm, self.head)
                pred, temporal = bahdanau_decode(memory, keys, *inputs, *modules)
            else:  # prepare_keys gave [B, D, L]; the node scores against [B, L, D]
                modules = (self.lstm, self.combine, self.head)
                scale = self.attention.scale
                pred, temporal = luong_decode(memory, keys.mT, *inputs, scale, *modules)
            return pred, temporal, None
        if keys is not None:  # read at every step: a contiguous copy is faster per step
            keys = keys.contiguous()
        layers = list(zip(state[0].unbind(0), state[1].unbind(0)))  # per layer ([B, D], [B, D])
        s_prev, y_prev = layers[-1][0], last  # [B, D], [B, T]
        preds, weights, centres = [], [], []
        for t in range(H):
            x = torch.cat([y_prev, future_known[:, t]], dim=-1)  # [B, T + K]
            context = w = None
            if self.feeds_context:  # Bahdanau: attend with s_{t-1}, feed c_t into the step
                context, w = self.attention.attend(s_prev, keys, memory, step=t, horizon=H)
                x = torch.cat([x, context], dim=-1)
            s = self._cell(x, layers)  # [B, D]
            if self.combines_context:  # Luong: attend with s_t after the step
                context, w = self.attention.attend(s, keys, memory, step=t, horizon=H)
            y = self._output(s, context)  # [B, T]
            preds.append(y)
            weights.append(w)
            centres.append(getattr(self.attention, "last_positions", None))
            s_prev = s
            if teacher_forcing >= 1.0:
                y_prev = truth[:, t]
            elif use_truth is not None:
                y_prev = torch.where(use_truth[:, t], truth[:, t], y)
            else:
                y_prev = y
        temporal = torch.stack(weights, dim=1) if self.attention is not None else None
        positions = torch.cat(centres, dim=1) if centres[0] is not None else None  # [B, H]
        return torch.stack(preds, dim=1), temporal, positions  # [B, H, T], [B, H, L], [B, H]
