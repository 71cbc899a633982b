"""The base of the temporal attentions and the additive score they share."""

from __future__ import annotations

import math
from typing import ClassVar

import torch
from torch import Tensor, nn

from forecast.models.attention.normalizers import get_normalizer, uniform


def additive_score(v: nn.Linear, query2: Tensor, keys2: Tensor) -> Tensor:
    """v^T tanh(a + b) over the last axis, up to a constant that softmax ignores, from
    query2 = 2a and keys2 = 2b (broadcastable, e.g. [B, Q, 1, A] and [B, 1, L, A]).

    v^T tanh(z) = 2 v^T sigmoid(2z) - sum(v), and the last term is the same for every
    position, so the softmax weights are those of v^T tanh(z). It is computed that way
    because torch.tanh costs ~4x torch.sigmoid on x86 CPUs, and the doubling is done on
    the small query and once per sequence on the keys, so the large [B, Q, L, A] tensor of
    a Bahdanau decoder step is written once and activated in place (the timings are in
    docs/benchmarks.md, LSTM throughput).

    Args:
        v: the Linear(A, 1) scoring vector.
        query2: twice the query's pre-activation.
        keys2: twice the keys' pre-activation.
    """
    return 2.0 * v(torch.add(keys2, query2).sigmoid_()).squeeze(-1)


class Attention(nn.Module):
    """Base of the temporal attentions: subclasses define `score` (and `prepare_keys`).

    Args:
        query_dim: size D of the decoder state.
        key_dim: size Dk of the encoder states.
        attention_dim: hidden size of additive attention and of local-p's position
            network (ignored by the others).
        scale: multiply dot-product scores by 1/sqrt(D) (ignored by additive attention).
        window: half-width D of the local attentions' window (ignored by the others).
        normalizer: scores -> weights: 'softmax', 'sparsemax' or 'entmax15' (see
            `forecast.models.attention.normalizers`).

    Subclasses take `(query_dim, key_dim, **options)` and pass the options on; the
    settings are then `self.attention_dim`, `self.scale` (a factor), `self.window` and
    `self.normalizer` (the name; `self.normalize` is the function).
    """

    uses_previous_state: ClassVar[bool] = False
    is_temporal_attention: ClassVar[bool] = True  # `interpret.checks` may ablate it

    def __init__(
        self,
        query_dim: int,
        key_dim: int,
        *,
        attention_dim: int | None = None,
        scale: bool = True,
        window: int = 8,
        normalizer: str = "softmax",
    ) -> None:
        super().__init__()
        self.query_dim = query_dim
        self.key_dim = key_dim
        self.attention_dim = attention_dim or query_dim
        self.scale = 1.0 / math.sqrt(query_dim) if scale else 1.0
        self.window = window
        self.normalizer = normalizer
        self.normalize = get_normalizer(normalizer)
        self.uniform = False  # True: uniform weights instead (an ablation, see interpret)

    def prepare_keys(self, keys: Tensor) -> Tensor:
        """The query-independent part of the scores, computed once per sequence.

        Args:
            keys: encoder states [B, L, Dk].
        """
        return keys

    def score(self, query: Tensor, prepared: Tensor) -> Tensor:
        """Unnormalised scores [B, Q, L].

        Args:
            query: [B, Q, D].
            prepared: `prepare_keys(keys)`.
        """
        raise NotImplementedError

    def mask_scores(
        self, scores: Tensor, query: Tensor, mask: Tensor | None, step: int, horizon: int | None
    ) -> Tensor:
        """Scores with hidden positions set to -inf (the local types also hide the
        positions outside their window).

        Args:
            scores: `score(query, prepared)`, [B, Q, L].
            query: [B, Q, D].
            mask: optional [B, L] bool, True where a position may be attended.
            step: decoder step of the first query.
            horizon: number of decoder steps, if known.
        """
        if mask is None:
            return scores
        return scores.masked_fill(~mask[:, None, :], float("-inf"))

    def masked_scores(
        self, query: Tensor, prepared: Tensor, *, step: int = 0, horizon: int | None = None
    ) -> Tensor:
        """Scores [B, Q, L] of every query with the type's own masking applied (the local
        types' windows), before any normaliser: for decoders that add their own terms
        (a lag bias) and normalise themselves.

        Args:
            query: [B, Q, D], decoder steps step .. step + Q - 1.
            prepared: `prepare_keys(keys)`.
            step: decoder step of the first query.
            horizon: number of decoder steps, if known.
        """
        return self.mask_scores(self.score(query, prepared), query, None, step, horizon)

    def attend(
        self,
        query: Tensor,
        prepared: Tensor,
        values: Tensor,
        mask: Tensor | None = None,
        *,
        step: int = 0,
        horizon: int | None = None,
    ) -> tuple[Tensor, Tensor]:
        """Context and weights from already prepared keys (the per-step call).

        Args:
            query: [B, D] (one decoder step) or [B, Q, D] (all steps at once).
            prepared: `prepare_keys(keys)`.
            values: [B, L, Dv] what the context averages.
            mask: optional [B, L] bool, True where a position may be attended; every row
                needs at least one True.
            step: decoder step t of the (first) query; the queries of a [B, Q, D] query
                are steps t .. t + Q - 1. Read by the local types only.
            horizon: number of decoder steps H, when known. Read by 'local_m' only.
        """
        single = query.ndim == 2
        q = query.unsqueeze(1) if single else query  # [B, Q, D]
        context, weights = self.attend_scores(
            self.score(q, prepared), q, values, mask, step, horizon
        )
        if single:
            return context.squeeze(1), weights.squeeze(1)  # [B, Dv], [B, L]
        return context, weights

    def attend_all(
        self,
        query: Tensor,
        keys: Tensor,
        values: Tensor,
        *,
        step: int = 0,
        horizon: int | None = None,
    ) -> tuple[Tensor, Tensor]:
        """Context [B, Q, Dv] and weights [B, Q, L] of every decoder step's query at once,
        from the keys as they are (a decoder's one-call fast path); subclasses may score
        a cheaper way (Luong general).

        Args:
            query: [B, Q, D], decoder steps step .. step + Q - 1.
            keys: [B, L, Dk], not prepared.
            values: [B, L, Dv].
            step: decoder step of the first query (local types only).
            horizon: number of decoder steps (local-m only).
        """
        return self.attend(query, self.prepare_keys(keys), values, step=step, horizon=horizon)

    def attend_scores(
        self,
        scores: Tensor,
        query: Tensor,
        values: Tensor,
        mask: Tensor | None,
        step: int,
        horizon: int | None,
    ) -> tuple[Tensor, Tensor]:
        """Context [B, Q, Dv] and weights [B, Q, L] from scores [B, Q, L]: masking (see
        `mask_scores`), the normaliser, weighted average of `values`.

        Args:
            scores: `score(query, prepared)`.
            query: [B, Q, D] (the local types place their windows with it).
            values: [B, L, Dv].
            mask: optional [B, L] bool, True where a position may be attended.
            step: decoder step of the first query.
            horizon: number of decoder steps, if known.
        """
        if mask is not None:
            if mask.shape != (scores.shape[0], scores.shape[2]) or mask.dtype != torch.bool:
                raise ValueError(
                    f"mask must be a bool tensor [B, L] = {[scores.shape[0], scores.shape[2]]}, "
                    f"got {mask.dtype} {list(mask.shape)}"
                )
            if not bool(mask.any(dim=1).all()):
                raise ValueError("mask hides every position of some row; expected >= 1 True")
        scores = self.mask_scores(scores, query, mask, step, horizon)
        weights = uniform(scores) if self.uniform else self.normalize(scores)  # [B, Q, L]
        return torch.bmm(weights, values), weights  # [B, Q, Dv], [B, Q, L]

    def forward(
        self,
        query: Tensor,
        keys: Tensor,
        values: Tensor,
        mask: Tensor | None = None,
        *,
        step: int = 0,
        horizon: int | None = None,
    ) -> tuple[Tensor, Tensor]:
        """`(context, weights)` for a query over keys/values; see `attend` for shapes.

        Args:
            query: [B, D] or [B, Q, D].
            keys: [B, L, Dk].
            values: [B, L, Dv].
            mask: optional [B, L] bool, True where a position may be attended.
            step: decoder step of the (first) query (local types only).
            horizon: number of decoder steps (local-m only).
        """
        return self.attend(query, self.prepare_keys(keys), values, mask, step=step, horizon=horizon)
