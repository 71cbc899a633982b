"""Per-column z-score scaling fitted on training rows only."""

from __future__ import annotations

import logging

import numpy as np

log = logging.getLogger(__name__)
SCALINGS = ("per_series", "global", "none")


class StandardScaler:
    """z-score per column (population std, as scikit-learn), per series or global.

    Statistics are float64 and computed only from the rows handed to `fit`.

    Args:
        mode: 'per_series' (one mean/std per series and column), 'global' (one per
            column over all series' training rows) or 'none' (identity).

    >>> import numpy as np
    >>> s = StandardScaler("global").fit([np.array([[1.0], [3.0]])])
    >>> s.mean_.tolist(), s.std_.tolist()
    ([[2.0]], [[1.0]])
    """

    def __init__(self, mode: str = "per_series") -> None:
        if mode not in SCALINGS:
            raise ValueError(f"unknown scaling {mode!r}; expected one of {list(SCALINGS)}")
        self.mode = mode
        self.mean_: np.ndarray | None = None  # [S or 1, C]
        self.std_: np.ndarray | None = None

    def fit(
        self, train_blocks: list[np.ndarray], columns: list[str] | None = None
    ) -> StandardScaler:
        """Fit from each series' training rows.

        Args:
            train_blocks: one [T_s, C] array per series (training rows only).
            columns: column names, for the warning about constant columns.
        """
        n_cols = train_blocks[0].shape[1]
        if self.mode == "none":
            self.mean_, self.std_ = np.zeros((1, n_cols)), np.ones((1, n_cols))
            return self
        groups = [train_blocks] if self.mode == "global" else [[b] for b in train_blocks]
        means, stds = [], []
        for blocks in groups:
            count = sum(len(b) for b in blocks)
            if count == 0:
                raise ValueError("cannot fit the scaler: a series has no training rows")
            # Two passes in float64, block by block: exact and no full float64 copy.
            mean = sum(b.sum(axis=0, dtype=np.float64) for b in blocks) / count
            var = sum(_chunked_sq_dev(b, mean) for b in blocks) / count
            std = np.sqrt(var)
            if (std == 0).any():
                names = [columns[i] if columns else i for i in np.flatnonzero(std == 0)]
                log.warning("column(s) %s are constant on the training rows; std set to 1", names)
                std = np.where(std == 0, 1.0, std)
            means.append(mean)
            stds.append(std)
        self.mean_, self.std_ = np.stack(means), np.stack(stds)
        return self

    def _stats(self, series: int | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if self.mean_ is None or self.std_ is None:
            raise RuntimeError("the scaler is not fitted yet; call fit first")
        idx = 0 if len(self.mean_) == 1 else series
        return self.mean_[idx], self.std_[idx]

    def transform_(self, values: np.ndarray, series: int, chunk: int = 1 << 20) -> None:
        """Scale `values` [T, C] of one series in place (no full-size temporary)."""
        mean, std = self._stats(series)
        mean32, inv32 = mean.astype(np.float32), (1.0 / std).astype(np.float32)
        for start in range(0, len(values), chunk):
            block = values[start : start + chunk]
            block -= mean32
            block *= inv32

    def inverse(self, y: np.ndarray, series: np.ndarray, columns: slice | list[int]) -> np.ndarray:
        """Back to original units, in float64.

        Args:
            y: scaled values [N, ..., len(columns)].
            series: series index of each of the N rows.
            columns: which fitted columns `y`'s last axis holds.
        """
        mean, std = self._stats(np.asarray(series))
        mean, std = np.atleast_2d(mean)[:, columns], np.atleast_2d(std)[:, columns]
        shape = (len(mean),) + (1,) * (y.ndim - 2) + (mean.shape[-1],)
        return y.astype(np.float64) * std.reshape(shape) + mean.reshape(shape)

    def state_dict(self) -> dict[str, object]:
        """Plain data for checkpoints (loads with torch.load(weights_only=True))."""
        return {"mode": self.mode, "mean": self.mean_.tolist(), "std": self.std_.tolist()}

    @classmethod
    def from_state_dict(cls, state: dict[str, object]) -> StandardScaler:
        """Rebuild a fitted scaler from `state_dict()`."""
        scaler = cls(str(state["mode"]))
        scaler.mean_ = np.asarray(state["mean"], dtype=np.float64)
        scaler.std_ = np.asarray(state["std"], dtype=np.float64)
        return scaler


def _chunked_sq_dev(block: np.ndarray, mean: np.ndarray, chunk: int = 1 << 16) -> np.ndarray:
    total = np.zeros_like(mean)
    for start in range(0, len(block), chunk):
        dev = block[start : start + chunk].astype(np.float64) - mean
        total += np.einsum("ij,ij->j", dev, dev)
    return total
