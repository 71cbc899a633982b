"""A run folder whose files are written atomically and never overwrite a user's files,
and the environment manifest written into it."""

from __future__ import annotations

import json
import logging
import os
import platform
import subprocess
import sys
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from forecast.io import atomic_write, read_json, remove_stale_tmp

if TYPE_CHECKING:
    from matplotlib.figure import Figure

log = logging.getLogger(__name__)

PACKAGES = ("torch", "numpy", "pandas", "sklearn", "scipy", "matplotlib", "tqdm")


def check_run_name(name: str) -> str:
    """`name` if it is a plain folder name; a ValueError otherwise (a path separator, `..`,
    an absolute path or an empty name would put the run folder outside the output folder).

    Args:
        name: a run folder name (`run.name`, `--run-name`).
    """
    if (
        not name.strip()
        or name in (".", "..")
        or "/" in name
        or "\\" in name
        or Path(name).is_absolute()
        or "\0" in name
    ):
        raise ValueError(
            f"run name {name!r} must be a plain folder name (no path separators, '..' "
            "or absolute paths); use run.output_dir / --output-dir for the parent folder"
        )
    return name


class RunFolder:
    """A fresh folder for one experiment's outputs.

    Args:
        root: parent folder (created if needed).
        name: folder name; a timestamped one by default. An existing folder is never
            reused: a numeric suffix is added instead.
    """

    def __init__(self, root: str | Path, name: str | None = None) -> None:
        root = Path(root)
        if name is not None:
            check_run_name(name)
        base = name or datetime.now().strftime("%Y%m%d-%H%M%S")
        path, i = root / base, 1
        while path.exists():
            path, i = root / f"{base}-{i}", i + 1
        path.mkdir(parents=True)
        self.path = path

    @classmethod
    def existing(cls, path: str | Path, marker: str = "config.json") -> RunFolder:
        """An existing run folder, to resume writing into it.

        Args:
            path: the run folder (must hold `marker`).
            marker: the file that makes it one (a search folder's: search.json).
        """
        path = Path(path)
        if not (path / marker).is_file():
            raise ValueError(f"{path} is not a run folder: it has no {marker}")
        folder = cls.__new__(cls)
        folder.path = path
        return folder

    def config(self) -> dict[str, Any]:
        """The stored `config.json` (a damaged file raises a ValueError naming it)."""
        return read_json(self.file("config.json"))

    def remove_stale_tmp(self) -> list[Path]:
        """Delete temporary files a killed run left behind (only while no process writes
        here, e.g. when a resume starts); each is logged. Returns the removed paths."""
        removed = remove_stale_tmp(self.path)
        for p in removed:
            log.info("removed %s, left by an interrupted write", p)
        return removed

    def file(self, relative: str) -> Path:
        """Path of a file inside the run folder."""
        return self.path / relative

    def write_json(self, relative: str, data: Any) -> Path:
        """JSON, indented, with non-JSON values (numpy, paths) as strings."""
        text = json.dumps(data, indent=2, default=_jsonable)
        return atomic_write(self.file(relative), lambda p: p.write_text(text + "\n"))

    def write_text(self, relative: str, text: str) -> Path:
        """Plain text."""
        return atomic_write(self.file(relative), lambda p: p.write_text(text))

    def write_csv(
        self, relative: str, frame: pd.DataFrame, float_format: str | None = None
    ) -> Path:
        """A DataFrame as CSV, without the index.

        Args:
            relative: path inside the run folder.
            frame: the table.
            float_format: e.g. '%.7g' for large tables of float32 values.
        """
        return atomic_write(
            self.file(relative), lambda p: frame.to_csv(p, index=False, float_format=float_format)
        )

    def write_npz(self, relative: str, **arrays: np.ndarray) -> Path:
        """Arrays as one compressed .npz file.

        Args:
            relative: path inside the run folder, ending in .npz.
            **arrays: name -> array.
        """

        def write(p: Path) -> None:
            with open(p, "wb") as f:  # a file object: np.savez would append '.npz'
                np.savez_compressed(f, **arrays)

        return atomic_write(self.file(relative), write)

    def write_figure(self, relative: str, fig: Figure, data: pd.DataFrame | None = None) -> Path:
        """A figure as PNG, and the data behind it as CSV beside it."""
        path = atomic_write(
            self.file(relative),
            # No bbox_inches="tight": it renders twice; the plots set their own margins.
            lambda p: fig.savefig(p, format="png", dpi=110),
        )
        if data is not None:
            self.write_csv(str(Path(relative).with_suffix(".csv")), data)
        return path


def _jsonable(value: Any) -> Any:
    if hasattr(value, "tolist"):
        return value.tolist()
    if hasattr(value, "item"):
        return value.item()
    return str(value)


def _git(repo: Path, *args: str) -> str:
    out = subprocess.run(
        ["git", *args], cwd=repo, capture_output=True, text=True, timeout=10, check=True
    )
    return out.stdout.strip()


def _git_commit(repo: Path) -> dict[str, Any]:
    """The commit and whether the tree has changes; empty if git or the repo is missing."""
    try:
        return {
            "commit": _git(repo, "rev-parse", "HEAD"),
            "dirty": bool(_git(repo, "status", "--porcelain")),
        }
    except (OSError, subprocess.SubprocessError):
        return {}


def environment_manifest(seeds: list[int], device: str) -> dict[str, Any]:
    """Versions, platform, git commit, seeds, device, threads and OpenMP policy: what a
    rerun needs to match.

    Never fails: a missing package or git is recorded as missing.

    Args:
        seeds: the run's seeds.
        device: the device the run asked for ('auto', 'cpu', ...).
    """
    versions = {}
    for name in PACKAGES:
        module = sys.modules.get(name)
        if module is None:
            try:
                module = __import__(name)
            except ImportError:
                versions[name] = None
                continue
        versions[name] = getattr(module, "__version__", None)
    resolved, threads, choice = device, None, None
    try:
        import torch

        from forecast.threads import current
        from forecast.training import resolve_device

        resolved, threads = str(resolve_device(device)), torch.get_num_threads()
        choice = None if current() is None else current().as_dict()
    except (ImportError, ValueError):
        pass
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch_threads": threads,
        "threads": choice,  # how forecast.threads chose them: policy, cores, load seen
        "packages": versions,
        "git": _git_commit(Path(__file__).resolve().parents[1]),
        "seeds": list(seeds),
        "device": {"requested": device, "resolved": resolved},
    }
