"""Masked-reconstruction pretraining of the transformer encoder (a masked language model
for time series), and the two-stage forecaster `transformer_pretrained`.

What is pretrained: the forecasting transformer's own encoder, i.e. RevIN, the value and
known-covariate embeddings (`enc_value`, `enc_known`), the fixed positional encoding, the
encoder layers and `enc_norm`, the same classes and parameter names as in
`TransformerNetwork`. Only the past window is read: past targets, past covariates and
past known covariates; `future_target` and `future_known` never are.

How: per window, `mask_ratio` (15%) of the L input steps are picked at random. Of the
picked steps, 80% get a learned mask token in embedding space (it replaces the step's
value embedding, `enc_value(targets, past covariates)`; the known-covariate embedding
and the position are still added, so the model knows when the hidden step is), 10% show
the values of a random unpicked step of the same window (a swap of value embeddings,
which is the same as a swap of input values since the embedding is per step), and 10%
are left unchanged (`forecast.models.masking`). A linear head on the encoder output
predicts the step's target and past-covariate values; the loss is their MSE on the
picked steps only. With RevIN the targets are standardised by the mean and standard
deviation of the unpicked steps only, so the window statistics leak nothing about the
hidden values; the reference loss of "predict the mean of the window's unpicked steps"
is recorded next to the loss.

Then the forecaster is fine-tuned by the normal loop from the same initial weights as
`transformer_direct` with the pretrained encoder weights copied in (`finetune='full'`),
or with those weights frozen (`finetune='probe'`: only the decoder and head learn).
Both stages run through `TorchForecaster.fit`, so through the one training loop: the pretraining
stage swaps in a pretraining config, network and loss, and nothing else.

`configs/pretrain.toml` compares it with training from scratch on the same fine-tuning
budget; the figures are in docs/benchmarks.md.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import pandas as pd
import torch
from torch import Tensor, nn

from forecast.data.windows import Batch, WindowDataset, WindowLayout
from forecast.models.base import ForecastOutput
from forecast.models.masking import (
    MaskDraw,
    apply_mask,
    draw_mask,
    masked_mse,
    mean_baseline_loss,
    standardise,
)
from forecast.models.registry import register_model
from forecast.models.transformer import (
    TransformerConfig,
    TransformerForecaster,
    TransformerNetwork,
)
from forecast.training import even_subset

FINETUNES = ("full", "probe")
ENCODER_PARTS = ("revin", "enc_value", "enc_known", "encoder", "enc_norm")
"""Top-level modules of `TransformerNetwork` that pretraining trains and transfers."""


@dataclass(frozen=True)
class PretrainConfig(TransformerConfig):
    """`TransformerConfig` plus the pretraining stage; `train.epochs` is the fine-tuning budget.

    Args:
        pretrain_epochs: epochs of masked reconstruction before fine-tuning (0: none).
        pretrain_lr: its learning rate; None uses `lr`.
        mask_ratio: share of input steps picked per window.
        finetune: 'full' (every weight trains) or 'probe' (the encoder stays frozen).
    """

    pretrain_epochs: int = 5
    pretrain_lr: float | None = None
    mask_ratio: float = 0.15
    finetune: str = "full"

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.pretrain_epochs < 0:
            raise ValueError(f"pretrain_epochs must be >= 0, got {self.pretrain_epochs}")
        if self.pretrain_lr is not None and not self.pretrain_lr > 0:
            raise ValueError(f"pretrain_lr must be > 0 or None, got {self.pretrain_lr}")
        if not 0.0 < self.mask_ratio < 1.0:
            raise ValueError(f"mask_ratio must be in (0, 1), got {self.mask_ratio}")
        if self.finetune not in FINETUNES:
            raise ValueError(f"unknown finetune {self.finetune!r}; expected one of {FINETUNES}")


class MaskedEncoderNetwork(nn.Module):
    """Pretraining network: a `TransformerNetwork` (only its encoder is used), a mask
    token and a linear reconstruction head. `forward` returns the reconstruction
    [B, L, targets + past covariates] as `prediction`, and the normalised originals and
    the picked mask in `extras` ('target', 'picked').

    Args:
        layout: shapes and column roles of the windows.
        config: architecture and pretraining settings.
    """

    def __init__(self, layout: WindowLayout, config: PretrainConfig) -> None:
        super().__init__()
        self.config = config
        self.backbone = TransformerNetwork(layout, config)
        self.mask_token = nn.Parameter(0.02 * torch.randn(config.d_model))
        self.recon_head = nn.Linear(config.d_model, layout.n_targets + layout.n_past)
        # Masks of evaluation passes (no generator given): reseeded before each pass.
        self.eval_generator = torch.Generator().manual_seed(config.train.seed)

    def corrupt(
        self, batch: Batch, generator: torch.Generator | None = None
    ) -> tuple[Tensor, Tensor, MaskDraw]:
        """Draw the masks: (encoder target input [B, L, targets], reconstruction target
        [B, L, targets + past covariates], the draw)."""
        past = batch["past_target"]
        B, L, _ = past.shape
        gen = generator if generator is not None else self.eval_generator
        draw = draw_mask(B, L, self.config.mask_ratio, gen)
        revin = self.backbone.revin
        if revin is not None:
            past = standardise(past, ~draw.picked.to(past.device), revin.eps)
        target = torch.cat([past, batch["past_covariates"]], dim=-1)
        if revin is not None and revin.weight is not None:
            past = past * revin.weight + revin.bias
        return past, target, draw

    def forward(
        self, batch: Batch, teacher_forcing: float = 0.0, generator: torch.Generator | None = None
    ) -> ForecastOutput:
        """Reconstruct the picked steps (`teacher_forcing` is ignored)."""
        past, target, draw = self.corrupt(batch, generator)
        memory, maps = self.backbone.encode(
            batch, past, corrupt=lambda e: apply_mask(e, self.mask_token, draw)
        )
        extras = {"target": target, "picked": draw.picked.to(past.device)}
        return ForecastOutput(prediction=self.recon_head(memory), extras=extras)


@register_model(
    "transformer_pretrained",
    kind="neural",
    defaults={"decoding": "direct", "teacher_forcing": 0.0, "tf_schedule": "constant"},
    description="transformer_direct whose encoder is first pretrained by masked reconstruction",
)
class PretrainedTransformerForecaster(TransformerForecaster):
    """Two stages: masked-reconstruction pretraining of the encoder, then fine-tuning.

    After `fit`, `extra_histories_['pretrain']` holds the pretraining epochs (the loop's
    history columns plus `train_baseline` and `val_baseline`, the mean-prediction
    reference losses on the same kind of masks; the validation masks are the same ones
    as `val_loss`'s), and `history_` the fine-tuning epochs.
    """

    Config = PretrainConfig

    def __init__(self, layout: WindowLayout, config: PretrainConfig | None = None) -> None:
        super().__init__(layout, config)
        self._stage = "finetune"
        self._encoder_state: dict[str, Tensor] | None = None
        self.extra_histories_: dict[str, pd.DataFrame] = {}
        self.pretrain_best_epoch_: int | None = None

    def build_network(self) -> nn.Module:
        if self._stage == "pretrain":
            return MaskedEncoderNetwork(self.layout, self.config)
        net = super().build_network()
        if self._encoder_state is not None:
            missing, unexpected = net.load_state_dict(self._encoder_state, strict=False)
            if unexpected or any(k.split(".")[0] in ENCODER_PARTS for k in missing):
                raise RuntimeError(f"encoder transfer failed: {missing=}, {unexpected=}")
            if self.config.finetune == "probe":
                for name, p in net.named_parameters():
                    if name.split(".")[0] in ENCODER_PARTS:
                        p.requires_grad_(False)
        return net

    def loss(self, output: ForecastOutput, batch: Batch) -> Tensor:
        if self._stage == "pretrain":
            return masked_mse(output.prediction, output.extras["target"], output.extras["picked"])
        return super().loss(output, batch)

    def evaluate_loss(self, ds: WindowDataset, batch_size: int = 512) -> float:
        if self._stage == "pretrain":  # the same validation masks every epoch
            self.network.eval_generator.manual_seed(self.config.train.seed)
        return super().evaluate_loss(ds, batch_size)

    def fit(
        self, train: WindowDataset, val: WindowDataset | None = None
    ) -> PretrainedTransformerForecaster:
        """Pretrain the encoder for `pretrain_epochs`, then fine-tune for `epochs`.

        Args:
            train: training windows (pretraining reads only their past part).
            val: validation windows: early stopping of both stages.
        """
        self._encoder_state, self.extra_histories_ = None, {}
        if self.config.pretrain_epochs > 0:
            self.pretrain(train, val)
        super().fit(train, val)
        return self

    def pretrain(self, train: WindowDataset, val: WindowDataset | None = None) -> pd.DataFrame:
        """Only the pretraining stage; keeps the encoder weights for the next `fit` stage.

        Args:
            train: training windows.
            val: validation windows (masked loss, early stopping, best weights kept).
        """
        cfg = self.config
        stage_train = dataclasses.replace(
            cfg.train,
            epochs=cfg.pretrain_epochs,
            lr=cfg.pretrain_lr or cfg.train.lr,
            teacher_forcing=0.0,
            tf_schedule="constant",
        )
        stage = dataclasses.replace(cfg, train=stage_train)
        self._stage, self.config = "pretrain", stage
        try:
            super().fit(train, val)  # the one loop, with this stage's network and loss
            history = self.history_.copy()
            history["train_baseline"] = self._baseline(train)
            has_val = val is not None and len(val) > 0
            history["val_baseline"] = (
                self._baseline(even_subset(val, cfg.train.max_val_windows)) if has_val else math.nan
            )
            self._encoder_state = {
                k.removeprefix("backbone."): v.detach().clone()
                for k, v in self.network.state_dict().items()
                if k.startswith("backbone.") and k.split(".")[1] in ENCODER_PARTS
            }
            self.pretrain_best_epoch_ = self.best_epoch_
        finally:
            self._stage, self.config = "finetune", cfg
        self.extra_histories_ = {"pretrain": history}
        return history

    def _baseline(self, ds: WindowDataset, batch_size: int = 512) -> float:
        """`mean_baseline_loss` over `ds` with the masks an evaluation pass draws."""
        net = self.network
        net.eval_generator.manual_seed(self.config.train.seed)
        total, count = 0.0, 0
        with torch.no_grad():
            for batch in ds.iter_batches(batch_size):
                batch = {k: v.to(self.device) for k, v in batch.items()}
                _, target, draw = net.corrupt(batch)
                n = len(batch["origin"])
                total += mean_baseline_loss(target, draw.picked.to(self.device)).item() * n
                count += n
        return total / max(count, 1)
