"""Checkpoints of forecasters: plain data only, so `torch.load(weights_only=True)` reads
them and a checkpoint can never run code while loading.

A checkpoint holds the fitted state (a torch model's weights, a baseline's learned
parameters such as ridge coefficients, nothing for a rule like repeat-last), the config
(its flat keys, as `create_model` takes them: a torch model's architecture and training
keys together, see `forecast.models.base.split_params`) and the window layout as plain
dicts, the scaler's state (to forecast in original
units), a torch model's training history (and any `extra_histories_`, e.g. of a
pretraining stage), the model's registry name and class path to rebuild it, and, for a
saved `forecast.pipeline.Pipeline`, the pipeline's column roles, frequency and options.
Only registered model classes are rebuilt (or the class the caller passes): no module
named in a file is ever imported.

The file (format 2) is `{"format": 2, "sha256": ..., "payload": <uint8 tensor>}`: the
payload is the `torch.save` serialization of the content above, and its SHA-256 is checked
before it is read, so a damaged or truncated file is refused with its name. Files are
written to a temporary file in the same folder and renamed over the target, so a crash
never leaves a half-written one. Format-1 files (no hash) still load, with a warning.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import logging
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from forecast import distributed
from forecast.data.scaling import StandardScaler
from forecast.data.windows import WindowLayout
from forecast.io import atomic_write_bytes
from forecast.models.base import Forecaster
from forecast.models.registry import get_entry, list_models
from forecast.models.torch_base import TorchForecaster
from forecast.training import HISTORY_COLUMNS, resolve_device

log = logging.getLogger(__name__)

CHECKPOINT_FORMAT = 2
_UNHASHED_FORMAT = 1  # written before the hash: loads with a warning


class CheckpointError(ValueError):
    """A checkpoint that cannot be loaded: damaged, truncated, or naming a class that is
    not a registered model. The message names the file."""


def _serialize(obj: Any) -> bytes:
    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


def atomic_save(obj: Any, path: str | Path) -> Path:
    """A checkpoint file holding `obj` and its SHA-256, written atomically (see
    `forecast.io.atomic_write`); `read_checkpoint` verifies and returns `obj`.

    Args:
        obj: plain data (dicts, lists, numbers, strings, tensors).
        path: destination file; its folder is created.
    """
    data = _serialize(obj)
    wrapper = {
        "format": CHECKPOINT_FORMAT,
        "sha256": hashlib.sha256(data).hexdigest(),
        "payload": torch.frombuffer(bytearray(data), dtype=torch.uint8),
    }
    return atomic_write_bytes(Path(path), _serialize(wrapper))


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """The content `atomic_save` wrote, after checking its hash (plain data only).

    A damaged, truncated or unreadable file raises a `CheckpointError` naming it; a file
    of format 1 (no hash) is returned with a warning.

    Args:
        path: the checkpoint file.
    """
    path = Path(path)
    with open(path, "rb") as f:  # a missing or unreadable file: OSError naming it
        raw = f.read()
    outer = _load_plain(raw, path)
    fmt = outer.get("format")
    if fmt == _UNHASHED_FORMAT:
        log.warning(
            "%s: checkpoint of format 1 has no integrity hash; loaded unchecked "
            "(save it again to add one)",
            path,
        )
        return outer
    if fmt != CHECKPOINT_FORMAT or not isinstance(outer.get("payload"), torch.Tensor):
        raise CheckpointError(f"{path}: checkpoint format {fmt!r}, expected {CHECKPOINT_FORMAT}")
    data = outer["payload"].numpy().tobytes()
    if hashlib.sha256(data).hexdigest() != outer.get("sha256"):
        raise CheckpointError(
            f"{path}: checkpoint is damaged (its content does not match its SHA-256)"
        )
    payload = _load_plain(data, path)
    if payload.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path}: checkpoint content has format {payload.get('format')!r}")
    return payload


def _load_plain(data: bytes, path: Path) -> dict[str, Any]:
    """`torch.load(weights_only=True)` of `data`; any failure names `path`."""
    try:
        obj = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises RuntimeError, OSError, pickle errors, ...
        raise CheckpointError(
            f"{path}: not a readable checkpoint (damaged or truncated: {_first(err)})"
        ) from None
    if not isinstance(obj, dict):
        raise CheckpointError(f"{path}: not a checkpoint (holds a {type(obj).__name__})")
    return obj


def save_checkpoint(
    model: Forecaster,
    path: str | Path,
    scaler: StandardScaler | None = None,
    pipeline: dict[str, Any] | None = None,
) -> Path:
    """Write a fitted forecaster (a torch model or a baseline), atomically; under a
    process group (`forecast.distributed`) only rank 0 writes.

    Args:
        model: a fitted forecaster.
        path: destination file.
        scaler: the data's scaler; defaults to `model.scaler` (torch models).
        pipeline: a `Pipeline`'s plain-data metadata (see `forecast.pipeline`), if any.
    """
    if not distributed.is_main():  # rank 0 writes
        return Path(path)
    scaler = scaler if scaler is not None else getattr(model, "scaler", None)
    cls = type(model)
    torch_model = isinstance(model, TorchForecaster)
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    payload = {
        "format": CHECKPOINT_FORMAT,
        "name": model.name,
        "class": f"{cls.__module__}:{cls.__qualname__}",
        "config": model.config.params(),  # flat keys, as `create_model` takes them
        "layout": dataclasses.asdict(model.layout),
        "state_dict": state,
        "scaler": scaler.state_dict() if scaler is not None else None,
    }
    if torch_model:
        payload.update(
            history=model.history_.astype(float).to_dict(orient="list"),
            best_epoch=model.best_epoch_,
            extra_histories={  # e.g. a pretraining stage's epochs
                k: h.astype(float).to_dict(orient="list")
                for k, h in getattr(model, "extra_histories_", {}).items()
            },
        )
    if pipeline is not None:
        payload["pipeline"] = pipeline
    return atomic_save(payload, path)


def _forecaster_class(
    path: Path, name: str, class_path: str, model_class: type | None
) -> type[Forecaster]:
    """The class to rebuild: the caller's `model_class`, else the registered model `name`
    (or another registered model) whose class is `class_path`. Nothing named in the file
    is ever imported."""

    def path_of(cls: type) -> str:
        return f"{cls.__module__}:{cls.__qualname__}"

    if model_class is not None:
        if not (isinstance(model_class, type) and issubclass(model_class, Forecaster)):
            raise TypeError(f"model_class must be a Forecaster subclass, got {model_class!r}")
        if path_of(model_class) != class_path:
            raise CheckpointError(
                f"{path}: checkpoint holds a {class_path!r}, not a {path_of(model_class)!r}"
            )
        return model_class
    candidates = [name] if name in list_models() else []
    candidates += [n for n in list_models() if n != name]
    for candidate in candidates:
        cls = get_entry(candidate).cls
        if path_of(cls) == class_path:
            return cls
    raise CheckpointError(
        f"{path}: checkpoint class {class_path!r} (model {name!r}) is not a registered "
        "torch model or baseline; pass model_class= to load a model of your own"
    )


def load_checkpoint(
    path: str | Path, device: str | None = None, model_class: type | None = None
) -> Forecaster:
    """Rebuild a fitted forecaster from `save_checkpoint`; a torch model's `.scaler` is
    restored too.

    Only registered model classes are rebuilt; a `CheckpointError` (a ValueError) naming
    the file refuses any other class, a damaged or truncated file, or a wrong format.

    Args:
        path: the checkpoint file.
        device: where to put a torch model's network; None uses the saved config's device.
        model_class: the class of a model outside the registry (a `Forecaster` subclass
            the file must name); None accepts registered models only.
    """
    return read_model(path, device, model_class)[0]


def read_model(
    path: str | Path, device: str | None = None, model_class: type | None = None
) -> tuple[Forecaster, dict[str, Any]]:
    """`load_checkpoint`'s model and the file's whole (verified, plain-data) content.

    Args:
        path: the checkpoint file.
        device: where to put a torch model's network; None uses the saved config's device.
        model_class: see `load_checkpoint`.
    """
    path = Path(path)
    payload = read_checkpoint(path)
    cls = _forecaster_class(path, payload.get("name"), str(payload.get("class")), model_class)
    lay = dict(payload["layout"])
    for key in ("targets", "past_covariates", "known_covariates"):
        lay[key] = tuple(lay[key])
    # A setting missing from an older checkpoint took the default of its day, which may
    # have changed since (`Config.SAVED_BEFORE`: e.g. the segment model's cell).
    saved = {**getattr(cls.Config, "SAVED_BEFORE", {}), **payload["config"]}
    try:
        config = cls.Config.from_params(**saved)
        model = cls(WindowLayout(**lay), config)
    except (TypeError, ValueError) as err:
        raise CheckpointError(f"{path}: its config does not fit {cls.__name__} ({err})") from None
    model.name = payload["name"]
    if isinstance(model, TorchForecaster):
        _restore_torch(model, payload, device, path)
    else:
        try:
            model.load_state_dict(payload.get("state_dict") or {})
        except (RuntimeError, ValueError) as err:
            raise CheckpointError(
                f"{path}: its fitted state does not fit ({_first(err)})"
            ) from None
    return model, payload


def _first(err: Exception) -> str:
    """The first line of an error's message (its type when it has none)."""
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


def _restore_torch(model: Any, payload: dict[str, Any], device: str | None, path: Path) -> None:
    """Network weights, device, history and scaler of a torch model from its payload."""
    try:
        model.device = resolve_device(device or model.config.train.device)
    except ValueError as err:
        raise CheckpointError(f"{path}: {err}; pass device= (--device) to load it here") from None
    model.network = model.make_network()
    try:
        model.network.load_state_dict(payload["state_dict"])
    except (RuntimeError, KeyError) as err:  # weights of another shape, a missing tensor
        raise CheckpointError(
            f"{path}: its weights do not fit the {model.name} network ({_first(err)})"
        ) from None
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
