"""A run folder whose files are written atomically and never overwrite a user's files."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import pandas as pd
from matplotlib.figure import Figure


def atomic_write(path: Path, write: Callable[[Path], None]) -> Path:
    """Write via `write(tmp_path)` to a temporary file beside `path`, then rename.

    A crash mid-write leaves at most a hidden temporary file, never a half-written `path`.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(Path(tmp))
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


class RunFolder:
    """A fresh folder for one experiment's outputs.

    Args:
        root: parent folder (created if needed).
        name: folder name; a timestamped one by default. An existing folder is never
            reused: a numeric suffix is added instead.
    """

    def __init__(self, root: str | Path, name: str | None = None) -> None:
        root = Path(root)
        base = name or datetime.now().strftime("%Y%m%d-%H%M%S")
        path, i = root / base, 1
        while path.exists():
            path, i = root / f"{base}-{i}", i + 1
        path.mkdir(parents=True)
        self.path = path

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

    def write_csv(self, relative: str, frame: pd.DataFrame) -> Path:
        """A DataFrame as CSV, without the index."""
        return atomic_write(self.file(relative), lambda p: frame.to_csv(p, index=False))

    def write_figure(self, relative: str, fig: Figure, data: pd.DataFrame | None = None) -> Path:
        """A figure as PNG, and the data behind it as CSV beside it."""
        path = atomic_write(
            self.file(relative),
            lambda p: fig.savefig(p, format="png", dpi=110, bbox_inches="tight"),
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
