"""The one training loop: config, schedules, seeds, early stopping, history, checkpoints."""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from forecast import ColumnRoles, create_model, prepare_data
from forecast.checkpoint import load_checkpoint, read_checkpoint, save_checkpoint
from forecast.evaluate import predict_dataset, score
from forecast.models.base import ForecastOutput
from forecast.models.torch_base import TorchForecaster, TorchModelConfig
from forecast.precision import cpu_has_bf16
from forecast.teacher_forcing import TeacherForcingSchedule
from forecast.training import (
    HISTORY_COLUMNS,
    TrainConfig,
    free_running_loss,
    resolve_device,
    train,
)

ROLES = ColumnRoles(("y",), ("x",), ("k",), calendar=False)
L, H = 16, 4
QUIET = {"progress": False, "device": "cpu"}


pytestmark = pytest.mark.usefixtures("one_thread")  # see conftest.py


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    n = 300
    x = rng.normal(size=n)
    df = pd.DataFrame(
        {
            "date": pd.date_range("2024-01-01", periods=n, freq="h"),
            "y": np.sin(np.arange(n) / 4) + 0.5 * np.roll(x, 2) + rng.normal(0, 0.1, n),
            "x": x,
            "k": np.cos(np.arange(n) / 6),
        }
    )
    return prepare_data(df, ROLES, input_length=L, horizon=H)


class ToyNet(nn.Module):
    """A linear map from the input window to the horizon; counts the windows it sees."""

    def __init__(self, L: int, H: int, nan: bool = False) -> None:
        super().__init__()
        self.lin = nn.Linear(L, H)
        self.nan = nan
        self.seen = {"train": 0, "eval": 0}

    def forward(self, batch, teacher_forcing=0.0, generator=None):
        x = batch["past_target"][..., 0]  # [B, L]
        self.seen["train" if self.training else "eval"] += len(x)
        y = self.lin(x)[..., None]  # [B, H, 1]
        return ForecastOutput(y * math.nan if self.nan else y)


@dataclass(frozen=True)
class ToyConfig(TorchModelConfig):
    nan: bool = False


class Toy(TorchForecaster):
    """Proves the loop is generic: any network with the forward signature trains."""

    Config = ToyConfig

    def build_network(self) -> nn.Module:
        return ToyNet(self.layout.input_length, self.layout.horizon, self.config.nan)


def test_the_loop_trains_any_model_with_a_network_not_only_torch_forecasters(data):
    """`forecast.training.train` needs only the `Trainable` attributes, no model base."""

    class Plain:
        name, device = "plain", torch.device("cpu")

        def __init__(self):
            torch.manual_seed(0)
            self.network = ToyNet(L, H)

        def loss(self, output, batch):
            return nn.functional.mse_loss(output.prediction, batch["future_target"])

        def evaluate_loss(self, ds):
            return free_running_loss(self, ds)

        def network_options(self, attention):
            return {}

    plain = Plain()
    result = train(plain, data.train, data.val, TrainConfig(epochs=2, patience=None, **QUIET))
    assert result.history["epoch"].tolist() == [1, 2] and result.best_epoch in (1, 2)
    toy = Toy(data.layout, ToyConfig.from_params(epochs=2, patience=None, seed=0, **QUIET))
    toy.fit(data.train, data.val)  # the same seed, network and loop: the same run
    pd.testing.assert_frame_equal(
        result.history.drop(columns="seconds"), toy.history_.drop(columns="seconds")
    )


def test_flat_params_split_into_architecture_and_training():
    config = ToyConfig.from_params(nan=True, epochs=3, lr=0.5)
    assert config.nan and (config.train.epochs, config.train.lr) == (3, 0.5)
    assert ToyConfig.from_params(**config.params()) == config
    with pytest.raises(ValueError, match=r"unknown parameter 'epoch' for ToyConfig; valid: \["):
        ToyConfig.from_params(epoch=3)


def test_config_errors_name_the_problem():
    cases = [
        ({"optimizer": "sgd"}, r"unknown optimizer 'sgd'; expected one of \['adam', 'adamw'\]"),
        ({"lr_schedule": "cyclic"}, r"unknown lr_schedule 'cyclic'; expected one of \['none'"),
        ({"device": "tpu"}, r"unknown device 'tpu'; expected one of \['auto', 'cpu'"),
        ({"tf_schedule": "cosine"}, r"unknown tf_schedule 'cosine'; expected one of \["),
        ({"epochs": 0}, "epochs must be >= 1, got 0"),
        ({"lr": 0.0}, "lr must be > 0, got 0.0"),
        ({"max_val_windows": 0}, "max_val_windows must be >= 1 or None, got 0"),
        ({"teacher_forcing": 1.5}, r"teacher-forcing start must be in \[0, 1\], got 1.5"),
        ({"tf_k": 0.5}, "inverse-sigmoid k must be >= 1, got 0.5"),
    ]
    for params, message in cases:
        with pytest.raises(ValueError, match=message):
            TrainConfig(**params)


def test_teacher_forcing_schedules():
    lin = TeacherForcingSchedule("linear", start=0.5, end=0.1, epochs=3)
    assert [round(lin(e), 6) for e in range(4)] == [0.5, 0.3, 0.1, 0.1]
    exp = TeacherForcingSchedule("exponential", start=0.8, decay=0.5)
    assert [exp(e) for e in range(3)] == [0.8, 0.4, 0.2]
    inv = TeacherForcingSchedule("inverse_sigmoid", start=1.0, k=10.0)
    values = [inv(e) for e in range(40)]
    assert values[0] == pytest.approx(10 / 11) and values[-1] < 0.2
    assert all(a > b for a, b in zip(values, values[1:]))  # monotone decay
    assert TeacherForcingSchedule("constant", start=0.3)(99) == 0.3
    assert TeacherForcingSchedule("linear", start=0.0, end=1.0, epochs=2)(5) == 1.0  # clipped
    with pytest.raises(ValueError, match=r"unknown teacher-forcing schedule 'warm'; expected"):
        TeacherForcingSchedule("warm")


def test_same_seed_same_metrics_other_seed_differs(data):
    params = {
        "epochs": 2,
        "hidden_size": 8,
        "dropout": 0.2,  # dropout draws from the global RNG, seeded by fit
        "num_layers": 2,
        "teacher_forcing": 0.5,  # per-window coin flips from the loop's generator
        "max_train_windows": 100,  # a random subset per epoch
        **QUIET,
    }
    runs = []
    for seed in (0, 0, 1):
        model = create_model("lstm_classic", data.layout, seed=seed, **params)
        model.fit(data.train, data.val)
        runs.append((model.history_, score(predict_dataset(model, data.test), data, data.test)))
    (h0, m0), (h1, m1), (h2, m2) = runs
    pd.testing.assert_frame_equal(h0.drop(columns="seconds"), h1.drop(columns="seconds"))
    assert m0 == m1
    assert m0["mse"] != m2["mse"]


def test_early_stopping_restores_the_best_weights(data, monkeypatch):
    """Scripted validation losses: best at epoch 3, patience 2 stops after epoch 5 and
    the weights of epoch 3 come back."""
    scripted = iter([3.0, 2.0, 1.0, 1.5, 1.2, 0.5, 0.1])
    snapshots = []

    def fake_val(self, ds, batch_size=512):
        snapshots.append({k: v.clone() for k, v in self.network.state_dict().items()})
        return next(scripted)

    monkeypatch.setattr(Toy, "evaluate_loss", fake_val)
    model = Toy(data.layout, ToyConfig.from_params(epochs=7, patience=2, lr=0.05, **QUIET)).fit(
        data.train, data.val
    )
    assert model.history_["epoch"].tolist() == [1, 2, 3, 4, 5]
    assert model.history_["val_loss"].tolist() == [3.0, 2.0, 1.0, 1.5, 1.2]
    assert model.best_epoch_ == 3
    final = model.network.state_dict()
    assert not torch.equal(snapshots[4]["lin.weight"], snapshots[2]["lin.weight"])
    for k, v in snapshots[2].items():
        torch.testing.assert_close(final[k], v, rtol=0, atol=0)


def test_real_early_stopping_keeps_the_best_validation_loss(data):
    model = Toy(data.layout, ToyConfig.from_params(epochs=40, patience=2, lr=0.3, **QUIET))
    model.fit(data.train, data.val)
    hist = model.history_
    assert len(hist) < 40, "expected an early stop with lr=0.3"
    assert model.best_epoch_ == int(hist.loc[hist["val_loss"].idxmin(), "epoch"])
    assert len(hist) == model.best_epoch_ + 2
    assert model.evaluate_loss(data.val) == pytest.approx(hist["val_loss"].min(), rel=1e-6)


def test_history_columns_and_csv(data, tmp_path):
    model = create_model(
        "lstm_classic",
        data.layout,
        epochs=3,
        hidden_size=8,
        teacher_forcing=0.6,
        lr=1e-3,
        lr_schedule="none",
        **QUIET,
    ).fit(data.train, data.val)
    hist = model.history_
    assert list(hist.columns) == HISTORY_COLUMNS
    assert hist["epoch"].tolist() == [1, 2, 3] and (hist["phase"] == 1).all()
    assert hist["teacher_forcing"].round(6).tolist() == [0.6, 0.3, 0.0]  # linear to tf_end=0
    assert (hist["lr"] == 1e-3).all() and (hist["seconds"] > 0).all()
    assert np.isfinite(hist[["train_loss", "val_loss"]].to_numpy()).all()
    # A free-running training loss beside the teacher-forced one, only while forced.
    assert np.isfinite(hist["train_loss_free"].iloc[:2]).all()
    assert np.isnan(hist["train_loss_free"].iloc[2])  # tf 0: train_loss is free already
    # Validation is free-running: exactly what evaluate_loss gives for the kept weights.
    best = hist.loc[hist["epoch"] == model.best_epoch_, "val_loss"].item()
    assert model.evaluate_loss(data.val) == pytest.approx(best, rel=1e-6)
    path = model.save_history(tmp_path / "run" / "history.csv")
    pd.testing.assert_frame_equal(pd.read_csv(path), hist, check_dtype=False)


def test_lr_schedules(data):
    def lrs(**kw):
        cfg = ToyConfig.from_params(epochs=4, patience=None, **QUIET, **kw)
        return Toy(data.layout, cfg).fit(data.train, data.val).history_["lr"].tolist()

    assert lrs(lr_schedule="step", lr_step_size=1, lr_gamma=0.5) == [1e-3, 5e-4, 2.5e-4, 1.25e-4]
    cosine = lrs(lr_schedule="cosine")
    assert cosine[0] == 1e-3 and all(a > b for a, b in zip(cosine, cosine[1:]))
    assert lrs(lr_schedule="plateau")[0] == 1e-3
    assert lrs() == [1e-3] * 4


def test_window_caps_gradient_clipping_and_no_validation(data, monkeypatch):
    calls = []
    clip = nn.utils.clip_grad_norm_
    monkeypatch.setattr(
        nn.utils, "clip_grad_norm_", lambda p, m, **kw: calls.append(m) or clip(p, m, **kw)
    )
    cfg = ToyConfig.from_params(
        epochs=2, batch_size=16, max_train_windows=40, max_val_windows=10, **QUIET
    )
    model = Toy(data.layout, cfg).fit(data.train, data.val)
    # eval: 2 x 10 validation windows + 10 training windows run free in epoch 1, the
    # one trained with teacher forcing (0.5, linear to 0): `train_loss_free`.
    assert model.network.seen == {"train": 80, "eval": 30}
    assert calls == [1.0] * 6  # 3 batches of <= 16 windows per epoch
    model = Toy(data.layout, ToyConfig.from_params(**{**cfg.params(), "grad_clip": None})).fit(
        data.train
    )
    assert len(calls) == 6
    assert model.history_["val_loss"].isna().all() and model.best_epoch_ == 2


def test_nan_loss_raises(data):
    message = "training loss is nan over an epoch of 191 windows"
    with pytest.raises(FloatingPointError, match=message):
        Toy(data.layout, ToyConfig.from_params(nan=True, **QUIET)).fit(data.train, data.val)


def test_predict_before_fit(data):
    model = create_model("lstm", data.layout, **QUIET)
    with pytest.raises(RuntimeError, match=r"lstm is not fitted; call fit\(train, val\) or"):
        model.predict_batch(data.test.batch([0]))


def test_progress_bar_and_logging(data, capsys, caplog):
    with caplog.at_level(logging.INFO, logger="forecast.training"):
        Toy(data.layout, ToyConfig.from_params(epochs=1, progress=False, device="cpu")).fit(
            data.train
        )
    assert capsys.readouterr().err == ""
    assert "epoch 1: train" in caplog.text
    Toy(data.layout, ToyConfig.from_params(epochs=1, progress=True, device="cpu")).fit(data.train)
    assert "train=" in capsys.readouterr().err


def test_devices():
    assert resolve_device("cpu") == torch.device("cpu")
    if not torch.cuda.is_available():
        assert resolve_device("auto").type in ("cpu", "mps")
        with pytest.raises(ValueError, match="device 'cuda' was requested but is not available"):
            resolve_device("cuda")


@pytest.mark.parametrize("name", ["darnn", "lstm"])
def test_checkpoint_round_trip(data, tmp_path, name):
    params = {"revin": True, "dropout": 0.1}
    if name == "lstm":
        params.update(bidirectional=True, attention="luong_general")
    model = create_model(name, data.layout, epochs=1, hidden_size=8, **params, **QUIET)
    model.fit(data.train, data.val)
    path = save_checkpoint(model, tmp_path / "ckpt" / "model.pt", scaler=data.scaler)
    assert sorted(p.name for p in path.parent.iterdir()) == ["model.pt"]  # no temp file left
    raw = read_checkpoint(path)  # plain data only, read with weights_only=True
    assert raw["config"] == model.config.params() and raw["name"] == name
    loaded = load_checkpoint(path)
    assert loaded.name == name and loaded.config == model.config
    assert loaded.layout == data.layout
    np.testing.assert_array_equal(loaded.scaler.mean_, data.scaler.mean_)
    pd.testing.assert_frame_equal(loaded.history_, model.history_)
    batch = data.test.batch(np.arange(8))
    a, b = model.predict_batch(batch), loaded.predict_batch(batch)
    for field in ("prediction", "temporal_attention", "feature_attention"):
        x, y = getattr(a, field), getattr(b, field)
        assert (x is None) == (y is None)
        if x is not None:
            torch.testing.assert_close(x, y, rtol=0, atol=0)


def test_checkpoint_of_a_model_outside_the_registry(data, tmp_path):
    model = Toy(data.layout, ToyConfig.from_params(epochs=1, **QUIET)).fit(data.train)
    save_checkpoint(model, tmp_path / "toy.pt")
    with pytest.raises(ValueError, match="is not a registered torch model"):
        load_checkpoint(tmp_path / "toy.pt")  # only registered classes, unless passed
    loaded = load_checkpoint(tmp_path / "toy.pt", model_class=Toy)
    assert type(loaded).__name__ == "Toy" and loaded.scaler is None
    batch = data.test.batch([0, 1])
    torch.testing.assert_close(
        model.predict_batch(batch).prediction, loaded.predict_batch(batch).prediction
    )


# ------------------------------------------------------------------ precision, compile
def test_amp_modes_on_cpu(data):
    cfg = dict(epochs=2, batch_size=32, hidden_size=8, seed=3, **QUIET)
    off = create_model("lstm", data.layout, amp="off", **cfg).fit(data.train, data.val)
    auto = create_model("lstm", data.layout, amp="auto", **cfg).fit(data.train, data.val)
    # 'auto' leaves AMP off on a CPU: the very same run.
    pd.testing.assert_frame_equal(
        off.history_.drop(columns="seconds"), auto.history_.drop(columns="seconds")
    )
    if not cpu_has_bf16():
        with pytest.raises(ValueError, match="amp='bf16' on the CPU needs bfloat16"):
            create_model("lstm", data.layout, amp="bf16", **cfg).fit(data.train)
    else:
        bf16 = create_model("lstm", data.layout, amp="bf16", **cfg).fit(data.train, data.val)
        losses = bf16.history_[["train_loss", "val_loss"]].to_numpy()
        assert np.isfinite(losses).all()
        # bfloat16 really ran: the training losses differ from float32's, a little.
        assert not np.array_equal(losses[:, 0], off.history_["train_loss"].to_numpy())
        np.testing.assert_allclose(losses, off.history_[["train_loss", "val_loss"]], rtol=0.2)
        out = bf16.predict_batch(data.test.batch([0, 1]))
        assert out.prediction.dtype == torch.float32  # prediction runs in float32
    with pytest.raises(ValueError, match="amp='fp16' needs a CUDA device"):
        create_model("lstm", data.layout, amp="fp16", **cfg).fit(data.train)
    with pytest.raises(ValueError, match="unknown amp 'half'"):
        create_model("lstm", data.layout, amp="half", **cfg)


@pytest.mark.slow
def test_compile_trains_like_eager(data):
    cfg = dict(epochs=2, batch_size=32, seed=1, grad_clip=None, **QUIET)
    eager = Toy(data.layout, ToyConfig.from_params(**cfg)).fit(data.train, data.val)
    compiled = Toy(data.layout, ToyConfig.from_params(compile=True, **cfg)).fit(
        data.train, data.val
    )
    np.testing.assert_allclose(
        compiled.history_[["train_loss", "val_loss"]],
        eager.history_[["train_loss", "val_loss"]],
        rtol=1e-4,
    )


def test_torch_model_state_dict_is_its_network_weights(tiny_bundle_for_state):
    """`TorchForecaster.state_dict` returns the network's weights (not the base's empty
    dict), and `load_state_dict` into a fresh model reproduces its predictions."""
    data = tiny_bundle_for_state
    model = create_model("lstm_plain", data.layout, epochs=1, progress=False, seed=0)
    with pytest.raises(RuntimeError, match="not fitted"):
        model.state_dict()
    model.fit(data.train, data.val)
    state = model.state_dict()
    assert state and set(state) == set(model.network.state_dict())
    fresh = create_model("lstm_plain", data.layout, epochs=1, progress=False, seed=1)
    fresh.load_state_dict(state)
    batch = data.test.batch(np.arange(4))
    torch.testing.assert_close(
        fresh.predict_batch(batch).prediction, model.predict_batch(batch).prediction
    )


@pytest.fixture
def tiny_bundle_for_state():
    from forecast.data.synthetic import make_driver_dataset

    ds = make_driver_dataset(400, seed=0)
    return prepare_data(ds.frame, ColumnRoles(("target",)), input_length=24, horizon=6)
