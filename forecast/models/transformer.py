"""Encoder-decoder transformer forecaster whose attention maps always come back as data.

The encoder reads the L input steps (targets, past and known covariates); the decoder
emits the H horizon steps, attending causally to itself and, through cross-attention, to
the encoder. Two decoding modes:

- `autoregressive`: the decoder input at step h is the previous target value (the last
  input value for h = 0) plus the known-future covariates at h. At inference (and with
  `teacher_forcing=0`) it runs step by step on its own predictions, with a key/value
  cache so each step costs one token. With `teacher_forcing=1` all steps run in one
  parallel pass on the true previous values behind the causal mask. A ratio in (0, 1) is
  scheduled sampling by a two-pass scheme (Mihaylova & Martins, 2019): a first parallel
  pass on the true values, without gradient, gives a prediction for every step; then each
  decoder input is the true previous value with probability `teacher_forcing`, else the
  first pass's prediction for that value, and a second parallel pass (with gradient) runs
  on that mix. Both passes are parallel, so the ratio costs 2x, never H x. The sampled
  values are one-step-ahead predictions, milder than the compounding errors of
  free-running, so a schedule should end at 0 (free-running training, with gradients
  through the fed-back predictions): on ETTh1 that last epoch is the best one.
- `direct`: all H steps at once from placeholder queries that carry only the known-future
  covariates and the positions; `future_target` is never read, whatever the ratio. The
  causal mask is kept, so step h's query sees the known covariates of steps <= h only.

A forward with `return_attention=True` (the default, and what `predict_batch` gives the
interpretation code) returns per-layer, per-head maps in `extras` and their reduction to
`temporal_attention` [B, H, L], the same shape the attention LSTMs return. Training and
`predict_dataset` ask for none: the maps of L = 336 are [B, heads, 336, 336] per encoder
layer, gigabytes at batch 1,024, and the fused attention kernel never holds them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from forecast.data.windows import Batch, WindowLayout
from forecast.models.attention.maps import REDUCTIONS, reduce_attention
from forecast.models.base import ForecastOutput
from forecast.models.registry import register_model
from forecast.models.revin import RevIN
from forecast.models.torch_base import TorchForecaster, TorchModelConfig
from forecast.models.transformer_layers import (
    DecoderLayer,
    EncoderLayer,
    KVCache,
    causal_mask,
    sinusoidal_encoding,
)
from forecast.params import check_choices
from forecast.training import TrainConfig

DECODINGS = ("autoregressive", "direct")
__all__ = ["REDUCTIONS", "TransformerConfig", "TransformerForecaster", "reduce_attention"]


@dataclass(frozen=True)
class TransformerConfig(TorchModelConfig):
    """Architecture of the transformer, and how it is trained (`train`).

    Args:
        d_model: model width D.
        n_heads: attention heads; must divide d_model.
        encoder_layers: number of encoder layers N.
        decoder_layers: number of decoder layers M.
        d_ff: feed-forward width (4 x d_model is the usual choice).
        dropout: dropout on embeddings, attention weights and residual branches.
        attention_dropout: dropout on the attention weights only; None: `dropout`. On a
            CPU the random numbers for the [B, heads, L, L] weights took 36 % of a
            training step (d_model 64, L 96): 0.0 trades that regularisation for speed.
        decoding: 'autoregressive' or 'direct' (see the module docstring).
        use_known: add a linear embedding of the known covariates to encoder and
            decoder inputs (ignored when the data has none).
        revin: per-window normalisation of the targets (see `forecast.models.revin`).
        revin_affine: learnable scale and shift inside RevIN.
        attention_reduction: how `temporal_attention` is reduced from the maps, see
            `reduce_attention`; 'layer' is the head-mean of the last decoder layer.
        skip: add a linear map of each target's own window in NLinear form (last value
            subtracted, then added back) to the forecast, so the network models what a
            linear autoregression misses and the first step starts from the last
            observation instead of from scratch.
        train: training settings (`TrainConfig`'s defaults).
    """

    train: TrainConfig = field(default_factory=TrainConfig)
    d_model: int = 64
    n_heads: int = 4
    encoder_layers: int = 2
    decoder_layers: int = 1
    d_ff: int = 256
    dropout: float = 0.1
    attention_dropout: float | None = None
    decoding: str = "autoregressive"
    use_known: bool = True
    revin: bool = True
    revin_affine: bool = True
    attention_reduction: str = "layer"
    skip: bool = True

    def __post_init__(self) -> None:
        check_choices(
            ("decoding", self.decoding, DECODINGS),
            ("attention_reduction", self.attention_reduction, REDUCTIONS),
        )
        for name in ("d_model", "n_heads", "encoder_layers", "decoder_layers", "d_ff"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.d_model % self.n_heads != 0:
            raise ValueError(
                f"d_model must be divisible by n_heads, got d_model={self.d_model}, "
                f"n_heads={self.n_heads}"
            )
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
        if self.attention_dropout is not None and not 0.0 <= self.attention_dropout < 1.0:
            raise ValueError(
                f"attention_dropout must be in [0, 1) or None, got {self.attention_dropout}"
            )


class TransformerNetwork(nn.Module):
    """The network: `forward(batch, teacher_forcing, generator) -> ForecastOutput`.

    Args:
        layout: shapes and column roles of the windows.
        config: architecture hyper-parameters.
    """

    def __init__(self, layout: WindowLayout, config: TransformerConfig) -> None:
        super().__init__()
        self.layout, self.config = layout, config
        D, nt = config.d_model, layout.n_targets
        self.use_known = config.use_known and layout.n_known > 0
        self.enc_value = nn.Linear(nt + layout.n_past, D)
        self.enc_known = nn.Linear(layout.n_known, D) if self.use_known else None
        # Direct decoding never reads target values, so it has no decoder value embedding.
        self.dec_value = nn.Linear(nt, D) if config.decoding == "autoregressive" else None
        self.dec_known = nn.Linear(layout.n_known, D) if self.use_known else None
        if config.decoding == "direct" and self.dec_known is None:
            # Placeholder queries would be positions only; a learned vector gives them a
            # trainable offset from the encoder's embedding space.
            self.query = nn.Parameter(torch.zeros(D))
        else:
            self.query = None
        # Decoder positions continue the encoder's (L, L+1, ...), so cross-attention can
        # learn offsets in time between a horizon step and an input step.
        L, H = layout.input_length, layout.horizon
        self.register_buffer("pe", sinusoidal_encoding(L + H, D), persistent=False)
        self.register_buffer("mask", causal_mask(H), persistent=False)
        self.dropout = nn.Dropout(config.dropout)
        args = (D, config.n_heads, config.d_ff, config.dropout, config.attention_dropout)
        self.encoder = nn.ModuleList(EncoderLayer(*args) for _ in range(config.encoder_layers))
        self.decoder = nn.ModuleList(DecoderLayer(*args) for _ in range(config.decoder_layers))
        self.enc_norm = nn.LayerNorm(D)
        self.dec_norm = nn.LayerNorm(D)
        self.head = nn.Linear(D, nt)
        self.skip = nn.Linear(L, H) if config.skip else None
        if self.skip is not None:  # start as the linear skip; the network learns the rest
            nn.init.zeros_(self.head.weight)
            nn.init.zeros_(self.head.bias)
        self.revin = RevIN(nt, affine=config.revin_affine) if config.revin else None

    def activation_bytes(self, attention: bool) -> int:
        """Estimated peak bytes of one window's free-running forward at evaluation
        (float32): each layer's projections, feed-forward and key/value cache, and with
        `attention` the maps kept for every layer plus one layer's scores being computed.

        Args:
            attention: whether the maps are asked for.
        """
        c, L, H = self.config, self.layout.input_length, self.layout.horizon
        layers = c.encoder_layers + c.decoder_layers
        values = layers * (L + H) * (6 * c.d_model + c.d_ff)
        if attention:
            values += c.n_heads * (
                (c.encoder_layers + 2) * L * L + c.decoder_layers * H * (L + H)
            )  # [nh, L, L] per encoder layer + scores and weights in flight; decoder maps
        return 4 * values

    def _skip(self, past: Tensor) -> Tensor | None:
        """The NLinear skip [B, H, targets] from the (normalised) past targets."""
        if self.skip is None:
            return None
        last = past[:, -1:]  # [B, 1, targets]
        return self.skip((past - last).transpose(1, 2)).transpose(1, 2) + last

    def encode(
        self,
        batch: Batch,
        past: Tensor,
        corrupt: Callable[[Tensor], Tensor] | None = None,
        need_weights: bool = True,
    ) -> tuple[Tensor, list[Tensor]]:
        """Encoder output [B, L, D] and its self-attention per layer [B, nh, L, L].

        Args:
            batch: window fields (only the past ones are read).
            past: the (normalised) past targets [B, L, targets].
            corrupt: maps the value embedding [B, L, D] to a corrupted one before the
                known covariates and positions are added (masked pretraining).
            need_weights: compute the maps (an empty list otherwise).
        """
        L = self.layout.input_length
        x = self.enc_value(torch.cat([past, batch["past_covariates"]], dim=-1))  # [B, L, D]
        if corrupt is not None:
            x = corrupt(x)
        if self.enc_known is not None:
            x = x + self.enc_known(batch["past_known"])
        x = self.dropout(x + self.pe[:L])
        maps = []
        for layer in self.encoder:
            x, w = layer(x, need_weights)
            if need_weights:
                maps.append(w)
        return self.enc_norm(x), maps

    def _queries(self, batch: Batch, steps: slice) -> Tensor:
        """Known-future covariate embedding + positions of horizon `steps`, [B, h, D]."""
        L = self.layout.input_length
        pe = self.pe[L + steps.start : L + steps.stop]  # [h, D]
        if self.dec_known is not None:
            return self.dec_known(batch["future_known"][:, steps]) + pe
        B = batch["past_target"].shape[0]
        base = pe if self.query is None else pe + self.query
        return base.expand(B, -1, -1)  # [B, h, D]

    def _decode_parallel(
        self, y: Tensor, memory: Tensor, skip: Tensor | None, need_weights: bool = True
    ) -> tuple[Tensor, list[Tensor], list[Tensor]]:
        """All H steps at once behind the causal mask: [B, H, targets] and the maps (empty
        lists without `need_weights`)."""
        y = self.dropout(y)
        self_maps, cross_maps = [], []
        for layer in self.decoder:
            y, sw, cw = layer(y, memory, self_mask=self.mask, need_weights=need_weights)
            if need_weights:
                self_maps.append(sw)
                cross_maps.append(cw)
        pred = self.head(self.dec_norm(y))
        return (pred if skip is None else pred + skip), self_maps, cross_maps

    def _decode_free(
        self,
        batch: Batch,
        last: Tensor,
        memory: Tensor,
        skip: Tensor | None,
        need_weights: bool = True,
    ) -> tuple[Tensor, list[Tensor], list[Tensor]]:
        """Step by step on the model's own predictions, one token per step via a cache;
        the maps are empty lists without `need_weights`."""
        H = self.layout.horizon
        caches: list[dict[str, KVCache]] = [{"self": {}, "cross": {}} for _ in self.decoder]
        prev = last  # [B, 1, targets]
        preds, self_rows, cross_rows = [], [[] for _ in self.decoder], [[] for _ in self.decoder]
        for h in range(H):
            y = self.dropout(self.dec_value(prev) + self._queries(batch, slice(h, h + 1)))
            for i, layer in enumerate(self.decoder):
                y, sw, cw = layer(
                    y, memory, self_mask=None, cache=caches[i], need_weights=need_weights
                )
                if need_weights:
                    # Row h sees steps 0..h; zeros after it, exactly as the causal mask gives.
                    self_rows[i].append(nn.functional.pad(sw, (0, H - h - 1)))  # [B,nh,1,H]
                    cross_rows[i].append(cw)  # [B, nh, 1, L]
            prev = self.head(self.dec_norm(y))  # [B, 1, targets]
            if skip is not None:
                prev = prev + skip[:, h : h + 1]
            preds.append(prev)
        self_maps = [torch.cat(rows, dim=2) for rows in self_rows if rows]  # [B, nh, H, H]
        cross_maps = [torch.cat(rows, dim=2) for rows in cross_rows if rows]  # [B, nh, H, L]
        return torch.cat(preds, dim=1), self_maps, cross_maps

    def forward(
        self,
        batch: Batch,
        teacher_forcing: float = 0.0,
        generator: torch.Generator | None = None,
        return_attention: bool = True,
    ) -> ForecastOutput:
        """Forecast a batch.

        Args:
            batch: window fields, see `WindowDataset.batch`.
            teacher_forcing: probability of feeding the true previous value to the
                autoregressive decoder (0 at evaluation; ignored by `direct`).
            generator: random generator for the scheduled-sampling draws.
            return_attention: compute the attention maps (`extras`, `temporal_attention`);
                False leaves both empty and saves their memory.
        """
        if not 0.0 <= teacher_forcing <= 1.0:
            raise ValueError(f"teacher_forcing must be in [0, 1], got {teacher_forcing}")
        past = batch["past_target"]  # [B, L, targets]
        if self.revin is not None:
            past = self.revin.normalize(past)
        maps = return_attention
        memory, enc_maps = self.encode(batch, past, need_weights=maps)
        H = self.layout.horizon
        last = past[:, -1:]  # [B, 1, targets] decoder input of step 0
        skip = self._skip(past)
        if self.config.decoding == "direct":
            pred, self_maps, cross_maps = self._decode_parallel(
                self._queries(batch, slice(0, H)), memory, skip, maps
            )
        elif teacher_forcing == 0.0:
            pred, self_maps, cross_maps = self._decode_free(batch, last, memory, skip, maps)
        else:
            future = batch["future_target"]
            if self.revin is not None:
                future = self.revin.normalize_like(future)  # with the past window's stats
            truth = torch.cat([last, future[:, :-1]], dim=1)  # [B, H, targets] inputs
            queries = self._queries(batch, slice(0, H))
            if teacher_forcing < 1.0:
                with torch.no_grad():
                    first, _, _ = self._decode_parallel(
                        self.dec_value(truth) + queries, memory, skip, need_weights=False
                    )
                sampled = torch.cat([last, first[:, :-1]], dim=1)  # [B, H, targets]
                keep = torch.rand(truth.shape[:2], generator=generator) < teacher_forcing
                keep[:, 0] = True  # step 0's input is the last observed value, never sampled
                truth = torch.where(keep.to(truth.device)[..., None], truth, sampled)
            pred, self_maps, cross_maps = self._decode_parallel(
                self.dec_value(truth) + queries, memory, skip, maps
            )
        if self.revin is not None:
            pred = self.revin.denormalize(pred)
        if not maps:
            return ForecastOutput(prediction=pred)
        extras = {
            "encoder_self_attention": enc_maps,
            "decoder_cross_attention": cross_maps,
            "decoder_self_attention": self_maps,
        }
        temporal = reduce_attention(extras, self.config.attention_reduction)
        return ForecastOutput(prediction=pred, temporal_attention=temporal, extras=extras)


@register_model(
    "transformer_direct",
    kind="neural",
    defaults={"decoding": "direct", "teacher_forcing": 0.0, "tf_schedule": "constant"},
    description="encoder-decoder transformer, all horizon steps at once from placeholder queries",
)
@register_model(
    "transformer",
    kind="neural",
    description="encoder-decoder transformer, autoregressive decoder (attention per layer/head)",
)
class TransformerForecaster(TorchForecaster):
    """Encoder-decoder transformer trained by the one loop in `forecast.training`."""

    Config = TransformerConfig

    def build_network(self) -> TransformerNetwork:
        return TransformerNetwork(self.layout, self.config)
