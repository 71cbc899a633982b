"""Small file helpers shared by the run folder, checkpoints and interpretation: atomic
writes, and reads that fail with one clear line naming the file.

Every error raised here names the file at fault: an `OSError` carries it as `filename`, a
damaged or unreadable file gives a `ValueError` whose message starts with the path.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

_UMASK = os.umask(0)
os.umask(_UMASK)
_FILE_MODE = 0o666 & ~_UMASK

STALE_TMP = re.compile(r"^\..+\.[A-Za-z0-9_]{8}\.tmp$")
"""Names of the temporary files `atomic_write` makes (`.<name>.<8 random chars>.tmp`)."""


def atomic_write(path: Path, write: Callable[[Path], None]) -> Path:
    """Write via `write(tmp_path)` to a temporary file beside `path`, then rename.

    A crash mid-write leaves at most a hidden temporary file (see `STALE_TMP`), never a
    half-written `path`. An `OSError` without a file name (e.g. ENOSPC) gets `path` as one.

    Args:
        path: the destination; its folder is created.
        write: writes the content to the path it is given.
    """
    path = Path(path)
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        os.close(fd)
        write(Path(tmp))
        os.chmod(tmp, _FILE_MODE)  # mkstemp makes owner-only files; use the usual mode
        os.replace(tmp, path)
    except OSError as err:
        if err.filename is None:  # e.g. a full disk: name the file being written
            raise OSError(err.errno, err.strerror or str(err), str(path)) from err
        raise
    finally:
        if tmp is not None and os.path.exists(tmp):
            os.unlink(tmp)
    return path


def atomic_write_bytes(path: Path, data: bytes) -> Path:
    """`data` to `path` through `atomic_write`, flushed to disk before the rename.

    Args:
        path: the destination; its folder is created.
        data: the file's content.
    """

    def write(p: Path) -> None:
        with open(p, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())

    return atomic_write(Path(path), write)


def remove_stale_tmp(folder: Path) -> list[Path]:
    """Delete the temporary files a killed `atomic_write` left anywhere under `folder`.

    Only names matching `STALE_TMP` are removed; call it only when no other process is
    writing into `folder`. Returns the removed paths.

    Args:
        folder: e.g. a run folder being resumed.
    """
    removed = []
    for p in sorted(Path(folder).rglob("*.tmp")):
        if p.is_file() and STALE_TMP.match(p.name):
            p.unlink(missing_ok=True)
            removed.append(p)
    return removed


def read_json(path: Path) -> Any:
    """A JSON file's content; a damaged file raises a ValueError naming it.

    Args:
        path: the file.
    """
    path = Path(path)
    try:
        return json.loads(path.read_text())
    except ValueError as err:  # JSONDecodeError, UnicodeDecodeError
        raise ValueError(f"{path}: not a valid JSON file ({err})") from None


def read_csv(path: str | Path, **kwargs: Any) -> pd.DataFrame:
    """`pd.read_csv(path, **kwargs)`; an empty, binary or malformed file raises a ValueError
    naming it, a folder or an unreadable file an `OSError` naming it.

    Args:
        path: the CSV file.
        **kwargs: passed to `pd.read_csv`.
    """
    import pandas as pd

    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(21, "is a folder, not a CSV file", str(path))
    try:
        return pd.read_csv(path, **kwargs)
    except pd.errors.EmptyDataError:
        raise ValueError(f"{path}: the file is empty (no header row)") from None
    except UnicodeDecodeError as err:
        raise ValueError(
            f"{path}: not a text CSV file (byte {err.start} is not {err.encoding})"
        ) from None
    except pd.errors.ParserError as err:
        reason = str(err).strip().splitlines()[-1] if str(err).strip() else type(err).__name__
        raise ValueError(f"{path}: not a readable CSV file ({reason})") from None
