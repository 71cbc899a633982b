"""DLinear / NLinear trained by the loop: decomposition, level invariance, accuracy."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from forecast import ColumnRoles, create_model, prepare_data
from forecast.evaluate import predict_dataset, score
from forecast.models.dlinear import DLinearConfig, LinearNetwork

QUIET = {"progress": False, "device": "cpu"}


@pytest.fixture(scope="module")
def data():
    n = 1200
    t = np.arange(n)
    rng = np.random.default_rng(0)
    y = np.sin(2 * np.pi * t / 24) + 0.002 * t + rng.normal(0, 0.05, n)
    df = pd.DataFrame({"date": pd.date_range("2024-01-01", periods=n, freq="h"), "y": y})
    return prepare_data(df, ColumnRoles(("y",)), input_length=48, horizon=12)


def test_trend_is_a_moving_average_with_repeated_ends(data):
    net = LinearNetwork(data.layout, DLinearConfig.from_params(kernel_size=5))
    x = torch.tensor([[1.0, 2.0, 4.0, 8.0, 16.0, 32.0]])
    padded = [1.0, 1.0, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 32.0, 32.0]
    expected = [np.mean(padded[i : i + 5]) for i in range(6)]
    assert torch.allclose(net.trend(x), torch.tensor([expected], dtype=torch.float32))


@pytest.mark.parametrize("name", ["dlinear", "nlinear_net"])
def test_linear_in_the_input_and_nlinear_level_equivariant(data, name):
    model = create_model(name, data.layout, epochs=1, **QUIET).fit(data.train)
    batch = data.test.batch([0, 1, 2])
    shifted = dict(batch, past_target=batch["past_target"] + 3.0)
    base = model.predict_batch(batch).prediction
    moved = model.predict_batch(shifted).prediction
    if name == "nlinear_net":  # relative to the last value: a level shift passes through
        assert torch.allclose(moved, base + 3.0, atol=1e-5)
    else:  # affine in the input: a shift moves every output by the same learned amount
        delta = moved - base
        assert torch.allclose(delta, delta[:1].expand_as(delta), atol=1e-5)
        assert not torch.allclose(delta, torch.full_like(delta, 3.0), atol=1e-3)


@pytest.mark.parametrize("name", ["dlinear", "nlinear_net"])
def test_beats_repeat_last_on_a_seasonal_trend(data, name):
    def mse(model_name: str, **kw) -> float:
        model = create_model(model_name, data.layout, **kw)
        if hasattr(model, "network"):
            model.fit(data.train, data.val)
        return score(predict_dataset(model, data.test), data, data.test)["mse"]

    ours = mse(name, seed=0, **QUIET)
    naive = mse("naive")
    assert ours < 0.5 * naive, (ours, naive)


def test_bad_settings_are_named(data):
    with pytest.raises(ValueError, match="kernel_size must be odd"):
        DLinearConfig.from_params(kernel_size=4)
    with pytest.raises(ValueError, match="unknown decomposition 'fourier'"):
        DLinearConfig.from_params(decomposition="fourier")
    with pytest.raises(ValueError, match="kernel_size 49 is longer than the input length 48"):
        LinearNetwork(data.layout, DLinearConfig.from_params(kernel_size=49))
    assert LinearNetwork(data.layout, DLinearConfig.from_params()).kernel_size == 25
