"""Global temporal attentions: Bahdanau (additive) and Luong (dot, general, concat)."""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from forecast.models.attention.base import Attention, additive_score


def _scaled_dot(query: Tensor, keys_t: Tensor, scale: float) -> Tensor:
    """Scores [B, Q, L] = scale * query [B, Q, D] x keys_t [B, D, L]; the scale goes on
    the query, the smaller operand (and then the keys need no copy into a contiguous
    [B, D, L]; timings in docs/benchmarks.md)."""
    return torch.bmm(query * scale if scale != 1.0 else query, keys_t)


class BahdanauAttention(Attention):
    """Additive: score = v^T tanh(W_s s_{t-1} + W_h h_j) (Bahdanau et al., 2015)."""

    uses_previous_state = True
    key_bias: ClassVar[bool] = True

    def __init__(self, query_dim: int, key_dim: int, **options: Any) -> None:
        super().__init__(query_dim, key_dim, **options)
        A = self.attention_dim
        self.W_s = nn.Linear(query_dim, A, bias=False)
        self.W_h = nn.Linear(key_dim, A, bias=self.key_bias)
        self.v = nn.Linear(A, 1, bias=False)

    def prepare_keys(self, keys: Tensor) -> Tensor:
        # The costly half, once per sequence, doubled for `additive_score`: [B, L, A].
        return 2.0 * self.W_h(keys)

    def score(self, query: Tensor, prepared: Tensor) -> Tensor:
        query2 = 2.0 * self.W_s(query)  # [B, Q, A]
        return additive_score(self.v, query2[:, :, None, :], prepared[:, None, :, :])  # [B,Q,L]


class LuongDotAttention(Attention):
    """Multiplicative: score = s_t^T h_j (Luong et al., 2015), optionally / sqrt(D)."""

    def __init__(self, query_dim: int, key_dim: int, **options: Any) -> None:
        super().__init__(query_dim, key_dim, **options)
        if query_dim != key_dim:
            raise ValueError(
                f"luong_dot needs query_dim == key_dim, got {query_dim} and {key_dim} "
                "(a bidirectional encoder doubles the key size); use luong_general"
            )

    def prepare_keys(self, keys: Tensor) -> Tensor:
        # A [B, D, L] view; a decoder's step loop makes it contiguous once (see
        # `Decoder.forward`), while one call over all queries reads the view as it is.
        return keys.transpose(1, 2)

    def score(self, query: Tensor, prepared: Tensor) -> Tensor:
        return _scaled_dot(query, prepared, self.scale)


class LuongGeneralAttention(Attention):
    """Multiplicative: score = s_t^T W h_j (Luong et al., 2015), optionally / sqrt(D)."""

    def __init__(self, query_dim: int, key_dim: int, **options: Any) -> None:
        super().__init__(query_dim, key_dim, **options)
        self.W = nn.Linear(key_dim, query_dim, bias=False)

    def prepare_keys(self, keys: Tensor) -> Tensor:
        # s^T W h = s^T (W h): project the keys once per sequence, a [B, D, L] view
        # (see LuongDotAttention.prepare_keys).
        return self.W(keys).transpose(1, 2)

    def score(self, query: Tensor, prepared: Tensor) -> Tensor:
        return _scaled_dot(query, prepared, self.scale)

    def attend_all(
        self,
        query: Tensor,
        keys: Tensor,
        values: Tensor,
        *,
        step: int = 0,
        horizon: int | None = None,
    ) -> tuple[Tensor, Tensor]:
        # s^T W h = (s^T W) h: with fewer queries than keys (H < L) and equal sizes,
        # projecting the queries is the cheaper side (at L=96, H=24 it took ~4 % off a
        # training step); the results are the same either way.
        if query.shape[1] >= keys.shape[1]:
            return super().attend_all(query, keys, values, step=step, horizon=horizon)
        scores = _scaled_dot(query @ self.W.weight, keys.transpose(1, 2), self.scale)
        return self.attend_scores(scores, query, values, None, step, horizon)


class LuongConcatAttention(BahdanauAttention):
    """Concat: score = v^T tanh(W [s_t; h_j]) (Luong et al., 2015).

    W [s; h] = W_s s + W_h h: Bahdanau's score without the bias, with the current state
    s_t as query and the context combined after the step (Luong style).
    """

    uses_previous_state = False
    key_bias = False
