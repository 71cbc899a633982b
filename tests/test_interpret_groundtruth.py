"""Ground truth: on data whose driver (x3) and lag (12) are known, do the methods find them?

Permutation importance and integrated gradients must rank the driver first. Attention is
checked too; where it misses, the report has to say so (asserted below), since that is a
finding about the model, not a bug in the tools.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from test_interpret_helpers import synthetic_bundle, tiny_model

from forecast import create_model
from forecast.interpret import (
    deletion_summary,
    gradient_importance,
    interpret_model,
    permutation_importance,
)

# The LSTM's training budget: small enough for the test suite (seconds on 2 cores).
LSTM_PARAMS = dict(
    feature_attention=True,
    attention="luong_general",
    hidden_size=16,
    epochs=3,
    batch_size=32,
    lr=5e-3,
    teacher_forcing=0.0,
    tf_schedule="constant",
    patience=None,
    progress=False,
    device="cpu",
    seed=0,
)


pytestmark = pytest.mark.usefixtures("one_thread")  # see conftest.py


@pytest.fixture(scope="module")
def data():
    return synthetic_bundle(2000)


@pytest.fixture(scope="module")
def luong(data):
    return create_model("lstm_luong", data[1].layout, **LSTM_PARAMS).fit(data[1].train, data[1].val)


@pytest.fixture(scope="module")
def luong_report(tmp_path_factory, data, luong):
    out = tmp_path_factory.mktemp("luong")
    syn, bundle = data
    return interpret_model(
        luong, bundle, out, syn, max_windows=256, n_repeats=3, ig_windows=64, ig_steps=16
    )


def test_permutation_and_gradients_rank_the_driver_first_for_a_small_torch_model(data):
    syn, bundle = data
    model = tiny_model(bundle.layout, epochs=5).fit(bundle.train, bundle.val)
    perm = permutation_importance(model, bundle.test, n_repeats=3, max_windows=256)
    ig = gradient_importance(model, bundle.test, steps=16, max_windows=64)
    for table in (perm, ig.features):
        covs = table.set_index("feature").loc[list(syn.covariates), "importance"]
        assert covs.idxmax() == syn.truth.driver == "x3", table
    assert ig.relative_delta < 1e-2  # completeness holds on a trained model too


def test_lstm_permutation_and_gradients_rank_the_driver_first(luong_report):
    gt = luong_report.summary["ground_truth"]
    assert gt["driver"] == "x3" and gt["lag"] == 12
    assert gt["driver_first"]["permutation"] is True
    assert gt["driver_first"]["integrated_gradients"] is True
    table = luong_report.tables["ground_truth"].set_index("method")
    assert (
        table.loc["integrated_gradients", "driver_score"]
        > table.loc["integrated_gradients", "runner_up_score"]
    )


def test_lstm_feature_attention_is_reported_honestly(luong_report):
    """Measured: with this small budget the feature attention is nearly uniform (about 1/F
    each) and does not single out x3; the report must state whichever happened."""
    table = luong_report.tables["ground_truth"].set_index("method")
    row = table.loc["feature_attention"]
    scores = luong_report.attention.feature_importance()
    covs = scores[["x0", "x1", "x2", "x3"]]
    assert row["driver_first"] == (covs.idxmax() == "x3")
    md = (luong_report.out_dir / "summary.md").read_text()
    phrase = "ranks the true driver" if row["driver_first"] else "does NOT rank the true driver"
    assert f"- feature_attention: {phrase} `x3`" in md
    assert "uniform attention would give each of the 5 encoder features 0.2" in md


def test_luong_temporal_attention_mass_near_the_true_lag(luong_report):
    gt = luong_report.summary["ground_truth"]
    per_step = luong_report.tables["ground_truth_attention"]
    assert list(per_step["step"]) == [1, 2, 3, 4, 5, 6]  # every step h <= lag 12 is relevant
    assert list(per_step["true_position"]) == [12, 13, 14, 15, 16, 17]  # L - 1 - (12 - h)
    assert gt["uniform_mass"] == pytest.approx(5 / 24)
    assert gt["attention_mass"] == pytest.approx(per_step["mass"].mean())
    md = (luong_report.out_dir / "summary.md").read_text()
    check = luong_report.summary["sections"]["checks"]["temporal_check"]
    assert check["verdict"] in md
    # The verdict follows the numbers: "indistinguishable from uniform" exactly when the
    # mass near the true lag is below 1.2x uniform. The outcome itself (the read decoder
    # finds the lag) is asserted on a fixed seed in test_attention_truth.py.
    uniform = check["mass_ratio"] < 1.2
    assert ("indistinguishable from uniform" in check["verdict"]) == uniform


def test_deletion_hurts_more_for_top_ranked_inputs_than_random(luong_report):
    summary = deletion_summary(luong_report.tables["deletion"]).set_index("method")
    random = summary.loc["random", "mean_increase"]
    for method in ("permutation", "integrated_gradients"):
        assert summary.loc[method, "mean_increase"] > 2 * random, summary
    saved = json.loads((luong_report.out_dir / "summary.json").read_text())
    assert saved["deletion"]["integrated_gradients"]["vs_random"] > 2


def test_report_files_for_the_lstm(luong_report):
    out = luong_report.out_dir
    for stem in ("attention_window", "attention_mean", "attention_over_time", "feature_attention"):
        assert (out / f"{stem}.png").stat().st_size > 5000 and (out / f"{stem}.csv").exists()
    assert all(p.exists() for p in luong_report.files)


def test_transformer_heads_and_rollout_are_plotted(tmp_path, data):
    syn, bundle = data
    model = create_model(
        "transformer_direct",
        bundle.layout,
        d_model=16,
        n_heads=2,
        encoder_layers=2,
        decoder_layers=1,
        d_ff=32,
        epochs=1,
        max_train_windows=256,
        progress=False,
        device="cpu",
    )
    model.fit(bundle.train)
    report = interpret_model(
        model, bundle, tmp_path, syn, max_windows=64, n_repeats=2, ig_windows=8, ig_steps=4
    )
    for stem in ("transformer_cross_attention", "transformer_encoder_attention"):
        frame = report.tables[stem]
        assert set(frame["head"]) == {1, 2} and (tmp_path / f"{stem}.png").exists()
    assert set(report.tables["transformer_encoder_attention"]["layer"]) == {1, 2}
    rollout = report.attention.rollout_mean
    np.testing.assert_allclose(rollout.sum(axis=1), 1.0, atol=1e-5)
    assert (tmp_path / "transformer_rollout.png").exists()
