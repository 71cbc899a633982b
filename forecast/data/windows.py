"""The one place windows are sliced.

A `WindowDataset` holds a reference to the (scaled) series array and the window start
rows. Nothing is copied per window: `torch.Tensor.unfold` gives a strided view of every
window, and a batch is one gather over that view. The start rows are an array (one int64
per window, plus the series of each window) or, as `prepare_data` builds them, runs:
per series the first start, the count and the stride, from which a batch's start rows
are computed (`WindowDataset.from_runs`). Memory is then the series plus a few numbers
per series, never series length x input length, nor one number per window: what keeps a
panel of many short, narrow series within 2x its raw array (`bench/panel.py`).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

Batch = dict[str, Tensor]


@dataclass(frozen=True)
class WindowLayout:
    """Shapes and column roles of the windows; what a model needs to size itself.

    Args:
        input_length: encoder length L.
        horizon: forecast length H.
        targets: target column names.
        past_covariates: past-only covariate names (encoder input).
        known_covariates: known-future covariate names (encoder and decoder input).
        freq: pandas frequency of the series.
        period: seasonal period in rows.
    """

    input_length: int
    horizon: int
    targets: tuple[str, ...]
    past_covariates: tuple[str, ...] = ()
    known_covariates: tuple[str, ...] = ()
    freq: str = "h"
    period: int = 1

    @property
    def n_targets(self) -> int:
        return len(self.targets)

    @property
    def n_past(self) -> int:
        return len(self.past_covariates)

    @property
    def n_known(self) -> int:
        return len(self.known_covariates)

    @property
    def encoder_features(self) -> tuple[str, ...]:
        """Names of the encoder input columns, in `encoder_input` order."""
        return self.targets + self.past_covariates + self.known_covariates


def permutation(n: int, generator: torch.Generator | None = None) -> Tensor:
    """A random order of `n` window positions: the values of `torch.randperm(n)`, stored
    as int32 when they fit (half the memory of an epoch's shuffle over many windows).

    Args:
        n: number of positions.
        generator: torch random generator.
    """
    dtype = torch.int32 if n < 2**31 else torch.int64
    return torch.randperm(n, generator=generator, dtype=dtype)


class WindowDataset(torch.utils.data.Dataset):
    """Windows over a series array: `{past_target, past_covariates, past_known,
    future_known, future_target, series_index, origin}`.

    Args:
        data: [T, C] float32 tensor, columns ordered targets, past covariates, known.
        starts: first input row of each window.
        layout: lengths and column roles.
        series_index: series of each window (for inverse scaling and results).
    """

    def __init__(
        self, data: Tensor, starts: np.ndarray, layout: WindowLayout, series_index: np.ndarray
    ) -> None:
        self._setup(data, layout)
        self._starts: np.ndarray | None = np.asarray(starts, dtype=np.int64)
        self._series: np.ndarray | None = np.asarray(series_index)  # int32, or zero-stride
        self._runs: tuple[np.ndarray, np.ndarray, int, np.ndarray] | None = None
        if len(self._starts):
            self._check_range(int(self._starts.min()), int(self._starts.max()))

    @classmethod
    def from_runs(
        cls,
        data: Tensor,
        firsts: np.ndarray,
        counts: np.ndarray,
        stride: int,
        layout: WindowLayout,
        series: np.ndarray,
    ) -> WindowDataset:
        """Windows given as runs: run r holds `counts[r]` windows starting at `firsts[r]`,
        `firsts[r] + stride`, ..., all of series `series[r]`; positions count run by run.
        Holds O(runs) numbers; `starts` and `series_index` are computed when first asked.

        Args:
            data: [T, C] float32 tensor, columns ordered targets, past covariates, known.
            firsts: [R] first start row of each run.
            counts: [R] windows in each run (0 allowed).
            stride: rows between consecutive windows of a run.
            layout: lengths and column roles.
            series: [R] series of each run.

        >>> lay = WindowLayout(2, 1, ("y",))
        >>> ds = WindowDataset.from_runs(torch.zeros(10, 1), np.array([0, 5]),
        ...                              np.array([2, 3]), 1, lay, np.array([0, 1]))
        >>> ds.starts.tolist(), ds.series_index.tolist()
        ([0, 1, 5, 6, 7], [0, 0, 1, 1, 1])
        """
        self = cls.__new__(cls)
        self._setup(data, layout)
        keep = np.asarray(counts) > 0
        firsts = np.asarray(firsts, dtype=np.int64)[keep]
        counts = np.asarray(counts, dtype=np.int64)[keep]
        offsets = np.zeros(len(counts) + 1, dtype=np.int64)
        np.cumsum(counts, out=offsets[1:])
        self._runs = (firsts, offsets, int(stride), np.asarray(series, dtype=np.int32)[keep])
        self._starts = self._series = None
        if len(firsts):
            self._check_range(int(firsts.min()), int((firsts + (counts - 1) * stride).max()))
        return self

    def _setup(self, data: Tensor, layout: WindowLayout) -> None:
        n_cols = layout.n_targets + layout.n_past + layout.n_known
        if data.ndim != 2 or data.shape[1] != n_cols:
            raise ValueError(f"data must be [T, {n_cols}] for this layout, got {tuple(data.shape)}")
        span = layout.input_length + layout.horizon
        self.data = data
        self.layout = layout
        # [T - span + 1, C, span]: a strided view, no copy.
        self._windows = data.unfold(0, span, 1) if len(data) >= span else None

    def _check_range(self, lowest: int, highest: int) -> None:
        span = self.layout.input_length + self.layout.horizon
        if lowest < 0 or highest + span > len(self.data):
            raise ValueError(f"window starts out of range for a series of {len(self.data)} rows")

    def _locate(self, idx: np.ndarray | Tensor) -> tuple[np.ndarray, np.ndarray]:
        """(start rows, series) of the windows at positions `idx` (or a boolean mask)."""
        idx = np.asarray(idx)
        idx = np.flatnonzero(idx) if idx.dtype == bool else idx.astype(np.int64, copy=False)
        if self._runs is None:
            return self._starts[idx], self._series[idx]
        firsts, offsets, stride, series = self._runs
        run = np.searchsorted(offsets, idx, side="right") - 1  # [n] run of each position
        return firsts[run] + (idx - offsets[run]) * stride, series[run]

    @property
    def starts(self) -> np.ndarray:
        """[N] first input row of each window (int64)."""
        if self._starts is None:
            self._starts = self._locate(np.arange(len(self)))[0]
        return self._starts

    @property
    def series_index(self) -> np.ndarray:
        """[N] series of each window (int32; a zero-stride view for one series)."""
        if self._series is None:
            series = self._runs[3]
            if len(np.unique(series)) <= 1:
                value = np.int32(series[0] if len(series) else 0)
                self._series = np.broadcast_to(value, (len(self),))
            else:
                self._series = self._locate(np.arange(len(self)))[1]
        return self._series

    def __len__(self) -> int:
        return len(self._starts) if self._runs is None else int(self._runs[1][-1])

    def index_bytes(self) -> int:
        """Bytes this dataset holds besides the shared data: the runs, or the start and
        series arrays (including any materialised by `starts` / `series_index`)."""
        held = [a for a in (self._starts, self._series) if a is not None]
        held += [a for a in (self._runs or ()) if isinstance(a, np.ndarray)]
        return sum(a.nbytes if a.strides != (0,) else a.itemsize for a in held)

    def __getitem__(self, i: int) -> Batch:
        batch = self.batch(np.array([i]))
        return {k: v[0] for k, v in batch.items()}

    def batch(self, idx: np.ndarray | Tensor) -> Batch:
        """Gather the windows `idx` (positions in this dataset) into one batch."""
        starts_np, series_np = self._locate(idx)
        starts = torch.from_numpy(np.ascontiguousarray(starts_np))
        lay = self.layout
        w = self._windows[starts].transpose(1, 2)  # [B, L + H, C]
        L, nt, npast = lay.input_length, lay.n_targets, lay.n_past
        known = w[:, :, nt + npast :]
        return {
            "past_target": w[:, :L, :nt],  # [B, L, targets]
            "past_covariates": w[:, :L, nt : nt + npast],  # [B, L, past]
            "past_known": known[:, :L],  # [B, L, known]
            "future_known": known[:, L:],  # [B, H, known]
            "future_target": w[:, L:, :nt],  # [B, H, targets]
            "series_index": torch.from_numpy(series_np.astype(np.int64)),  # [B]
            "origin": starts + (L - 1),  # [B] row of the last input step
        }

    def iter_batches(
        self,
        batch_size: int,
        *,
        shuffle: bool = False,
        generator: torch.Generator | None = None,
        drop_last: bool = False,
    ) -> Iterator[Batch]:
        """Yield batches of windows; every window once per pass unless `drop_last`.

        Args:
            batch_size: windows per batch.
            shuffle: random order (drawn from `generator`, so seeds reproduce).
            generator: torch random generator.
            drop_last: drop a final smaller batch (training only; never for evaluation).
        """
        if batch_size <= 0:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        n = len(self)
        order = permutation(n, generator) if shuffle else torch.arange(n)
        stop = n - n % batch_size if drop_last and n >= batch_size else n
        for lo in range(0, stop, batch_size):
            yield self.batch(order[lo : min(lo + batch_size, stop)])

    def subset(self, idx: np.ndarray) -> WindowDataset:
        """A dataset of some of these windows, sharing the same data."""
        starts, series = self._locate(idx)
        return WindowDataset(self.data, starts, self.layout, series)

    def origin_rows(self) -> np.ndarray:
        """[N] global row index of each window's forecast origin (its last input row), as
        the batches' `origin`; index `frame.timestamps` with it for origin times."""
        return self.starts + (self.layout.input_length - 1)

    def target_rows(self) -> np.ndarray:
        """[N, H] global row index of every forecast target (for timestamps)."""
        return self.origin_rows()[:, None] + np.arange(1, self.layout.horizon + 1)[None, :]
