"""Checkpoints of torch forecasters: plain data only, so `torch.load(weights_only=True)`
reads them and a checkpoint can never run code while loading.

A checkpoint holds the weights, the config and the window layout as plain dicts, the
scaler's state (to forecast in original units), the training history (and any
`extra_histories_`, e.g. of a pretraining stage), and the model's registry name and
class path to rebuild it. Files are written to a temporary file in the same folder and
renamed over the target, so a crash never leaves a half-written one.
"""

from __future__ import annotations

import dataclasses
import importlib
import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd
import torch

from forecast.data.scaling import StandardScaler
from forecast.data.windows import WindowLayout

if TYPE_CHECKING:
    from forecast.training import TorchForecaster

CHECKPOINT_FORMAT = 1


def atomic_save(obj: Any, path: str | Path) -> Path:
    """`torch.save(obj)` to `path` through a temporary file and `os.replace`.

    Args:
        obj: what to save.
        path: destination file; its folder is created.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def save_checkpoint(
    model: TorchForecaster, path: str | Path, scaler: StandardScaler | None = None
) -> Path:
    """Write a fitted torch forecaster (see `TorchForecaster.save_checkpoint`).

    Args:
        model: a fitted forecaster.
        path: destination file.
        scaler: the data's scaler; defaults to `model.scaler`.
    """
    scaler = scaler if scaler is not None else model.scaler
    cls = type(model)
    payload = {
        "format": CHECKPOINT_FORMAT,
        "name": model.name,
        "class": f"{cls.__module__}:{cls.__qualname__}",
        "config": dataclasses.asdict(model.config),
        "layout": dataclasses.asdict(model.layout),
        "state_dict": {k: v.detach().cpu() for k, v in model.network.state_dict().items()},
        "scaler": scaler.state_dict() if scaler is not None else None,
        "history": model.history_.astype(float).to_dict(orient="list"),
        "best_epoch": model.best_epoch_,
        "extra_histories": {  # e.g. a pretraining stage's epochs
            k: h.astype(float).to_dict(orient="list")
            for k, h in getattr(model, "extra_histories_", {}).items()
        },
    }
    return atomic_save(payload, path)


def _forecaster_class(name: str, class_path: str) -> type[TorchForecaster]:
    from forecast.models.registry import _MODELS, _load_builtin
    from forecast.training import TorchForecaster

    _load_builtin()
    entry = _MODELS.get(name)
    if entry is not None and f"{entry.cls.__module__}:{entry.cls.__qualname__}" == class_path:
        return entry.cls
    module, _, qualname = class_path.partition(":")
    cls = getattr(importlib.import_module(module), qualname, None)
    if not (isinstance(cls, type) and issubclass(cls, TorchForecaster)):
        raise ValueError(f"checkpoint class {class_path!r} is not a TorchForecaster subclass")
    return cls


def load_checkpoint(path: str | Path, device: str | None = None) -> TorchForecaster:
    """Rebuild a fitted forecaster from `save_checkpoint`; its `.scaler` is restored too.

    Args:
        path: the checkpoint file.
        device: where to put the network; None uses the saved config's device.
    """
    from forecast.training import HISTORY_COLUMNS, resolve_device

    payload = torch.load(Path(path), map_location="cpu", weights_only=True)
    if payload.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(
            f"{path}: checkpoint format {payload.get('format')!r}, expected {CHECKPOINT_FORMAT}"
        )
    cls = _forecaster_class(payload["name"], payload["class"])
    lay = payload["layout"]
    for key in ("targets", "past_covariates", "known_covariates"):
        lay[key] = tuple(lay[key])
    config = cls.Config(**payload["config"])
    model = cls(WindowLayout(**lay), config)
    model.name = payload["name"]
    model.device = resolve_device(device or config.device)
    model.network = model.build_network()
    model.network.load_state_dict(payload["state_dict"])
    model.network.to(model.device).eval()
    model.history_ = pd.DataFrame(payload["history"], columns=HISTORY_COLUMNS)
    if "phase" not in payload["history"]:  # written before training phases existed
        model.history_["phase"] = 1
    model.history_[["epoch", "phase"]] = model.history_[["epoch", "phase"]].astype(int)
    model.best_epoch_ = payload["best_epoch"]
    extra = payload.get("extra_histories") or {}
    if extra:
        model.extra_histories_ = {k: pd.DataFrame(v) for k, v in extra.items()}
    if payload["scaler"] is not None:
        model.scaler = StandardScaler.from_state_dict(payload["scaler"])
    return model
