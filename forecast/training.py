"""The one training loop for every torch model, and checkpoints.

A torch model is a `TorchForecaster` subclass that implements `build_network()`; its
network's `forward(batch, teacher_forcing=0.0, generator=None)` returns a
`ForecastOutput`. Everything else lives here: seeding, batching, the optimiser and its
learning-rate schedule, the teacher-forcing schedule, gradient clipping, early stopping
with best-weights restore, the per-epoch history, devices and checkpoints. The loss is
the MSE on the scaled space (the pinball loss for a network wrapped in a `QuantileHead`,
`TrainConfig.quantiles`); validation is always free-running (teacher_forcing=0), the same
way the model is used at test time.
"""

from __future__ import annotations

import dataclasses
import inspect
import logging
import math
import time
from abc import abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from forecast import checkpoint, threads
from forecast.checkpoint import load_checkpoint
from forecast.data.scaling import StandardScaler
from forecast.data.windows import Batch, WindowDataset, WindowLayout
from forecast.models.base import (
    EVAL_MEMORY_BYTES,
    Forecaster,
    ForecastOutput,
    ModelConfig,
    check_choices,
)
from forecast.models.teacher_forcing import SCHEDULES, TeacherForcingSchedule

__all__ = ["TorchForecaster", "TrainConfig", "load_checkpoint", "resolve_device"]

logger = logging.getLogger(__name__)

OPTIMIZERS = ("adam", "adamw")
LR_SCHEDULES = ("none", "cosine", "step", "plateau")
DEVICES = ("auto", "cpu", "cuda", "mps")
AMP_MODES = ("auto", "off", "bf16", "fp16")
HISTORY_COLUMNS = [
    "epoch", "phase", "train_loss", "val_loss", "teacher_forcing", "lr", "seconds",
    "train_loss_free",
]  # fmt: skip
"""Columns of `history_`. `train_loss` is the mean training-batch loss as trained: with
dropout and, when `teacher_forcing` > 0, fed the true previous values, so it can read far
below the free-running `val_loss`. `train_loss_free` is the free-running loss on a fixed
subset of training windows (as many as are validated), computed only in epochs trained
with teacher forcing > 0 (NaN otherwise, where `train_loss` is free-running already):
the figure to compare with `val_loss`. Older checkpoints without it load it as NaN."""


@dataclass(frozen=True)
class TrainConfig(ModelConfig):
    """How a torch model is trained; model configs subclass it (one flat parameter set).

    Args:
        epochs: passes over the training windows (or `max_train_windows` of them).
        batch_size: windows per optimiser step.
        lr: learning rate.
        optimizer: 'adam' or 'adamw'.
        weight_decay: L2 penalty (decoupled for adamw).
        lr_schedule: 'none', 'cosine' (to 0 over `epochs`), 'step' (x `lr_gamma` every
            `lr_step_size` epochs) or 'plateau' (x `lr_gamma` after `lr_patience` epochs
            without a better validation loss).
        lr_step_size: epochs between 'step' decays.
        lr_gamma: decay factor of 'step' and 'plateau'.
        lr_patience: 'plateau' patience in epochs.
        grad_clip: max global gradient norm; None does not clip.
        patience: stop after this many epochs without a better validation loss; None
            trains all epochs. The best weights are restored either way. A model with
            training phases starts its next phase there instead (see `fit`).
        min_delta: the relative decrease of the validation loss that counts as better
            (for patience and the 'plateau' schedule; any decrease keeps the best weights).
        teacher_forcing: probability of feeding the true previous target to the decoder
            (the start value of the schedule); 0 trains free-running.
        tf_schedule: 'constant', 'linear', 'exponential' or 'inverse_sigmoid'.
        tf_end: linear schedule: the ratio at the last epoch.
        tf_decay: exponential schedule: factor per epoch.
        tf_k: inverse-sigmoid schedule: k (>= 1; larger decays later).
        seed: seeds weights, dropout, shuffling and teacher-forcing draws.
        device: 'auto' (CUDA, then MPS, then CPU), 'cpu', 'cuda' or 'mps'.
        amp: mixed precision for the training forward pass: 'auto' (bfloat16 on a CUDA
            GPU that supports it, else float16 with loss scaling; off on CPU and MPS),
            'off', 'bf16' (CUDA, or a CPU with bfloat16 instructions) or 'fp16' (CUDA).
            Validation and prediction run in float32.
        compile: train through `torch.compile(network)` (a one-off compile of tens of
            seconds; worth it on a GPU and for long runs, no faster for the
            LSTMs on CPU). Validation and prediction use the eager network.
        progress: show a tqdm bar.
        max_train_windows: train each epoch on a random subset of this many windows.
        max_val_windows: validate on this many evenly spaced windows.
        quantiles: quantile levels, e.g. (0.1, 0.5, 0.9), to add a quantile head (see
            `QuantileHead`) trained with the pinball loss, whose 0.5 level is the point
            forecast; None: a point forecast trained with the MSE.
        threads: torch threads for fit and predict: 'auto' (the free cores, chosen once
            per process, or the count the runner set; see `forecast.threads`) or a count.
    """

    epochs: int = 100
    batch_size: int = 64
    lr: float = 1e-3
    optimizer: str = "adam"
    weight_decay: float = 0.0
    lr_schedule: str = "plateau"
    lr_step_size: int = 10
    lr_gamma: float = 0.5
    lr_patience: int = 2
    grad_clip: float | None = 1.0
    patience: int | None = 6
    min_delta: float = 1e-3
    teacher_forcing: float = 0.5
    tf_schedule: str = "linear"
    tf_end: float = 0.0
    tf_decay: float = 0.9
    tf_k: float = 5.0
    seed: int = 0
    device: str = "auto"
    amp: str = "auto"
    compile: bool = False
    progress: bool = True
    max_train_windows: int | None = None
    max_val_windows: int | None = None
    quantiles: tuple[float, ...] | None = None
    threads: int | str = "auto"

    def __post_init__(self) -> None:
        if self.quantiles is not None:
            levels = tuple(float(q) for q in self.quantiles)
            if list(levels) != sorted(set(levels)) or not all(0 < q < 1 for q in levels):
                raise ValueError(f"quantiles must be distinct, ascending, in (0, 1); got {levels}")
            if 0.5 not in levels or len(levels) < 2:
                raise ValueError(f"quantiles must include 0.5 (the point forecast); got {levels}")
            object.__setattr__(self, "quantiles", levels)  # a YAML list becomes a tuple
        check_choices(
            ("optimizer", self.optimizer, OPTIMIZERS),
            ("lr_schedule", self.lr_schedule, LR_SCHEDULES),
            ("device", self.device, DEVICES),
            ("amp", self.amp, AMP_MODES),
            ("tf_schedule", self.tf_schedule, tuple(SCHEDULES)),
        )
        for name in ("epochs", "batch_size", "lr_step_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not self.lr > 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        if not 0.0 <= self.min_delta < 1.0:
            raise ValueError(f"min_delta must be in [0, 1), got {self.min_delta}")
        for name in ("max_train_windows", "max_val_windows", "patience"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"{name} must be >= 1 or None, got {value}")
        threads.choose(1, 0.0, self.threads, "")  # validates: 'auto' or an int >= 1
        self.teacher_forcing_schedule()  # validates the ratio and the schedule's parameters

    def teacher_forcing_schedule(self) -> TeacherForcingSchedule:
        """The teacher-forcing ratio per epoch that these settings describe."""
        return TeacherForcingSchedule(
            self.tf_schedule,
            start=self.teacher_forcing,
            end=self.tf_end,
            epochs=self.epochs,
            decay=self.tf_decay,
            k=self.tf_k,
        )


def resolve_device(device: str = "auto") -> torch.device:
    """The torch device for a config value; 'auto' picks CUDA, then MPS, then CPU.

    Args:
        device: 'auto', 'cpu', 'cuda' or 'mps'.
    """
    cuda = torch.cuda.is_available()
    mps = getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()
    if device == "auto":
        return torch.device("cuda" if cuda else "mps" if mps else "cpu")
    if device not in DEVICES:
        raise ValueError(f"unknown device {device!r}; expected one of {list(DEVICES)}")
    if (device == "cuda" and not cuda) or (device == "mps" and not mps):
        raise ValueError(f"device {device!r} was requested but is not available here")
    return torch.device(device)


def _to(value: Any, device: torch.device) -> Any:
    """Move tensors (also inside lists, tuples and dicts) to `device`."""
    if isinstance(value, Tensor):
        return value.to(device)
    if isinstance(value, list | tuple):
        return type(value)(_to(v, device) for v in value)
    if isinstance(value, dict):
        return {k: _to(v, device) for k, v in value.items()}
    return value


def even_subset(ds: WindowDataset, cap: int | None) -> WindowDataset:
    """`ds` itself, or at most `cap` of its windows spread evenly over it (first and last kept)."""
    if cap is None or len(ds) <= cap:
        return ds
    return ds.subset(np.unique(np.linspace(0, len(ds) - 1, cap).round().astype(np.int64)))


def _cpu_has_bf16() -> bool:
    """Whether oneDNN runs bfloat16 natively here (its LSTM refuses it otherwise)."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


class _Precision:
    """Autocast and loss scaling for one training run (a no-op when AMP is off).

    Args:
        mode: `TrainConfig.amp`.
        device: the training device.
    """

    def __init__(self, mode: str, device: torch.device) -> None:
        if mode == "auto":
            mode = "off"
            if device.type == "cuda":
                mode = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
        if mode == "fp16" and device.type != "cuda":
            raise ValueError(f"amp='fp16' needs a CUDA device, got {device.type!r}")
        if mode == "bf16" and device.type == "cpu" and not _cpu_has_bf16():
            raise ValueError(
                "amp='bf16' on the CPU needs bfloat16 instructions (AVX512-BF16 or AMX), "
                "which this CPU lacks; use amp='off'"
            )
        self.device_type = device.type
        self.dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(mode)
        self.scaler = torch.amp.GradScaler("cuda") if mode == "fp16" else None

    def autocast(self) -> Any:
        """The autocast context of the forward pass (disabled when AMP is off)."""
        return torch.autocast(self.device_type, self.dtype, enabled=self.dtype is not None)

    def backward(self, loss: Tensor) -> None:
        (self.scaler.scale(loss) if self.scaler is not None else loss).backward()

    def unscale(self, optimizer: torch.optim.Optimizer) -> None:
        if self.scaler is not None:  # clip the true gradients, not the scaled ones
            self.scaler.unscale_(optimizer)

    def step(self, optimizer: torch.optim.Optimizer) -> None:
        if self.scaler is None:
            optimizer.step()
        else:
            self.scaler.step(optimizer)
            self.scaler.update()


class TorchForecaster(Forecaster):
    """Base of every torch model: subclasses implement only `build_network()`.

    After `fit`, `history_` holds one row per epoch (see `HISTORY_COLUMNS`),
    `best_epoch_` the epoch whose weights were kept (0: a network's `warm_start`, which
    no epoch improved on) and `stopped_early_` whether early stopping ended training
    (False: the epoch budget did).
    """

    Config = TrainConfig

    def __init__(self, layout: WindowLayout, config: TrainConfig | None = None) -> None:
        super().__init__(layout, config)
        if not isinstance(self.config, TrainConfig):
            raise TypeError(f"{type(self).__name__} needs a TrainConfig subclass as config")
        self.network: nn.Module | None = None
        self.device = torch.device("cpu")
        self.history_ = pd.DataFrame(columns=HISTORY_COLUMNS)
        self.best_epoch_: int | None = None
        self.stopped_early_: bool | None = None
        self.scaler: StandardScaler | None = None

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
        """`build_network()`, wrapped in a `QuantileHead` when `config.quantiles` is set."""
        network = self.build_network()
        levels = self.config.quantiles
        return network if levels is None else QuantileHead(network, self.layout, levels)

    def loss(self, output: ForecastOutput, batch: Batch) -> Tensor:
        """Training objective on the scaled space: MSE, or the pinball loss averaged over
        the quantile levels when the network has a quantile head.

        Args:
            output: the network's output for `batch`.
            batch: the windows, on the model's device.
        """
        if output.quantiles is not None:
            return pinball_loss(output.quantiles, batch["future_target"], self.config.quantiles)
        return nn.functional.mse_loss(output.prediction, batch["future_target"])

    # ---------------------------------------------------------------- training
    def fit(self, train: WindowDataset, val: WindowDataset | None = None) -> TorchForecaster:
        """Train with the one loop; keeps the weights of the best validation epoch.

        Every call starts from freshly initialised weights (seeded by `config.seed`).

        Args:
            train: training windows.
            val: validation windows (free-running loss); None trains all epochs and keeps
                the last weights.
        """
        cfg: TrainConfig = self.config
        if len(train) == 0:
            raise ValueError("fit needs at least one training window, got an empty dataset")
        torch.manual_seed(cfg.seed)  # weights and dropout
        generator = torch.Generator().manual_seed(cfg.seed)  # shuffling and coin flips
        threads.apply(cfg.threads)  # issue 16: threads once per process (forecast/threads.py)
        self.device = resolve_device(cfg.device)
        self.network = self.make_network().to(self.device)
        warm_start = getattr(self.network, "warm_start", None)  # data-dependent init
        if warm_start is not None:
            warm_start(train)
        optimizer = self._optimizer()
        precision = _Precision(cfg.amp, self.device)
        self._train_network = torch.compile(self.network) if cfg.compile else self.network
        scheduler = self._lr_scheduler(optimizer)
        tf_schedule = cfg.teacher_forcing_schedule()
        val = even_subset(val, cfg.max_val_windows) if val is not None and len(val) else None
        n_train = min(len(train), cfg.max_train_windows or len(train))
        bar = tqdm(
            total=cfg.epochs * math.ceil(n_train / cfg.batch_size),
            desc=self.name,
            unit="batch",
            disable=not cfg.progress,
        )
        rows, best, best_state, waited, phase = [], math.inf, None, 0, 1
        self.stopped_early_ = False
        if warm_start is not None and val is not None:
            # The warm start is a candidate too (best_epoch_ 0): training must beat it.
            best, self.best_epoch_ = self.evaluate_loss(val), 0
            best_state = {k: v.detach().clone() for k, v in self.network.state_dict().items()}
        # Free-running training loss under teacher forcing: on as many windows as validated.
        train_check = even_subset(train, len(val) if val is not None else cfg.max_val_windows)
        set_epoch = getattr(self.network, "set_epoch", None)  # models with training phases
        for epoch in range(1, cfg.epochs + 1):
            start = time.perf_counter()
            if set_epoch is not None:
                set_epoch(epoch)
            if getattr(self.network, "phase", 1) != phase:  # a phase the model started
                phase, waited, scheduler = self._new_phase(optimizer, epoch)
            ratio = tf_schedule(epoch - 1)
            part = train
            if n_train < len(train):
                pick = torch.randperm(len(train), generator=generator)[:n_train]
                part = train.subset(np.sort(pick.numpy()))
            train_loss = self._train_epoch(part, optimizer, ratio, generator, bar, precision)
            val_loss = self.evaluate_loss(val) if val is not None else math.nan
            lr = optimizer.param_groups[0]["lr"]
            if isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
                scheduler.step(val_loss if val is not None else train_loss)
            elif scheduler is not None:
                scheduler.step()
            seconds = time.perf_counter() - start
            free = self._free_running_loss(train_check) if ratio > 0 else math.nan
            rows.append([epoch, phase, train_loss, val_loss, ratio, lr, seconds, free])
            bar.set_postfix(train=f"{train_loss:.4f}", val=f"{val_loss:.4f}", tf=f"{ratio:.2f}")
            logger.info(
                "%s epoch %d: train %.5f (as trained: teacher forcing %.2f, dropout)%s, "
                "val %.5f (free-running), %.1fs",
                self.name, epoch, train_loss, ratio,
                "" if math.isnan(free) else f", train {free:.5f} (free-running)",
                val_loss, seconds,
            )  # fmt: skip
            better = val is None or val_loss < best * (1.0 - cfg.min_delta)
            if val is None or val_loss < best:
                self.best_epoch_ = epoch
                best_state = {k: v.detach().clone() for k, v in self.network.state_dict().items()}
            if better:
                waited = 0
            else:
                waited += 1
            best = min(best, val_loss) if val is not None else best
            if cfg.patience is not None and waited >= cfg.patience:
                # A model with phases starts the next one from the best weights instead.
                if self._next_phase(best_state):
                    phase, waited, scheduler = self._new_phase(optimizer, epoch + 1)
                    continue
                logger.info("%s: early stop after epoch %d", self.name, epoch)
                self.stopped_early_ = True
                break
        bar.close()
        if best_state is None:  # every validation loss was NaN: keep the last weights
            logger.warning("%s: no finite validation loss; keeping the last weights", self.name)
        else:
            self.network.load_state_dict(best_state)
        self.history_ = pd.DataFrame(rows, columns=HISTORY_COLUMNS)
        return self

    def _new_phase(self, optimizer: torch.optim.Optimizer, epoch: int) -> tuple[int, int, Any]:
        """A new training phase starts at `epoch`: the learning rate and its schedule
        start over. Returns (phase, epochs waited, scheduler)."""
        phase = int(getattr(self.network, "phase", 1))
        logger.info("%s: training phase %d from epoch %d", self.name, phase, epoch)
        for group in optimizer.param_groups:
            group["lr"] = self.config.lr
        return phase, 0, self._lr_scheduler(optimizer)

    def _next_phase(self, best_state: dict[str, Tensor] | None) -> bool:
        """Where early stopping would stop: a network with training phases (a
        `next_phase()` method) may start its next one from the best weights so far
        instead; True if it did.

        Args:
            best_state: the best weights so far.
        """
        advance = getattr(self.network, "next_phase", None)
        if advance is None:
            return False
        current = {k: v.detach().clone() for k, v in self.network.state_dict().items()}
        if best_state is not None:
            self.network.load_state_dict(best_state)
        if advance():
            return True
        self.network.load_state_dict(current)
        return False

    def _train_epoch(
        self,
        ds: WindowDataset,
        optimizer: torch.optim.Optimizer,
        ratio: float,
        generator: torch.Generator,
        bar: tqdm,
        precision: _Precision,
    ) -> float:
        cfg: TrainConfig = self.config
        self.network.train()
        total, count = 0.0, 0
        for batch in ds.iter_batches(cfg.batch_size, shuffle=True, generator=generator):
            batch = _to(batch, self.device)
            with precision.autocast():
                output = self._train_network(
                    batch, teacher_forcing=ratio, generator=generator, **self._maps(False)
                )
                loss = self.loss(output, batch).float()
            if not torch.isfinite(loss):
                raise FloatingPointError(
                    f"{self.name}: training loss is {loss.item()} after {count} windows; "
                    "expected a finite value (try a lower lr or grad_clip)"
                )
            optimizer.zero_grad(set_to_none=True)
            precision.backward(loss)
            if cfg.grad_clip is not None:
                precision.unscale(optimizer)
                nn.utils.clip_grad_norm_(self.network.parameters(), cfg.grad_clip, foreach=True)
            precision.step(optimizer)
            n = len(batch["origin"])
            total, count = total + loss.item() * n, count + n
            bar.update(1)
            bar.set_postfix(loss=f"{total / count:.4f}", tf=f"{ratio:.2f}", refresh=False)
        return total / count

    def evaluate_loss(self, ds: WindowDataset, batch_size: int = 512) -> float:
        """Free-running loss (`loss`: MSE, or pinball with quantiles) over every window
        of `ds`, in eval mode.

        Args:
            ds: windows to score.
            batch_size: windows per forward pass.
        """
        return self._free_running_loss(ds, batch_size)

    def _free_running_loss(self, ds: WindowDataset, batch_size: int = 512) -> float:
        """`evaluate_loss`'s computation, also used for `train_loss_free`."""
        self._check_fitted()
        self.network.eval()
        total, count = 0.0, 0
        with torch.no_grad():
            for batch in ds.iter_batches(batch_size):
                batch = _to(batch, self.device)
                output = self.network(batch, teacher_forcing=0.0, **self._maps(False))
                n = len(batch["origin"])
                total += self.loss(output, batch).item() * n
                count += n
        return total / max(count, 1)

    def _optimizer(self) -> torch.optim.Optimizer:
        cfg: TrainConfig = self.config
        cls = torch.optim.AdamW if cfg.optimizer == "adamw" else torch.optim.Adam
        params = [p for p in self.network.parameters() if p.requires_grad]
        # The fused kernel updates every parameter in one call instead of ~10 small ops
        # per tensor (CPU and CUDA, floating point); it was the largest cost after the
        # LSTMs in a profiled training step.
        fused = self.device.type in ("cpu", "cuda") and all(p.is_floating_point() for p in params)
        return cls(params, lr=cfg.lr, weight_decay=cfg.weight_decay, fused=fused or None)

    def _lr_scheduler(self, optimizer: torch.optim.Optimizer) -> Any:
        cfg: TrainConfig = self.config
        sched = torch.optim.lr_scheduler
        if cfg.lr_schedule == "cosine":
            return sched.CosineAnnealingLR(optimizer, T_max=cfg.epochs)
        if cfg.lr_schedule == "step":
            return sched.StepLR(optimizer, step_size=cfg.lr_step_size, gamma=cfg.lr_gamma)
        if cfg.lr_schedule == "plateau":
            return sched.ReduceLROnPlateau(
                optimizer,
                factor=cfg.lr_gamma,
                patience=cfg.lr_patience,
                threshold=cfg.min_delta,
            )
        return None

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
        threads.apply(getattr(self.config, "threads", "auto"))  # issue 16: threads
        self.network.eval()
        with torch.no_grad():
            out = self.network(
                _to(batch, self.device), teacher_forcing=0.0, **self._maps(attention)
            )
        cpu = torch.device("cpu")
        return ForecastOutput(
            prediction=out.prediction.to(cpu),
            temporal_attention=_to(out.temporal_attention, cpu),
            feature_attention=_to(out.feature_attention, cpu),
            extras=_to(out.extras, cpu),
            quantiles=_to(out.quantiles, cpu),
        )

    def _maps(self, attention: bool) -> dict[str, bool]:
        """Forward keyword asking for attention maps or not, for networks that take it."""
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
        """Write `history_` as CSV.

        Args:
            path: destination file.
        """
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        self.history_.to_csv(path, index=False)
        return path

    def save_checkpoint(self, path: str | Path, scaler: StandardScaler | None = None) -> Path:
        """Weights + config + layout (+ scaler state) as plain data, written atomically;
        `load_checkpoint(path)` rebuilds the model.

        Args:
            path: destination file.
            scaler: the data's scaler, to forecast in original units after loading;
                defaults to `self.scaler` (set by `load_checkpoint`).
        """
        self._check_fitted()
        return checkpoint.save_checkpoint(self, path, scaler)


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
