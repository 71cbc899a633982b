"""Ridge regression with an unpenalised intercept, accumulated over chunks of rows.

The solution is scikit-learn's `Ridge(alpha)` (centred normal equations), but the design
matrix is never held whole: memory stays O(features^2 + features * outputs) whatever the
number of windows (a track-M fit on weather, 36k windows x 7.6k features, needs 0.5 GB
instead of several copies of a 2 GB matrix).

>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> x = rng.normal(size=(500, 4)); y = x @ [[1.0], [2.0], [0.0], [-1.0]] + 3.0
>>> acc = RidgeAccumulator()
>>> acc.add(x[:200], y[:200]); acc.add(x[200:], y[200:])
>>> coef, intercept = acc.solve(alpha=1e-9)
>>> np.round(coef, 6).tolist(), np.round(intercept, 6).tolist()
([[1.0, 2.0, 0.0, -1.0]], [3.0])
"""

from __future__ import annotations

import numpy as np
import scipy.linalg


class RidgeAccumulator:
    """Sums of a regression's rows, added chunk by chunk; `solve` gives the ridge fit.

    Rows are shifted by the first chunk's means before they are summed, so the centred
    Gram matrix stays accurate when the columns' means are far from zero.
    """

    def __init__(self) -> None:
        self.n = 0
        self._shift_x: np.ndarray | None = None
        self._shift_y: np.ndarray | None = None

    def add(self, x: np.ndarray, y: np.ndarray) -> None:
        """Add rows `x` [n, features] with targets `y` [n, outputs] (float64 internally).

        Args:
            x: features of the rows.
            y: targets of the rows.
        """
        x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
        if x.ndim != 2 or y.ndim != 2 or len(x) != len(y):
            raise ValueError(f"ridge rows need x [n, p] and y [n, q]; got {x.shape}, {y.shape}")
        if len(x) == 0:
            return
        if self._shift_x is None:
            self._shift_x, self._shift_y = x.mean(0), y.mean(0)
            p, q = x.shape[1], y.shape[1]
            self._sx, self._sy = np.zeros(p), np.zeros(q)
            self._xx, self._xy = np.zeros((p, p)), np.zeros((p, q))
        x, y = x - self._shift_x, y - self._shift_y
        self.n += len(x)
        self._sx += x.sum(0)
        self._sy += y.sum(0)
        self._xx += x.T @ x
        self._xy += x.T @ y

    def solve(self, alpha: float) -> tuple[np.ndarray, np.ndarray]:
        """Coefficients [outputs, features] and intercepts [outputs] of the ridge fit.

        Args:
            alpha: the penalty on the coefficients (not on the intercept).
        """
        if self._shift_x is None or self.n == 0:
            raise ValueError("ridge regression needs at least one row")
        mx, my = self._sx / self.n, self._sy / self.n
        gram = self._xx - self.n * np.outer(mx, mx)
        gram[np.diag_indices_from(gram)] += alpha
        cross = self._xy - self.n * np.outer(mx, my)
        try:
            w = scipy.linalg.cho_solve(scipy.linalg.cho_factor(gram), cross)
        except np.linalg.LinAlgError:  # alpha 0 and collinear columns: least squares
            w = np.linalg.lstsq(gram, cross, rcond=None)[0]
        coef = w.T
        intercept = (my + self._shift_y) - coef @ (mx + self._shift_x)
        return coef, intercept
