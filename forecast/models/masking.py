"""Masks and losses of masked-reconstruction pretraining (see `forecast.models.pretrain`).

`mask_steps` corrupts a sequence by the BERT rule: per window, `mask_ratio` of the steps
are picked; of those, 80% get a mask token, 10% the values of a random unpicked step of
the same window, 10% stay unchanged. The loss (`masked_mse`) is computed on the picked
steps only.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass(frozen=True)
class MaskDraw:
    """Which steps of each window are corrupted, and how; all [B, L].

    Args:
        picked: steps the loss is computed on.
        use_token: picked steps replaced by the mask token.
        source: the step whose values step t shows (t itself unless randomly replaced).
    """

    picked: Tensor
    use_token: Tensor
    source: Tensor


def draw_mask(
    batch_size: int,
    length: int,
    mask_ratio: float = 0.15,
    generator: torch.Generator | None = None,
    token_share: float = 0.8,
    random_share: float = 0.1,
) -> MaskDraw:
    """Pick `round(mask_ratio * length)` steps per window (at least 1, at most length - 1);
    of those, `token_share` get the mask token, `random_share` a random unpicked step's
    values, the rest stay unchanged (each picked step independently). CPU tensors.

    Args:
        batch_size: windows B.
        length: steps per window L (>= 2).
        mask_ratio: share of steps picked, in (0, 1).
        generator: the source of every random draw.
        token_share: probability that a picked step gets the mask token.
        random_share: probability that a picked step gets another step's values.
    """
    if length < 2 or not 0.0 < mask_ratio < 1.0:
        raise ValueError(f"need length >= 2 and 0 < mask_ratio < 1, got {length}, {mask_ratio}")
    n = min(max(1, round(mask_ratio * length)), length - 1)
    order = torch.rand(batch_size, length, generator=generator).argsort(dim=1)  # [B, L]
    picked = torch.zeros(batch_size, length, dtype=torch.bool)
    picked.scatter_(1, order[:, :n], True)
    u = torch.rand(batch_size, length, generator=generator)
    use_token = picked & (u < token_share)
    use_random = picked & (u >= token_share) & (u < token_share + random_share)
    # order[:, n:] lists each window's unpicked steps in random order: draw one of them.
    j = torch.randint(n, length, (batch_size, length), generator=generator)
    steps = torch.arange(length).expand(batch_size, length)
    source = torch.where(use_random, order.gather(1, j), steps)
    return MaskDraw(picked, use_token, source)


def apply_mask(x: Tensor, token: Tensor, draw: MaskDraw) -> Tensor:
    """Corrupt a sequence `x` [B, L, F] (inputs or embeddings) with a mask token [F]."""
    idx = draw.source.to(x.device)[..., None].expand(-1, -1, x.shape[-1])
    shown = x.gather(1, idx)  # [B, L, F]
    return torch.where(draw.use_token.to(x.device)[..., None], token.to(x.dtype), shown)


def mask_steps(
    x: Tensor, token: Tensor, mask_ratio: float = 0.15, generator: torch.Generator | None = None
) -> tuple[Tensor, Tensor]:
    """The corrupted sequence [B, L, F] and the bool "picked" mask [B, L] (80/10/10 rule).

    Args:
        x: the sequence to corrupt.
        token: the mask token [F].
        mask_ratio: share of steps picked per window.
        generator: seeds the draws.
    """
    draw = draw_mask(x.shape[0], x.shape[1], mask_ratio, generator)
    return apply_mask(x, token, draw), draw.picked.to(x.device)


def masked_mse(prediction: Tensor, target: Tensor, picked: Tensor) -> Tensor:
    """MSE of [B, L, C] predictions over the picked steps [B, L] only."""
    return (prediction - target)[picked].pow(2).mean()


def mean_baseline_loss(target: Tensor, picked: Tensor) -> Tensor:
    """`masked_mse` of predicting each window's mean over its unpicked steps."""
    w = (~picked)[..., None].to(target.dtype)  # [B, L, 1]
    mean = (target * w).sum(dim=1, keepdim=True) / w.sum(dim=1, keepdim=True)
    return masked_mse(mean.expand_as(target), target, picked)


def standardise(x: Tensor, visible: Tensor, eps: float) -> Tensor:
    """Per-window z-scores of x [B, L, C] by the statistics of the visible steps only."""
    w = visible[..., None].to(x.dtype)
    n = w.sum(dim=1, keepdim=True)
    mean = (x * w).sum(dim=1, keepdim=True) / n
    var = ((x - mean).pow(2) * w).sum(dim=1, keepdim=True) / n
    return (x - mean) / torch.sqrt(var + eps)
