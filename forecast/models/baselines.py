"""Honest baselines: every neural model is compared against these.

All work in the scaled space on the same batches as the neural models, so the
comparison uses exactly the same windows.

>>> import numpy as np, pandas as pd
>>> from forecast import ColumnRoles, prepare_data, create_model
>>> df = pd.DataFrame({"date": pd.date_range("2024-01-01", periods=200, freq="h"),
...                    "y": np.arange(200.0)})
>>> data = prepare_data(df, ColumnRoles(("y",), calendar=False), input_length=24, horizon=4)
>>> batch = data.test.batch([0])
>>> drift = create_model("drift", data.layout).predict_batch(batch).prediction
>>> bool(torch.allclose(drift, batch["future_target"], atol=1e-4))
True
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from forecast.data.windows import Batch, WindowDataset, WindowLayout
from forecast.models.base import Forecaster, ForecastOutput, ModelConfig
from forecast.models.registry import register_model
from forecast.models.ridge import RidgeAccumulator


@register_model("naive", description="repeat the last observed value")
class Naive(Forecaster):
    """Repeat the last observed value over the horizon."""

    def predict_batch(self, batch: Batch, *, attention: bool = True) -> ForecastOutput:
        last = batch["past_target"][:, -1:, :]  # [B, 1, targets]
        return ForecastOutput(last.expand(-1, self.layout.horizon, -1))


@dataclass(frozen=True)
class SeasonalConfig(ModelConfig):
    """Args: period: season length in rows; None uses the data's (a day for hourly data)."""

    period: int | None = None


@register_model("seasonal_naive", description="repeat the last season")
class SeasonalNaive(Forecaster):
    """Repeat the value one season earlier: y[t + h] = y[t + h - m * k]."""

    Config = SeasonalConfig

    def __init__(self, layout: WindowLayout, config: SeasonalConfig | None = None) -> None:
        super().__init__(layout, config)
        m, L = self.config.period or layout.period, layout.input_length
        if m > L:  # refused when built, not after every other model has trained
            raise ValueError(f"seasonal_naive needs input_length >= period; got {L} < {m}")

    def predict_batch(self, batch: Batch, *, attention: bool = True) -> ForecastOutput:
        m = self.config.period or self.layout.period
        L, H = self.layout.input_length, self.layout.horizon
        idx = torch.as_tensor([L - m + (h % m) for h in range(H)])
        return ForecastOutput(batch["past_target"][:, idx, :])


@register_model("mean", description="mean of the input window")
class WindowMean(Forecaster):
    """Forecast the mean of the input window."""

    def predict_batch(self, batch: Batch, *, attention: bool = True) -> ForecastOutput:
        mean = batch["past_target"].mean(dim=1, keepdim=True)
        return ForecastOutput(mean.expand(-1, self.layout.horizon, -1))


@register_model("drift", description="line through the first and last input value")
class Drift(Forecaster):
    """Extend the straight line from the first to the last input value."""

    def predict_batch(self, batch: Batch, *, attention: bool = True) -> ForecastOutput:
        past = batch["past_target"]
        slope = (past[:, -1:, :] - past[:, :1, :]) / max(past.shape[1] - 1, 1)
        steps = torch.arange(1, self.layout.horizon + 1, dtype=past.dtype)[None, :, None]
        return ForecastOutput(past[:, -1:, :] + slope * steps)


@dataclass(frozen=True)
class MovingAverageConfig(ModelConfig):
    """Args: window: how many last values to average; None uses the seasonal period."""

    window: int | None = None


@register_model("moving_average", description="mean of the last k values")
class MovingAverage(Forecaster):
    """Forecast the mean of the last `window` values."""

    Config = MovingAverageConfig

    def predict_batch(self, batch: Batch, *, attention: bool = True) -> ForecastOutput:
        k = min(self.config.window or self.layout.period, self.layout.input_length)
        mean = batch["past_target"][:, -k:, :].mean(dim=1, keepdim=True)
        return ForecastOutput(mean.expand(-1, self.layout.horizon, -1))


@dataclass(frozen=True)
class LinearConfig(ModelConfig):
    """Args:
    alpha: ridge penalty.
    nlinear: subtract the last input value from inputs and targets (NLinear).
    use_covariates: also regress on past covariates and known-future covariates; without
        covariates every target channel is its own sample with shared weights.
    max_train_windows: fit on a random subset of at most this many windows.
    seed: for that subset.
    """

    alpha: float = 1.0
    nlinear: bool = False
    use_covariates: bool = True
    max_train_windows: int = 200_000
    seed: int = 0


@register_model("nlinear", defaults={"nlinear": True}, description="ridge on lags, NLinear form")
@register_model("linear", description="ridge regression on lags")
class LinearLags(Forecaster):
    """Ridge regression from the input window (and covariates) to the whole horizon."""

    Config = LinearConfig

    def _channel_independent(self) -> bool:
        lay = self.layout
        return not (self.config.use_covariates and (lay.n_past or lay.n_known))

    def _design(self, batch: Batch) -> tuple[Tensor, Tensor]:
        """Features X and the offset subtracted from targets (last value or 0)."""
        past = batch["past_target"]  # [B, L, targets]
        offset = past[:, -1:, :] if self.config.nlinear else torch.zeros_like(past[:, -1:, :])
        lags = past - offset
        if self._channel_independent():
            return lags.transpose(1, 2).reshape(-1, past.shape[1]), offset  # [B * targets, L]
        parts = [lags, batch["past_covariates"], batch["future_known"]]
        return torch.cat([p.flatten(1) for p in parts], dim=1), offset  # [B, features]

    def fit(self, train: WindowDataset, val: WindowDataset | None = None) -> LinearLags:
        rng = np.random.default_rng(self.config.seed)
        idx = np.arange(len(train))
        if len(idx) > self.config.max_train_windows:
            idx = np.sort(rng.choice(idx, self.config.max_train_windows, replace=False))
        acc = RidgeAccumulator()  # never holds the whole design matrix
        for lo in range(0, len(idx), 4096):
            batch = train.batch(idx[lo : lo + 4096])
            x, offset = self._design(batch)
            y = batch["future_target"] - offset  # [B, H, targets]
            y = (
                y.transpose(1, 2).reshape(len(x), -1)
                if self._channel_independent()
                else y.flatten(1)
            )
            acc.add(x.numpy(), y.numpy())
        coef, intercept = acc.solve(self.config.alpha)
        self.coef_ = torch.as_tensor(coef, dtype=torch.float32)  # [outputs, features]
        self.intercept_ = torch.as_tensor(intercept, dtype=torch.float32)
        return self

    def state_dict(self) -> dict[str, Tensor]:
        """The ridge coefficients [outputs, features] and intercepts [outputs]."""
        if not hasattr(self, "coef_"):
            raise RuntimeError("the linear model is not fitted; call fit(train) first")
        return {"coef": self.coef_, "intercept": self.intercept_}

    def load_state_dict(self, state: dict[str, Tensor]) -> None:
        """Restore the coefficients `state_dict` returned.

        Args:
            state: {'coef', 'intercept'} tensors.
        """
        missing = sorted({"coef", "intercept"} - set(state))
        if missing:
            raise ValueError(f"linear model state lacks {missing}")
        self.coef_ = state["coef"].to(torch.float32)
        self.intercept_ = state["intercept"].to(torch.float32)

    def predict_batch(self, batch: Batch, *, attention: bool = True) -> ForecastOutput:
        if not hasattr(self, "coef_"):
            raise RuntimeError("the linear model is not fitted; call fit(train) first")
        x, offset = self._design(batch)
        y = x @ self.coef_.T + self.intercept_
        B, H, nt = offset.shape[0], self.layout.horizon, self.layout.n_targets
        if self._channel_independent():
            y = y.reshape(B, nt, H).transpose(1, 2)  # [B, H, targets]
        else:
            y = y.reshape(B, H, nt)
        return ForecastOutput(y + offset)
