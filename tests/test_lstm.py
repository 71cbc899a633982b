"""The attention LSTM, both decoders: shapes, gradients, batch independence, causality,
the classic decoder's fast path, the read decoder's phases, and accuracy."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from forecast import ColumnRoles, create_model, list_models, prepare_data
from forecast.data.protocols import ett_bundle
from forecast.data.synthetic import make_driver_dataset
from forecast.evaluate import predict_dataset, score
from forecast.models.attention import ATTENTIONS
from forecast.models.lstm import LSTMConfig, LSTMForecaster, LSTMNetwork
from forecast.models.registry import get_entry

ROLES = ColumnRoles(("y",), ("x",), ("k",), calendar=False)
L, H = 16, 5
NAMES = list(ATTENTIONS)  # none, bahdanau, luong_dot, luong_general, luong_concat, local_m/p
VARIANTS = [(a, f) for a in NAMES for f in (False, True)]
TINY = {"hidden_size": 8, "epochs": 1, "batch_size": 16, "progress": False, "device": "cpu"}


pytestmark = pytest.mark.usefixtures("one_thread")  # see conftest.py


def _frame(n: int = 300, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=n)
    return pd.DataFrame(
        {
            "date": pd.date_range("2024-01-01", periods=n, freq="h"),
            "y": np.sin(np.arange(n) / 4) + 0.5 * np.roll(x, 2) + rng.normal(0, 0.1, n),
            "x": x,
            "k": np.cos(np.arange(n) / 6),
        }
    )


@pytest.fixture(scope="module")
def data():
    return prepare_data(_frame(), ROLES, input_length=L, horizon=H)


def _net(
    data, attention: str, feature_attention: bool = False, decoder: str = "classic", **kw
) -> LSTMNetwork:
    """A network; the read decoder starts with content on, a non-zero gate and random lag
    prior and feature weights (as after its lag-prior phase; at initialisation the two
    signs of every input cancel exactly), so every part of it is exercised."""
    torch.manual_seed(0)
    if decoder == "read":
        kw.setdefault("attention_warmup", 0)
        if attention == "none":
            feature_attention = False
    cfg = LSTMConfig.from_params(
        hidden_size=8,
        attention=attention,
        feature_attention=feature_attention,
        decoder=decoder,
        **kw,
    )
    net = LSTMNetwork(data.layout, cfg)
    if decoder == "read" and attention != "none":
        with torch.no_grad():
            net.decoder.gate.fill_(0.5)
            net.decoder.lag_prior.normal_(0.0, 0.1)
            net.decoder.feature_logits.normal_(0.0, 0.1)
    elif decoder == "read":  # the state head starts at 0 (the skip alone)
        with torch.no_grad():
            net.decoder.state_head.weight.normal_(0.0, 0.3)
    return net


def _batch(data, n: int = 6) -> dict:
    return data.test.batch(np.arange(n))


EXTRA = [
    ("luong_general", {"bidirectional": True, "revin": True}),
    ("bahdanau", {"bidirectional": True, "num_layers": 2}),
    ("luong_dot", {"num_layers": 2, "feature_attention": True}),
    ("none", {"revin": True, "revin_affine": False}),
    ("local_m", {"attention_window": 2}),
    ("local_p", {"attention_window": 2, "bidirectional": True}),
]
ALL = [(a, {"feature_attention": f}) for a, f in VARIANTS] + EXTRA
READ = [(a, {"feature_attention": f}) for a, f in VARIANTS if a != "none" or not f] + [
    ("luong_general", {"bidirectional": True}),
    ("bahdanau", {"num_layers": 2, "feature_attention": True}),
    ("local_p", {"attention_window": 2, "normalizer": "entmax15"}),
    ("luong_dot", {"normalizer": "sparsemax"}),
    ("bahdanau", {"decoding": "autoregressive"}),
    ("luong_dot", {"decoding": "autoregressive", "revin": False}),
]
BOTH = [("classic", a, kw) for a, kw in ALL] + [("read", a, kw) for a, kw in READ]


def _tfs(decoder: str, kw: dict) -> tuple[float, ...]:
    """The teacher-forcing ratios a decoder takes (a direct read decoder takes none)."""
    direct = decoder == "read" and kw.get("decoding", "direct") == "direct"
    return (0.0,) if direct else (0.0, 0.5, 1.0)


@pytest.mark.parametrize("decoder,attention,kw", BOTH)
def test_output_shapes_and_weights(data, decoder, attention, kw):
    net = _net(data, attention, decoder=decoder, **kw).eval()
    F = len(data.layout.encoder_features)
    for tf in _tfs(decoder, kw):
        out = net(_batch(data), teacher_forcing=tf, generator=torch.Generator().manual_seed(0))
        assert out.prediction.shape == (6, H, 1) and torch.isfinite(out.prediction).all()
        if attention == "none":
            assert out.temporal_attention is None
        else:
            w = out.temporal_attention
            assert w.shape == (6, H, L) and (w >= 0).all()
            torch.testing.assert_close(w.sum(-1), torch.ones(6, H))
        f = out.feature_attention
        if decoder == "read" and attention != "none":
            # A joint map over (input step, feature): the whole map sums to 1, and the
            # known covariates (decoder inputs, never read) get exactly 0.
            assert f.shape == (6, L, F) and (f >= 0).all()
            torch.testing.assert_close(f.sum((1, 2)), torch.ones(6))
            assert (f[..., 2:] == 0).all()  # columns y, x are read; k is known
            torch.testing.assert_close(f.sum(-1), w.mean(1))  # its time marginal
        elif kw.get("feature_attention") and decoder == "classic":
            assert f.shape == (6, L, F) and (f >= 0).all()
            torch.testing.assert_close(f.sum(-1), torch.ones(6, L))
        else:
            assert f is None


@pytest.mark.parametrize("decoder,attention,kw", BOTH)
def test_every_parameter_gets_a_gradient(data, decoder, attention, kw):
    net = _net(data, attention, decoder=decoder, **kw).train()
    batch = _batch(data)
    tfs = _tfs(decoder, kw)
    loss = sum(
        (net(batch, teacher_forcing=tf).prediction - batch["future_target"]).square().mean()
        for tf in (tfs[0], tfs[-1])  # free-running and teacher-forced
    )
    loss.backward()
    for name, p in net.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
        assert torch.isfinite(p.grad).all(), name


@pytest.mark.parametrize("decoder,attention,kw", BOTH)
def test_batch_independence(data, decoder, attention, kw):
    """A window's forecast and attention are the same alone or inside a shuffled batch."""
    net = _net(data, attention, decoder=decoder, **{"revin": True, **kw}).eval()
    order = np.random.default_rng(0).permutation(12)
    together = net(data.test.batch(order))
    for pos in (0, 5, 11):
        alone = net(data.test.batch([order[pos]]))
        torch.testing.assert_close(alone.prediction[0], together.prediction[pos], atol=1e-5, rtol=0)
        for field in ("temporal_attention", "feature_attention"):
            a, b = getattr(alone, field), getattr(together, field)
            assert (a is None) == (b is None)
            if a is not None:
                torch.testing.assert_close(a[0], b[pos], atol=1e-5, rtol=0)


CAUSAL = (
    [("classic", a, f, tf) for a, f in VARIANTS for tf in (0.0, 0.5, 1.0)]
    + [("read", a, f, 0.0) for a, f in VARIANTS if a != "none" or not f]
    + [("read-ar", a, False, tf) for a in ("bahdanau", "luong_dot", "none") for tf in (0.5, 1.0)]
)


@pytest.mark.parametrize("decoder,attention,feature,tf", CAUSAL)
def test_prediction_ignores_data_after_the_origin(data, decoder, attention, feature, tf):
    """Trained with any teacher forcing, a forecast never reads data after its origin."""
    extra = {"decoder": "classic"} if decoder == "classic" else {"attention_warmup": 1}
    if decoder == "read-ar":
        extra["decoding"] = "autoregressive"
    model = create_model(
        "lstm",
        data.layout,
        attention=attention,
        feature_attention=feature,
        teacher_forcing=tf,
        tf_schedule="constant",
        max_train_windows=48,
        **{**TINY, "epochs": 2},
        **extra,
    ).fit(data.train, data.val)
    i = 10
    t = int(data.test.starts[i]) + L - 1  # origin row of test window i
    changed = _frame()
    rng = np.random.default_rng(1)
    changed.loc[t + 1 :, ["y", "x"]] = rng.normal(5, 3, size=(len(changed) - t - 1, 2))
    other = prepare_data(changed, ROLES, input_length=L, horizon=H)
    a = model.predict_batch(data.test.batch([i]))
    b = model.predict_batch(other.test.batch([i]))
    torch.testing.assert_close(a.prediction, b.prediction, rtol=0, atol=0)
    batch = data.test.batch([i, i + 1])
    garbage = {**batch, "future_target": torch.full_like(batch["future_target"], 1e6)}
    a, b = model.predict_batch(batch), model.predict_batch(garbage)
    torch.testing.assert_close(a.prediction, b.prediction, rtol=0, atol=0)
    if a.temporal_attention is not None:
        torch.testing.assert_close(a.temporal_attention, b.temporal_attention, rtol=0, atol=0)


TF_STEP = [("classic", a, tf, fast) for a in NAMES for tf in (0.5, 1.0) for fast in (True, False)]
TF_STEP += [("read", a, tf, True) for a in ("bahdanau", "luong_general", "local_m", "none")
            for tf in (0.5, 1.0)]  # fmt: skip


@pytest.mark.parametrize("decoder,attention,tf,fast", TF_STEP)
def test_teacher_forced_step_reads_only_earlier_targets(data, decoder, attention, tf, fast):
    """With teacher forcing, the forecast of step h depends on true targets before h only."""
    kw = {"decoding": "autoregressive"} if decoder == "read" else {}
    net = _net(data, attention, decoder=decoder, **kw).train()  # no dropout: deterministic
    if decoder == "classic":
        net.decoder.use_fast_path = fast
    batch = _batch(data)
    h = 2
    changed = batch["future_target"].clone()
    changed[:, h:] = 1e3
    a = net(batch, tf, torch.Generator().manual_seed(3)).prediction
    b = net({**batch, "future_target": changed}, tf, torch.Generator().manual_seed(3)).prediction
    torch.testing.assert_close(a[:, : h + 1], b[:, : h + 1], rtol=0, atol=0)
    assert not torch.allclose(a[:, h + 1 :], b[:, h + 1 :])  # later steps do read them


FAST = [
    ("luong_dot", {}),
    ("luong_general", {}),
    ("none", {}),
    ("luong_general", {"feature_attention": True, "num_layers": 2}),
    ("luong_general", {"bidirectional": True, "revin": True}),
    ("luong_concat", {}),
    ("local_m", {"attention_window": 2}),
    ("local_p", {"attention_window": 2}),
    ("local_p", {"attention_window": 3, "num_layers": 2, "feature_attention": True}),
]


@pytest.mark.parametrize("attention,kw", FAST)
def test_fast_path_equals_the_step_loop(data, attention, kw):
    """The classic decoder's one-call path gives the step loop's numbers."""
    net = _net(data, attention, **kw)
    batch = _batch(data, 20)
    results = {}
    for fast in (True, False):
        net.decoder.use_fast_path = fast
        assert net.decoder.path(1.0) == ("one_call" if fast else "loop")
        net.zero_grad()
        net.train()
        out = net(batch, teacher_forcing=1.0)
        out.prediction.square().mean().backward()
        grads = {n: p.grad.clone() for n, p in net.named_parameters()}
        results[fast] = (out, grads)
    (a, ga), (b, gb) = results[True], results[False]
    torch.testing.assert_close(a.prediction, b.prediction, atol=1e-5, rtol=0)
    if a.temporal_attention is not None:
        torch.testing.assert_close(a.temporal_attention, b.temporal_attention, atol=1e-5, rtol=0)
    for name in ga:
        torch.testing.assert_close(ga[name], gb[name], atol=1e-5, rtol=1e-4, msg=name)


READ_TF = ["bahdanau", "luong_dot", "luong_general", "local_m", "none"]


@pytest.mark.parametrize("attention", READ_TF)
def test_read_decoder_full_teacher_forcing_equals_the_step_loop(data, attention):
    """The autoregressive read decoder at teacher forcing 1 runs its decoder LSTM in one
    call; it gives the step loop's numbers (the loop fed the truth at every step: a
    ratio just below 1 draws no float32 uniform at or above it) and gradients."""
    kw = {"decoding": "autoregressive", "feature_attention": attention == "luong_general"}
    net = _net(data, attention, decoder="read", **kw).train()  # dropout 0: deterministic
    batch = _batch(data, 20)
    calls = []
    net.decoder.lstm.register_forward_hook(lambda *_: calls.append(1))
    results = {}
    for ratio in (1.0, 1.0 - 1e-12):
        net.zero_grad()
        calls.clear()
        out = net(batch, ratio, torch.Generator().manual_seed(0), return_attention=True)
        assert len(calls) == (1 if ratio == 1.0 else H)  # one call, or one per step
        out.prediction.square().mean().backward()
        grads = {n: p.grad.clone() for n, p in net.named_parameters() if p.grad is not None}
        results[ratio] = (out, grads)
    (a, ga), (b, gb) = results.values()
    torch.testing.assert_close(a.prediction, b.prediction, atol=1e-5, rtol=0)
    if attention != "none":
        torch.testing.assert_close(a.temporal_attention, b.temporal_attention, atol=1e-5, rtol=0)
    assert ga.keys() == gb.keys()
    for name in ga:
        torch.testing.assert_close(ga[name], gb[name], atol=1e-5, rtol=1e-4, msg=name)


@pytest.mark.parametrize("decoder", ["classic", "read"])
def test_inputs_reach_the_right_places(data, decoder):
    """Past covariates feed the encoder (and the read), known-future covariates the
    decoder; a step never sees later steps' known values."""
    net = _net(data, "luong_general", decoder=decoder).eval()
    batch = _batch(data)
    base = net(batch).prediction
    for field in ("past_covariates", "past_known", "future_known"):
        moved = net({**batch, field: batch[field] + 1.0}).prediction
        assert not torch.allclose(moved, base), field
    fk = batch["future_known"].clone()
    fk[:, -1] += 1.0
    moved = net({**batch, "future_known": fk}).prediction
    torch.testing.assert_close(moved[:, :-1], base[:, :-1], rtol=0, atol=0)
    assert not torch.allclose(moved[:, -1], base[:, -1])


def test_read_decoder_reads_the_inputs_at_the_attended_step(data):
    """With all the lag prior's mass on one lag of the covariate, the read is that input:
    moving the covariate there moves the forecast by exactly scale x change, moving it
    anywhere else changes nothing (the map says what was read)."""
    net = _net(data, "luong_dot", decoder="read", attention_warmup=5).eval()  # prior only
    dec = net.decoder
    lag = 3  # rows before each target
    with torch.no_grad():
        dec.lag_prior.fill_(-100.0)
        dec.lag_prior[1, lag - 1] = 100.0  # value 1 = covariate x (+ sign), lag 3
        dec.feature_logits.fill_(-100.0)
        dec.feature_logits[0, 1] = 100.0
    batch = _batch(data)
    base = net(batch)
    w = base.temporal_attention[0]  # [H, L]: step h (from 0) reads position L + h - lag
    for h in range(lag):  # later steps' input at lag 3 is not observed yet
        assert w[h].argmax().item() == L + h - lag and w[h].max().item() > 0.999
    j = L - 1  # the origin: read by step h = lag - 1 = 2 only
    moved = batch["past_covariates"].clone()
    moved[:, j] += 1.0
    delta = net({**batch, "past_covariates": moved}).prediction - base.prediction
    scale = 10.0 * dec.read_scale.item()
    torch.testing.assert_close(delta[:, lag - 1], torch.full((6, 1), scale), atol=1e-4, rtol=0)
    torch.testing.assert_close(delta[:, : lag - 1], torch.zeros(6, lag - 1, 1), atol=1e-5, rtol=0)


def test_read_decoder_phases(data):
    """The lag prior trains alone first (no LSTM runs, so the forecast ignores the
    encoder), then content joins; the phase travels with the weights."""
    net = _net(data, "bahdanau", decoder="read", attention_warmup=3)
    with torch.no_grad():
        net.decoder.gate.zero_()
    assert net.phase == 1 and not net.decoder.needs_states()
    net.set_epoch(2)
    assert net.phase == 1
    net.set_epoch(4)
    assert net.phase == 2 and net.decoder.needs_states()
    state = net.state_dict()
    assert bool(state["decoder.content_on"])
    fresh = _net(data, "bahdanau", decoder="read", attention_warmup=3)
    assert fresh.phase == 1
    fresh.load_state_dict(state)
    assert fresh.phase == 2
    early = _net(data, "bahdanau", decoder="read", attention_warmup=30)
    assert early.next_phase() and early.phase == 2 and not early.next_phase()
    model = create_model("lstm", data.layout, **{**TINY, "epochs": 4}, attention_warmup=2)
    model.fit(data.train, data.val)
    assert model.history_["phase"].tolist() == [1, 1, 2, 2]


@pytest.mark.parametrize("attention", ["luong_dot", "bahdanau", "local_p"])
@pytest.mark.parametrize("content", [False, True])
def test_read_decoder_without_maps_forecasts_the_same(data, monkeypatch, attention, content):
    """`return_attention=False` (the training loop's call) skips the read decoder's maps
    and changes no forecast, in either phase, also when evaluation splits the batch."""
    net = _net(data, attention, decoder="read", attention_warmup=0 if content else 5).eval()
    batch = _batch(data)
    with torch.no_grad():
        full = net(batch)
        bare = net(batch, return_attention=False)
        monkeypatch.setattr(type(net.decoder), "chunk_rows", lambda self, rows: 2)
        split = net(batch, return_attention=False)
    assert full.temporal_attention is not None and full.feature_attention is not None
    for out in (bare, split):
        assert out.temporal_attention is None and out.feature_attention is None
        torch.testing.assert_close(out.prediction, full.prediction, rtol=1e-6, atol=1e-6)


def test_registered_models_and_flat_parameters(data):
    assert {
        "lstm", "lstm_plain", "lstm_bahdanau", "lstm_luong", "lstm_local", "darnn", "lstm_classic"
    } <= set(list_models("neural"))  # fmt: skip
    expected = {
        "lstm_plain": {"attention": "none"},
        "lstm_bahdanau": {"attention": "bahdanau"},
        "lstm_luong": {"attention": "luong_general"},
        "lstm_local": {"attention": "local_p"},
        "darnn": {"attention": "bahdanau", "feature_attention": True},
    }
    for name, defaults in expected.items():
        assert get_entry(name).defaults == defaults
        assert get_entry(name).kind == "neural"
    assert get_entry("lstm_classic").defaults["decoder"] == "classic"
    model = create_model("lstm", data.layout, hidden_size=64, epochs=5, attention="luong_dot")
    assert isinstance(model, LSTMForecaster)
    assert (model.config.hidden_size, model.config.train.epochs, model.config.attention) == (
        64,
        5,
        "luong_dot",
    )
    assert model.config.decoder == "read" and model.config.train.teacher_forcing == 0.0
    assert model.config.train.lr == 3e-3  # the model's own training default is kept


def test_config_errors_name_the_problem(data):
    with pytest.raises(ValueError, match=r"unknown attention 'dot'; expected one of \['none'"):
        LSTMConfig.from_params(attention="dot")
    with pytest.raises(ValueError, match="feature_attention needs a unidirectional encoder"):
        LSTMConfig.from_params(feature_attention=True, bidirectional=True, decoder="classic")
    with pytest.raises(ValueError, match="attention_window must be >= 1, got 0"):
        LSTMConfig.from_params(attention_window=0)
    with pytest.raises(ValueError, match=r"dropout must be in \[0, 1\), got 1.0"):
        LSTMConfig.from_params(dropout=1.0)
    with pytest.raises(ValueError, match=r"unknown normalizer 'max'; expected one of"):
        LSTMConfig.from_params(normalizer="max")
    with pytest.raises(ValueError, match=r"unknown decoder 'fancy'; expected one of"):
        LSTMConfig.from_params(decoder="fancy")
    with pytest.raises(ValueError, match=r"teacher_forcing=0.5 needs an autoregressive decoder"):
        LSTMConfig.from_params(teacher_forcing=0.5)
    with pytest.raises(ValueError, match="feature_attention with the read decoder .* needs an"):
        LSTMConfig.from_params(feature_attention=True, attention="none")
    with pytest.raises(ValueError, match="luong_dot needs query_dim == key_dim, got 8 and 16"):
        _net(data, "luong_dot", bidirectional=True)
    with pytest.raises(ValueError, match=r"teacher_forcing must be in \[0, 1\], got 1.5"):
        _net(data, "none")(_batch(data), teacher_forcing=1.5)


def test_attention_models_beat_naive_on_synthetic_truth():
    """On the driver dataset (target = driver 12 rows earlier + seasons), a few epochs of
    Luong and Bahdanau attention beat repeat-last and seasonal naive on test MSE."""
    syn = make_driver_dataset(1500, seed=0)
    roles = ColumnRoles((syn.target,), syn.covariates)
    syn_data = prepare_data(syn.frame, roles, input_length=36, horizon=12)
    mse = {}
    for name in ("naive", "seasonal_naive", "lstm_luong", "lstm_bahdanau"):
        params = {"epochs": 12, "progress": False, "device": "cpu"}
        model = create_model(name, syn_data.layout, **(params if "lstm" in name else {}))
        model.fit(syn_data.train, syn_data.val)
        mse[name] = score(predict_dataset(model, syn_data.test), syn_data, syn_data.test)["mse"]
    best_naive = min(mse["naive"], mse["seasonal_naive"])
    assert mse["lstm_luong"] < 0.6 * best_naive, mse
    assert mse["lstm_bahdanau"] < 0.6 * best_naive, mse


@pytest.mark.slow
def test_etth1_attention_lstm_beats_repeat_last(etth1_path):
    """ETTh1 track U, L=96, H=24: the default model on a capped budget beats repeat-last
    (its figures against ridge are in docs/benchmarks.md)."""
    data = ett_bundle(etth1_path, "U", 96, 24)
    model = create_model(
        "lstm",
        data.layout,
        epochs=6,
        max_train_windows=3000,
        max_val_windows=1000,
        progress=False,
    ).fit(data.train, data.val)
    mse = score(predict_dataset(model, data.test), data, data.test)["mse"]
    assert mse < 0.0343
