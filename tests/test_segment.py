"""The segment-recurrent attention LSTM (`forecast.models.segment`)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from forecast import ColumnRoles, create_model, prepare_data
from forecast.checkpoint import load_checkpoint, save_checkpoint
from forecast.data.windows import WindowLayout
from forecast.models.attention import ATTENTIONS
from forecast.models.base import ForecastOutput
from forecast.models.segment import SegmentNetwork, auto_segment_length

pytestmark = pytest.mark.usefixtures("one_thread")  # see conftest.py
FAST = {"epochs": 2, "progress": False, "device": "cpu", "batch_size": 32}


def _batch(layout: WindowLayout, B: int = 3, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    L, H = layout.input_length, layout.horizon
    T, P, K = layout.n_targets, layout.n_past, layout.n_known
    return {
        "past_target": torch.randn(B, L, T, generator=g),
        "past_covariates": torch.randn(B, L, P, generator=g),
        "past_known": torch.randn(B, L, K, generator=g),
        "future_known": torch.randn(B, H, K, generator=g),
        "future_target": torch.randn(B, H, T, generator=g),
    }


def _network(layout: WindowLayout, **params) -> SegmentNetwork:
    torch.manual_seed(0)
    return create_model("segrnn", layout, **params).build_network().eval()


# L=30 with W=8: 4 segments, the first padded by 2 steps; H=10: 2 segments, cut to 10.
PADDED = WindowLayout(30, 10, ("a", "b"), ("x",), ("k",))


@pytest.mark.parametrize("attention", [a for a in ATTENTIONS if a != "none"])
def test_shapes_and_maps_sum_to_one_in_segment_blocks(attention):
    net = _network(PADDED, segment_length=8, attention=attention)
    out = net(_batch(PADDED))
    assert out.prediction.shape == (3, 10, 2)
    seg = out.extras["segment_attention"]
    assert seg.shape == (3, 2, 2, 4)  # [B, targets, M, N]
    temporal = out.temporal_attention
    assert temporal.shape == (3, 10, 30)
    torch.testing.assert_close(temporal.sum(-1), torch.ones(3, 10))
    # Segment blocks: steps of one horizon segment share a row; steps of one input
    # segment share a weight; the padded first segment spreads over its 6 real steps.
    torch.testing.assert_close(temporal[:, :8], temporal[:, :1].expand(-1, 8, -1))
    torch.testing.assert_close(temporal[:, 8:], temporal[:, 8:9].expand(-1, 2, -1))
    mean = seg.mean(dim=1)  # [B, M, N], the targets' maps averaged
    torch.testing.assert_close(temporal[:, 0, :6], (mean[:, 0, :1] / 6).expand(-1, 6))
    torch.testing.assert_close(temporal[:, 9, 22:], (mean[:, 1, 3:] / 8).expand(-1, 8))


def test_no_attention_returns_no_maps_and_training_asks_for_none():
    net = _network(PADDED, segment_length=8, attention="none")
    assert net(_batch(PADDED)).temporal_attention is None
    net = _network(PADDED, segment_length=8)
    out = net(_batch(PADDED), return_attention=False)
    assert out.temporal_attention is None and out.extras == {}


@pytest.mark.parametrize("normalization", ["revin", "last", "none"])
def test_prediction_ignores_the_future_and_is_batch_independent(normalization):
    net = _network(PADDED, segment_length=8, normalization=normalization)
    batch = _batch(PADDED)
    a = net(batch).prediction
    garbage = {**batch, "future_target": torch.full_like(batch["future_target"], 1e6)}
    torch.testing.assert_close(a, net(garbage).prediction, rtol=0, atol=0)
    # A window's forecast does not depend on the other windows of its batch.
    one = {k: v[:1] for k, v in batch.items()}
    torch.testing.assert_close(a[:1], net(one).prediction, rtol=1e-5, atol=1e-6)


def test_known_future_covariates_are_read():
    net = _network(PADDED, segment_length=8)
    batch = _batch(PADDED)
    moved = {**batch, "future_known": batch["future_known"] + 1.0}
    assert not torch.allclose(net(batch).prediction, net(moved).prediction)


def test_segment_length_default_and_errors():
    assert [auto_segment_length(n) for n in (24, 96, 336, 720)] == [3, 12, 24, 48]
    net = create_model("segrnn", WindowLayout(96, 24, ("y",))).build_network()
    assert (net.W, net.N, net.M) == (12, 8, 2)
    with pytest.raises(ValueError, match="segment_length must be >= 1 or None, got 0"):
        create_model("segrnn", PADDED, segment_length=0)
    with pytest.raises(ValueError, match="teacher_forcing=0.5: the segment model"):
        create_model("segrnn", PADDED, teacher_forcing=0.5)
    with pytest.raises(ValueError, match="unknown normalization 'z'"):
        create_model("segrnn", PADDED, normalization="z")
    with pytest.raises(ValueError, match="unknown cell 'rnn'"):
        create_model("segrnn", PADDED, cell="rnn")


def _seasonal(n: int = 1200) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    t = np.arange(n)
    y = np.sin(2 * np.pi * t / 24) + 0.5 * np.sin(2 * np.pi * t / 7) + rng.normal(0, 0.05, n)
    return pd.DataFrame({"date": pd.date_range("2024-01-01", periods=n, freq="h"), "y": y})


@pytest.fixture(scope="module")
def seasonal_fit():
    data = prepare_data(_seasonal(), ColumnRoles(("y",)), input_length=48, horizon=12)
    model = create_model(
        "segrnn", data.layout, segment_length=6, epochs=15, lr=5e-3, seed=0, progress=False,
        device="cpu", patience=None,
    ).fit(data.train, data.val)  # fmt: skip
    return data, model


def test_learns_a_seasonal_signal_well_below_naive(seasonal_fit):
    data, model = seasonal_fit
    naive = create_model("naive", data.layout)
    mse = {}
    for name, m in (("segrnn", model), ("naive", naive)):
        batch = data.test.batch(np.arange(len(data.test)))
        pred = m.predict_batch(batch).prediction
        mse[name] = float(((pred - batch["future_target"]) ** 2).mean())
    assert mse["segrnn"] < 0.1 * mse["naive"], mse


def test_checkpoint_round_trip(seasonal_fit, tmp_path):
    data, model = seasonal_fit
    path = save_checkpoint(model, tmp_path / "segrnn.pt", data.scaler)
    loaded = load_checkpoint(path)
    assert loaded.name == "segrnn" and loaded.config == model.config
    batch = data.test.batch([0, 5, 9])
    a, b = model.predict_batch(batch), loaded.predict_batch(batch)
    torch.testing.assert_close(a.prediction, b.prediction, rtol=0, atol=0)
    torch.testing.assert_close(a.temporal_attention, b.temporal_attention, rtol=0, atol=0)


def test_checkpoint_saved_before_the_cell_setting_loads_as_lstm(tmp_path, monkeypatch):
    """A checkpoint written before `cell` existed holds an LSTM: it still loads and
    predicts the same, though the default cell is now the GRU."""
    import forecast.checkpoint as ckpt

    data = prepare_data(_seasonal(), ColumnRoles(("y",)), input_length=24, horizon=6)
    model = create_model(
        "segrnn", data.layout, cell="lstm", epochs=1, progress=False, seed=0, device="cpu"
    )
    model.fit(data.train, data.val)
    path = save_checkpoint(model, tmp_path / "old.pt", data.scaler)
    real = ckpt.read_checkpoint

    def without_cell(p):
        payload = real(p)
        payload["config"] = {k: v for k, v in payload["config"].items() if k != "cell"}
        return payload

    monkeypatch.setattr(ckpt, "read_checkpoint", without_cell)
    loaded = load_checkpoint(path)
    assert loaded.config.cell == "lstm" and create_model("segrnn", data.layout).config.cell == "gru"
    batch = data.test.batch([0, 3])
    a, b = model.predict_batch(batch), loaded.predict_batch(batch)
    torch.testing.assert_close(a.prediction, b.prediction, rtol=0, atol=0)


def test_skip_starts_at_the_least_squares_nlinear():
    """With `skip=True` the output layer starts at 0 and the skip at the ridge NLinear
    fit: before any epoch, with last-value normalisation, the forecast is `nlinear`'s."""
    roles = ColumnRoles(("y",), calendar=False)
    data = prepare_data(_seasonal(600), roles, input_length=24, horizon=6)
    model = create_model("segrnn", data.layout, skip=True, normalization="last", **FAST)
    net = model.build_network().eval()
    net.warm_start(data.train)
    ridge = create_model("nlinear", data.layout).fit(data.train)
    batch = data.test.batch(np.arange(20))
    torch.testing.assert_close(
        net(batch).prediction, ridge.predict_batch(batch).prediction, rtol=1e-4, atol=1e-4
    )
    fitted = model.fit(data.train, data.val)  # the warm start is the epoch-0 candidate
    assert fitted.best_epoch_ is not None and len(fitted.history_) == 2


def test_mae_loss_option():
    model = create_model("segrnn", PADDED, segment_length=8, loss="mae")
    batch = _batch(PADDED)
    pred = torch.zeros_like(batch["future_target"])
    loss = model.loss(ForecastOutput(pred), batch)
    torch.testing.assert_close(loss, batch["future_target"].abs().mean())
    with pytest.raises(ValueError, match="unknown loss 'huber'"):
        create_model("segrnn", PADDED, loss="huber")


@pytest.mark.parametrize("cell", ["lstm", "gru"])
@pytest.mark.parametrize("attention", ["luong_general", "bahdanau"])
def test_stacked_layers_give_finite_forecasts_and_gradients(attention, cell):
    net = _network(
        PADDED, segment_length=8, num_layers=2, dropout=0.2, attention=attention, cell=cell
    )
    recurrent = (
        (torch.nn.GRU, torch.nn.GRUCell) if cell == "gru" else (torch.nn.LSTM, torch.nn.LSTMCell)
    )
    assert isinstance(net.encoder, recurrent[0]) and isinstance(net.decoder[1], recurrent[1])
    net.train()
    out = net(_batch(PADDED), return_attention=False)
    assert out.prediction.shape == (3, 10, 2) and torch.isfinite(out.prediction).all()
    out.prediction.square().mean().backward()
    missing = [n for n, p in net.named_parameters() if p.grad is None]
    assert not missing, missing
