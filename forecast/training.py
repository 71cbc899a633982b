"""The one training loop for every torch model: it only trains.

`train(model, train_windows, val_windows, config)` runs it on any model that has a built
`network` whose `forward(batch, teacher_forcing=0.0, generator=None)` returns a
`ForecastOutput`, a `device`, a `name`, a `loss(output, batch)`, an `evaluate_loss(ds)`
and `network_options(attention)` (see `Trainable`; `forecast.models.torch_base.
TorchForecaster` is the model side, whose `fit` builds the seeded network and calls this).
The loop owns seeding of shuffling and coin flips, batching, the optimiser and its
learning-rate schedule, the teacher-forcing schedule, mixed precision, gradient clipping,
training phases, early stopping with best-weights restore and the per-epoch history.
Validation is always free-running (teacher_forcing=0), the same way the model is used at
test time. This module imports no model, registry or checkpoint code.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import pandas as pd
import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from forecast import accel, distributed  # accel: amp, GPU batch rule, pinned, no sync
from forecast.accel import to_device
from forecast.data.windows import Batch, WindowDataset
from forecast.params import check_choices
from forecast.precision import Precision
from forecast.teacher_forcing import SCHEDULES, TeacherForcingSchedule
from forecast.threads import check_threads

__all__ = [
    "HISTORY_COLUMNS",
    "TrainConfig",
    "TrainResult",
    "Trainable",
    "Trainer",
    "even_subset",
    "free_running_loss",
    "resolve_device",
    "to_device",
    "train",
]

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
class TrainConfig:
    """How a torch model is trained. A torch model's config holds one in its `train` field
    (`forecast.models.torch_base.TorchModelConfig`); users may still pass its keys flat
    (`create_model("lstm", layout, epochs=5)`, see `forecast.models.base.split_params`).

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
            training phases starts its next phase there instead (see `Trainer.fit`).
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
        gpu_batch_size: on a CUDA GPU only: train with max(batch_size, this) windows
            per step and the learning rate times sqrt(that / batch_size) (the
            square-root rule for Adam); None keeps batch_size and lr there too. The CPU
            ignores it (larger batches bought at most 1.3x there and cost accuracy).
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
    gpu_batch_size: int | None = 256

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
        check_threads(self.threads)
        for name in ("max_train_windows", "max_val_windows", "patience", "gpu_batch_size"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"{name} must be >= 1 or None, got {value}")
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


def even_subset(ds: WindowDataset, cap: int | None) -> WindowDataset:
    """`ds` itself, or at most `cap` of its windows spread evenly over it (first and last kept)."""
    if cap is None or len(ds) <= cap:
        return ds
    return ds.subset(np.unique(np.linspace(0, len(ds) - 1, cap).round().astype(np.int64)))


class Trainable(Protocol):
    """What the loop needs of a model (`TorchForecaster` is one)."""

    name: str
    network: nn.Module
    device: torch.device

    def loss(self, output: Any, batch: Batch) -> Tensor:
        """The training objective of a `ForecastOutput` for `batch`."""

    def evaluate_loss(self, ds: WindowDataset) -> float:
        """The free-running validation loss over `ds`."""

    def network_options(self, attention: bool) -> dict[str, bool]:
        """Extra keywords of `network.forward` (asking for attention maps or not)."""


@dataclass
class TrainResult:
    """What a training run leaves besides the trained weights (kept in `model.network`).

    Args:
        history: one row per epoch (see `HISTORY_COLUMNS`).
        best_epoch: the epoch whose weights were kept (0: the network's `warm_start`,
            which no epoch improved on); None when no validation loss was finite.
        stopped_early: whether early stopping ended training (False: the epoch budget).
    """

    history: pd.DataFrame
    best_epoch: int | None
    stopped_early: bool


def free_running_loss(model: Trainable, ds: WindowDataset, batch_size: int = 512) -> float:
    """The model's `loss`, free-running (teacher_forcing=0) in eval mode without
    gradients, averaged over every window of `ds`.

    Args:
        model: a model with a built network.
        ds: windows to score.
        batch_size: windows per forward pass.
    """
    network = model.network
    network.eval()
    total, count = 0.0, 0
    with torch.no_grad():
        for batch in ds.iter_batches(batch_size):
            batch = to_device(batch, model.device)
            output = network(batch, teacher_forcing=0.0, **model.network_options(False))
            n = len(batch["origin"])
            total += model.loss(output, batch).item() * n
            count += n
    return total / max(count, 1)


def _weights(network: nn.Module) -> dict[str, Tensor]:
    """A detached copy of the network's weights."""
    return {k: v.detach().clone() for k, v in network.state_dict().items()}


class Trainer:
    """One training run of `model.network` under `config` (see `train`).

    Args:
        model: the model whose built network is trained in place.
        config: the training settings.
    """

    def __init__(self, model: Trainable, config: TrainConfig) -> None:
        self.model = model
        self.config = config

    def fit(self, train: WindowDataset, val: WindowDataset | None = None) -> TrainResult:
        """Train; the network ends with the weights of the best validation epoch.

        Args:
            train: training windows.
            val: validation windows (free-running loss); None trains all epochs and keeps
                the last weights.
        """
        model = self.model
        cfg = self.config = accel.for_device(self.config, model.device)  # GPU batch
        if len(train) == 0:
            raise ValueError("fit needs at least one training window, got an empty dataset")
        network = model.network
        generator = torch.Generator().manual_seed(cfg.seed)  # shuffling and coin flips
        warm_start = getattr(network, "warm_start", None)  # data-dependent init
        if warm_start is not None:
            warm_start(train)
        optimizer = self._optimizer()
        precision = Precision(cfg.amp, model.device)
        net = distributed.wrap(network, cfg.seed)  # DDP under a process group
        self._train_network = torch.compile(net) if cfg.compile else net
        scheduler = self._lr_scheduler(optimizer)
        tf_schedule = cfg.teacher_forcing_schedule()
        val = even_subset(val, cfg.max_val_windows) if val is not None and len(val) else None
        n_train = min(len(train), cfg.max_train_windows or len(train))
        bar = tqdm(
            total=cfg.epochs * math.ceil(n_train / cfg.batch_size),
            desc=model.name,
            unit="batch",
            disable=not cfg.progress or not distributed.is_main(),
        )
        rows, best, best_state, waited, phase = [], math.inf, None, 0, 1
        best_epoch, stopped_early = None, False
        if warm_start is not None and val is not None:
            # The warm start is a candidate too (best epoch 0): training must beat it.
            best, best_epoch = distributed.reduced_loss(model.evaluate_loss, val), 0
            best_state = _weights(network)
        # Free-running training loss under teacher forcing: on as many windows as validated.
        train_check = even_subset(train, len(val) if val is not None else cfg.max_val_windows)
        set_epoch = getattr(network, "set_epoch", None)  # models with training phases
        for epoch in range(1, cfg.epochs + 1):
            start = time.perf_counter()
            if set_epoch is not None:
                set_epoch(epoch)
            if getattr(network, "phase", 1) != phase:  # a phase the model started
                phase, waited, scheduler = self._new_phase(optimizer, epoch)
            ratio = tf_schedule(epoch - 1)
            part = train
            if n_train < len(train):
                pick = torch.randperm(len(train), generator=generator)[:n_train]
                part = train.subset(np.sort(pick.numpy()))
            train_loss = self._train_epoch(part, optimizer, ratio, generator, bar, precision)
            val_loss = (  # reduced over the ranks
                distributed.reduced_loss(model.evaluate_loss, val) if val is not None else math.nan
            )
            lr = optimizer.param_groups[0]["lr"]
            if isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
                scheduler.step(val_loss if val is not None else train_loss)
            elif scheduler is not None:
                scheduler.step()
            seconds = time.perf_counter() - start
            free = free_running_loss(model, train_check) if ratio > 0 else math.nan
            rows.append([epoch, phase, train_loss, val_loss, ratio, lr, seconds, free])
            bar.set_postfix(train=f"{train_loss:.4f}", val=f"{val_loss:.4f}", tf=f"{ratio:.2f}")
            logger.info(
                "%s epoch %d: train %.5f (as trained: teacher forcing %.2f, dropout)%s, "
                "val %.5f (free-running), %.1fs",
                model.name, epoch, train_loss, ratio,
                "" if math.isnan(free) else f", train {free:.5f} (free-running)",
                val_loss, seconds,
            )  # fmt: skip
            for callback in getattr(model, "epoch_callbacks", ()):  # forecast.search prunes
                callback(epoch, val_loss)  # may raise to end training
            better = val is None or val_loss < best * (1.0 - cfg.min_delta)
            if val is None or val_loss < best:
                best_epoch = epoch
                best_state = _weights(network)
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
                logger.info("%s: early stop after epoch %d", model.name, epoch)
                stopped_early = True
                break
        bar.close()
        if best_state is None:  # every validation loss was NaN: keep the last weights
            logger.warning("%s: no finite validation loss; keeping the last weights", model.name)
        else:
            network.load_state_dict(best_state)
        history = pd.DataFrame(rows, columns=HISTORY_COLUMNS)
        return TrainResult(history, best_epoch, stopped_early)

    def _new_phase(self, optimizer: torch.optim.Optimizer, epoch: int) -> tuple[int, int, Any]:
        """A new training phase starts at `epoch`: the learning rate and its schedule
        start over. Returns (phase, epochs waited, scheduler)."""
        phase = int(getattr(self.model.network, "phase", 1))
        logger.info("%s: training phase %d from epoch %d", self.model.name, phase, epoch)
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
        network = self.model.network
        advance = getattr(network, "next_phase", None)
        if advance is None:
            return False
        current = _weights(network)
        if best_state is not None:
            network.load_state_dict(best_state)
        if advance():
            return True
        network.load_state_dict(current)
        return False

    def _train_epoch(
        self,
        ds: WindowDataset,
        optimizer: torch.optim.Optimizer,
        ratio: float,
        generator: torch.Generator,
        bar: tqdm,
        precision: Precision,
    ) -> float:
        cfg, model = self.config, self.model
        model.network.train()
        losses = accel.LossSum()  # on the device, one sync per epoch
        for batch, weight, n in distributed.train_batches(ds, cfg.batch_size, generator):
            batch = to_device(batch, model.device)
            with precision.autocast():
                output = self._train_network(
                    batch, teacher_forcing=ratio, generator=generator,
                    **model.network_options(False),
                )  # fmt: skip
                loss = model.loss(output, batch).float()
            optimizer.zero_grad(set_to_none=True)
            precision.backward(loss * weight if weight != 1.0 else loss)  # share weight
            if cfg.grad_clip is not None:
                precision.unscale(optimizer)
                nn.utils.clip_grad_norm_(model.network.parameters(), cfg.grad_clip, foreach=True)
            precision.step(optimizer)
            losses.add(loss, n)  # no .item() per step
            bar.update(1)
        total, count = distributed.sum_over_ranks(losses.sum(), losses.count)
        mean = total / count if count else math.nan
        if not math.isfinite(mean):
            raise FloatingPointError(
                f"{model.name}: training loss is {mean} over an epoch of {int(count)} "
                "windows; expected a finite value (try a lower lr or grad_clip)"
            )
        return mean

    def _optimizer(self) -> torch.optim.Optimizer:
        cfg, device = self.config, self.model.device
        cls = torch.optim.AdamW if cfg.optimizer == "adamw" else torch.optim.Adam
        params = [p for p in self.model.network.parameters() if p.requires_grad]
        # The fused kernel updates every parameter in one call instead of ~10 small ops
        # per tensor (CPU and CUDA, floating point); it was the largest cost after the
        # LSTMs in a profiled training step.
        fused = device.type in ("cpu", "cuda") and all(p.is_floating_point() for p in params)
        return cls(params, lr=cfg.lr, weight_decay=cfg.weight_decay, fused=fused or None)

    def _lr_scheduler(self, optimizer: torch.optim.Optimizer) -> Any:
        cfg = self.config
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


def train(
    model: Trainable,
    train: WindowDataset,
    val: WindowDataset | None,
    config: TrainConfig,
) -> TrainResult:
    """Train `model.network` in place with the one loop; it ends with the weights of the
    best validation epoch (the last ones without `val`).

    The caller seeds and builds the network first (`TorchForecaster.fit` does); the loop
    seeds its own generator for shuffling and teacher-forcing draws from `config.seed`.

    Args:
        model: the model (see `Trainable`).
        train: training windows.
        val: validation windows; None trains all epochs.
        config: the training settings.
    """
    return Trainer(model, config).fit(train, val)
