"""The transformer: shapes, attention maps, masking, no look-ahead, gradients, training."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from forecast import ColumnRoles, create_model, prepare_data
from forecast.checkpoint import load_checkpoint, save_checkpoint
from forecast.data.synthetic import make_driver_dataset
from forecast.data.windows import WindowLayout
from forecast.models.base import ForecastOutput
from forecast.models.transformer import (
    TransformerConfig,
    TransformerForecaster,
    TransformerNetwork,
    reduce_attention,
)
from forecast.models.transformer_layers import (
    DecoderLayer,
    MultiHeadAttention,
    causal_mask,
    sinusoidal_encoding,
)

L, H, B = 16, 5, 4
LAYOUT = WindowLayout(L, H, ("a", "b"), ("p",), ("k1", "k2"))
MODES = ("autoregressive", "direct")
SMALL = {"d_model": 16, "n_heads": 2, "encoder_layers": 2, "decoder_layers": 2, "d_ff": 32}


def _batch(seed: int = 0, b: int = B, layout: WindowLayout = LAYOUT) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    nt, npast, nk = layout.n_targets, layout.n_past, layout.n_known
    Lx, Hx = layout.input_length, layout.horizon
    return {
        "past_target": torch.randn(b, Lx, nt, generator=g),
        "past_covariates": torch.randn(b, Lx, npast, generator=g),
        "past_known": torch.randn(b, Lx, nk, generator=g),
        "future_known": torch.randn(b, Hx, nk, generator=g),
        "future_target": torch.randn(b, Hx, nt, generator=g),
        "series_index": torch.zeros(b, dtype=torch.int64),
        "origin": torch.arange(b) + Lx - 1,
    }


def _net(
    decoding: str = "autoregressive", layout: WindowLayout = LAYOUT, **kw
) -> TransformerNetwork:
    """A network whose output head is not zero: with the NLinear skip the head starts at
    0 (the model starts as the linear skip), which would hide the network from the
    causality and gradient checks; after one training step it is not 0 either."""
    torch.manual_seed(0)
    cfg = TransformerConfig.from_params(**{**SMALL, "decoding": decoding, **kw})
    net = TransformerNetwork(layout, cfg).eval()
    with torch.no_grad():
        net.head.weight.normal_(0.0, 0.3)
    return net


# ------------------------------------------------------------------ building blocks
def test_positional_encoding_matches_the_formula():
    n, d = 50, 12
    pe = sinusoidal_encoding(n, d)
    expected = torch.zeros(n, d)
    for pos in range(n):
        for i in range(d // 2):
            expected[pos, 2 * i] = math.sin(pos / 10000 ** (2 * i / d))
            expected[pos, 2 * i + 1] = math.cos(pos / 10000 ** (2 * i / d))
    torch.testing.assert_close(pe, expected, rtol=0, atol=1e-6)
    assert sinusoidal_encoding(3, 5).shape == (3, 5)  # odd width: the last cosine is dropped
    with pytest.raises(ValueError, match="needs n_positions >= 1 and d_model >= 1, got 0 and 4"):
        sinusoidal_encoding(0, 4)


def test_attention_is_scaled_dot_product_per_head():
    torch.manual_seed(0)
    att = MultiHeadAttention(8, 2).eval()
    q, kv = torch.randn(3, 4, 8), torch.randn(3, 6, 8)
    out, w = att(q, kv, kv)
    assert out.shape == (3, 4, 8) and w.shape == (3, 2, 4, 6)
    qh = att.q_proj(q).view(3, 4, 2, 4).transpose(1, 2)  # [B, nh, Tq, hs]
    kh = att.k_proj(kv).view(3, 6, 2, 4).transpose(1, 2)  # [B, nh, Tk, hs]
    torch.testing.assert_close(w, torch.softmax(qh @ kh.transpose(-2, -1) / 2.0, dim=-1))
    with pytest.raises(ValueError, match="d_model must be divisible by n_heads, got d_model=10"):
        MultiHeadAttention(10, 4)


def test_causal_mask_blocks_the_future_in_a_decoder_layer():
    torch.manual_seed(0)
    layer = DecoderLayer(8, 2, 16, 0.0).eval()
    x, memory = torch.randn(2, 6, 8), torch.randn(2, 7, 8)
    out, self_w, cross_w = layer(x, memory, self_mask=causal_mask(6))
    assert (self_w.triu(1) == 0).all() and cross_w.shape == (2, 2, 6, 7)
    changed = x.clone()
    changed[:, 4:] = 100.0  # steps 4 and 5 only
    out2, _, _ = layer(changed, memory, self_mask=causal_mask(6))
    torch.testing.assert_close(out[:, :4], out2[:, :4], rtol=0, atol=0)
    assert not torch.allclose(out[:, 4:], out2[:, 4:])


# ------------------------------------------------------------------------ network
@pytest.mark.parametrize("decoding", MODES)
def test_shapes_and_attention_rows_sum_to_one(decoding):
    out = _net(decoding)(_batch())
    assert isinstance(out, ForecastOutput)
    assert out.prediction.shape == (B, H, 2) and torch.isfinite(out.prediction).all()
    assert out.temporal_attention.shape == (B, H, L)
    ex = out.extras
    assert [tuple(m.shape) for m in ex["encoder_self_attention"]] == [(B, 2, L, L)] * 2
    assert [tuple(m.shape) for m in ex["decoder_cross_attention"]] == [(B, 2, H, L)] * 2
    assert [tuple(m.shape) for m in ex["decoder_self_attention"]] == [(B, 2, H, H)] * 2
    maps = [out.temporal_attention, *(m for v in ex.values() for m in v)]
    maps += [reduce_attention(out, how) for how in ("mean", "layer", "rollout")]
    for m in maps:
        torch.testing.assert_close(m.sum(-1), torch.ones(m.shape[:-1]))
        assert (m >= 0).all()
    for m in ex["decoder_self_attention"]:
        assert (m.triu(1) == 0).all()  # the causal mask: no weight on later steps


@pytest.mark.parametrize("decoding", MODES)
def test_prediction_ignores_future_target(decoding):
    net, batch = _net(decoding), _batch()
    garbage = {**batch, "future_target": torch.full_like(batch["future_target"], 1e6)}
    a, b = net(batch), net(garbage)
    torch.testing.assert_close(a.prediction, b.prediction, rtol=0, atol=0)
    torch.testing.assert_close(a.temporal_attention, b.temporal_attention, rtol=0, atol=0)


def test_decoder_input_at_step_k_plus_1_leaves_earlier_outputs_unchanged():
    """Teacher-forced: future_target[k] is the decoder input of step k + 1."""
    net, batch = _net("autoregressive"), _batch()
    k = 2
    changed = batch["future_target"].clone()
    changed[:, k] += 10.0
    a = net(batch, teacher_forcing=1.0).prediction
    b = net({**batch, "future_target": changed}, teacher_forcing=1.0).prediction
    torch.testing.assert_close(a[:, : k + 1], b[:, : k + 1], rtol=0, atol=0)
    assert not torch.allclose(a[:, k + 1 :], b[:, k + 1 :])


def test_direct_queries_are_causal_in_the_known_covariates():
    net, batch = _net("direct"), _batch()
    k = 2
    changed = batch["future_known"].clone()
    changed[:, k + 1] += 10.0
    a = net(batch).prediction
    b = net({**batch, "future_known": changed}).prediction
    torch.testing.assert_close(a[:, : k + 1], b[:, : k + 1], rtol=0, atol=0)
    assert not torch.allclose(a[:, k + 1], b[:, k + 1])


def test_step_by_step_decoding_matches_the_parallel_pass():
    """The key/value cache gives what the masked parallel pass gives on the same inputs."""
    net, batch = _net("autoregressive"), _batch()
    free = net(batch)  # step by step on its own predictions
    forced = net({**batch, "future_target": free.prediction}, teacher_forcing=1.0)
    torch.testing.assert_close(free.prediction, forced.prediction, rtol=1e-4, atol=1e-5)
    for key in ("decoder_self_attention", "decoder_cross_attention"):
        for a, b in zip(free.extras[key], forced.extras[key]):
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("decoding", MODES)
def test_batch_independence_in_eval_mode(decoding):
    net, batch = _net(decoding), _batch(b=6)
    together = net(batch).prediction
    alone = torch.cat(
        [net({k: v[i : i + 1] for k, v in batch.items()}).prediction for i in range(6)]
    )
    torch.testing.assert_close(together, alone, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(
    ("decoding", "ratio"),
    [("autoregressive", 0.0), ("autoregressive", 0.5), ("autoregressive", 1.0), ("direct", 0.0)],
)
def test_every_parameter_receives_a_gradient(decoding, ratio):
    net = _net(decoding).train()
    out = net(_batch(), teacher_forcing=ratio, generator=torch.Generator().manual_seed(0))
    (out.prediction.square().mean() + out.temporal_attention.square().mean()).backward()
    missing = [n for n, p in net.named_parameters() if p.grad is None or not p.grad.abs().sum()]
    assert missing == []


def test_scheduled_sampling_is_reproducible_and_between_the_extremes():
    net, batch = _net("autoregressive", dropout=0.0), _batch()

    def run(ratio: float, seed: int = 0) -> torch.Tensor:
        return net(batch, teacher_forcing=ratio, generator=torch.Generator().manual_seed(seed))

    torch.testing.assert_close(run(0.5).prediction, run(0.5).prediction, rtol=0, atol=0)
    mixed, forced = run(0.5).prediction, run(1.0).prediction
    assert not torch.allclose(mixed, forced)
    # Step 0 always starts from the last observed value, whatever the draw.
    torch.testing.assert_close(mixed[:, 0], forced[:, 0], rtol=0, atol=0)
    with pytest.raises(ValueError, match=r"teacher_forcing must be in \[0, 1\], got 1.5"):
        net(batch, teacher_forcing=1.5)


def test_without_covariates_or_revin():
    lay = WindowLayout(L, H, ("y",))
    for decoding in MODES:
        net = _net(decoding, layout=lay, revin=False, use_known=False)
        out = net(_batch(layout=lay))
        assert out.prediction.shape == (B, H, 1) and torch.isfinite(out.prediction).all()


# ------------------------------------------------------------------ reductions
def test_reduce_attention_by_hand():
    enc = [torch.tensor([[[[0.5, 0.5], [0.0, 1.0]]]])]  # [B=1, nh=1, L=2, L=2]
    cross = [
        torch.tensor([[[[1.0, 0.0]], [[0.0, 1.0]]]]),  # [B=1, nh=2, H=1, L=2]
        torch.tensor([[[[0.2, 0.8]], [[0.2, 0.8]]]]),
    ]
    maps = {"encoder_self_attention": enc, "decoder_cross_attention": cross}
    torch.testing.assert_close(reduce_attention(maps, "layer", 0), torch.tensor([[[0.5, 0.5]]]))
    torch.testing.assert_close(reduce_attention(maps, "layer"), torch.tensor([[[0.2, 0.8]]]))
    torch.testing.assert_close(reduce_attention(maps, "mean"), torch.tensor([[[0.35, 0.65]]]))
    # (A + I) row-normalised = [[0.75, 0.25], [0, 1]]; [0.2, 0.8] @ that = [0.15, 0.85].
    torch.testing.assert_close(reduce_attention(maps, "rollout"), torch.tensor([[[0.15, 0.85]]]))


def test_reduce_attention_errors():
    maps = {"decoder_cross_attention": [torch.ones(1, 1, 1, 2) / 2]}
    with pytest.raises(ValueError, match=r"unknown attention reduction 'max'; expected one of"):
        reduce_attention(maps, "max")
    with pytest.raises(ValueError, match=r"layer=1 is out of range for 1 decoder layer\(s\)"):
        reduce_attention(maps, "layer", layer=1)
    with pytest.raises(ValueError, match="needs 'decoder_cross_attention' in the maps"):
        reduce_attention({"encoder_self_attention": []})


def test_temporal_attention_follows_the_configured_reduction():
    net = _net("direct", attention_reduction="rollout")
    out = net(_batch())
    torch.testing.assert_close(out.temporal_attention, reduce_attention(out, "rollout"))


def test_config_errors():
    with pytest.raises(ValueError, match="d_model must be divisible by n_heads, got d_model=30"):
        TransformerConfig.from_params(d_model=30, n_heads=4)
    with pytest.raises(ValueError, match=r"unknown decoding 'beam'; expected one of"):
        TransformerConfig.from_params(decoding="beam")
    with pytest.raises(ValueError, match=r"dropout must be in \[0, 1\), got 1.0"):
        TransformerConfig.from_params(dropout=1.0)


# --------------------------------------------------------------- with the loop
@pytest.fixture(scope="module")
def synthetic():
    # lag >= horizon: every forecast step is driven by a covariate value already observed.
    ds = make_driver_dataset(400, seed=0, n_covariates=2, lag=6, noise=0.05)
    roles = ColumnRoles(("target",), ds.covariates)
    return prepare_data(ds.frame, roles, input_length=24, horizon=6)


TINY = {"d_model": 16, "n_heads": 2, "encoder_layers": 1, "decoder_layers": 1, "d_ff": 32}


@pytest.mark.parametrize("name", ["transformer", "transformer_direct"])
def test_both_modes_train(synthetic, name):
    # Autoregressive: teacher forcing 1 -> 0.625 exercises the parallel and two-pass paths.
    params = {"epochs": 4, "batch_size": 16, "lr": 3e-3, "progress": False, "device": "cpu"}
    if name == "transformer":
        params.update(teacher_forcing=1.0, tf_end=0.5)
    model = create_model(name, synthetic.layout, **TINY, **params, patience=None)
    model.fit(synthetic.train, synthetic.val)
    assert isinstance(model, TransformerForecaster)
    assert model.config.decoding == {"transformer": "autoregressive"}.get(name, "direct")
    hist = model.history_
    assert hist["train_loss"].iloc[-1] < 0.6 * hist["train_loss"].iloc[0]
    assert np.isfinite(hist["val_loss"]).all()
    out = model.predict_batch(synthetic.test.batch(np.arange(3)))
    assert out.temporal_attention.shape == (3, 6, 24)


def test_checkpoint_round_trip(synthetic, tmp_path):
    params = {"epochs": 1, "progress": False, "device": "cpu"}
    model = create_model("transformer", synthetic.layout, **TINY, **params)
    model.fit(synthetic.train.subset(np.arange(32)))
    path = save_checkpoint(model, tmp_path / "t.pt")
    again = load_checkpoint(path)
    batch = synthetic.test.batch(np.arange(4))
    torch.testing.assert_close(
        model.predict_batch(batch).prediction, again.predict_batch(batch).prediction
    )


def test_attention_dropout_is_separate_from_residual_dropout():
    layout = WindowLayout(12, 4, ("y",), ())

    def rates(**kw) -> set[tuple[str, float]]:
        net = TransformerNetwork(layout, TransformerConfig.from_params(dropout=0.3, **kw))
        return {
            (name.rsplit(".", 1)[-1] if "attn" in name else "other", m.p)
            for name, m in net.named_modules()
            if isinstance(m, torch.nn.Dropout)
        }

    assert rates() == {("dropout", 0.3), ("other", 0.3)}
    assert rates(attention_dropout=0.0) == {("dropout", 0.0), ("other", 0.3)}
    with pytest.raises(ValueError, match="attention_dropout must be in"):
        TransformerConfig.from_params(attention_dropout=1.0)


def test_a_fresh_network_forecasts_its_linear_skip():
    """With `skip`, the output head starts at 0: before training the forecast is the
    NLinear skip on the targets' window (last value + linear map of the differences), so
    training starts from a linear autoregression and learns what it misses."""
    torch.manual_seed(0)
    net = TransformerNetwork(
        LAYOUT, TransformerConfig.from_params(**{**SMALL, "revin": False})
    ).eval()
    batch = _batch()
    past = batch["past_target"]
    last = past[:, -1:]
    expected = net.skip((past - last).transpose(1, 2)).transpose(1, 2) + last
    torch.testing.assert_close(net(batch).prediction, expected, rtol=0, atol=1e-6)
    plain = TransformerNetwork(LAYOUT, TransformerConfig.from_params(**{**SMALL, "skip": False}))
    assert plain.skip is None and plain.head.weight.abs().sum() > 0


@pytest.mark.parametrize("decoding", MODES)
def test_attention_maps_only_when_asked_for_and_the_same_forecast(decoding):
    net, batch = _net(decoding), _batch()
    with torch.no_grad():
        full = net(batch, teacher_forcing=0.0)
        lean = net(batch, teacher_forcing=0.0, return_attention=False)
    assert full.temporal_attention is not None and full.extras["encoder_self_attention"]
    assert lean.temporal_attention is None and lean.extras == {}
    # the fused kernel computes the same softmax(QK^T / sqrt(d)) V, up to rounding
    torch.testing.assert_close(lean.prediction, full.prediction, rtol=1e-5, atol=1e-5)


def test_evaluation_batches_are_capped_by_activation_memory(monkeypatch):
    from forecast.data.synthetic import make_driver_dataset as make
    from forecast.evaluate import predict_dataset
    from forecast.models import base

    syn = make(600, seed=0)
    roles = ColumnRoles((syn.target,), tuple(syn.covariates), (), time_column="date")
    bundle = prepare_data(syn.frame, roles, input_length=L, horizon=H)
    model = create_model("transformer", bundle.layout, **SMALL, progress=False)
    model.network = model.build_network().eval()
    per_window = model.network.activation_bytes(False)
    assert model.network.activation_bytes(True) > per_window  # maps cost memory
    monkeypatch.setattr("forecast.models.torch_base.EVAL_MEMORY_BYTES", 10 * per_window)
    assert model.max_batch(False) == 10 and base.Forecaster.max_batch(model, False) is None
    sizes, asked = [], []
    real = model.predict_batch

    def spy(batch, *, attention=True):
        sizes.append(len(batch["origin"]))
        asked.append(attention)
        return real(batch, attention=attention)

    monkeypatch.setattr(model, "predict_batch", spy)
    preds = predict_dataset(model, bundle.test, batch_size=1024)
    assert max(sizes) == 10 and sum(sizes) == len(bundle.test) == len(preds.prediction)
    assert not any(asked) and preds.temporal_attention is None  # a run asks for no maps
