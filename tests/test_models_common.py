"""One smoke test for every registered model: shapes, finite values, no look-ahead."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from forecast import ColumnRoles, create_model, list_models, prepare_data
from forecast.models.registry import get_entry
from forecast.params import param_names

ROLES = ColumnRoles(("y",), ("x",), ("k",))
L, H = 24, 6
FAST = {"epochs": 2, "progress": False, "seed": 0, "device": "cpu", "batch_size": 32}


def _fast_params(name: str) -> dict:
    fields = set(param_names(get_entry(name).cls.Config))
    return {k: v for k, v in FAST.items() if k in fields}


def _frame(seed: int = 0, n: int = 400) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=n)
    return pd.DataFrame(
        {
            "date": pd.date_range("2024-01-01", periods=n, freq="h"),
            "y": np.sin(np.arange(n) / 4) + 0.5 * np.roll(x, 3) + rng.normal(0, 0.1, n),
            "x": x,
            "k": np.cos(np.arange(n) / 6),
        }
    )


@pytest.fixture(scope="module")
def fitted() -> dict:
    data = prepare_data(_frame(), ROLES, input_length=L, horizon=H)
    models = {}
    for name in list_models():
        torch.manual_seed(0)
        models[name] = create_model(name, data.layout, **_fast_params(name)).fit(
            data.train, data.val
        )
    return {"data": data, "models": models}


@pytest.mark.parametrize("name", list_models())
def test_shape_and_finite(fitted, name):
    batch = fitted["data"].test.batch(np.arange(10))
    out = fitted["models"][name].predict_batch(batch)
    assert out.prediction.shape == (10, H, 1)
    assert torch.isfinite(out.prediction).all()


@pytest.mark.parametrize("name", list_models())
def test_prediction_ignores_data_after_the_origin(fitted, name):
    """Change targets and past covariates after row t: the window ending at t is unchanged."""
    data, model = fitted["data"], fitted["models"][name]
    df = _frame()
    t = int(data.test.starts[20]) + L - 1  # origin row of test window 20
    changed = df.copy()
    rng = np.random.default_rng(1)
    changed.loc[t + 1 :, ["y", "x"]] = rng.normal(5, 3, size=(len(df) - t - 1, 2))
    other = prepare_data(changed, ROLES, input_length=L, horizon=H)
    # The scaler only saw training rows, which are unchanged.
    np.testing.assert_array_equal(data.scaler.mean_, other.scaler.mean_)
    a = model.predict_batch(data.test.batch([20])).prediction
    b = model.predict_batch(other.test.batch([20])).prediction
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    # And the batch's own future targets are never read.
    batch = data.test.batch([20, 21])
    garbage = {**batch, "future_target": torch.full_like(batch["future_target"], 1e6)}
    torch.testing.assert_close(
        model.predict_batch(batch).prediction,
        model.predict_batch(garbage).prediction,
        rtol=0,
        atol=0,
    )


def test_unknown_model_and_parameter(fitted):
    layout = fitted["data"].layout
    with pytest.raises(ValueError, match=r"unknown model 'prophet'; available: \["):
        create_model("prophet", layout)
    with pytest.raises(ValueError, match=r"unknown parameter\(s\) \['alpah'\] for model 'linear'"):
        create_model("linear", layout, alpah=1.0)


def test_seasonal_naive_needs_a_full_season(fitted):
    with pytest.raises(
        ValueError, match="seasonal_naive needs input_length >= period; got 24 < 48"
    ):  # refused when built, before any other model trains
        create_model("seasonal_naive", fitted["data"].layout, period=48)


def test_baseline_values():
    past = torch.tensor([[[1.0], [2.0], [3.0], [4.0]]])  # [1, L=4, 1]
    batch = {"past_target": past}
    from forecast.data.windows import WindowLayout

    lay = WindowLayout(4, 3, ("y",), period=2)
    pred = {
        n: create_model(n, lay).predict_batch(batch).prediction[0, :, 0].tolist()
        for n in ("naive", "seasonal_naive", "mean", "drift", "moving_average")
    }
    assert pred == {
        "naive": [4, 4, 4],
        "seasonal_naive": [3, 4, 3],
        "mean": [2.5] * 3,
        "drift": [5, 6, 7],
        "moving_average": [3.5] * 3,
    }
