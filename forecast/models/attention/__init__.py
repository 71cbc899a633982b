"""Attention over time (Bahdanau, Luong global and local) and over input features (DA-RNN).

Every temporal attention maps a query and encoder states to `(context, weights)`:

    query [B, D] or [B, Q, D], keys [B, L, Dk], values [B, L, Dv]
        -> context [B, Dv] or [B, Q, Dv], weights [B, L] or [B, Q, L]

Rows of the weights sum to 1; positions where `mask` [B, L] is False get a score of -inf
before the softmax and so a weight of exactly 0. Key projections that do not depend on
the query (W_h h_j for Bahdanau and Luong concat, W h_j for Luong general and local) are
computed once per sequence by `prepare_keys` and reused at every decoder step through
`attend`.

Types by name (`ATTENTIONS`): 'bahdanau' (additive), the global Luong scores
'luong_dot', 'luong_general' and 'luong_concat' (v^T tanh(W [s_t; h_j])), and the local
Luong attentions 'local_m' (window centred on a fixed, monotonic position) and 'local_p'
(window centred on a predicted position, Gaussian-weighted), which give weight exactly 0
outside [p_t - D, p_t + D] (D = `window`). The local types need the decoder step of the
query: `attend(..., step=t, horizon=H)` (a [B, Q, D] query holds steps t .. t + Q - 1);
the global types ignore both.

A class's `uses_previous_state` says how a decoder uses it: True (Bahdanau) means the
query is the previous decoder state s_{t-1} and the context goes into the step's input;
False (Luong) means the query is the current state s_t after the step and
h~_t = tanh(W_c [c_t; s_t]) makes the prediction. Adding an attention type is one class
(a subclass of `base.Attention`) plus one entry in `ATTENTIONS`.

Any type can normalise its scores with softmax (default) or the sparse 'sparsemax' and
'entmax15', which give exact zeros (`normalizer=`; masking stays -inf based).

Modules: `base` (the interface, masking, the additive score), `scores` (Bahdanau and
the global Luong scores), `local` (Luong local-m and local-p), `features` (DA-RNN
input attention over features), `normalizers` (softmax, sparsemax, entmax-1.5).

>>> import torch
>>> att = create_attention("luong_dot", query_dim=4, key_dim=4)
>>> keys = torch.randn(2, 5, 4)  # [B, L, D]
>>> context, weights = att(torch.randn(2, 4), keys, keys)
>>> tuple(context.shape), tuple(weights.shape), bool(torch.allclose(weights.sum(-1), torch.ones(2)))
((2, 4), (2, 5), True)
>>> local = create_attention("local_m", query_dim=4, key_dim=4, window=1)
>>> local(torch.randn(2, 3, 4), keys, keys, step=0, horizon=3)[1][0].gt(0).int().tolist()
[[0, 1, 1, 1, 0], [0, 0, 1, 1, 1], [0, 0, 0, 1, 1]]
"""

from __future__ import annotations

from forecast.models.attention.base import Attention
from forecast.models.attention.features import InputAttention
from forecast.models.attention.local import (
    LocalAttention,
    LocalMonotonicAttention,
    LocalPredictiveAttention,
)
from forecast.models.attention.normalizers import NORMALIZERS, entmax15, sparsemax
from forecast.models.attention.scores import (
    BahdanauAttention,
    LuongConcatAttention,
    LuongDotAttention,
    LuongGeneralAttention,
)

__all__ = [
    "ATTENTIONS",
    "Attention",
    "BahdanauAttention",
    "InputAttention",
    "LocalAttention",
    "LocalMonotonicAttention",
    "LocalPredictiveAttention",
    "LuongConcatAttention",
    "LuongDotAttention",
    "LuongGeneralAttention",
    "NORMALIZERS",
    "create_attention",
    "entmax15",
    "sparsemax",
]

ATTENTIONS: dict[str, type[Attention] | None] = {
    "none": None,
    "bahdanau": BahdanauAttention,
    "luong_dot": LuongDotAttention,
    "luong_general": LuongGeneralAttention,
    "luong_concat": LuongConcatAttention,
    "local_m": LocalMonotonicAttention,
    "local_p": LocalPredictiveAttention,
}
"""Temporal attention types by name; 'none' is the plain encoder-decoder."""


def create_attention(
    name: str,
    query_dim: int,
    key_dim: int,
    *,
    attention_dim: int | None = None,
    scale: bool = True,
    window: int = 8,
    normalizer: str = "softmax",
) -> Attention | None:
    """Build the temporal attention `name` (None for 'none').

    Args:
        name: a key of `ATTENTIONS`.
        query_dim: size of the decoder state.
        key_dim: size of the encoder states.
        attention_dim: hidden size of additive attention and of local-p's position network
            (default query_dim).
        scale: 1/sqrt(d) scaling of dot-product scores.
        window: half-width D of the local types' window (ignored by the others).
        normalizer: 'softmax', 'sparsemax' or 'entmax15'.
    """
    if name not in ATTENTIONS:
        raise ValueError(f"unknown attention {name!r}; expected one of {list(ATTENTIONS)}")
    cls = ATTENTIONS[name]
    if cls is None:
        return None
    return cls(
        query_dim,
        key_dim,
        attention_dim=attention_dim,
        scale=scale,
        window=window,
        normalizer=normalizer,
    )
