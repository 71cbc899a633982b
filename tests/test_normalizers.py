"""Attention normalisers: sparsemax and entmax-1.5 exact, differentiable, mask-aware."""

from __future__ import annotations

import pytest
import torch

from forecast.models.attention import create_attention
from forecast.models.attention.normalizers import (
    NORMALIZERS,
    entmax15,
    get_normalizer,
    sparsemax,
    uniform,
)


def _bisection(z: torch.Tensor, alpha15: bool) -> torch.Tensor:
    """The threshold tau found by bisection: an independent reference."""
    top = z.max(-1, keepdim=True).values
    lo, hi = top - 2.0, top.clone()
    for _ in range(200):
        tau = (lo + hi) / 2
        p = torch.clamp(z / 2 - tau / 2, min=0) ** 2 if alpha15 else torch.clamp(z - tau, min=0)
        over = p.sum(-1, keepdim=True) > 1
        lo, hi = torch.where(over, tau, lo), torch.where(over, hi, tau)
    return p


@pytest.mark.parametrize("fn,alpha15", [(sparsemax, False), (entmax15, True)])
def test_sparse_maps_are_exact_projections_with_zeros(fn, alpha15):
    z = torch.randn(40, 17, dtype=torch.float64, generator=torch.Generator().manual_seed(0)) * 3
    p = fn(z)
    torch.testing.assert_close(p, _bisection(z, alpha15), atol=1e-10, rtol=0)
    torch.testing.assert_close(p.sum(-1), torch.ones(40, dtype=torch.float64))
    assert (p == 0).any(dim=-1).all()  # exact zeros in every row at this spread
    assert (p >= 0).all()


@pytest.mark.parametrize("fn", [sparsemax, entmax15])
def test_gradients_match_finite_differences(fn):
    z = torch.randn(3, 4, 9, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    assert torch.autograd.gradcheck(fn, (z.requires_grad_(),))


@pytest.mark.parametrize("name", list(NORMALIZERS))
def test_minus_inf_is_masked_and_rows_sum_to_one(name):
    fn = get_normalizer(name)
    z = torch.tensor([[1.0, 0.5, float("-inf"), 0.2], [float("-inf"), 3.0, 2.9, float("-inf")]])
    p = fn(z)
    assert p[0, 2] == 0 and p[1, 0] == 0 and p[1, 3] == 0
    torch.testing.assert_close(p.sum(-1), torch.ones(2))
    if name != "softmax":
        with pytest.raises(ValueError, match="at least one finite score"):
            fn(torch.full((1, 3), float("-inf")))


def test_uniform_is_the_ablation_and_respects_the_mask():
    z = torch.tensor([[5.0, float("-inf"), -2.0, 0.0]])
    torch.testing.assert_close(uniform(z), torch.tensor([[1 / 3, 0.0, 1 / 3, 1 / 3]]))


def test_any_attention_type_takes_a_normaliser():
    keys = torch.randn(2, 6, 4, generator=torch.Generator().manual_seed(2)) * 4
    query = torch.randn(2, 4, generator=torch.Generator().manual_seed(3)) * 4
    for kind in ("bahdanau", "luong_dot", "luong_general", "luong_concat"):
        att = create_attention(kind, 4, 4, normalizer="sparsemax")
        _, w = att(query, keys, keys)
        torch.testing.assert_close(w.sum(-1), torch.ones(2))
    with pytest.raises(ValueError, match=r"unknown attention normalizer 'max'; expected one of"):
        create_attention("luong_dot", 4, 4, normalizer="max")
