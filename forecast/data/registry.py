"""Registered real datasets: descriptions read from ``datasets/*.toml``, files found or fetched.

Where a dataset's file comes from, first match wins:

1. the ``data_path`` argument;
2. the environment variable ``FORECAST_DATA_<NAME>`` (e.g. ``FORECAST_DATA_ETTH1``), a file;
3. ``$FORECAST_DATA_DIR/<file name>`` (e.g. ``$FORECAST_DATA_DIR/ETTh1.csv``);
4. the cache, ``default_cache_dir() / <file name>`` unless ``cache_dir`` is given;
5. a download into the cache.

A file you provide yourself (1-3) is checked against the registered sha256, but a mismatch
only logs a WARNING: you may well be using a modified copy on purpose. A file in the cache
must match, and a cached file that does not is reported, never overwritten.
"""

from __future__ import annotations

import functools
import importlib.resources
import logging
import os
import tomllib
from dataclasses import MISSING, dataclass, fields
from pathlib import Path

import pandas as pd
from pandas.tseries.frequencies import to_offset

from forecast.data.download import SHA256_PATTERN, fetch, sha256_file
from forecast.data.split import SplitSpec
from forecast.io import read_csv

log = logging.getLogger(__name__)

SPLIT_PROTOCOLS = ("ett_hour", "ett_minute", "ratio")
REGISTRY_GAPS = ("error", "keep")  # 'fill' needs a fill policy: a user's choice, not a rule


@dataclass(frozen=True)
class DatasetSpec:
    """One registered dataset, as described by its TOML file.

    Args:
        name: registry name (looked up case-insensitively).
        description: one line on what the data is.
        url: where the file is downloaded from.
        filename: the file's name in the cache and in ``FORECAST_DATA_DIR``.
        sha256: expected hex digest of the file; "" when no trustworthy one is known.
        freq: pandas frequency alias of the time column ("h", "15min", "10min", "D").
        time_column: name of the time column.
        targets: default target columns.
        columns: every value column the file must have.
        split: split protocol: "ett_hour", "ett_minute" or "ratio".
        ratios: train / validation / test fractions for split "ratio", else None.
        seasonal_period: rows per season (24 for hourly data: one day).
        drop_duplicate_rows: cleaning rule: drop rows that repeat an earlier row exactly.
        gaps: cleaning rule for missing timestamps: "error" or "keep" (rows stay
            consecutive, as in the literature).
    """

    name: str
    description: str
    url: str
    filename: str
    sha256: str
    freq: str
    time_column: str
    targets: tuple[str, ...]
    columns: tuple[str, ...]
    split: str
    seasonal_period: int
    ratios: tuple[float, float, float] | None = None
    drop_duplicate_rows: bool = False
    gaps: str = "error"

    def split_spec(self) -> SplitSpec:
        """The dataset's split protocol as a `SplitSpec` (Informer borders or fractions)."""
        if self.split == "ratio":
            return SplitSpec("fractions", fractions=self.ratios)
        return SplitSpec(self.split)

    @classmethod
    def from_toml(cls, path: Path) -> DatasetSpec:
        """Read and check one dataset description.

        Args:
            path: the ``.toml`` file.
        """
        with open(path, "rb") as fh:
            raw = tomllib.load(fh)
        _check_description(raw, path)
        values = {
            **raw,
            "sha256": raw["sha256"].strip().lower(),
            "targets": tuple(raw["targets"]),
            "columns": tuple(raw["columns"]),
        }
        if "ratios" in raw:
            values["ratios"] = tuple(float(r) for r in raw["ratios"])
        return cls(**values)


# Every field without a default must appear in a description file.
_REQUIRED = tuple(f.name for f in fields(DatasetSpec) if f.default is MISSING)
_OPTIONAL = tuple(f.name for f in fields(DatasetSpec) if f.default is not MISSING)


def _check_description(raw: dict, path: Path) -> None:
    """Raise a ValueError naming the first problem in a parsed dataset description."""
    missing = [key for key in _REQUIRED if key not in raw]
    if missing:
        raise ValueError(f"{path} is missing the keys {missing}; expected all of {_REQUIRED}")
    unknown = sorted(set(raw) - set(_REQUIRED) - set(_OPTIONAL))
    if unknown:
        raise ValueError(
            f"{path} has unknown keys {unknown}; expected {_REQUIRED} and optionally {_OPTIONAL}"
        )
    if not isinstance(raw.get("drop_duplicate_rows", False), bool):
        raise ValueError(
            f"{path}: drop_duplicate_rows must be true or false, got {raw['drop_duplicate_rows']!r}"
        )
    if raw.get("gaps", "error") not in REGISTRY_GAPS:
        raise ValueError(f"{path}: gaps must be one of {list(REGISTRY_GAPS)}, got {raw['gaps']!r}")
    if raw["sha256"] and not SHA256_PATTERN.fullmatch(raw["sha256"].strip().lower()):
        raise ValueError(f'{path}: sha256 must be 64 hex characters or "", got {raw["sha256"]!r}')
    try:
        to_offset(raw["freq"])
    except ValueError as err:
        raise ValueError(f"{path}: freq {raw['freq']!r} is not a pandas frequency alias") from err
    if raw["split"] not in SPLIT_PROTOCOLS:
        raise ValueError(
            f"{path}: unknown split {raw['split']!r}; expected one of {SPLIT_PROTOCOLS}"
        )
    ratios = raw.get("ratios")
    if raw["split"] == "ratio" and (
        ratios is None or len(ratios) != 3 or abs(sum(ratios) - 1) > 1e-9
    ):
        raise ValueError(
            f"{path}: split 'ratio' needs ratios = [train, val, test] summing to 1, got {ratios}"
        )
    bad_targets = [t for t in raw["targets"] if t not in raw["columns"]]
    if bad_targets:
        raise ValueError(f"{path}: targets {bad_targets} are not in columns {raw['columns']}")
    period = raw["seasonal_period"]
    if not isinstance(period, int) or period < 1:
        raise ValueError(f"{path}: seasonal_period must be a positive integer, got {period!r}")


def datasets_dir() -> Path:
    """The folder of dataset descriptions: ``datasets/`` at the repository root.

    Falls back to ``forecast/_datasets`` package data for a non-editable install.
    """
    repo_dir = Path(__file__).resolve().parents[2] / "datasets"
    if repo_dir.is_dir():
        return repo_dir
    packaged = Path(str(importlib.resources.files("forecast") / "_datasets"))
    if packaged.is_dir():
        return packaged
    raise FileNotFoundError(
        f"no dataset descriptions found: expected a folder of .toml files at {repo_dir} "
        f"(repository checkout) or {packaged} (installed package)"
    )


@functools.cache
def _registry() -> dict[str, DatasetSpec]:
    specs: dict[str, DatasetSpec] = {}
    for path in sorted(datasets_dir().glob("*.toml")):
        spec = DatasetSpec.from_toml(path)
        if spec.name.lower() in specs:
            raise ValueError(f"{path}: dataset name {spec.name!r} is registered twice")
        specs[spec.name.lower()] = spec
    return specs


def list_datasets() -> list[str]:
    """Names of the registered datasets, sorted case-insensitively."""
    return sorted((spec.name for spec in _registry().values()), key=str.lower)


def get_dataset_spec(name: str) -> DatasetSpec:
    """The description of a registered dataset.

    Args:
        name: dataset name, any case ("ETTh1", "etth1").
    """
    spec = _registry().get(name.lower())
    if spec is None:
        raise ValueError(f"unknown dataset {name!r}; known datasets: {', '.join(list_datasets())}")
    return spec


def default_cache_dir() -> Path:
    """``$FORECAST_CACHE_DIR`` if set, else ``~/.cache/forecast``."""
    env = os.environ.get("FORECAST_CACHE_DIR")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "forecast"


def dataset_path(
    name: str | DatasetSpec,
    data_path: str | Path | None = None,
    cache_dir: str | Path | None = None,
    download: bool = True,
) -> Path:
    """Find a dataset's file locally, or download it into the cache (see the module doc).

    Args:
        name: registered dataset name, or a `DatasetSpec` of your own.
        data_path: a local copy to use; checked against the sha256, a mismatch only warns.
        cache_dir: cache folder; defaults to `default_cache_dir()`.
        download: download into the cache when the file is found nowhere else.
    """
    spec = name if isinstance(name, DatasetSpec) else get_dataset_spec(name)
    dest, origin = _locate(spec, data_path, cache_dir)
    if origin != "cache":
        return _user_file(spec, dest, origin)
    if not dest.exists() and not download:
        raise FileNotFoundError(
            f"dataset {spec.name!r} not found: no data_path, no "
            f"FORECAST_DATA_{spec.name.upper()}, no {spec.filename} in FORECAST_DATA_DIR, "
            f"not in the cache {dest.parent}, and download=False. Pass data_path=... or "
            "allow the download."
        )
    if spec.sha256:
        return fetch(spec.url, dest, spec.sha256)
    return _fetch_unverified(spec, dest)


def _locate(
    spec: DatasetSpec, data_path: str | Path | None, cache_dir: str | Path | None
) -> tuple[Path, str]:
    """The file `dataset_path` takes (it may not exist yet) and where it was named: 'data_path',
    'FORECAST_DATA_<NAME>', 'FORECAST_DATA_DIR' or 'cache' (downloaded there when absent)."""
    env_var = f"FORECAST_DATA_{spec.name.upper()}"
    if data_path is not None:
        return Path(data_path).expanduser(), "data_path"
    if os.environ.get(env_var):
        return Path(os.environ[env_var]).expanduser(), env_var
    data_dir = os.environ.get("FORECAST_DATA_DIR")
    if data_dir and (Path(data_dir).expanduser() / spec.filename).is_file():
        return Path(data_dir).expanduser() / spec.filename, "FORECAST_DATA_DIR"
    cache = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    return cache / spec.filename, "cache"


def dataset_source(
    name: str | DatasetSpec,
    data_path: str | Path | None = None,
    cache_dir: str | Path | None = None,
) -> dict[str, str]:
    """Where a dataset's file comes from, for a run's record (nothing is read or fetched).

    Returns `{"path": the local file, "from": how it was found ('data_path',
    'FORECAST_DATA_<NAME>', 'FORECAST_DATA_DIR' or 'cache'), "url": the registered URL}`.

    Args:
        name: registered dataset name, or a `DatasetSpec` of your own.
        data_path: the local copy given, as for `dataset_path`.
        cache_dir: cache folder; defaults to `default_cache_dir()`.
    """
    spec = name if isinstance(name, DatasetSpec) else get_dataset_spec(name)
    path, origin = _locate(spec, data_path, cache_dir)
    return {"path": str(path), "from": origin, "url": spec.url}


def _user_file(spec: DatasetSpec, path: Path, source: str) -> Path:
    if not path.is_file():
        raise FileNotFoundError(f"{source} points to {path}, which is not a file")
    if spec.sha256:
        actual = sha256_file(path)
        if actual != spec.sha256:
            log.warning(
                "%s (%s) has sha256 %s, but dataset %s is registered with %s; using it anyway",
                path,
                source,
                actual,
                spec.name,
                spec.sha256,
            )
    return path


def _fetch_unverified(spec: DatasetSpec, dest: Path) -> Path:
    """Fetch a dataset with no known checksum; the first hash seen is recorded beside it."""
    record = dest.with_name(dest.name + ".sha256")
    known = record.read_text().split()[0] if record.is_file() else None
    fetch(spec.url, dest, known)
    if known is None:
        actual = sha256_file(dest)
        log.warning(
            "dataset %s has no registered sha256; %s has sha256 %s (recorded in %s)",
            spec.name,
            dest,
            actual,
            record,
        )
        record.write_text(f"{actual}  {dest.name}\n")
    return dest


def load_dataset(
    name: str | DatasetSpec,
    data_path: str | Path | None = None,
    cache_dir: str | Path | None = None,
) -> tuple[pd.DataFrame, DatasetSpec]:
    """Read a registered dataset into a DataFrame, time column parsed as datetimes; the
    file actually read is in `frame.attrs["source"]`.

    Args:
        name: registered dataset name, or a `DatasetSpec` of your own.
        data_path: a local copy to use instead of the cache (see `dataset_path`).
        cache_dir: cache folder; defaults to `default_cache_dir()`.
    """
    spec = name if isinstance(name, DatasetSpec) else get_dataset_spec(name)
    path = dataset_path(spec, data_path=data_path, cache_dir=cache_dir)
    # Bytes that are not UTF-8 (e.g. a unit sign in weather.csv) become U+FFFD, not an error.
    frame = read_csv(path, encoding_errors="replace")  # one line naming a bad file
    missing = [c for c in (spec.time_column, *spec.columns) if c not in frame.columns]
    if missing:
        raise ValueError(
            f"{path} is missing the columns {missing} of dataset {spec.name}; "
            f"found {list(frame.columns)}"
        )
    try:
        frame[spec.time_column] = pd.to_datetime(frame[spec.time_column])
    except (ValueError, TypeError) as err:
        raise ValueError(
            f"{path}: time column {spec.time_column!r} of dataset {spec.name} could not be "
            f"parsed as dates: {err}"
        ) from err
    return frame, spec
