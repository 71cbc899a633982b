"""DLinear and NLinear (Zeng et al., AAAI 2023) as neural models trained by the one loop.

Both map each target channel's input window [L] to its horizon [H] with linear layers,
the channels independently (weights shared across channels unless `individual`):

- DLinear splits the window into a trend (a moving average of `kernel_size` steps, the
  window's ends repeated as padding) and the remainder, and adds one linear map of each.
- NLinear subtracts the window's last value, maps linearly, and adds it back.

They read only `past_target`: covariates, past or known, are not used (as in the paper).
They are the published bar for long horizons on the ETT data (DESIGN.md), and the same
models the peers offer (darts `DLinearModel`/`NLinearModel`, neuralforecast `DLinear`/
`NLinear`). `nlinear` (no suffix) is the closed-form ridge baseline in NLinear form.

>>> import numpy as np, pandas as pd
>>> from forecast import ColumnRoles, create_model, prepare_data
>>> df = pd.DataFrame({"date": pd.date_range("2024-01-01", periods=300, freq="h"),
...                    "y": np.sin(np.arange(300) / 5)})
>>> data = prepare_data(df, ColumnRoles(("y",)), input_length=48, horizon=12)
>>> model = create_model("dlinear", data.layout, epochs=2, progress=False)
>>> tuple(model.fit(data.train, data.val).predict_batch(data.test.batch([0])).prediction.shape)
(1, 12, 1)
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from forecast.data.windows import Batch, WindowLayout
from forecast.models.base import ForecastOutput
from forecast.models.registry import register_model
from forecast.models.torch_base import TorchForecaster, TorchModelConfig
from forecast.training import TrainConfig

DECOMPOSITIONS = ("moving_average", "last")


@dataclass(frozen=True)
class DLinearConfig(TorchModelConfig):
    """The linear models' settings, and how they are trained (`train`), with the
    paper's recipe as training defaults (Adam, lr 0.005 halved every epoch, batch 32, 10 epochs,
    patience 3), which reproduces the published ETTh1 figures (bench/accuracy_suite.py,
    docs/benchmarks.md).

    Args:
        decomposition: 'moving_average' (DLinear: trend + remainder) or 'last' (NLinear:
            relative to the last input value).
        kernel_size: the moving average's length (odd, <= input length); None: DLinear's
            25, or the longest odd length that fits a shorter input.
        individual: one set of weights per target channel instead of one shared set.
    """

    train: TrainConfig = field(
        default_factory=lambda: TrainConfig(
            lr=0.005,
            lr_schedule="step",
            lr_step_size=1,
            lr_gamma=0.5,
            batch_size=32,
            epochs=10,
            patience=3,
            teacher_forcing=0.0,  # no decoder: the ratio is never read
            tf_schedule="constant",
        )
    )
    decomposition: str = "moving_average"
    kernel_size: int | None = None
    individual: bool = False

    def __post_init__(self) -> None:
        if self.decomposition not in DECOMPOSITIONS:
            raise ValueError(
                f"unknown decomposition {self.decomposition!r}; expected one of "
                f"{list(DECOMPOSITIONS)}"
            )
        if self.kernel_size is not None and (self.kernel_size < 1 or self.kernel_size % 2 == 0):
            raise ValueError(f"kernel_size must be odd and >= 1, got {self.kernel_size}")


class LinearNetwork(nn.Module):
    """Channel-wise linear maps from the input window to the horizon.

    Args:
        layout: shapes and column roles of the windows.
        cfg: the model config.
    """

    def __init__(self, layout: WindowLayout, cfg: DLinearConfig) -> None:
        super().__init__()
        L, H = layout.input_length, layout.horizon
        kernel = cfg.kernel_size or min(25, L - (L + 1) % 2)
        if cfg.decomposition == "moving_average" and kernel > L:
            raise ValueError(f"kernel_size {kernel} is longer than the input length {L}")
        self.decomposition = cfg.decomposition
        self.kernel_size = kernel
        n = layout.n_targets if cfg.individual else 1
        parts = 2 if cfg.decomposition == "moving_average" else 1
        bound = 1.0 / L**0.5  # nn.Linear's default initialisation
        self.weight = nn.Parameter(torch.empty(parts, n, H, L).uniform_(-bound, bound))
        self.bias = nn.Parameter(torch.empty(parts, n, H).uniform_(-bound, bound))

    def trend(self, x: Tensor) -> Tensor:
        """Moving average over the last axis of x [..., L], ends repeated as padding."""
        pad = (self.kernel_size - 1) // 2
        flat = x.reshape(-1, 1, x.shape[-1])
        padded = torch.cat(
            [flat[..., :1].expand(-1, -1, pad), flat, flat[..., -1:].expand(-1, -1, pad)], -1
        )
        return nn.functional.avg_pool1d(padded, self.kernel_size, stride=1).reshape(x.shape)

    def forward(
        self, batch: Batch, teacher_forcing: float = 0.0, generator: torch.Generator | None = None
    ) -> ForecastOutput:
        """Forecast [B, H, T] from `past_target` only (the other arguments are unused).

        Args:
            batch: window fields, see `WindowDataset.batch`.
            teacher_forcing: ignored (no decoder).
            generator: ignored.
        """
        x = batch["past_target"].transpose(1, 2)  # [B, T, L]
        if self.decomposition == "last":
            last = x[..., -1:]  # [B, T, 1]
            parts, offset = (x - last)[None], last
        else:
            trend = self.trend(x)
            parts, offset = torch.stack([x - trend, trend]), 0.0  # [2, B, T, L]
        # sum over parts of W_p x_p + b_p; weights [P, T or 1, H, L] broadcast over channels
        y = torch.einsum("pbtl,pthl->bth", parts, self.weight.expand(-1, x.shape[1], -1, -1))
        y = y + self.bias.sum(0) + offset  # [B, T, H]
        return ForecastOutput(y.transpose(1, 2))


@register_model(
    "nlinear_net",
    kind="neural",
    defaults={"decomposition": "last"},
    description="NLinear (Zeng et al. 2023): linear on the window minus its last value",
)
@register_model(
    "dlinear",
    kind="neural",
    description="DLinear (Zeng et al. 2023): linear maps of trend and remainder, per channel",
)
class DLinearForecaster(TorchForecaster):
    """DLinear / NLinear trained by the one loop in `forecast.training`."""

    Config = DLinearConfig

    def build_network(self) -> LinearNetwork:
        return LinearNetwork(self.layout, self.config)
