"""The attention models on a lagged driver they have not seen: accuracy and maps, fixed seed.

The data (`make_lagged_driver_dataset`, seed 0): the target is one covariate 17 rows
earlier plus a daily cycle and AR(1) noise, beside a smoothed and a shifted noisy copy of
the driver and two noise covariates; L=72, H=12, library defaults. These assert the
outcomes (not a report's wording): test MSE within 1.5x the noise floor and 10 % of ridge,
attention mass near the true lag >= 3x uniform with the peak moving one lag per step,
feature attention ranking the driver first at >= 1.5x uniform, and an untrained copy's
maps called uniform by the same check. bench/attention_accuracy.py runs the same on
three seeds and prints every figure.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from forecast import ColumnRoles, create_model, prepare_data
from forecast.data.synthetic import make_lagged_driver_dataset
from forecast.evaluate import predict_dataset
from forecast.interpret.checks import (
    attention_ablation,
    feature_truth_check,
    temporal_truth_check,
    untrained_copy,
)

MODELS = ("lstm", "lstm_bahdanau", "darnn")


@pytest.fixture(scope="module")
def setup():
    ds = make_lagged_driver_dataset(8000, seed=0)
    data = prepare_data(ds.frame, ColumnRoles(("target",), ds.covariates), input_length=72,
                        horizon=12)  # fmt: skip
    test = data.test
    origins = test.starts + 71
    mean, std = data.scaler._stats(0)
    oracle = (ds.conditional_mean(origins, 12) - mean[0]) / std[0]
    actual = test.batch(np.arange(len(test)))["future_target"][..., 0].numpy()
    floor = float(((oracle - actual) ** 2).mean())
    ridge = predict_dataset(create_model("linear", data.layout).fit(data.train), test)
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    models = {
        name: create_model(name, data.layout, seed=0, progress=False).fit(data.train, data.val)
        for name in MODELS
    }
    torch.set_num_threads(threads)
    ridge_mse = float(((ridge.prediction - ridge.target) ** 2).mean())
    return {"ds": ds, "data": data, "floor": floor, "ridge": ridge_mse, "models": models}


@pytest.mark.parametrize("name", MODELS)
def test_learns_the_lagged_driver(setup, name):
    preds = predict_dataset(setup["models"][name], setup["data"].test, keep_attention=True)
    mse = float(((preds.prediction - preds.target) ** 2).mean())
    assert mse <= 1.5 * setup["floor"], (mse, setup["floor"])
    assert mse <= 1.1 * setup["ridge"], (mse, setup["ridge"])
    check = temporal_truth_check(preds.temporal_attention, setup["ds"].truth, setup["data"].layout)
    assert check.mass_ratio >= 3.0 and check.ci[0] >= 3.0, check.summary()
    assert -1.2 <= check.slope <= -0.8, check.peak_lags
    assert not check.uniform_like
    # The driver's own lag is read, not the one the shifted copy suggests.
    assert all(v["mass_ratio"] < check.mass_ratio for v in check.distractors.values())


@pytest.mark.parametrize("name", MODELS)
def test_feature_attention_ranks_the_driver_first(setup, name):
    lay = setup["data"].layout
    preds = predict_dataset(setup["models"][name], setup["data"].test, keep_attention=True)
    names = list(lay.encoder_features)
    read = [*lay.targets, *lay.past_covariates]
    share = pd.Series(preds.feature_attention.sum(axis=(0, 1)), index=names).loc[read]
    check = feature_truth_check(share, setup["ds"].truth)
    assert check["driver_rank"] == 1 and check["ratio_to_uniform"] >= 1.5, check


def test_an_untrained_model_is_called_uniform(setup):
    """The same check on a fresh copy: its maps must not pass for evidence."""
    model = untrained_copy(setup["models"]["lstm_bahdanau"])
    preds = predict_dataset(model, setup["data"].test, keep_attention=True)
    check = temporal_truth_check(preds.temporal_attention, setup["ds"].truth, setup["data"].layout)
    assert check.uniform_like and "indistinguishable from uniform" in check.verdict


def test_replacing_the_attention_by_uniform_ruins_the_forecast(setup):
    """The ablation: the forecast depends on where the model looks."""
    result = attention_ablation(setup["models"]["lstm"], setup["data"].test, max_windows=512)
    assert result["increase"] > 5.0, result
