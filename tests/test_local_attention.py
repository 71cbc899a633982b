"""Luong local attention (local-m, local-p) and the concat score, alone and in the LSTM."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch

from forecast import ColumnRoles, prepare_data
from forecast.data.windows import WindowDataset, WindowLayout
from forecast.models.attention import (
    LocalMonotonicAttention,
    LocalPredictiveAttention,
    LuongConcatAttention,
    create_attention,
)
from forecast.models.lstm import LSTMConfig, LSTMNetwork

B, S, Q, D = 4, 12, 5, 8  # batch, encoder length, queries (decoder steps), state size


pytestmark = pytest.mark.usefixtures("one_thread")  # see conftest.py


def _inputs(seed: int = 0, scale: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(B, Q, D, generator=g) * scale, torch.randn(B, S, D, generator=g) * scale


def _make(name: str, window: int) -> torch.nn.Module:
    torch.manual_seed(0)
    return create_attention(name, D, D, window=window)


def _outside(positions: torch.Tensor, window: int, length: int = S) -> torch.Tensor:
    """[B, Q, L] True where |j - p_t| > window."""
    return (torch.arange(length) - positions[..., None]).abs() > window


@pytest.mark.parametrize("window", [1, 2, 4])
@pytest.mark.parametrize("name", ["local_m", "local_p"])
def test_weights_are_exactly_zero_outside_the_window(name, window):
    att = _make(name, window)
    query, keys = _inputs()
    _, w = att(query, keys, keys, step=0, horizon=Q)
    p = att.last_positions
    assert p.shape == (B, Q) and (p >= 0).all() and (p <= S - 1).all()
    outside = _outside(p, window)
    assert (w[outside] == 0).all()
    assert (w[~outside] > 0).all()  # no mask: every position in the window is used
    assert outside.any(-1).all()  # the window really is narrower than the input
    torch.testing.assert_close(w.sum(-1), torch.ones(B, Q))
    assert torch.isfinite(w).all()


def test_local_m_centres_move_one_step_per_decoder_step_and_end_on_the_last_input():
    att = _make("local_m", 2)
    query, keys = _inputs()
    _, w = att(query, keys, keys, step=0, horizon=Q)
    expected = torch.arange(S - Q, S, dtype=torch.float32)  # p_t = S - H + t
    torch.testing.assert_close(att.last_positions, expected.expand(B, Q))
    support = w > 0
    j = torch.arange(S).expand(B, Q, S)
    first = torch.where(support, j, S).amin(-1)  # [B, Q] window start
    last = torch.where(support, j, -1).amax(-1)  # [B, Q] window end
    assert (first.diff(dim=1) >= 0).all() and (last.diff(dim=1) >= 0).all()
    assert (first.diff(dim=1) > 0).any()  # it does move
    assert (last[:, -1] == S - 1).all()
    # Later steps on their own (the decoder loop) get the same centres.
    att(query[:, 2], keys, keys, step=2, horizon=Q)
    torch.testing.assert_close(att.last_positions, torch.full((B, 1), float(S - Q + 2)))


def test_local_m_positions_without_horizon_and_beyond_the_input():
    att = _make("local_m", 1)
    query, keys = _inputs()
    att(query, keys, keys)  # no horizon: Luong's p_t = t
    torch.testing.assert_close(att.last_positions[0], torch.arange(Q, dtype=torch.float32))
    long_h = S + 3  # horizon longer than the input: the first centres clamp to 0
    p = att.positions(torch.zeros(1, long_h, D), S, step=0, horizon=long_h)[0]
    assert p.tolist() == [0.0] * 4 + [float(i) for i in range(1, S)]
    with pytest.raises(ValueError, match=r"decoder steps 3..7 do not fit a horizon of 5 steps"):
        att(query, keys, keys, step=3, horizon=Q)
    with pytest.raises(ValueError, match="step must be >= 0, got -1"):
        att(query, keys, keys, step=-1)


def test_local_p_follows_its_formula():
    """p_t = (S-1) sigmoid(v_p^T tanh(W_p s_t)); the paper's weights (softmax over the window
    times the Gaussian of sigma = D/2), renormalised."""
    window = 3
    att = _make("local_p", window)
    query, keys = _inputs()
    _, w = att(query, keys, keys)
    p = (S - 1) * torch.sigmoid(att.v_p(torch.tanh(att.W_p(query)))).squeeze(-1)  # [B, Q]
    torch.testing.assert_close(att.last_positions, p)
    scores = query @ att.W(keys).transpose(1, 2) / math.sqrt(D)  # Luong general
    outside = _outside(p, window)
    soft = torch.softmax(scores.masked_fill(outside, float("-inf")), -1)
    gauss = torch.exp(-((torch.arange(S) - p[..., None]) ** 2) / (2 * (window / 2) ** 2))
    paper = soft * gauss
    assert (paper.sum(-1) < 1 - 1e-3).all()  # the paper's weights do not sum to 1 ...
    torch.testing.assert_close(w, paper / paper.sum(-1, keepdim=True))  # ... ours do


def test_gradients_reach_the_position_network():
    att = _make("local_p", 2)
    query, keys = _inputs()
    context, _ = att(query, keys, keys)
    context.square().sum().backward()
    for p in (att.W_p.weight, att.v_p.weight, att.W.weight):
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0


def _global_twin(att: torch.nn.Module) -> torch.nn.Module:
    general = create_attention("luong_general", D, D)
    with torch.no_grad():
        general.W.weight.copy_(att.W.weight)
    return general


def test_local_m_with_a_window_covering_the_input_is_global_luong_general():
    att = _make("local_m", S)  # |j - p_t| <= S - 1 < D for every j: nothing is cut
    query, keys = _inputs()
    _, w = att(query, keys, keys, step=0, horizon=Q)
    _, w_global = _global_twin(att)(query, keys, keys)
    torch.testing.assert_close(w, w_global, atol=1e-6, rtol=0)


def test_local_p_tends_to_global_attention_as_the_window_grows():
    """With D >= S nothing is cut and only the Gaussian differs: its log is in [-Delta, 0],
    Delta = (S-1)^2 / (2 (D/2)^2), so after renormalising every weight is within a factor
    e^{+-Delta} of the global one, |w - w_global| <= e^Delta - 1."""
    query, keys = _inputs()
    for window, close in ((200, True), (S, False)):
        att = _make("local_p", window)
        _, w = att(query, keys, keys)
        _, w_global = _global_twin(att)(query, keys, keys)
        bound = math.expm1((S - 1) ** 2 / (2 * (window / 2) ** 2))
        err = (w - w_global).abs().max().item()
        if close:
            assert bound < 0.01 and err <= bound + 1e-6, (err, bound)
        else:  # a window as wide as the input still differs: the Gaussian is applied
            assert err > 0.05, err


def test_concat_follows_its_formula():
    torch.manual_seed(0)
    att = create_attention("luong_concat", D, 2 * D, attention_dim=6)
    assert isinstance(att, LuongConcatAttention) and not att.uses_previous_state
    query, keys = _inputs()
    keys2 = torch.cat([keys, -keys], dim=-1)  # [B, S, 2D]: keys may be wider than the query
    _, w = att(query, keys2, keys2)
    W = torch.cat([att.W_s.weight, att.W_h.weight], dim=1)  # W [s; h] as one matrix [A, 3D]
    pairs = torch.cat(
        [query[:, :, None].expand(B, Q, S, D), keys2[:, None].expand(B, Q, S, 2 * D)], -1
    )
    scores = (torch.tanh(pairs @ W.T) @ att.v.weight.T).squeeze(-1)  # v^T tanh(W [s; h])
    torch.testing.assert_close(w, torch.softmax(scores, -1))
    assert (w > 0).all()


@pytest.mark.parametrize("name", ["local_m", "local_p"])
def test_mask_combines_with_the_window(name):
    window = 2
    att = _make(name, window)
    query, keys = _inputs()
    mask = torch.ones(B, S, dtype=torch.bool)
    mask[0, S - 2 :] = False  # part of the last local-m windows
    mask[1, ::2] = False
    _, w = att(query, keys, keys, step=0, horizon=Q, mask=mask)
    p = att.last_positions
    allowed = ~_outside(p, window) & mask[:, None]
    assert allowed.any(-1).all()  # every row keeps a position: no fallback here
    assert (w[~allowed] == 0).all() and (w[allowed] > 0).all()
    torch.testing.assert_close(w.sum(-1), torch.ones(B, Q))
    # Garbage at masked positions changes nothing.
    noisy = keys.clone()
    noisy[~mask] = 1e4
    torch.testing.assert_close(att(query, noisy, noisy, step=0, horizon=Q, mask=mask)[1], w)


def test_a_fully_masked_window_falls_back_to_the_unmasked_positions():
    att = _make("local_m", 1)
    query, keys = _inputs()
    mask = torch.zeros(B, S, dtype=torch.bool)
    mask[:, :3] = True  # the windows of local-m (centres S-Q .. S-1) are all masked
    _, w = att(query, keys, keys, step=0, horizon=Q, mask=mask)
    assert torch.isfinite(w).all() and (w[..., 3:] == 0).all() and (w[..., :3] > 0).all()
    torch.testing.assert_close(w.sum(-1), torch.ones(B, Q))


@pytest.mark.parametrize("name", ["local_m", "local_p"])
def test_samples_do_not_mix_and_extreme_inputs_give_no_nan(name):
    att = _make(name, 2)
    query, keys = _inputs()
    c, w = att(query, keys, keys, step=0, horizon=Q)
    p = att.last_positions
    q2, k2 = query.clone(), keys.clone()
    q2[1:], k2[1:] = torch.randn(B - 1, Q, D) * 50, torch.randn(B - 1, S, D) * 50
    c2, w2 = att(q2, k2, k2, step=0, horizon=Q)
    torch.testing.assert_close(w2[0], w[0], atol=1e-6, rtol=0)
    torch.testing.assert_close(c2[0], c[0], atol=1e-6, rtol=0)
    torch.testing.assert_close(att.last_positions[0], p[0])
    big_q, big_k = _inputs(1, scale=1e3)
    _, w = att(big_q, big_k, big_k, step=0, horizon=Q)
    assert torch.isfinite(w).all()
    torch.testing.assert_close(w.sum(-1), torch.ones(B, Q))


def test_constructor_checks_and_classes():
    assert isinstance(_make("local_m", 3), LocalMonotonicAttention)
    assert isinstance(_make("local_p", 3), LocalPredictiveAttention)
    assert not _make("local_p", 3).uses_previous_state
    with pytest.raises(ValueError, match="local attention needs window >= 1, got 0"):
        create_attention("local_p", D, D, window=0)


def test_lstm_decoder_gives_each_step_its_own_local_m_window():
    """In the LSTM the windows follow the decoder step: p_t = L - H + t, on the fast path,
    in the teacher-forced loop and free-running."""
    L, H, window = 16, 5, 2
    rng = np.random.default_rng(0)
    df = pd.DataFrame(
        {"date": pd.date_range("2024-01-01", periods=200, freq="h"), "y": rng.normal(size=200)}
    )
    data = prepare_data(df, ColumnRoles(("y",), calendar=False), input_length=L, horizon=H)
    torch.manual_seed(0)
    net = LSTMNetwork(
        data.layout,
        LSTMConfig.from_params(
            hidden_size=8, attention="local_m", attention_window=window, decoder="classic"
        ),
    )
    batch = data.test.batch(np.arange(6))
    centres = torch.arange(L - H, L, dtype=torch.float32)[None].expand(6, H)
    for fast, tf in ((True, 1.0), (False, 1.0), (True, 0.0)):
        net.decoder.use_fast_path = fast
        w = net(batch, teacher_forcing=tf).temporal_attention  # [B, H, L]
        outside = _outside(centres, window, L)
        assert (w[outside] == 0).all() and (w[~outside] > 0).all(), (fast, tf)
        torch.testing.assert_close(w.sum(-1), torch.ones(6, H))


@pytest.mark.parametrize("name", ["local_m", "local_p"])
@pytest.mark.parametrize("teacher_forcing", [0.0, 1.0])
def test_lstm_output_carries_the_window_centres(name, teacher_forcing):
    S, H, D = 12, 4, 2
    layout = WindowLayout(S, H, ("y",), ())
    data = torch.randn(40, 1)
    ds = WindowDataset(data, np.arange(8), layout, np.zeros(8, np.int32))
    torch.manual_seed(0)
    cfg = LSTMConfig.from_params(
        hidden_size=8, attention=name, attention_window=D, progress=False, decoder="classic"
    )
    net = LSTMNetwork(layout, cfg).eval()
    out = net(ds.batch(np.arange(8)), teacher_forcing=teacher_forcing)
    centres = out.extras["attention_centres"]
    assert tuple(centres.shape) == (8, H)
    if name == "local_m":
        assert torch.equal(centres, (S - H + torch.arange(H, dtype=torch.float32)).expand(8, H))
    assert ((centres >= 0) & (centres <= S - 1)).all()
    far = (torch.arange(S)[None, None, :] - centres[..., None]).abs() > D
    assert (out.temporal_attention[far] == 0).all()
    assert not (out.temporal_attention[~far] == 0).all()
