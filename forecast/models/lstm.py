"""Attention LSTM encoder-decoder (Bahdanau / Luong), with optional feature attention.

The encoder reads [past_target, past_covariates, past_known] (F = layout.encoder_features)
over the L input steps; with `feature_attention` every step's input is first weighted by
DA-RNN input attention. The decoder emits the H horizon steps one at a time from the
previous target value and the known-future covariates of the step being predicted, and
attends over the encoder states with the temporal attention named in the config (see
`forecast.models.attention`).

Teacher forcing is an argument of `forward`: at each step and for each window, the
previous value fed to the decoder is the true one with probability `teacher_forcing`,
otherwise the model's own prediction; 0 (evaluation) is free-running. With full teacher
forcing and an attention that does not feed the context into the step (Luong, or none),
the decoder LSTM runs over the whole horizon in one call and attention is one batched
matmul: the same outputs as the loop, many fewer Python steps. Otherwise a one-layer
decoder with Bahdanau or Luong dot/general attention (without dropout while training)
runs its step loop as one autograd node with a hand-written backward
(`forecast.models.fused`): the same numbers, with training steps 1.4-1.7x faster on CPU
(bench/bench_lstm.py).

With a local attention ('local_m', 'local_p') the output's `extras['attention_centres']`
[B, H] holds each step's window centre p_t, in encoder positions (0 = oldest input).

>>> import numpy as np, pandas as pd
>>> from forecast import ColumnRoles, create_model, prepare_data
>>> df = pd.DataFrame({"date": pd.date_range("2024-01-01", periods=200, freq="h"),
...                    "y": np.sin(np.arange(200) / 5)})
>>> data = prepare_data(df, ColumnRoles(("y",)), input_length=24, horizon=6)
>>> model = create_model("lstm", data.layout, hidden_size=8, epochs=1, progress=False)
>>> out = model.fit(data.train, data.val).predict_batch(data.test.batch([0, 1]))
>>> tuple(out.prediction.shape), tuple(out.temporal_attention.shape)
((2, 6, 1), (2, 6, 24))
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from forecast.data.windows import Batch, WindowLayout
from forecast.models.attention import (
    ATTENTIONS,
    BahdanauAttention,
    InputAttention,
    LuongDotAttention,
    LuongGeneralAttention,
    create_attention,
)
from forecast.models.base import ForecastOutput
from forecast.models.fused import bahdanau_decode, luong_decode
from forecast.models.registry import register_model
from forecast.models.revin import RevIN
from forecast.training import TorchForecaster, TrainConfig

State = tuple[Tensor, Tensor]  # (h, c), each [layers, B, D]


@dataclass(frozen=True)
class LSTMConfig(TrainConfig):
    """Architecture of the attention LSTM; training settings come from `TrainConfig`.

    Args:
        hidden_size: D, hidden units of encoder and decoder LSTMs.
        num_layers: stacked LSTM layers in encoder and decoder.
        dropout: between stacked layers, on encoder states and before the output layer.
        bidirectional: bidirectional encoder (keys become 2D wide; its final states are
            mapped to the decoder's size).
        attention: temporal attention: 'none', 'bahdanau', 'luong_dot', 'luong_general',
            'luong_concat', or the local Luong types 'local_m' (window at a fixed position
            moving with the decoder step) and 'local_p' (window at a predicted position);
            see `forecast.models.attention`. On ETTh1 track U, L=96, H=24 with RevIN
            (bench/etth1_lstm.py, 8 epochs, seed 0) test MSE was: none 0.0278,
            luong_concat 0.0284, bahdanau 0.0287, luong_dot 0.0290, local_m 0.0292,
            luong_general 0.0295, local_p 0.0309 (repeat-last 0.0343); 'luong_dot' is the
            default as the cheapest attention that returns maps, with no parameters.
        attention_dim: hidden size of additive/concat attention and of local-p's position
            network (default hidden_size).
        attention_scale: scale dot-product scores by 1/sqrt(D).
        attention_window: half-width D >= 1 of the local attentions' window, in encoder
            steps (Luong et al. used 10); ignored by the other types.
        feature_attention: DA-RNN input attention over the encoder features.
        revin: per-window normalisation of the targets (see `forecast.models.revin`);
            on ETTh1 it takes test MSE from 0.066 to 0.030, on the synthetic driver data
            (no level shifts) it costs a little, so it is on by default.
        revin_affine: learnable scale and shift inside RevIN.
    """

    hidden_size: int = 64
    num_layers: int = 1
    dropout: float = 0.0
    bidirectional: bool = False
    attention: str = "luong_dot"
    attention_dim: int | None = None
    attention_scale: bool = True
    attention_window: int = 8
    feature_attention: bool = False
    revin: bool = True
    revin_affine: bool = True

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.attention not in ATTENTIONS:
            raise ValueError(
                f"unknown attention {self.attention!r}; expected one of {list(ATTENTIONS)}"
            )
        if self.hidden_size < 1 or self.num_layers < 1:
            raise ValueError(
                f"hidden_size and num_layers must be >= 1, got {self.hidden_size} and "
                f"{self.num_layers}"
            )
        if self.attention_window < 1:
            raise ValueError(f"attention_window must be >= 1, got {self.attention_window}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
        if self.feature_attention and self.bidirectional:
            raise ValueError(
                "feature_attention needs a unidirectional encoder: its query is the state "
                "of the previous step; set bidirectional=False"
            )


class Encoder(nn.Module):
    """LSTM over the input window: states [B, L, D x directions] and final (h, c).

    With feature attention the first layer is an `nn.LSTMCell` run step by step, since
    the feature weights at step t depend on the state after step t - 1.

    Args:
        n_features: F, encoder input columns.
        input_length: L.
        cfg: the model config.
    """

    def __init__(self, n_features: int, input_length: int, cfg: LSTMConfig) -> None:
        super().__init__()
        D, layers = cfg.hidden_size, cfg.num_layers
        between = cfg.dropout if layers > 1 else 0.0  # nn.LSTM warns on dropout with 1 layer
        self.input_attention = None
        if cfg.feature_attention:
            self.input_attention = InputAttention(n_features, input_length, 2 * D)
            self.cell = nn.LSTMCell(n_features, D)
            self.upper = (
                nn.LSTM(D, D, layers - 1, batch_first=True, dropout=between if layers > 2 else 0)
                if layers > 1
                else None
            )
            self.between = nn.Dropout(cfg.dropout)
        else:
            self.lstm = nn.LSTM(
                n_features,
                D,
                layers,
                batch_first=True,
                dropout=between,
                bidirectional=cfg.bidirectional,
            )

    def forward(self, x: Tensor) -> tuple[Tensor, State, Tensor | None]:
        """States [B, L, Dk], final (h, c) [layers x directions, B, D], feature weights.

        Args:
            x: encoder input [B, L, F].
        """
        if self.input_attention is None:
            out, state = self.lstm(x)  # [B, L, D * directions]
            return out, state, None
        B, L, _ = x.shape
        prepared = self.input_attention.prepare(x)  # [B, F, A] once per window
        h = c = x.new_zeros(B, self.cell.hidden_size)  # [B, D]
        outs, weights = [], []
        for t in range(L):
            x_t, w = self.input_attention.attend(torch.cat([h, c], dim=-1), prepared, x[:, t])
            h, c = self.cell(x_t, (h, c))
            outs.append(h)
            weights.append(w)
        out = torch.stack(outs, dim=1)  # [B, L, D]
        hs, cs = h[None], c[None]  # [1, B, D]
        if self.upper is not None:
            out, (h2, c2) = self.upper(self.between(out))
            hs, cs = torch.cat([hs, h2]), torch.cat([cs, c2])  # [layers, B, D]
        return out, (hs, cs), torch.stack(weights, dim=1)  # ..., [B, L, F]


class Decoder(nn.Module):
    """LSTM decoder over the horizon with the temporal attention injected by name.

    Args:
        n_targets: T, predicted columns.
        n_known: K, known-future covariates fed at each step.
        key_dim: size of the encoder states.
        cfg: the model config.
    """

    def __init__(self, n_targets: int, n_known: int, key_dim: int, cfg: LSTMConfig) -> None:
        super().__init__()
        D = cfg.hidden_size
        self.attention = create_attention(
            cfg.attention,
            D,
            key_dim,
            attention_dim=cfg.attention_dim,
            scale=cfg.attention_scale,
            window=cfg.attention_window,
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

    def _fused(self) -> str | None:
        """Which fused node computes the step loop ('bahdanau', 'luong' or None): one
        LSTM layer, Bahdanau or Luong dot/general attention, no dropout active (the same
        arithmetic as the loop; see `forecast.models.fused`)."""
        if not self.use_fast_path or self.lstm.num_layers != 1:
            return None
        if self.dropout.training and self.dropout.p > 0:
            return None
        kind = type(self.attention)
        if kind is BahdanauAttention:
            return "bahdanau"
        return "luong" if kind in (LuongDotAttention, LuongGeneralAttention) else None

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
        if teacher_forcing >= 1.0 and not self.feeds_context and self.use_fast_path:
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
        fused = self._fused()
        if fused is not None:  # the step loop below as one autograd node
            fed = truth if teacher_forcing > 0.0 else None
            inputs = (state, last, future_known, fed, use_truth)
            if fused == "bahdanau":
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


class LSTMNetwork(nn.Module):
    """Encoder, (bridge,) decoder; `forward(batch, teacher_forcing, generator)`.

    Args:
        layout: shapes and column roles of the windows.
        cfg: the model config.
    """

    def __init__(self, layout: WindowLayout, cfg: LSTMConfig) -> None:
        super().__init__()
        self.layout = layout
        D, nt = cfg.hidden_size, layout.n_targets
        n_features = len(layout.encoder_features)
        key_dim = D * (2 if cfg.bidirectional else 1)
        self.revin = RevIN(nt, affine=cfg.revin_affine) if cfg.revin else None
        self.encoder = Encoder(n_features, layout.input_length, cfg)
        # A bidirectional encoder ends with a forward and a backward state per layer.
        self.bridge_h = nn.Linear(2 * D, D) if cfg.bidirectional else None
        self.bridge_c = nn.Linear(2 * D, D) if cfg.bidirectional else None
        self.dropout = nn.Dropout(cfg.dropout)
        self.decoder = Decoder(nt, layout.n_known, key_dim, cfg)

    def _bridge(self, state: State) -> State:
        if self.bridge_h is None:
            return state
        h, c = state  # [layers * 2, B, D]
        layers, B, D = h.shape[0] // 2, h.shape[1], h.shape[2]
        h = h.view(layers, 2, B, D).permute(0, 2, 1, 3).reshape(layers, B, 2 * D)
        c = c.view(layers, 2, B, D).permute(0, 2, 1, 3).reshape(layers, B, 2 * D)
        return torch.tanh(self.bridge_h(h)), self.bridge_c(c)  # [layers, B, D]

    def forward(
        self, batch: Batch, teacher_forcing: float = 0.0, generator: torch.Generator | None = None
    ) -> ForecastOutput:
        """Forecast a batch; `future_target` is read only when teacher_forcing > 0.

        Args:
            batch: window fields, see `WindowDataset.batch`.
            teacher_forcing: probability of feeding the true previous target (0 =
                free-running, as at evaluation).
            generator: random generator of the teacher-forcing draws.
        """
        if not 0.0 <= teacher_forcing <= 1.0:
            raise ValueError(f"teacher_forcing must be in [0, 1], got {teacher_forcing}")
        past = batch["past_target"]  # [B, L, T]
        if self.revin is not None:
            past = self.revin.normalize(past)
        x = torch.cat([past, batch["past_covariates"], batch["past_known"]], dim=-1)  # [B, L, F]
        memory, state, feature_weights = self.encoder(x)
        truth = None
        if teacher_forcing > 0.0:
            truth = batch["future_target"]  # [B, H, T]
            if self.revin is not None:
                truth = self.revin.normalize_like(truth)
        pred, temporal, centres = self.decoder(
            self.dropout(memory),
            self._bridge(state),
            past[:, -1],
            batch["future_known"],
            truth,
            teacher_forcing,
            generator,
        )
        if self.revin is not None:
            pred = self.revin.denormalize(pred)
        extras = {} if centres is None else {"attention_centres": centres}
        return ForecastOutput(pred, temporal, feature_weights, extras=extras)


@register_model(
    "darnn",
    kind="neural",
    defaults={"feature_attention": True, "attention": "bahdanau"},
    description="DA-RNN: input attention over features + additive temporal attention",
)
@register_model(
    "lstm_local",
    kind="neural",
    defaults={"attention": "local_p"},
    description="LSTM encoder-decoder with Luong local-p (predictive window) attention",
)
@register_model(
    "lstm_luong",
    kind="neural",
    defaults={"attention": "luong_general"},
    description="LSTM encoder-decoder with Luong (general) attention",
)
@register_model(
    "lstm_bahdanau",
    kind="neural",
    defaults={"attention": "bahdanau"},
    description="LSTM encoder-decoder with Bahdanau (additive) attention",
)
@register_model(
    "lstm_plain",
    kind="neural",
    defaults={"attention": "none"},
    description="LSTM encoder-decoder without attention",
)
@register_model("lstm", kind="neural", description="attention LSTM encoder-decoder")
class LSTMForecaster(TorchForecaster):
    """Attention LSTM encoder-decoder trained by the one loop in `forecast.training`."""

    Config = LSTMConfig

    def build_network(self) -> LSTMNetwork:
        return LSTMNetwork(self.layout, self.config)
