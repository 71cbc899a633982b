"""Luong local attention: a window of 2D + 1 encoder steps around an aligned position."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from forecast.models.attention.scores import LuongGeneralAttention


class LocalAttention(LuongGeneralAttention):
    """Luong local attention (Luong et al., 2015): general scores s_t^T W h_j, softmax
    over the window [p_t - D, p_t + D] only; every other position gets weight exactly 0.

    Subclasses define the centre p_t (`positions`). A user mask is combined with the
    window; if they share no position for some query (possible only with a mask), that
    query falls back to every unmasked position (with local-p's Gaussian still applied),
    rather than producing NaN. The centres of the last call are kept, detached, in
    `last_positions` [B, Q] (Q = 1 for a [B, D] query) for tests and plots.

    Args:
        window: the half-width D >= 1, in encoder steps.
    """

    def __init__(self, query_dim: int, key_dim: int, **options: Any) -> None:
        super().__init__(query_dim, key_dim, **options)
        if self.window < 1:
            raise ValueError(f"local attention needs window >= 1, got {self.window}")
        self.last_positions: Tensor | None = None

    def positions(
        self, query: Tensor, length: int, *, step: int = 0, horizon: int | None = None
    ) -> Tensor:
        """Window centres p_t [B, Q] in [0, length - 1], as floats.

        Args:
            query: [B, Q, D], decoder steps step .. step + Q - 1.
            length: S, the number of encoder positions.
            step: decoder step of the first query.
            horizon: number of decoder steps, if known.
        """
        raise NotImplementedError

    def position_bias(self, distance: Tensor) -> Tensor | None:
        """A term added to the scores from j - p_t [B, Q, L] (None: no term)."""
        return None

    def mask_scores(
        self, scores: Tensor, query: Tensor, mask: Tensor | None, step: int, horizon: int | None
    ) -> Tensor:
        if step < 0:
            raise ValueError(f"step must be >= 0, got {step}")
        S = scores.shape[-1]
        p = self.positions(query, S, step=step, horizon=horizon)  # [B, Q]
        self.last_positions = p.detach()
        j = torch.arange(S, device=scores.device, dtype=p.dtype)
        distance = j - p[..., None]  # [B, Q, L]
        allowed = distance.abs() <= self.window
        if mask is not None:
            inside = allowed & mask[:, None, :]
            empty = ~inside.any(dim=-1, keepdim=True)  # [B, Q, 1]: window fully masked
            allowed = torch.where(empty, mask[:, None, :], inside)
        bias = self.position_bias(distance)
        if bias is not None:
            scores = scores + bias
        return scores.masked_fill(~allowed, float("-inf"))


class LocalMonotonicAttention(LocalAttention):
    """Local-m: the window centre is fixed by the decoder step, p_t = S - H + t.

    Luong et al. set p_t = t, assuming source and target roughly aligned. A forecast has
    no such alignment, so the step t of an H-step horizon (time S + t) is aligned with the
    same step of the last H inputs (time S - H + t): every step's window is centred one
    horizon back, the same lag H for all t, and the windows move one input step per
    decoder step, monotonically, ending on the most recent input. With S == H this is
    Luong's p_t = t, as it is without `horizon` (H = S is assumed then). Rejected
    alternative: stretching [0, H) onto [0, S - 1] (p_t = t (S - 1) / (H - 1)) also
    reduces to p_t = t for S == H, but moves the window (S - 1) / (H - 1) inputs per
    step and points the first forecast step, the one nearest the inputs, at the oldest
    input. Caveat: centres before the input (H > S) are clamped to 0, so with a horizon
    longer than the input the first H - S steps share the window at the start; a period
    lag is not modelled (use local-p to learn where to look).
    """

    def positions(
        self, query: Tensor, length: int, *, step: int = 0, horizon: int | None = None
    ) -> Tensor:
        B, Q = query.shape[0], query.shape[1]
        H = length if horizon is None else horizon
        if H < 1 or step + Q > H:
            raise ValueError(
                f"decoder steps {step}..{step + Q - 1} do not fit a horizon of {H} steps"
            )
        t = torch.arange(step, step + Q, device=query.device, dtype=query.dtype)
        return (t + (length - H)).clamp(0, length - 1).expand(B, Q)


class LocalPredictiveAttention(LocalAttention):
    """Local-p: the window centre is predicted from the state,
    p_t = (S - 1) sigmoid(v_p^T tanh(W_p s_t)), and the windowed weights are multiplied by
    the Gaussian exp(-(j - p_t)^2 / (2 sigma^2)), sigma = D / 2, then renormalised to sum
    to 1, i.e. softmax over the window of score_j - (j - p_t)^2 / (2 sigma^2).

    Luong et al. write p_t = S sigmoid(...) for positions 1..S; with 0-based positions
    (S - 1) sigmoid(...) covers exactly [0, S - 1] with no clamp, so the gradient to W_p
    and v_p (through the Gaussian) never vanishes at the ends. The renormalisation (not in
    the paper, whose weights sum to less than 1) keeps every row a distribution, as the
    plots and the other types assume.
    """

    def __init__(self, query_dim: int, key_dim: int, **options: Any) -> None:
        super().__init__(query_dim, key_dim, **options)
        A = self.attention_dim
        self.W_p = nn.Linear(query_dim, A, bias=False)
        self.v_p = nn.Linear(A, 1, bias=False)
        self.sigma = self.window / 2.0

    def positions(
        self, query: Tensor, length: int, *, step: int = 0, horizon: int | None = None
    ) -> Tensor:
        return (length - 1) * torch.sigmoid(self.v_p(torch.tanh(self.W_p(query)))).squeeze(-1)

    def position_bias(self, distance: Tensor) -> Tensor:
        return distance.square() / (-2.0 * self.sigma**2)  # log of the Gaussian
