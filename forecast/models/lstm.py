"""Attention LSTM encoder-decoders: the read decoder (default) and the classic one.

The encoder reads [past_target, past_covariates, past_known] (F = layout.encoder_features)
over the L input steps. Two decoders, chosen by `decoder`:

- 'read' (default, `forecast.models.lstm_read`): the forecast is read from the inputs
  themselves through a joint attention over (input step, feature) that *is* the weights
  of what is read, with a learnable lag prior, content scores of the named attention type
  that join after a warm-up, and a linear skip on the targets' own window. Its maps say
  which inputs the forecast used; `attention='none'` forecasts from the decoder state
  instead (the plain encoder-decoder).
- 'classic' (`forecast.models.lstm_classic`): textbook Bahdanau / Luong attention over the
  encoder states, autoregressive with teacher forcing and fused decoder loops.

Every attention type works with both (`forecast.models.attention`), as does DA-RNN
feature attention (`feature_attention`): in the classic decoder it is Qin et al.'s input
attention in the encoder, in the read decoder it makes the feature mixture depend on the
window. With a local attention in the classic decoder, the output's
`extras['attention_centres']` [B, H] holds each step's window centre p_t.

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

from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from forecast.data.windows import Batch, WindowDataset, WindowLayout
from forecast.models.attention import ATTENTIONS, NORMALIZERS, InputAttention
from forecast.models.base import ForecastOutput
from forecast.models.lstm_classic import ClassicDecoder
from forecast.models.lstm_read import DECODINGS, ReadDecoder
from forecast.models.registry import register_model
from forecast.models.revin import RevIN
from forecast.models.torch_base import TorchForecaster, TorchModelConfig
from forecast.params import check_choices
from forecast.training import TrainConfig

State = tuple[Tensor, Tensor]  # (h, c), each [layers, B, D]
DECODERS = ("read", "classic")


@dataclass(frozen=True)
class LSTMConfig(TorchModelConfig):
    """Architecture of the attention LSTM, and how it is trained (`train`).

    Args:
        hidden_size: D, hidden units of encoder and decoder LSTMs.
        num_layers: stacked LSTM layers in encoder and decoder.
        dropout: between stacked layers, on encoder states and before the output layer
            (classic decoder).
        bidirectional: bidirectional encoder (its final states are mapped to the
            decoder's size).
        attention: temporal attention: 'none', 'bahdanau', 'luong_dot', 'luong_general',
            'luong_concat', 'local_m' or 'local_p' (see `forecast.models.attention`).
        attention_dim: hidden size of additive/concat attention, local-p's position
            network and DA-RNN's feature score (default hidden_size).
        attention_scale: scale dot-product scores by 1/sqrt(D).
        attention_window: half-width D >= 1 of the local attentions' window, in steps.
        normalizer: 'softmax', or the sparse 'sparsemax' / 'entmax15' (exact zeros;
            sparse maps can lock onto early choices, see `attention.normalizers`).
        feature_attention: DA-RNN feature attention (see the module docstring).
        decoder: 'read' or 'classic' (see the module docstring).
        decoding: read decoder: 'direct' (all steps from the known covariates, one
            call) or 'autoregressive' (each step also fed the previous forecast; teacher
            forcing applies). The classic decoder is always autoregressive.
        attention_warmup: read decoder: the map is the learned lag prior alone until
            validation stops improving (`patience`) or for this many epochs at most,
            then content scores join (0: from the start).
        revin: per-window normalisation of the targets (see `forecast.models.revin`).
        revin_affine: learnable scale and shift inside RevIN.
        train: training settings; this model's defaults: lr 3e-3, no teacher forcing.
    """

    train: TrainConfig = field(default_factory=lambda: TrainConfig(lr=3e-3, teacher_forcing=0.0))
    hidden_size: int = 32
    num_layers: int = 1
    dropout: float = 0.0
    bidirectional: bool = False
    attention: str = "luong_dot"
    attention_dim: int | None = None
    attention_scale: bool = True
    attention_window: int = 8
    normalizer: str = "softmax"
    feature_attention: bool = False
    decoder: str = "read"
    decoding: str = "direct"
    attention_warmup: int = 40
    revin: bool = True
    revin_affine: bool = True

    def __post_init__(self) -> None:
        check_choices(
            ("attention", self.attention, tuple(ATTENTIONS)),
            ("normalizer", self.normalizer, tuple(NORMALIZERS)),
            ("decoder", self.decoder, DECODERS),
            ("decoding", self.decoding, DECODINGS),
        )
        if self.hidden_size < 1 or self.num_layers < 1:
            raise ValueError(
                f"hidden_size and num_layers must be >= 1, got {self.hidden_size} and "
                f"{self.num_layers}"
            )
        if self.attention_window < 1:
            raise ValueError(f"attention_window must be >= 1, got {self.attention_window}")
        if self.attention_warmup < 0:
            raise ValueError(f"attention_warmup must be >= 0, got {self.attention_warmup}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
        if self.feature_attention and self.bidirectional and self.decoder == "classic":
            raise ValueError(
                "feature_attention needs a unidirectional encoder: its query is the state "
                "of the previous step; set bidirectional=False"
            )
        direct = self.decoder == "read" and self.decoding == "direct"
        if direct and self.train.teacher_forcing > 0:
            raise ValueError(
                f"teacher_forcing={self.train.teacher_forcing} needs an autoregressive decoder, "
                "and the read decoder decodes directly by default; set "
                "decoding='autoregressive' or decoder='classic', or teacher_forcing=0"
            )
        if self.decoder == "read" and self.feature_attention and self.attention == "none":
            raise ValueError(
                "feature_attention with the read decoder mixes the features the attention "
                "reads; it needs an attention type, got attention='none'"
            )


class Encoder(nn.Module):
    """LSTM over the input window: states [B, L, D x directions] and final (h, c).

    With DA-RNN input attention (classic decoder) the first layer is an `nn.LSTMCell`
    run step by step, since the feature weights at step t depend on the state after
    step t - 1.

    Args:
        n_features: F, encoder input columns.
        input_length: L.
        cfg: the model config.
        input_attention: weigh the features at every step (DA-RNN's first stage).
    """

    def __init__(
        self, n_features: int, input_length: int, cfg: LSTMConfig, input_attention: bool
    ) -> None:
        super().__init__()
        D, layers = cfg.hidden_size, cfg.num_layers
        between = cfg.dropout if layers > 1 else 0.0  # nn.LSTM warns on dropout with 1 layer
        self.input_attention = None
        if input_attention:
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


class LSTMNetwork(nn.Module):
    """Encoder, (bridge,) decoder; `forward(batch, teacher_forcing, generator)`.

    Args:
        layout: shapes and column roles of the windows.
        cfg: the model config.
    """

    def __init__(self, layout: WindowLayout, cfg: LSTMConfig) -> None:
        super().__init__()
        self.layout = layout
        self.cfg = cfg
        D, nt = cfg.hidden_size, layout.n_targets
        n_features = len(layout.encoder_features)
        key_dim = D * (2 if cfg.bidirectional else 1)
        classic = cfg.decoder == "classic"
        self.revin = RevIN(nt, affine=cfg.revin_affine) if cfg.revin else None
        self.encoder = Encoder(
            n_features, layout.input_length, cfg, cfg.feature_attention and classic
        )
        # A bidirectional encoder ends with a forward and a backward state per layer.
        self.bridge_h = nn.Linear(2 * D, D) if cfg.bidirectional else None
        self.bridge_c = nn.Linear(2 * D, D) if cfg.bidirectional else None
        self.dropout = nn.Dropout(cfg.dropout)
        self.decoder: nn.Module
        if classic:
            self.decoder = ClassicDecoder(nt, layout.n_known, key_dim, cfg)
        else:
            self.decoder = ReadDecoder(layout, key_dim, cfg)

    def warm_start(self, train: WindowDataset) -> None:
        """Called by the training loop before training: the read decoder's skip starts at
        the least-squares NLinear fit (see `ReadDecoder.warm_start`).

        Args:
            train: the training windows.
        """
        if isinstance(self.decoder, ReadDecoder):
            self.decoder.warm_start(train)

    def set_epoch(self, epoch: int) -> None:
        """Called by the training loop before each epoch (the read decoder's warm-up).

        Args:
            epoch: the epoch about to run, from 1.
        """
        if isinstance(self.decoder, ReadDecoder):
            self.decoder.set_epoch(epoch)

    @property
    def phase(self) -> int:
        """Training phase: 1 while the read decoder's map is its lag prior alone, else 2."""
        return self.decoder.phase if isinstance(self.decoder, ReadDecoder) else 1

    def next_phase(self) -> bool:
        """The read decoder's content phase, where early stopping would end its first one.

        Called by the training loop; True if a new phase started.
        """
        return isinstance(self.decoder, ReadDecoder) and self.decoder.next_phase()

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
                free-running, as at evaluation); autoregressive decoding only.
            generator: random generator of the teacher-forcing draws.
        """
        if not 0.0 <= teacher_forcing <= 1.0:
            raise ValueError(f"teacher_forcing must be in [0, 1], got {teacher_forcing}")
        raw = batch["past_target"]  # [B, L, T]
        past = self.revin.normalize(raw) if self.revin is not None else raw
        x = torch.cat([past, batch["past_covariates"], batch["past_known"]], dim=-1)  # [B, L, F]
        if isinstance(self.decoder, ReadDecoder):
            # The read decoder forecasts in the data's scale: RevIN only conditions the
            # LSTMs' inputs (a covariate's effect does not scale with a window's spread).
            rows = self.decoder.chunk_rows(x.shape[0])
            if rows < x.shape[0]:  # evaluation of long windows: bounded memory
                parts = [self.forward({k: v[i : i + rows] for k, v in batch.items()})
                         for i in range(0, x.shape[0], rows)]  # fmt: skip
                return ForecastOutput(*(torch.cat([getattr(o, f) for o in parts])
                                        for f in ("prediction", "temporal_attention",
                                                  "feature_attention")))  # fmt: skip
            pred, temporal, feature = self._read(
                x, raw, batch, batch.get("future_target"), teacher_forcing, generator
            )
            return ForecastOutput(pred, temporal, feature)
        truth = None
        if teacher_forcing > 0.0:
            truth = batch["future_target"]  # [B, H, T]
            if self.revin is not None:
                truth = self.revin.normalize_like(truth)
        memory, state, feature = self.encoder(x)
        pred, temporal, centres = self.decoder(
            self.dropout(memory),
            self._bridge(state),
            past[:, -1],
            batch["future_known"],
            truth,
            teacher_forcing,
            generator,
        )
        extras = {} if centres is None else {"attention_centres": centres}
        if self.revin is not None:
            pred = self.revin.denormalize(pred)
        return ForecastOutput(pred, temporal, feature, extras=extras)

    def _read(
        self,
        x: Tensor,
        raw: Tensor,
        batch: Batch,
        truth: Tensor | None,
        teacher_forcing: float,
        generator: torch.Generator | None,
    ) -> tuple[Tensor, Tensor | None, Tensor | None]:
        """The read decoder's forecast and maps (the feature map scattered over all F)."""
        dec: ReadDecoder = self.decoder
        memory = state = None
        if dec.needs_states():
            memory, state, _ = self.encoder(x)
            memory, state = self.dropout(memory), self._bridge(state)
        truth = truth if teacher_forcing > 0.0 else None
        values = torch.cat([raw, batch["past_covariates"]], dim=-1)  # [B, L, V] data scale
        pred, temporal, values_map = dec(
            memory, state, x, values, batch["future_known"], truth, teacher_forcing, generator
        )
        feature = None
        if values_map is not None:  # [B, L, V]: known covariates are never read (weight 0)
            pad = values_map.new_zeros(*values_map.shape[:2], x.shape[-1] - values_map.shape[-1])
            feature = torch.cat([values_map, pad], dim=-1)
        return pred, temporal, feature


@register_model(
    "darnn",
    kind="neural",
    defaults={"feature_attention": True, "attention": "bahdanau"},
    description="DA-RNN: attention over features and time (additive), read decoder",
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
@register_model(
    "lstm_classic",
    kind="neural",
    defaults={
        "decoder": "classic",
        "teacher_forcing": 0.5,
        "tf_schedule": "linear",
        "hidden_size": 64,
    },
    description="textbook Luong (dot) attention over encoder states, teacher forcing",
)
@register_model("lstm", kind="neural", description="attention LSTM encoder-decoder (read decoder)")
class LSTMForecaster(TorchForecaster):
    """Attention LSTM encoder-decoder trained by the one loop in `forecast.training`."""

    Config = LSTMConfig

    def build_network(self) -> LSTMNetwork:
        return LSTMNetwork(self.layout, self.config)
