"""The one place windows are sliced.

A `WindowDataset` holds a reference to the (scaled) series array and an array of window
start rows. Nothing is copied per window: `torch.Tensor.unfold` gives a strided view of
every window, and a batch is one gather over that view. Memory is the series plus one
int64 per window, never series length x input length.
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
        n_cols = layout.n_targets + layout.n_past + layout.n_known
        if data.ndim != 2 or data.shape[1] != n_cols:
            raise ValueError(f"data must be [T, {n_cols}] for this layout, got {tuple(data.shape)}")
        span = layout.input_length + layout.horizon
        if len(starts) and (starts.min() < 0 or starts.max() + span > len(data)):
            raise ValueError(f"window starts out of range for a series of {len(data)} rows")
        self.data = data
        self.starts = np.asarray(starts, dtype=np.int64)
        self.series_index = np.asarray(series_index)  # int32, or a zero-stride view
        self.layout = layout
        # [T - span + 1, C, span]: a strided view, no copy.
        self._windows = data.unfold(0, span, 1) if len(data) >= span else None

    def __len__(self) -> int:
        return len(self.starts)

    def __getitem__(self, i: int) -> Batch:
        batch = self.batch(np.array([i]))
        return {k: v[0] for k, v in batch.items()}

    def batch(self, idx: np.ndarray | Tensor) -> Batch:
        """Gather the windows `idx` (positions in this dataset) into one batch."""
        idx_np = np.asarray(idx, dtype=np.int64)
        idx = torch.from_numpy(idx_np)
        starts = torch.from_numpy(self.starts)[idx]
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
            "series_index": torch.from_numpy(self.series_index[idx_np].astype(np.int64)),  # [B]
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
        order = torch.randperm(n, generator=generator) if shuffle else torch.arange(n)
        stop = n - n % batch_size if drop_last and n >= batch_size else n
        for lo in range(0, stop, batch_size):
            yield self.batch(order[lo : min(lo + batch_size, stop)])

    def subset(self, idx: np.ndarray) -> WindowDataset:
        """A dataset of some of these windows, sharing the same data."""
        return WindowDataset(self.data, self.starts[idx], self.layout, self.series_index[idx])

    def origin_rows(self) -> np.ndarray:
        """[N] global row index of each window's forecast origin (its last input row), as
        the batches' `origin`; index `frame.timestamps` with it for origin times."""
        return self.starts + (self.layout.input_length - 1)

    def target_rows(self) -> np.ndarray:
        """[N, H] global row index of every forecast target (for timestamps)."""
        return self.origin_rows()[:, None] + np.arange(1, self.layout.horizon + 1)[None, :]
