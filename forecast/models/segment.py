"""Segment-recurrent attention RNN, in the spirit of SegRNN (Lin et al., 2023).

A per-step LSTM runs L recurrent steps per window; this one runs L / W. The input window
is cut into N = ceil(L / W) segments of W steps (the window is padded at the start by
repeating its first step when W does not divide L), each segment is embedded by one
linear layer, and the encoder RNN (a GRU by default, as SegRNN's; or an LSTM) runs over
the N segment embeddings. The decoder
predicts all M = ceil(H / W) horizon segments in parallel (SegRNN's "parallel
multi-step forecasting"): every horizon segment starts one recurrent step from the encoder's
final state, fed a learned position embedding (+ a channel embedding), and a linear
layer maps its state to the W values of that segment (the forecast is cut to H).

Target channels are handled independently, as in SegRNN (one sequence per window and
target, weights shared, the channel told apart by its embedding). Covariates: past
covariates and the past part of the known covariates are extra inputs of each
segment's embedding; the known-future covariates of each horizon segment are embedded
into that segment's decoder input.

Attention over the encoder's segment states, any type of `forecast.models.attention`:
Luong types (and 'none') take the decoder state s_m as query and predict from
h~ = tanh(W_c [c_m; s_m]); Bahdanau (`uses_previous_state`) takes the previous state,
which for a parallel decoder is the encoder's final state, with the segment's decoder
input appended so that each segment has its own query, and feeds the context into the
step. The maps are [B, M, N] per channel (`extras['segment_attention']`,
[B, targets, M, N]); `temporal_attention` [B, H, L] maps them back to time for the
interpretation tools: each forecast step takes its segment's row, each input segment's
weight is spread evenly over its (unpadded) steps, and the targets' maps are averaged,
so rows still sum to 1 over L.

Normalisation of the targets per window: RevIN (default) or SegRNN's subtraction of
the last input value (`normalization='last'`).

>>> import numpy as np, pandas as pd
>>> from forecast import ColumnRoles, create_model, prepare_data
>>> df = pd.DataFrame({"date": pd.date_range("2024-01-01", periods=300, freq="h"),
...                    "y": np.sin(np.arange(300) / 5)})
>>> data = prepare_data(df, ColumnRoles(("y",)), input_length=48, horizon=12)
>>> model = create_model("segrnn", data.layout, segment_length=12, epochs=1, progress=False)
>>> out = model.fit(data.train, data.val).predict_batch(data.test.batch([0, 1]))
>>> tuple(out.prediction.shape), tuple(out.temporal_attention.shape)
((2, 12, 1), (2, 12, 48))
>>> tuple(out.extras["segment_attention"].shape)  # [B, targets, M, N]
(2, 1, 1, 4)
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import ClassVar

import torch
from torch import Tensor, nn

from forecast.data.windows import Batch, WindowDataset, WindowLayout
from forecast.models.attention import ATTENTIONS, NORMALIZERS, create_attention
from forecast.models.base import ForecastOutput
from forecast.models.lstm_read import start_skip
from forecast.models.registry import register_model
from forecast.models.revin import RevIN
from forecast.models.torch_base import TorchForecaster, TorchModelConfig
from forecast.params import check_choices
from forecast.training import TrainConfig

NORMALIZATIONS = ("revin", "last", "none")
LOSSES = ("mse", "mae")
CELLS = ("lstm", "gru")
AUTO_SEGMENTS = (48, 24, 12)  # `segment_length=None` picks the longest giving >= 8 segments


def auto_segment_length(input_length: int) -> int:
    """The default segment length W for an input of `input_length` steps: the longest of
    48, 24, 12 that leaves at least 8 segments (an encoder with a few steps to attend
    over), else ceil(L / 8).

    >>> [auto_segment_length(L) for L in (24, 96, 336, 720)]
    [3, 12, 24, 48]
    """
    for w in AUTO_SEGMENTS:
        if math.ceil(input_length / w) >= 8:
            return w
    return max(1, math.ceil(input_length / 8))


@dataclass(frozen=True)
class SegmentConfig(TorchModelConfig):
    """Architecture of the segment-recurrent RNN, and how it is trained (`train`).

    Args:
        segment_length: W, steps per segment, for input and horizon; None: see
            `auto_segment_length` (12 at L=96, 24 at L=336, 48 at L=720).
        hidden_size: D, segment embedding and recurrent state size.
        num_layers: stacked recurrent layers in encoder and decoder.
        dropout: before the output layer (and between stacked layers).
        attention: 'none', 'bahdanau', 'luong_dot', 'luong_general', 'luong_concat',
            'local_m' or 'local_p' over the encoder's segment states.
        attention_dim: hidden size of additive/concat attention (default hidden_size).
        attention_scale: scale dot-product scores by 1/sqrt(D).
        attention_window: half-width of the local attentions' window, in segments.
        normalizer: 'softmax', 'sparsemax' or 'entmax15'.
        normalization: per-window normalisation of the targets: 'revin', 'last'
            (subtract the last input value, as SegRNN) or 'none'.
        revin_affine: learnable scale and shift inside RevIN.
        skip: add a linear map of each target's own (normalised) window in NLinear form,
            started at the least-squares fit of the training windows (the output layer
            starts at 0, so training starts from that autoregression and the network
            learns the rest; the loop keeps the start if no epoch beats it).
        loss: training and validation objective on the scaled space: 'mse', or 'mae'
            (SegRNN's choice, less pulled by outliers).
        cell: recurrent cell of encoder and decoder: 'gru' (SegRNN's choice, the default:
            the more accurate of the two on ETTh1, see docs/benchmarks.md) or 'lstm'
            (oneDNN's fused LSTM: a little faster per epoch on a CPU).
        train: training settings; this model's defaults: learning rate 3e-4 (the pair
            with the GRU cell), no gradient clipping (as SegRNN: the recurrences run over
            a few segments, not every step; on ETTh1 a clip at norm 1 never acted), no
            teacher forcing (parallel decoding: no previous forecast is fed).
    """

    # Checkpoints saved before `cell` existed hold an LSTM (see forecast.checkpoint).
    SAVED_BEFORE: ClassVar[dict[str, str]] = {"cell": "lstm"}

    train: TrainConfig = field(
        default_factory=lambda: TrainConfig(
            lr=3e-4, grad_clip=None, teacher_forcing=0.0, tf_schedule="constant"
        )
    )
    segment_length: int | None = None
    hidden_size: int = 64
    num_layers: int = 1
    dropout: float = 0.1
    attention: str = "luong_dot"
    attention_dim: int | None = None
    attention_scale: bool = True
    attention_window: int = 2
    normalizer: str = "softmax"
    normalization: str = "revin"
    revin_affine: bool = True
    skip: bool = False
    freeze_skip: bool = False
    loss: str = "mse"
    cell: str = "gru"

    def __post_init__(self) -> None:
        check_choices(
            ("attention", self.attention, tuple(ATTENTIONS)),
            ("normalizer", self.normalizer, tuple(NORMALIZERS)),
            ("normalization", self.normalization, NORMALIZATIONS),
            ("loss", self.loss, LOSSES),
            ("cell", self.cell, CELLS),
        )
        if self.segment_length is not None and self.segment_length < 1:
            raise ValueError(f"segment_length must be >= 1 or None, got {self.segment_length}")
        if self.hidden_size < 1 or self.num_layers < 1:
            raise ValueError(
                f"hidden_size and num_layers must be >= 1, got {self.hidden_size} and "
                f"{self.num_layers}"
            )
        if self.attention_window < 1:
            raise ValueError(f"attention_window must be >= 1, got {self.attention_window}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
        if self.train.teacher_forcing != 0.0:
            raise ValueError(
                f"teacher_forcing={self.train.teacher_forcing}: the segment model decodes every "
                "horizon segment in parallel and feeds no previous forecast; set 0"
            )


def _segments(x: Tensor, n: int, w: int, pad_end: bool = False) -> Tensor:
    """[B, S, F] -> [B, n, w * F]: consecutive blocks of w steps, each step's F values
    side by side; the missing n * w - S steps are filled by repeating the first step
    (input) or the last one (`pad_end`, the known future).
    """
    B, S, F = x.shape
    pad = n * w - S
    if pad:
        edge = x[:, -1:] if pad_end else x[:, :1]
        fill = edge.expand(B, pad, F)
        x = torch.cat([x, fill] if pad_end else [fill, x], dim=1)  # [B, n * w, F]
    return x.reshape(B, n, w * F)


class SegmentNetwork(nn.Module):
    """Segment embedding, recurrent encoder over segments, parallel attention decoder.

    Args:
        layout: shapes and column roles of the windows.
        cfg: the model config.
    """

    def __init__(self, layout: WindowLayout, cfg: SegmentConfig) -> None:
        super().__init__()
        self.layout, self.cfg = layout, cfg
        L, H, T = layout.input_length, layout.horizon, layout.n_targets
        W = cfg.segment_length or auto_segment_length(L)
        D, layers = cfg.hidden_size, cfg.num_layers
        self.W, self.N, self.M = W, math.ceil(L / W), math.ceil(H / W)
        self.pad = self.N * W - L  # steps repeated before the window
        n_in = 1 + layout.n_past + layout.n_known  # per channel: its target + covariates
        between = cfg.dropout if layers > 1 else 0.0
        self.revin = RevIN(T, affine=cfg.revin_affine) if cfg.normalization == "revin" else None
        self.embed = nn.Sequential(nn.Linear(W * n_in, D), nn.ReLU())
        gru = cfg.cell == "gru"
        self.encoder = (nn.GRU if gru else nn.LSTM)(D, D, layers, batch_first=True, dropout=between)
        # Decoder input of horizon segment m, channel c: [position m ; channel c] (D).
        self.position = nn.Parameter(torch.randn(self.M, D - D // 2))
        self.channel = nn.Parameter(torch.randn(T, D // 2))
        self.known = nn.Linear(W * layout.n_known, D) if layout.n_known else None
        kind = ATTENTIONS[cfg.attention]
        # Bahdanau's query: the encoder's final state with the segment's input appended.
        self.feeds_context = kind is not None and kind.uses_previous_state
        self.attention = create_attention(
            cfg.attention,
            2 * D if self.feeds_context else D,
            D,
            attention_dim=cfg.attention_dim,
            scale=cfg.attention_scale,
            window=cfg.attention_window,
            normalizer=cfg.normalizer,
        )
        # One step per horizon segment: a stack of cells (an nn.LSTM call over one step
        # costs ~1.6x a cell's, from oneDNN's per-call setup).
        first = 2 * D if self.feeds_context else D
        Cell = nn.GRUCell if gru else nn.LSTMCell
        self.decoder = nn.ModuleList(Cell(first if i == 0 else D, D) for i in range(layers))
        self.between = nn.Dropout(between)
        combines = self.attention is not None and not self.feeds_context
        self.combine = nn.Linear(2 * D, D) if combines else None  # W_c of Luong
        self.dropout = nn.Dropout(cfg.dropout)
        self.out = nn.Linear(D, W)
        self.skip = nn.Linear(L, H) if cfg.skip else None
        if self.skip is not None:  # start as the skip alone (see `SkipSegmentNetwork`)
            nn.init.zeros_(self.out.weight)
            nn.init.zeros_(self.out.bias)
        self.register_buffer("spread", self._spread(), persistent=False)  # [N, L]

    def _spread(self) -> Tensor:
        """[N, L]: row n is 1 / (real steps of segment n) on those steps, 0 elsewhere."""
        L, W = self.layout.input_length, self.W
        segment = (torch.arange(L) + self.pad) // W  # [L] segment of each input step
        onehot = nn.functional.one_hot(segment, self.N).T.float()  # [N, L]
        return onehot / onehot.sum(dim=1, keepdim=True)

    def forward(
        self,
        batch: Batch,
        teacher_forcing: float = 0.0,
        generator: torch.Generator | None = None,
        return_attention: bool = True,
    ) -> ForecastOutput:
        """Forecast [B, H, targets] from the past fields and the known future.

        Args:
            batch: window fields, see `WindowDataset.batch`.
            teacher_forcing: must be 0 (nothing is fed back; the loop passes it).
            generator: unused.
            return_attention: build the maps (the training loop asks for none).
        """
        if teacher_forcing != 0.0:
            raise ValueError(f"the segment model has no teacher forcing, got {teacher_forcing}")
        lay, W, N, M = self.layout, self.W, self.N, self.M
        past = batch["past_target"]  # [B, L, T]
        B, L, T = past.shape
        if self.revin is not None:
            past = self.revin.normalize(past)
        elif self.cfg.normalization == "last":
            last = past[:, -1:]  # [B, 1, T] (not detached: integrated gradients stay exact)
            past = past - last
        # Channel independence: one sequence per (window, target), covariates shared.
        covariates = torch.cat([batch["past_covariates"], batch["past_known"]], dim=-1)
        x = torch.cat(
            [past.transpose(1, 2).unsqueeze(-1),  # [B, T, L, 1]
             covariates.unsqueeze(1).expand(B, T, L, covariates.shape[-1])], dim=-1,
        ).reshape(B * T, L, -1)  # [B T, L, 1 + past + known]  # fmt: skip
        memory, state = self.encoder(self.embed(_segments(x, N, W)))  # [BT, N, D]
        states = state if isinstance(state, tuple) else (state,)  # (h, c) of LSTMs, (h,) of GRUs
        h = states[0]  # [layers, BT, D]
        D = memory.shape[-1]
        inputs = torch.cat(
            [self.position[None].expand(T, M, -1),  # [T, M, D - D/2]
             self.channel[:, None].expand(T, M, -1)], dim=-1,
        )[None].expand(B, T, M, D)  # [B, T, M, D]  # fmt: skip
        if self.known is not None:
            known = self.known(_segments(batch["future_known"], M, W, pad_end=True))  # [B, M, D]
            inputs = inputs + known[:, None]
        inputs = inputs.reshape(B * T, M, D)
        weights = None
        if self.feeds_context:  # Bahdanau: attend with the previous (encoder) state
            query = torch.cat([h[-1][:, None].expand(-1, M, -1), inputs], dim=-1)  # [BT, M, 2D]
            context, weights = self.attention.attend_all(query, memory, memory, horizon=M)
            inputs = torch.cat([inputs, context], dim=-1)  # [BT, M, 2D]
        # Every horizon segment is one recurrent step from the encoder's final state.
        s = inputs.reshape(B * T * M, -1)
        for layer, cell in enumerate(self.decoder):
            start = [v[layer][:, None].expand(B * T, M, D).reshape(-1, D) for v in states]
            out = cell(
                self.between(s) if layer else s, tuple(start) if len(start) > 1 else start[0]
            )
            s = out[0] if isinstance(out, tuple) else out  # [B T M, D]
        s = s.reshape(B * T, M, D)
        if self.combine is not None:  # Luong: attend with the new state, h~ = tanh(W_c[c;s])
            context, weights = self.attention.attend_all(s, memory, memory, horizon=M)
            s = torch.tanh(self.combine(torch.cat([context, s], dim=-1)))
        y = self.out(self.dropout(s)).reshape(B, T, M * W)[:, :, : lay.horizon]  # [B, T, H]
        y = y.transpose(1, 2)  # [B, H, T]
        if self.skip is not None:  # NLinear on the normalised window
            end = past[:, -1:]  # [B, 1, T]
            y = y + self.skip((past - end).transpose(1, 2)).transpose(1, 2) + end
        if self.revin is not None:
            y = self.revin.denormalize(y)
        elif self.cfg.normalization == "last":
            y = y + last
        if weights is None or not return_attention:
            return ForecastOutput(y)
        segment_maps = weights.reshape(B, T, M, N)
        # Back to time: each forecast step takes its segment's row, each input segment's
        # weight spread evenly over its steps; the targets' maps averaged.
        rows = torch.arange(lay.horizon, device=y.device) // W  # [H] segment of each step
        temporal = (segment_maps.mean(dim=1) @ self.spread)[:, rows]  # [B, H, L]
        return ForecastOutput(y, temporal, extras={"segment_attention": segment_maps})


class SkipSegmentNetwork(SegmentNetwork):
    """`SegmentNetwork` with `skip=True`: the training loop calls `warm_start` first."""

    def warm_start(self, train: WindowDataset) -> None:
        """Start the skip at the least-squares NLinear fit of the training windows.

        Args:
            train: the training windows.
        """
        start_skip(self.skip, train)
        if self.cfg.freeze_skip:
            self.skip.requires_grad_(False)


@register_model(
    "segrnn_bahdanau",
    kind="neural",
    defaults={"attention": "bahdanau"},
    description="segment-recurrent GRU (SegRNN-style) with Bahdanau attention over segments",
)
@register_model(
    "segrnn",
    kind="neural",
    description="segment-recurrent GRU (SegRNN-style), parallel decoder, Luong dot attention",
)
class SegmentForecaster(TorchForecaster):
    """Segment-recurrent attention RNN trained by the one loop in `forecast.training`."""

    Config = SegmentConfig

    def build_network(self) -> SegmentNetwork:
        cls = SkipSegmentNetwork if self.config.skip else SegmentNetwork
        return cls(self.layout, self.config)

    def loss(self, output: ForecastOutput, batch: Batch) -> Tensor:
        """MSE, or MAE with `loss='mae'`, on the scaled space (training and validation).

        Args:
            output: the network's output for `batch`.
            batch: the windows, on the model's device.
        """
        if self.config.loss == "mae":
            return nn.functional.l1_loss(output.prediction, batch["future_target"])
        return super().loss(output, batch)
