"""A tiny torch forecaster with attention-shaped outputs, for the interpretation tests.

Holds no tests itself: imported by the other tests/test_interpret*.py modules.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from forecast import ColumnRoles, prepare_data
from forecast.data.prepare import DataBundle
from forecast.data.synthetic import SyntheticDataset, make_driver_dataset
from forecast.data.windows import Batch, WindowLayout
from forecast.models.base import ForecastOutput
from forecast.models.torch_base import TorchForecaster, TorchModelConfig


class TinyNet(nn.Module):
    """MLP over the whole input window, with input-dependent temporal and feature weights.

    The weights do not feed the prediction: they only give the collection and plotting
    code attention-shaped data ([B, H, L] and [B, L, F], rows summing to 1).
    """

    def __init__(self, layout: WindowLayout, hidden: int = 32) -> None:
        super().__init__()
        L, H = layout.input_length, layout.horizon
        F, K, T = len(layout.encoder_features), layout.n_known, layout.n_targets
        self.shape = (H, T)
        self.mlp = nn.Sequential(
            nn.Linear(L * F + H * K, hidden), nn.Tanh(), nn.Linear(hidden, H * T)
        )
        self.time_score = nn.Linear(F, H)
        self.feature_score = nn.Linear(F, F)

    def forward(
        self, batch: Batch, teacher_forcing: float = 0.0, generator: torch.Generator | None = None
    ) -> ForecastOutput:
        x = torch.cat([batch["past_target"], batch["past_covariates"], batch["past_known"]], -1)
        B = x.shape[0]
        flat = torch.cat([x.flatten(1), batch["future_known"].flatten(1)], dim=1)
        pred = self.mlp(flat).view(B, *self.shape)  # [B, H, T]
        temporal = torch.softmax(self.time_score(x).transpose(1, 2), dim=-1)  # [B, H, L]
        feature = torch.softmax(self.feature_score(x), dim=-1)  # [B, L, F]
        return ForecastOutput(pred, temporal, feature)


@dataclass(frozen=True)
class TinyConfig(TorchModelConfig):
    """Args: hidden: MLP width."""

    hidden: int = 32


class TinyForecaster(TorchForecaster):
    """`TinyNet` behind the one training loop."""

    Config = TinyConfig
    name = "tiny"

    def build_network(self) -> nn.Module:
        return TinyNet(self.layout, self.config.hidden)


def tiny_model(layout: WindowLayout, **params: object) -> TinyForecaster:
    """A TinyForecaster with quick, quiet, deterministic training settings."""
    defaults = dict(
        epochs=8, batch_size=32, lr=3e-3, progress=False, patience=None, device="cpu", seed=0
    )
    return TinyForecaster(layout, TinyConfig.from_params(**{**defaults, **params}))


def synthetic_bundle(
    n_rows: int = 2000, *, calendar: bool = False, input_length: int = 24, horizon: int = 6
) -> tuple[SyntheticDataset, DataBundle]:
    """The driver dataset (seed 0, lag 12: the driver is x3) prepared for forecasting."""
    syn = make_driver_dataset(n_rows, seed=0, lag=12)
    roles = ColumnRoles(("target",), past_covariates=syn.covariates, calendar=calendar)
    bundle = prepare_data(syn.frame, roles, input_length=input_length, horizon=horizon)
    return syn, bundle
