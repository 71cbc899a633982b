"""The torch model side: `TorchForecaster` owns its network; `forecast.training` trains it.

A torch model is a `TorchForecaster` subclass that implements `build_network()`; its
network's `forward(batch, teacher_forcing=0.0, generator=None)` returns a
`ForecastOutput`. Its config is a `TorchModelConfig`: the architecture's own fields plus
`train`, a `forecast.training.TrainConfig`. The model owns the network (built and seeded
by `fit`, which hands it to the one training loop), the training objective (`loss`: the
MSE on the scaled space, or the pinball loss for a network wrapped in a `QuantileHead`,
`TrainConfig.quantiles`), prediction, its weights (`state_dict`) and its memory estimate
(`max_batch`). Checkpoints are `forecast.checkpoint.save_checkpoint(model, path)`.
"""

from __future__ import annotations

import dataclasses
import inspect
from abc import abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from torch import Tensor, nn

from forecast import distributed, threads
from forecast.data.scaling import StandardScaler
from forecast.data.windows import Batch, WindowDataset, WindowLayout
from forecast.models.base import EVAL_MEMORY_BYTES, Forecaster, ForecastOutput, ModelConfig
from forecast.training import (
    HISTORY_COLUMNS,
    TrainConfig,
    free_running_loss,
    resolve_device,
    to_device,
)
from forecast.training import train as train_network

__all__ = ["QuantileHead", "TorchForecaster", "TorchModelConfig", "pinball_loss"]


@dataclass(frozen=True)
class TorchModelConfig(ModelConfig):
    """Base of a torch model's config: the architecture's fields (in subclasses) plus how
    it is trained.

    Subclasses set their own training defaults through the `train` field's factory, e.g.
    `train: TrainConfig = field(default_factory=lambda: TrainConfig(lr=3e-3))`. Build one
    from flat keys with `LSTMConfig.from_params(hidden_size=8, epochs=3)`.

    Args:
        train: the training settings (`forecast.training.TrainConfig`).
    """

    train: TrainConfig = field(default_factory=TrainConfig)


class TorchForecaster(Forecaster):
    """Base of every torch model: subclasses implement only `build_network()`.

    After `fit`, `history_` holds one row per epoch (see
    `forecast.training.HISTORY_COLUMNS`), `best_epoch_` the epoch whose weights were kept
    (0: a network's `warm_start`, which no epoch improved on) and `stopped_early_` whether
    early stopping ended training (False: the epoch budget did).
    """

    Config = TorchModelConfig

    def __init__(self, layout: WindowLayout, config: TorchModelConfig | None = None) -> None:
        super().__init__(layout, config)
        if not isinstance(self.config, TorchModelConfig):
            raise TypeError(f"{type(self).__name__} needs a TorchModelConfig as config")
        self.network: nn.Module | None = None
        self.device = torch.device("cpu")
        self.history_ = pd.DataFrame(columns=HISTORY_COLUMNS)
        self.best_epoch_: int | None = None
        self.stopped_early_: bool | None = None
        self.scaler: StandardScaler | None = None
        # Called as f(epoch, val_loss) by the training loop after each epoch; may raise
        # to end training (the pruning of forecast.search).
        self.epoch_callbacks: list[Callable[[int, float], None]] = []

    @abstractmethod
    def build_network(self) -> nn.Module:
        """A fresh network with `forward(batch, teacher_forcing, generator) -> ForecastOutput`."""

    def state_dict(self) -> dict[str, Tensor]:
        """The network's weights (on the CPU); a model that was never fitted has none."""
        if getattr(self, "network", None) is None:
            raise RuntimeError(f"{self.name} is not fitted; call fit(train) first")
        return {k: v.detach().cpu() for k, v in self.network.state_dict().items()}

    def load_state_dict(self, state: dict[str, Tensor]) -> None:
        """Build the network and load `state` (what `state_dict` returned) into it.

        Args:
            state: the weights.
        """
        self.network = self.make_network()
        self.network.load_state_dict(state)
        self.network.to(self.device).eval()

    def make_network(self) -> nn.Module:
        """`build_network()`, wrapped in a `QuantileHead` when `config.train.quantiles` is set."""
        network = self.build_network()
        levels = self.config.train.quantiles
        return network if levels is None else QuantileHead(network, self.layout, levels)

    def loss(self, output: ForecastOutput, batch: Batch) -> Tensor:
        """Training objective on the scaled space: MSE, or the pinball loss averaged over
        the quantile levels when the network has a quantile head.

        Args:
            output: the network's output for `batch`.
            batch: the windows, on the model's device.
        """
        if output.quantiles is not None:
            levels = self.config.train.quantiles
            return pinball_loss(output.quantiles, batch["future_target"], levels)
        return nn.functional.mse_loss(output.prediction, batch["future_target"])

    def fit(self, train: WindowDataset, val: WindowDataset | None = None) -> TorchForecaster:
        """Build a freshly initialised network (seeded by `config.train.seed`) and train
        it with the one loop (`forecast.training.train`); keeps the weights of the best
        validation epoch.

        Args:
            train: training windows.
            val: validation windows (free-running loss); None trains all epochs and keeps
                the last weights.
        """
        cfg = self.config.train
        threads.apply(cfg.threads)  # threads once per process (forecast/threads.py)
        torch.manual_seed(cfg.seed)  # weights and dropout
        self.device = resolve_device(cfg.device)
        self.network = self.make_network().to(self.device)
        result = train_network(self, train, val, cfg)
        self.history_ = result.history
        self.best_epoch_ = result.best_epoch
        self.stopped_early_ = result.stopped_early
        return self

    def evaluate_loss(self, ds: WindowDataset, batch_size: int = 512) -> float:
        """Free-running loss (`loss`: MSE, or pinball with quantiles) over every window
        of `ds`, in eval mode.

        Args:
            ds: windows to score.
            batch_size: windows per forward pass.
        """
        self._check_fitted()
        return free_running_loss(self, ds, batch_size)

    # -------------------------------------------------------------- prediction
    def _check_fitted(self) -> None:
        if self.network is None:
            raise RuntimeError(
                f"{self.name} is not fitted; call fit(train, val) or load_checkpoint(path) first"
            )

    def predict_batch(self, batch: Batch, *, attention: bool = True) -> ForecastOutput:
        """Free-running forecast in eval mode, without gradients; CPU tensors out.

        Args:
            batch: the windows (any device).
            attention: return the attention maps; False skips them in networks whose
                forward takes `return_attention` (the transformer).
        """
        self._check_fitted()
        threads.apply(self.config.train.threads)  # threads
        self.network.eval()
        with torch.no_grad():
            out = self.network(
                to_device(batch, self.device),
                teacher_forcing=0.0,
                **self.network_options(attention),
            )
        cpu = torch.device("cpu")
        return ForecastOutput(
            prediction=out.prediction.to(cpu),
            temporal_attention=to_device(out.temporal_attention, cpu),
            feature_attention=to_device(out.feature_attention, cpu),
            extras=to_device(out.extras, cpu),
            quantiles=to_device(out.quantiles, cpu),
        )

    def network_options(self, attention: bool) -> dict[str, bool]:
        """The forward keyword asking for attention maps or not, for networks that take it.

        Args:
            attention: whether the maps are asked for.
        """
        network = self.network.inner if isinstance(self.network, QuantileHead) else self.network
        takes = "return_attention" in inspect.signature(network.forward).parameters
        return {"return_attention": attention} if takes else {}

    def max_batch(self, attention: bool) -> int | None:
        """Windows per batch within `EVAL_MEMORY_BYTES`, from the network's own estimate
        of a window's activation bytes (`activation_bytes(attention)`), if it has one.

        Args:
            attention: whether the maps are asked for.
        """
        per_window = getattr(self.network, "activation_bytes", None)
        return None if per_window is None else max(1, EVAL_MEMORY_BYTES // per_window(attention))

    # ----------------------------------------------------------- persistence
    def save_history(self, path: str | Path) -> Path:
        """Write `history_` as CSV (under a process group: rank 0 only).

        Args:
            path: destination file.
        """
        path = Path(path)
        if not distributed.is_main():  # rank 0 writes
            return path
        path.parent.mkdir(parents=True, exist_ok=True)
        self.history_.to_csv(path, index=False)
        return path


def pinball_loss(quantiles: Tensor, target: Tensor, levels: tuple[float, ...]) -> Tensor:
    """Mean pinball loss of quantile forecasts [B, H, T, Q] at `levels` for targets [B, H, T].

    Args:
        quantiles: the forecasts.
        target: the actual values.
        levels: the Q levels.
    """
    tau = torch.tensor(levels, dtype=quantiles.dtype, device=quantiles.device)
    diff = target.unsqueeze(-1) - quantiles  # [B, H, T, Q]
    return torch.maximum(tau * diff, (tau - 1.0) * diff).mean()


class QuantileHead(nn.Module):
    """Quantile outputs for any torch network, added around it.

    The wrapped network's point forecast is the median. A small MLP per target reads the
    window's input targets and that forecast, both relative to the last input value and
    divided by the window scale (the mean absolute step of its input), and returns the
    gaps between neighbouring quantiles (softplus, times the window scale), added outward
    from the median: the quantiles never cross and widen with the recent volatility. It
    does not see the wrapped network's hidden state. Training hooks of the wrapped
    network (`warm_start`, `set_epoch`, `phase`, ...) are reached through this module.

    Args:
        network: the point-forecast network.
        layout: the window layout.
        levels: ascending quantile levels including 0.5.
        hidden: width of the MLP's hidden layer.
    """

    def __init__(
        self, network: nn.Module, layout: WindowLayout, levels: tuple[float, ...], hidden: int = 64
    ) -> None:
        super().__init__()
        self.inner = network
        self.levels = tuple(levels)
        self.median = self.levels.index(0.5)
        self.horizon = layout.horizon
        gaps = len(self.levels) - 1
        self.mlp = nn.Sequential(
            nn.Linear(layout.input_length + layout.horizon, hidden),
            nn.ReLU(),
            nn.Linear(hidden, gaps * layout.horizon),
        )

    def __getattr__(self, name: str) -> Any:
        try:
            return super().__getattr__(name)
        except AttributeError:
            if name == "inner":
                raise
            return getattr(self.inner, name)  # the wrapped network's hooks

    def forward(
        self,
        batch: Batch,
        teacher_forcing: float = 0.0,
        generator: torch.Generator | None = None,
        **kwargs: Any,
    ) -> ForecastOutput:
        out = self.inner(batch, teacher_forcing=teacher_forcing, generator=generator, **kwargs)
        point = out.prediction  # [B, H, T]
        past = batch["past_target"].to(point.dtype)  # [B, L, T]
        last = past[:, -1:]  # [B, 1, T]
        scale = (past[:, 1:] - past[:, :-1]).abs().mean(1, keepdim=True).clamp_min(1e-3)
        x = torch.cat([past - last, point - last], dim=1) / scale  # [B, L + H, T]
        gaps = nn.functional.softplus(self.mlp(x.transpose(1, 2)))  # [B, T, (Q-1) * H]
        b, t = gaps.shape[:2]
        gaps = gaps.view(b, t, -1, self.horizon).permute(0, 3, 1, 2)  # [B, H, T, Q-1]
        gaps = gaps * scale.unsqueeze(-1)  # [B, 1, T, 1] broadcast
        below = point.unsqueeze(-1) - gaps[..., : self.median].flip(-1).cumsum(-1).flip(-1)
        above = point.unsqueeze(-1) + gaps[..., self.median :].cumsum(-1)
        quantiles = torch.cat([below, point.unsqueeze(-1), above], dim=-1)  # [B, H, T, Q]
        return dataclasses.replace(out, quantiles=quantiles)
