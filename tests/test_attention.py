"""Attention modules: every registered type, plus DA-RNN input attention and RevIN."""

from __future__ import annotations

import math

import pytest
import torch

from forecast.models.attention import (
    ATTENTIONS,
    BahdanauAttention,
    InputAttention,
    create_attention,
)
from forecast.models.revin import RevIN

TYPES = [name for name, cls in ATTENTIONS.items() if cls is not None]
LOCAL = {"local_m", "local_p"}  # weight 0 outside their window, see test_local_attention.py


pytestmark = pytest.mark.usefixtures("one_thread")  # see conftest.py


B, L, Q, D = 3, 7, 4, 8


def _make(name: str, key_dim: int = D) -> torch.nn.Module:
    torch.manual_seed(0)
    return create_attention(name, D, key_dim, window=2)  # a window narrower than L


def _inputs(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(B, Q, D, generator=g), torch.randn(B, L, D, generator=g)


def test_registry_names_and_none():
    assert set(ATTENTIONS) == {
        "none",
        "bahdanau",
        "luong_dot",
        "luong_general",
        "luong_concat",
        "local_m",
        "local_p",
    }
    assert create_attention("none", D, D) is None
    with pytest.raises(ValueError, match=r"unknown attention 'luong_cat'; expected one of \["):
        create_attention("luong_cat", D, D)


@pytest.mark.parametrize("name", TYPES)
def test_shapes_and_weights_sum_to_one(name):
    att = _make(name)
    query, keys = _inputs()
    context, weights = att(query[:, 0], keys, keys)  # one decoder step
    assert context.shape == (B, D) and weights.shape == (B, L)
    context, weights = att(query, keys, keys)  # all steps at once
    assert context.shape == (B, Q, D) and weights.shape == (B, Q, L)
    assert (weights >= 0).all() and torch.isfinite(weights).all()
    torch.testing.assert_close(weights.sum(-1), torch.ones(B, Q))
    torch.testing.assert_close(context, weights @ keys)  # context is the weighted values


@pytest.mark.parametrize("name", TYPES)
def test_batched_query_equals_one_step_at_a_time(name):
    att = _make(name)
    query, keys = _inputs()
    prepared = att.prepare_keys(keys)
    context, weights = att.attend(query, prepared, keys, step=0, horizon=Q)
    for q in range(Q):
        c, w = att.attend(query[:, q], prepared, keys, step=q, horizon=Q)
        torch.testing.assert_close(c, context[:, q], atol=1e-6, rtol=0)
        torch.testing.assert_close(w, weights[:, q], atol=1e-6, rtol=0)


@pytest.mark.parametrize("queries", [Q, L + 2])  # fewer and more queries than keys
@pytest.mark.parametrize("name", TYPES)
def test_attend_all_equals_attend_on_prepared_keys(name, queries):
    """The fast path's call (Luong general scores projected queries there, not keys)
    gives the same context, weights and gradients."""
    att = _make(name)
    g = torch.Generator().manual_seed(1)
    query = torch.randn(B, queries, D, generator=g, requires_grad=True)
    keys = torch.randn(B, L, D, generator=g, requires_grad=True)
    results = []
    for fast in (True, False):
        att.zero_grad()
        query.grad = keys.grad = None
        if fast:
            out = att.attend_all(query, keys, keys, step=0, horizon=queries)
        else:
            out = att.attend(query, att.prepare_keys(keys), keys, step=0, horizon=queries)
        (out[0].square().sum() + out[1][..., 0].sum()).backward()
        grads = [query.grad, keys.grad] + [p.grad for p in att.parameters()]
        results.append((out, [x.clone() if x is not None else None for x in grads]))
    (a, ga), (b, gb) = results
    assert [x is None for x in ga] == [x is None for x in gb]
    for x, y in zip(a + tuple(ga), b + tuple(gb), strict=True):
        if x is not None:
            torch.testing.assert_close(x, y, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("name", TYPES)
def test_masked_positions_get_weight_exactly_zero(name):
    att = _make(name)
    query, keys = _inputs()
    mask = torch.ones(B, L, dtype=torch.bool)
    mask[0, :3] = False
    mask[2, -1] = False
    _, weights = att(query, keys, keys, mask=mask)
    assert (weights[0, :, :3] == 0).all() and (weights[2, :, -1] == 0).all()
    torch.testing.assert_close(weights[1], att(query, keys, keys)[1][1])  # unmasked row
    assert (weights[1] > 0).all() or name in LOCAL
    torch.testing.assert_close(weights.sum(-1), torch.ones(B, Q))
    # Garbage in masked positions changes nothing.
    noisy = keys.clone()
    noisy[0, :3] = 1e4
    torch.testing.assert_close(att(query, noisy, noisy, mask=mask)[1][0], weights[0])


@pytest.mark.parametrize("name", TYPES)
def test_mask_errors_name_the_problem(name):
    att = _make(name)
    query, keys = _inputs()
    with pytest.raises(ValueError, match=r"mask must be a bool tensor \[B, L\] = \[3, 7\], got"):
        att(query, keys, keys, mask=torch.ones(B, L - 1, dtype=torch.bool))
    hidden = torch.ones(B, L, dtype=torch.bool)
    hidden[1] = False
    with pytest.raises(ValueError, match="mask hides every position of some row"):
        att(query, keys, keys, mask=hidden)


@pytest.mark.parametrize("name", TYPES)
def test_every_parameter_gets_a_gradient(name):
    att = _make(name)
    query, keys = _inputs()
    query.requires_grad_(True)
    keys.requires_grad_(True)
    context, weights = att(query, keys, keys)
    (context.square().sum() + weights.square().sum()).backward()
    assert query.grad.abs().sum() > 0 and keys.grad.abs().sum() > 0
    for pname, p in att.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, pname


@pytest.mark.parametrize("name", TYPES)
def test_samples_do_not_mix(name):
    att = _make(name)
    query, keys = _inputs()
    perm = torch.tensor([2, 0, 1])
    c, w = att(query, keys, keys)
    cp, wp = att(query[perm], keys[perm], keys[perm])
    torch.testing.assert_close(cp, c[perm], atol=1e-6, rtol=0)
    torch.testing.assert_close(wp, w[perm], atol=1e-6, rtol=0)


def test_bahdanau_matches_its_formula():
    att = _make("bahdanau")
    query, keys = _inputs()
    s, h = query[0, 0], keys[0]  # [D], [L, D]
    expected = torch.stack([att.v(torch.tanh(att.W_s(s) + att.W_h(h[j]))) for j in range(L)])
    _, weights = att(query[:1, 0], keys[:1], keys[:1])
    torch.testing.assert_close(weights[0], torch.softmax(expected.squeeze(-1), 0))
    assert isinstance(att, BahdanauAttention) and att.uses_previous_state


@pytest.mark.parametrize("scale", [True, False])
def test_luong_scores(scale):
    query, keys = _inputs()
    dot = create_attention("luong_dot", D, D, scale=scale)
    factor = 1 / math.sqrt(D) if scale else 1.0
    _, w = dot(query, keys, keys)
    torch.testing.assert_close(w, torch.softmax(query @ keys.transpose(1, 2) * factor, -1))
    torch.manual_seed(0)
    general = create_attention("luong_general", D, 2 * D, scale=scale)
    keys2 = torch.cat([keys, keys], dim=-1)  # [B, L, 2D]: keys may be wider than the query
    _, w = general(query, keys2, keys2)
    scores = query @ (keys2 @ general.W.weight.T).transpose(1, 2) * factor
    torch.testing.assert_close(w, torch.softmax(scores, -1))
    assert not dot.uses_previous_state and not general.uses_previous_state


def test_luong_dot_needs_equal_sizes():
    with pytest.raises(ValueError, match="luong_dot needs query_dim == key_dim, got 8 and 16"):
        create_attention("luong_dot", 8, 16)


def test_input_attention_weights_features_per_sample():
    torch.manual_seed(0)
    F, H2 = 5, 6
    att = InputAttention(F, L, H2)
    x = torch.randn(B, L, F)
    state = torch.randn(B, H2)
    weighted, w = att(state, x, t=2)
    assert weighted.shape == (B, F) and w.shape == (B, F)
    torch.testing.assert_close(w.sum(-1), torch.ones(B))
    torch.testing.assert_close(weighted, w * x[:, 2])
    # Each sample's weights depend on that sample only (the DA-RNN reshape bug mixes them).
    x2, state2 = x.clone(), state.clone()
    x2[1:] = torch.randn(B - 1, L, F)
    state2[1:] = torch.randn(B - 1, H2)
    torch.testing.assert_close(att(state2, x2, t=2)[1][0], w[0], atol=1e-6, rtol=0)
    perm = torch.tensor([1, 2, 0])
    torch.testing.assert_close(att(state[perm], x[perm], t=2)[1], w[perm], atol=1e-6, rtol=0)
    with pytest.raises(ValueError, match="input attention was built for 7 steps, got 6"):
        att.prepare(x[:, :6])


@pytest.mark.parametrize("affine", [True, False])
def test_revin_round_trip_and_statistics(affine):
    torch.manual_seed(0)
    revin = RevIN(2, affine=affine)
    if affine:
        with torch.no_grad():
            revin.weight.fill_(1.7)
            revin.bias.fill_(-0.3)
    x = torch.randn(4, 10, 2) * 5 + 3
    z = revin.normalize(x)
    if not affine:
        torch.testing.assert_close(z.mean(1), torch.zeros(4, 2), atol=1e-5, rtol=0)
        torch.testing.assert_close(z.std(1, unbiased=False), torch.ones(4, 2), atol=1e-4, rtol=0)
    torch.testing.assert_close(revin.denormalize(z), x, atol=1e-4, rtol=0)
    future = torch.randn(4, 3, 2)
    torch.testing.assert_close(revin.denormalize(revin.normalize_like(future)), future)


def test_revin_errors():
    revin = RevIN(1)
    with pytest.raises(RuntimeError, match=r"RevIN.denormalize needs statistics: call normalize"):
        revin.denormalize(torch.zeros(1, 2, 1))
    with pytest.raises(ValueError, match=r"RevIN.normalize expects \[B, steps, 1\], got \(2, 3\)"):
        revin.normalize(torch.zeros(2, 3))
    with pytest.raises(ValueError, match="RevIN needs at least one channel, got n_channels=0"):
        RevIN(0)
