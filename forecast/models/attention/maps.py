"""Reduce per-layer, per-head attention maps (a transformer's `extras`) to [B, H, L].

Data in, data out: interpretation reads these maps from any model's `ForecastOutput`
without importing the model that made them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor

from forecast.models.base import ForecastOutput

REDUCTIONS = ("mean", "layer", "rollout")


def _head_mean(maps: Tensor) -> Tensor:
    return maps.mean(dim=1)  # [B, nh, Tq, Tk] -> [B, Tq, Tk]


def reduce_attention(
    maps: ForecastOutput | Mapping[str, Any], how: str = "mean", layer: int = -1
) -> Tensor:
    """Reduce per-layer, per-head transformer maps to temporal attention [B, H, L].

    Rows of the result sum to 1, like the LSTM models' `temporal_attention`, so every
    interpretation tool reads both families.

    Args:
        maps: a transformer `ForecastOutput`, or its `extras` with the lists
            'decoder_cross_attention' ([B, nh, H, L] per layer) and, for 'rollout',
            'encoder_self_attention' ([B, nh, L, L] per layer).
        how: 'mean': cross-attention averaged over heads and decoder layers; 'layer':
            averaged over heads in decoder layer `layer`; 'rollout': attention rollout
            (Abnar & Zuidema, 2020): the head-mean encoder self-attention of each layer
            plus the identity for the residual path, rows renormalised, multiplied
            through the encoder, then the cross-attention of decoder layer `layer`.
            With one decoder layer, 'mean' and 'layer' agree.
        layer: decoder layer for 'layer' and 'rollout' (Python index, -1 = last).
    """
    extras = maps.extras if isinstance(maps, ForecastOutput) else maps
    if "decoder_cross_attention" not in extras:
        raise ValueError(
            "reduce_attention needs 'decoder_cross_attention' in the maps (a transformer "
            f"ForecastOutput or its extras); got keys {sorted(extras)}"
        )
    cross = list(extras["decoder_cross_attention"])
    if how not in REDUCTIONS:
        raise ValueError(f"unknown attention reduction {how!r}; expected one of {list(REDUCTIONS)}")
    if not -len(cross) <= layer < len(cross):
        raise ValueError(
            f"layer={layer} is out of range for {len(cross)} decoder layer(s); "
            f"expected {-len(cross)} <= layer < {len(cross)}"
        )
    if how == "mean":
        return torch.stack([_head_mean(c) for c in cross]).mean(dim=0)  # [B, H, L]
    chosen = _head_mean(cross[layer])  # [B, H, L]
    if how == "layer":
        return chosen
    rollout = None
    for a in extras["encoder_self_attention"]:
        a = _head_mean(a)  # [B, L, L]
        # The residual stream carries each token past the attention: add it as identity.
        a = a + torch.eye(a.shape[-1], dtype=a.dtype, device=a.device)
        a = a / a.sum(dim=-1, keepdim=True)
        rollout = a if rollout is None else a @ rollout  # [B, L, L] top layer -> inputs
    return chosen if rollout is None else chosen @ rollout  # [B, H, L]
