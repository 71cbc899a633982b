"""Transformer building blocks written out by hand, so attention weights come back per head.

`nn.MultiheadAttention` averages heads by default; here every attention returns
`(context, weights)` with weights per head, `[B, nh, Tq, Tk]`, rows summing to 1. They
are computed whenever asked for (`need_weights=True`, the default); without them the
fused kernel saves the memory of the [B, nh, Tq, Tk] scores (prediction at L = 336).
Layers are pre-norm (LayerNorm before each sub-layer, as in nanoGPT): it trains without
a learning-rate warm-up, which matters for short CPU runs.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from forecast.models.attention.normalizers import uniform

KVCache = dict[str, Tensor]


def sinusoidal_encoding(n_positions: int, d_model: int) -> Tensor:
    """The fixed positional encoding of Vaswani et al. (2017), `[n_positions, d_model]`.

    PE(pos, 2i) = sin(pos / 10000^(2i/d)), PE(pos, 2i+1) = cos(pos / 10000^(2i/d)).

    Args:
        n_positions: number of positions (rows).
        d_model: embedding width; an odd width drops the last cosine column.

    >>> pe = sinusoidal_encoding(3, 4)
    >>> pe.shape, float(pe[0, 0]), float(pe[0, 1])
    (torch.Size([3, 4]), 0.0, 1.0)
    """
    if n_positions < 1 or d_model < 1:
        raise ValueError(
            f"sinusoidal_encoding needs n_positions >= 1 and d_model >= 1, "
            f"got {n_positions} and {d_model}"
        )
    pos = torch.arange(n_positions, dtype=torch.float64)[:, None]  # [P, 1]
    two_i = torch.arange(0, d_model, 2, dtype=torch.float64)  # [ceil(d/2)]
    angle = pos / 10000.0 ** (two_i / d_model)  # [P, ceil(d/2)]
    pe = torch.zeros(n_positions, d_model, dtype=torch.float64)
    pe[:, 0::2] = torch.sin(angle)
    pe[:, 1::2] = torch.cos(angle[:, : d_model // 2])
    return pe.float()


def causal_mask(size: int, device: torch.device | None = None) -> Tensor:
    """`[size, size]` bool, True above the diagonal: step i may not look at steps j > i."""
    return torch.ones(size, size, dtype=torch.bool, device=device).triu(1)


class MultiHeadAttention(nn.Module):
    """Multi-head scaled dot-product attention, softmax(QK^T / sqrt(d_k)) V, per head.

    Args:
        d_model: model width D.
        n_heads: number of heads nh; D must be divisible by nh.
        dropout: dropout on the attention weights (the returned weights are pre-dropout).
    """

    def __init__(self, d_model: int, n_heads: int, dropout: float = 0.0) -> None:
        super().__init__()
        if d_model % n_heads != 0:
            raise ValueError(
                f"d_model must be divisible by n_heads, got d_model={d_model}, n_heads={n_heads}"
            )
        self.n_heads = n_heads
        self.head_size = d_model // n_heads
        self.q_proj = nn.Linear(d_model, d_model)
        self.k_proj = nn.Linear(d_model, d_model)
        self.v_proj = nn.Linear(d_model, d_model)
        self.out_proj = nn.Linear(d_model, d_model)
        self.dropout = nn.Dropout(dropout)
        self.is_temporal_attention = False  # True on cross-attention (decoder -> encoder)
        self.uniform = False  # True: uniform weights instead (an ablation, see interpret)

    def _split(self, x: Tensor) -> Tensor:
        B, T, D = x.shape
        return x.view(B, T, self.n_heads, self.head_size).transpose(1, 2)  # [B, nh, T, hs]

    def forward(
        self,
        query: Tensor,
        key: Tensor,
        value: Tensor,
        mask: Tensor | None = None,
        cache: KVCache | None = None,
        static_kv: bool = False,
        need_weights: bool = True,
    ) -> tuple[Tensor, Tensor | None]:
        """Attend from `query` [B, Tq, D] to `key`/`value` [B, Tk, D].

        Args:
            query: queries.
            key: keys (ignored when a static cache is already filled).
            value: values (same).
            mask: bool [Tq, Tk], True where attention is forbidden (score set to -inf).
            cache: incremental decoding state, filled in place: keys/values of earlier
                steps are appended to (self-attention) or computed once (cross-attention).
            static_kv: the keys/values never change between steps (cross-attention).
            need_weights: return the weights; False returns None instead and, where no
                dropout or ablation needs the weights, uses torch's fused attention,
                which never holds the [B, nh, Tq, Tk] scores in memory.

        Returns:
            context [B, Tq, D] and weights [B, nh, Tq, Tk] (None unless `need_weights`).
        """
        q = self._split(self.q_proj(query))  # [B, nh, Tq, hs]
        if cache is not None and static_kv and "k" in cache:
            k, v = cache["k"], cache["v"]  # [B, nh, Tk, hs] projected once per forecast
        else:
            k = self._split(self.k_proj(key))  # [B, nh, Tk, hs]
            v = self._split(self.v_proj(value))  # [B, nh, Tk, hs]
            if cache is not None:
                if not static_kv and "k" in cache:
                    # Earlier steps' keys/values: a new step only needs its own projection.
                    k = torch.cat([cache["k"], k], dim=2)  # [B, nh, t, hs]
                    v = torch.cat([cache["v"], v], dim=2)
                cache["k"], cache["v"] = k, v
        fused = not (need_weights or self.uniform or (self.training and self.dropout.p > 0))
        if fused:
            allowed = None if mask is None else ~mask  # SDPA: True where attention is allowed
            context = F.scaled_dot_product_attention(q, k, v, attn_mask=allowed)  # [B,nh,Tq,hs]
            return self.out_proj(self._merge(context)), None
        scores = q @ k.transpose(-2, -1) / math.sqrt(self.head_size)  # [B, nh, Tq, Tk]
        if mask is not None:
            scores = scores.masked_fill(mask, float("-inf"))
        weights = uniform(scores) if self.uniform else F.softmax(scores, dim=-1)  # [B,nh,Tq,Tk]
        context = self.dropout(weights) @ v  # [B, nh, Tq, hs]
        return self.out_proj(self._merge(context)), weights if need_weights else None

    @staticmethod
    def _merge(context: Tensor) -> Tensor:
        B, nh, Tq, hs = context.shape
        return context.transpose(1, 2).reshape(B, Tq, nh * hs)  # [B, Tq, D]


class FeedForward(nn.Module):
    """Position-wise MLP: Linear -> GELU -> dropout -> Linear."""

    def __init__(self, d_model: int, d_ff: int, dropout: float) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(d_model, d_ff), nn.GELU(), nn.Dropout(dropout), nn.Linear(d_ff, d_model)
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


class EncoderLayer(nn.Module):
    """Pre-norm self-attention + feed-forward, each with a residual connection.

    Args:
        d_model: width D.
        n_heads: heads.
        d_ff: feed-forward width.
        dropout: dropout on each residual branch (and on the attention weights unless
            `attention_dropout` is given).
        attention_dropout: dropout on the attention weights; None: `dropout`.
    """

    def __init__(
        self,
        d_model: int,
        n_heads: int,
        d_ff: int,
        dropout: float,
        attention_dropout: float | None = None,
    ) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(d_model)
        attn_p = dropout if attention_dropout is None else attention_dropout
        self.attn = MultiHeadAttention(d_model, n_heads, attn_p)
        self.norm2 = nn.LayerNorm(d_model)
        self.ff = FeedForward(d_model, d_ff, dropout)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor, need_weights: bool = True) -> tuple[Tensor, Tensor | None]:
        """x [B, L, D] -> (x [B, L, D], self-attention weights [B, nh, L, L] or None)."""
        h = self.norm1(x)
        context, weights = self.attn(h, h, h, need_weights=need_weights)
        x = x + self.dropout(context)
        x = x + self.dropout(self.ff(self.norm2(x)))
        return x, weights


class DecoderLayer(nn.Module):
    """Pre-norm masked self-attention, cross-attention to the encoder, feed-forward.

    Args:
        d_model: width D.
        n_heads: heads.
        d_ff: feed-forward width.
        dropout: dropout on each residual branch (and on the attention weights unless
            `attention_dropout` is given).
        attention_dropout: dropout on the attention weights; None: `dropout`.
    """

    def __init__(
        self,
        d_model: int,
        n_heads: int,
        d_ff: int,
        dropout: float,
        attention_dropout: float | None = None,
    ) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(d_model)
        attn_p = dropout if attention_dropout is None else attention_dropout
        self.self_attn = MultiHeadAttention(d_model, n_heads, attn_p)
        self.norm2 = nn.LayerNorm(d_model)
        self.cross_attn = MultiHeadAttention(d_model, n_heads, attn_p)
        self.cross_attn.is_temporal_attention = True
        self.norm3 = nn.LayerNorm(d_model)
        self.ff = FeedForward(d_model, d_ff, dropout)
        self.dropout = nn.Dropout(dropout)

    def forward(
        self,
        x: Tensor,
        memory: Tensor,
        self_mask: Tensor | None = None,
        cache: dict[str, KVCache] | None = None,
        need_weights: bool = True,
    ) -> tuple[Tensor, Tensor | None, Tensor | None]:
        """Decode steps `x` [B, Tq, D] against the encoder output `memory` [B, L, D].

        Args:
            x: decoder states, all H steps (parallel) or the newest step (incremental).
            memory: encoder output.
            self_mask: causal mask [Tq, Tq] for the parallel pass; None when decoding one
                step at a time (the cache then holds only earlier steps).
            cache: {'self': ..., 'cross': ...} incremental-decoding state, or None.
            need_weights: return the attention weights (None each otherwise).

        Returns:
            x [B, Tq, D], self-attention [B, nh, Tq, Tk_self], cross-attention [B, nh, Tq, L].
        """
        h = self.norm1(x)
        self_cache = cache["self"] if cache is not None else None
        context, self_w = self.self_attn(
            h, h, h, mask=self_mask, cache=self_cache, need_weights=need_weights
        )
        x = x + self.dropout(context)
        h = self.norm2(x)
        cross_cache = cache["cross"] if cache is not None else None
        context, cross_w = self.cross_attn(
            h, memory, memory, cache=cross_cache, static_kv=True, need_weights=need_weights
        )
        x = x + self.dropout(context)
        x = x + self.dropout(self.ff(self.norm3(x)))
        return x, self_w, cross_w
