"""Interpretation: attention collection, importance, gradients, agreement, plots, report."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from matplotlib.colorbar import Colorbar
from matplotlib.figure import Figure
from test_interpret_helpers import TinyNet, synthetic_bundle, tiny_model
from torch import nn

from forecast import create_model
from forecast.data.synthetic import GroundTruth
from forecast.data.windows import WindowLayout
from forecast.evaluate import predict_dataset
from forecast.interpret import (
    agreement_matrix,
    collect_attention,
    deletion_summary,
    deletion_test,
    feature_frame,
    gradient_importance,
    ground_truth_check,
    integrated_gradients,
    interpret_model,
    lag_axis,
    lag_permutation_importance,
    permutation_importance,
    plot_agreement,
    plot_attention_heads,
    plot_attention_over_time,
    plot_deletion,
    plot_feature_importance,
    plot_feature_map,
    plot_lag_importance,
    plot_temporal_attention,
    plot_window_attention,
    rank_agreement,
    save_figure,
    temporal_frame,
    true_positions,
    window_attention,
)

LIBRARY = Path(__file__).resolve().parents[1] / "forecast"


pytestmark = pytest.mark.usefixtures("one_thread")  # see conftest.py


@pytest.fixture(scope="module")
def data():
    """Synthetic driver data with calendar features (known covariates), 1200 rows."""
    return synthetic_bundle(1200, calendar=True)


@pytest.fixture(scope="module")
def linear(data):
    return create_model("linear", data[1].layout).fit(data[1].train)


@pytest.fixture(scope="module")
def tiny(data):
    torch.manual_seed(0)
    return tiny_model(data[1].layout, epochs=5).fit(data[1].train, data[1].val)


# ------------------------------------------------------------------ collection
def test_lag_axis_in_time_units():
    lay = WindowLayout(input_length=4, horizon=2, targets=("y",), freq="15min")
    lags, lag_time, unit = lag_axis(lay)
    assert lags.tolist() == [3, 2, 1, 0]  # lag = L - 1 - j
    assert lag_time.tolist() == [45.0, 30.0, 15.0, 0.0] and unit == "min"
    daily = WindowLayout(input_length=3, horizon=1, targets=("y",), freq="D")
    assert lag_axis(daily)[2] == "d"


def test_tidy_frames_align_positions_lags_and_features(data):
    lay = data[1].layout
    w = np.random.default_rng(0).random((lay.horizon, lay.input_length))
    t = temporal_frame(w, lay)
    assert len(t) == lay.horizon * lay.input_length
    row = t[(t["step"] == 2) & (t["position"] == 5)].iloc[0]
    assert row["weight"] == pytest.approx(w[1, 5]) and row["lag"] == lay.input_length - 6
    f = np.random.default_rng(1).random((lay.input_length, len(lay.encoder_features)))
    ff = feature_frame(f, lay)
    row = ff[(ff["position"] == 3) & (ff["feature"] == "x3")].iloc[0]
    assert row["weight"] == pytest.approx(f[3, lay.encoder_features.index("x3")])
    with pytest.raises(ValueError, match=r"expected \[input_length, n_features\]"):
        feature_frame(f[:, :2], lay)


def test_collect_attention_streams_the_same_means_as_keeping_everything(data, tiny):
    test = data[1].test
    summary = collect_attention(tiny, test, batch_size=64, median_windows=10**6)
    full = predict_dataset(tiny, test, keep_attention=True)
    np.testing.assert_allclose(summary.temporal_mean, full.temporal_attention.mean(0), atol=1e-6)
    np.testing.assert_allclose(summary.feature_mean, full.feature_attention.mean(0), atol=1e-6)
    np.testing.assert_allclose(
        summary.temporal_median, np.median(full.temporal_attention, 0), atol=1e-6
    )
    np.testing.assert_allclose(summary.by_origin, full.temporal_attention.mean(1), atol=1e-6)
    assert summary.median_windows == len(test)
    small = collect_attention(tiny, test, median_windows=7)
    assert small.median_windows == 7 and small.temporal_median.shape == summary.temporal_mean.shape
    frame = summary.temporal_frame()
    assert {"step", "lag", "lag_time", "mean", "median"} <= set(frame.columns)


def test_collect_attention_without_attention_gives_none(data, linear):
    summary = collect_attention(linear, data[1].test)
    assert summary.temporal_mean is None and summary.feature_mean is None
    with pytest.raises(ValueError, match="no temporal attention"):
        summary.temporal_frame()


def test_window_attention_is_aligned_to_real_timestamps(data, tiny):
    syn, bundle = data
    win = window_attention(tiny, bundle, 5)
    origin_row = int(bundle.test.starts[5]) + bundle.layout.input_length - 1
    assert win.input_times[-1] == bundle.frame.timestamps[origin_row]
    assert win.target_times[0] == bundle.frame.timestamps[origin_row + 1]
    actual = syn.frame["target"].to_numpy()[origin_row + 1 : origin_row + 1 + bundle.layout.horizon]
    np.testing.assert_allclose(win.actual[:, 0], actual, rtol=1e-4, atol=1e-4)
    with pytest.raises(ValueError, match="out of range"):
        window_attention(tiny, bundle, 10**6)


# ------------------------------------------------------------------ importance
def test_permutation_importance_ranks_the_driver_first_for_the_linear_baseline(data, linear):
    syn, bundle = data
    table = permutation_importance(linear, bundle.test, n_repeats=3, max_windows=256)
    assert list(table["feature"]) == list(bundle.layout.encoder_features)
    covs = table.set_index("feature").loc[list(syn.covariates), "importance"]
    assert covs.idxmax() == syn.truth.driver == "x3"
    driver = table.set_index("feature").loc["x3"]
    assert driver["ci_low"] > 0 and driver["ci_low"] <= driver["importance"] <= driver["ci_high"]
    again = permutation_importance(linear, bundle.test, n_repeats=3, max_windows=256)
    pd.testing.assert_frame_equal(table, again)  # seeded


class _FutureOnly(nn.Module):
    """Reads only the future part of the known covariates."""

    def forward(self, batch, teacher_forcing=0.0):
        return batch["future_known"][..., :1].sum(-1, keepdim=True)  # [B, H, 1]


class _Wrap:
    """A Forecaster-like object around a module (for permutation importance)."""

    def __init__(self, net):
        self.net = net

    def predict_batch(self, batch, *, attention=True):
        from forecast.models.base import ForecastOutput

        return ForecastOutput(self.net(batch))

    def max_batch(self, attention):
        return None


def test_permutation_moves_the_future_of_known_covariates_too(data):
    bundle = data[1]
    table = permutation_importance(_Wrap(_FutureOnly()), bundle.test, n_repeats=2)
    first_known = bundle.layout.known_covariates[0]
    imp = table.set_index("feature")["importance"]
    assert imp[first_known] != 0 and (imp.drop(first_known) == 0).all()
    with pytest.raises(ValueError, match="n_repeats must be >= 1, got 0"):
        permutation_importance(_Wrap(_FutureOnly()), bundle.test, n_repeats=0)


def test_lag_permutation_importance_finds_the_only_lag_used(data):
    bundle = data[1]

    class LastStep(nn.Module):
        def forward(self, batch, teacher_forcing=0.0):
            H = batch["future_known"].shape[1]
            return batch["past_target"][:, -1:, :].expand(-1, H, -1)

    table = lag_permutation_importance(_Wrap(LastStep()), bundle.test, block=4, n_repeats=2)
    assert table["label"].iloc[0] == "lags 0-3" and table["importance"].iloc[0] > 0
    assert (table["importance"].iloc[1:] == 0).all()
    assert table["lag_max"].max() == bundle.layout.input_length - 1


# ------------------------------------------------------------------ gradients
class _Smooth(nn.Module):
    def __init__(self, layout):
        super().__init__()
        torch.manual_seed(0)
        self.net = TinyNet(layout, hidden=16)

    def forward(self, batch, teacher_forcing=0.0):
        return torch.tanh(self.net(batch).prediction) ** 2


@pytest.mark.parametrize("baseline", ["zero", "mean"])
def test_integrated_gradients_completeness(data, baseline):
    bundle = data[1]
    net = _Smooth(bundle.layout)
    batch = bundle.test.batch(np.arange(12))
    result = integrated_gradients(net, batch, baseline=baseline, steps=64, internal_batch_size=200)
    assert result.inputs["past_covariates"].shape == batch["past_covariates"].shape
    gap = (result.f_input - result.f_baseline).abs()
    assert (result.delta.abs() <= 1e-3 * gap + 1e-4).all(), result.delta
    with torch.no_grad():
        np.testing.assert_allclose(result.f_input, net(batch).flatten(1).sum(1), rtol=1e-5)


def test_integrated_gradients_of_a_linear_map_are_input_times_weight(data):
    bundle = data[1]

    class Linear(nn.Module):
        def __init__(self):
            super().__init__()
            self.w = nn.Parameter(torch.randn(bundle.layout.n_past))

        def forward(self, batch, teacher_forcing=0.0):
            return (batch["past_covariates"] * self.w).sum(-1, keepdim=True)[:, -2:]  # [B, 2, 1]

    net = Linear()
    batch = bundle.test.batch(np.arange(4))
    result = integrated_gradients(net, batch, steps=3)
    expected = torch.zeros_like(batch["past_covariates"])
    expected[:, -2:] = batch["past_covariates"][:, -2:] * net.w.detach()
    torch.testing.assert_close(result.inputs["past_covariates"], expected)
    assert float(result.inputs["past_target"].abs().sum()) == 0.0


def test_integrated_gradients_need_a_torch_model(data, linear):
    with pytest.raises(TypeError, match="needs a torch model.*got LinearLags"):
        integrated_gradients(linear, data[1].test.batch(np.arange(2)))
    with pytest.raises(ValueError, match="unknown baseline 'median'"):
        integrated_gradients(_Smooth(data[1].layout), data[1].test.batch([0]), baseline="median")


def test_gradient_importance_tables(data, tiny):
    bundle = data[1]
    ig = gradient_importance(tiny, bundle.test, steps=16, max_windows=32)
    lay = bundle.layout
    assert ig.cells.shape == (lay.input_length, len(lay.encoder_features))
    assert ig.future.shape == (lay.horizon, lay.n_known)
    assert list(ig.features["feature"]) == list(lay.encoder_features)
    assert ig.relative_delta < 1e-2
    assert not tiny.network.training or tiny.network.training  # mode restored either way


# ------------------------------------------------------------------ agreement
def test_rank_agreement():
    a = pd.Series([1.0, 2.0, 3.0, 4.0], index=list("abcd"))
    table = rank_agreement({"a": a, "same": a * 10, "reversed": -a, "flat": a * 0})
    rho = {(r.method_a, r.method_b): r.spearman for r in table.itertuples()}
    assert rho[("a", "same")] == pytest.approx(1.0)
    assert rho[("a", "reversed")] == pytest.approx(-1.0)
    assert np.isnan(rho[("a", "flat")])
    mat = agreement_matrix(table)
    assert mat.loc["reversed", "a"] == pytest.approx(-1.0) and mat.loc["a", "a"] == 1.0


def test_deletion_test_top_ranked_cells_hurt_more_than_random(data, linear):
    bundle = data[1]
    lay = bundle.layout
    perm = permutation_importance(linear, bundle.test, n_repeats=2, max_windows=256)
    cells = np.tile(perm["importance"].clip(lower=0).to_numpy(), (lay.input_length, 1))
    frame = deletion_test(linear, bundle.test, {"permutation": cells}, n_random=3, max_windows=256)
    assert set(frame["method"]) == {"permutation", "random"}
    summary = deletion_summary(frame).set_index("method")
    assert summary.loc["permutation", "mean_increase"] > summary.loc["random", "mean_increase"]
    with pytest.raises(ValueError, match=r"ranking 'bad' has shape \(2, 2\); expected \[L, F\]"):
        deletion_test(linear, bundle.test, {"bad": np.zeros((2, 2))})


def test_true_positions_follow_the_lag():
    lay = WindowLayout(input_length=24, horizon=14, targets=("y",), past_covariates=("x0", "x1"))
    truth = GroundTruth("x1", 12, 1.0, ("x0",), 24, 168)
    pos = true_positions(truth, lay)
    step1 = pos.iloc[0]
    assert step1["true_lag"] == 11 and step1["true_position"] == 12  # j = L - 1 - (lag - h)
    assert pos["relevant"].tolist() == [True] * 12 + [False] * 2  # only h <= lag


def test_ground_truth_check_reports_both_outcomes():
    lay = WindowLayout(input_length=24, horizon=6, targets=("y",), past_covariates=("x0", "x1"))
    truth = GroundTruth("x1", 12, 1.0, ("x0",), 24, 168)
    scores = {
        "good": pd.Series({"y": 5.0, "x0": 0.1, "x1": 1.0}),
        "bad": pd.Series({"y": 0.0, "x0": 1.0, "x1": 0.5}),
    }
    peaked = np.full((6, 24), 0.01)
    for h, j in true_positions(truth, lay)[["step", "true_position"]].itertuples(index=False):
        peaked[h - 1, j] = 1.0
    peaked /= peaked.sum(1, keepdims=True)
    report = ground_truth_check(truth, lay, scores, temporal=peaked)
    by = report.features.set_index("method")
    assert by.loc["good", "driver_first"] and by.loc["good", "top_overall"] == "y"
    assert not by.loc["bad", "driver_first"] and by.loc["bad", "top_feature"] == "x0"
    assert report.summary["attention_beats_uniform"] and report.summary["attention_ratio"] > 3
    fmap = np.full((24, 3), 1 / 3)
    fmap[24 - 1 - 8, 2] = 0.9  # driver x1 attended most at lag 8, one of the lags 6..11 read
    found = ground_truth_check(truth, lay, scores, feature_map=fmap).summary
    assert found["driver_attention_peak_lag"] == 8 and found["true_lags"] == list(range(11, 5, -1))
    assert found["driver_attention_peak_at_true_lag"]
    flat = ground_truth_check(truth, lay, scores, temporal=np.full((6, 24), 1 / 24))
    assert flat.summary["attention_mass"] == pytest.approx(flat.summary["uniform_mass"])
    assert not flat.summary["attention_beats_uniform"]
    with pytest.raises(ValueError, match=r"covariate\(s\) \['x1'\] of the ground truth"):
        ground_truth_check(truth, lay, {"m": pd.Series({"y": 1.0, "x0": 1.0})})


# ------------------------------------------------------------------ plots
def _texts(fig: Figure) -> list[str]:
    out = [fig._suptitle.get_text()] if fig._suptitle is not None else []
    for ax in fig.axes:
        out += [ax.get_title(), ax.get_xlabel(), ax.get_ylabel()]
        out += [t.get_text() for t in ax.get_yticklabels()]
    return [t for t in out if t]


def _check_figure(fig: Figure, data: pd.DataFrame, *, heatmap: bool, words: list[str]) -> None:
    assert isinstance(fig, Figure) and isinstance(data, pd.DataFrame) and len(data)
    texts = _texts(fig)
    titled = fig._suptitle is not None or any(ax.get_title() for ax in fig.axes)
    assert titled, texts
    main = [ax for ax in fig.axes if ax.get_label() != "<colorbar>"]
    for ax in main:
        # panels sharing an axis (inputs above the map, a grid of heads) label it once
        xs, ys = ax.get_shared_x_axes().get_siblings(ax), ax.get_shared_y_axes().get_siblings(ax)
        assert any(a.get_xlabel() for a in xs) and any(a.get_ylabel() for a in ys), texts
    if heatmap:
        colorbars = [ax for ax in fig.axes if isinstance(getattr(ax, "_colorbar", None), Colorbar)]
        assert colorbars, "heatmap without a colour bar"
    for word in words:
        assert any(word in t for t in texts), (word, texts)


def test_every_plot_is_labelled_and_saved(tmp_path, data, tiny):
    syn, bundle = data
    lay = bundle.layout
    summary = collect_attention(tiny, bundle.test)
    win = window_attention(tiny, bundle, 3)
    perm = permutation_importance(tiny, bundle.test, n_repeats=2, max_windows=128)
    lags = lag_permutation_importance(tiny, bundle.test, n_repeats=2, max_windows=128)
    cells = {"feature_attention": summary.feature_mean}
    deletion = deletion_test(tiny, bundle.test, cells, n_random=2, max_windows=64, ks=[0, 1, 8])
    agree = agreement_matrix(
        rank_agreement(
            {"a": perm.set_index("feature")["importance"], "b": summary.feature_importance()}
        )
    )
    times = bundle.frame.timestamps[summary.origins]
    heads = [np.random.default_rng(0).random((2, lay.horizon, lay.input_length))] * 2
    cases = [
        (plot_temporal_attention(summary.temporal_mean, lay), True, ["lag before", "(h)"]),
        (plot_window_attention(win), True, ["input time", "forecast step", "origin"]),
        (plot_feature_map(summary.feature_mean, lay), True, ["input feature", "weekday_cos"]),
        (plot_attention_over_time(summary.by_origin, times, lay), True, ["forecast origin"]),
        (
            plot_attention_heads(heads, query_label="step", key_label="position", title="T"),
            True,
            ["layer 2, head 2"],
        ),
        (plot_feature_importance(perm, highlight="x3", uniform=0.1), False, ["x3"]),
        (plot_lag_importance(lags), False, ["lags before"]),
        (plot_deletion(deletion), False, ["k input cells"]),
        (plot_agreement(agree), True, ["Spearman"]),
    ]
    for i, ((fig, frame), heatmap, words) in enumerate(cases):
        _check_figure(fig, frame, heatmap=heatmap, words=words)
        png, csv = save_figure(fig, frame, tmp_path / f"plot{i}.png")
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5000
        assert len(pd.read_csv(csv)) == len(frame)


def test_feature_plots_show_every_feature_up_to_twenty_then_group_the_rest(data):
    lay = data[1].layout
    scores = pd.Series(np.arange(len(lay.encoder_features), dtype=float), lay.encoder_features)
    _, shown = plot_feature_importance(scores, top_k=2)
    assert len(shown) == len(scores)  # few features: none folded, whatever top_k says
    many = pd.Series(np.arange(30, dtype=float), [f"f{i}" for i in range(30)])
    _, shown = plot_feature_importance(many, top_k=2)
    assert list(shown["feature"][:2]) == ["f29", "f28"]
    assert shown["feature"].iloc[-1] == "other (28)"
    assert shown["importance"].iloc[-1] == pytest.approx(many.sort_values()[:28].sum())


def test_temporal_map_is_coloured_relative_to_uniform(data):
    """White is uniform (weight x L = 1); a flat map stays white, not full colour."""
    lay = data[1].layout
    H, L = lay.horizon, lay.input_length
    fig, _ = plot_temporal_attention(np.full((H, L), 1 / L), lay)
    mesh = fig.axes[0].collections[0]
    assert mesh.norm.vcenter == 1.0 and np.allclose(mesh.get_array(), 1.0)


def test_library_never_shows_windows():
    offenders = []
    for path in LIBRARY.rglob("*.py"):
        text = path.read_text()
        if re.search(r"\bplt\.show\(|pyplot\.show\(|\.show\(\)", text):
            offenders.append(str(path))
    assert not offenders, f"library code calls show(): {offenders}"
    for path in (LIBRARY / "interpret").glob("*.py"):
        assert not re.search(r"import.*pyplot", path.read_text()), f"{path} imports pyplot"


# ------------------------------------------------------------------ report
def test_interpret_model_for_a_baseline_writes_png_csv_pairs_and_summary(tmp_path, data, linear):
    syn, bundle = data
    report = interpret_model(
        linear, bundle, tmp_path, syn.truth, max_windows=128, n_repeats=2, lag_block=6
    )
    pngs = sorted(p.stem for p in tmp_path.glob("*.png"))
    assert pngs == ["deletion", "permutation_features", "permutation_lags"]
    for stem in pngs:
        assert (tmp_path / f"{stem}.csv").exists()
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["ground_truth"]["driver_first"] == {"permutation": True}
    assert any("no integrated gradients" in n for n in summary["notes"])
    md = (tmp_path / "summary.md").read_text()
    assert "permutation: ranks the true driver `x3` first" in md
    assert report.gradients is None and report.attention.temporal_mean is None


def test_interpret_model_for_a_torch_model_with_attention(tmp_path, data, tiny):
    syn, bundle = data
    report = interpret_model(
        tiny, bundle, tmp_path, syn, max_windows=64, n_repeats=2, ig_windows=16, ig_steps=8
    )
    expected = {
        "attention_window",
        "attention_mean",
        "attention_over_time",
        "feature_attention",
        "feature_attention_bars",
        "permutation_features",
        "permutation_lags",
        "gradients_map",
        "gradients_features",
        "gradients_per_step",
        "agreement_features",
        "agreement_lags",
        "deletion",
    }
    assert {p.stem for p in tmp_path.glob("*.png")} == expected
    assert all((tmp_path / f"{s}.csv").exists() for s in expected)
    gt = report.summary["ground_truth"]
    assert set(gt["driver_first"]) == {"feature_attention", "permutation", "integrated_gradients"}
    md = (tmp_path / "summary.md").read_text()
    check = report.summary["sections"]["checks"]["temporal_check"]
    assert check["verdict"] in md  # the verdict printed is the one computed
    for method, first in gt["driver_first"].items():
        phrase = "ranks the true driver" if first else "does NOT rank the true driver"
        assert f"- {method}: {phrase}" in md
    # The model checks ran: the untrained copy's verdict, and the ablation where the
    # network has an attention module to replace (this test network has none: said so).
    checks = report.summary["sections"]["checks"]
    assert "untrained_check" in checks
    notes = report.summary["notes"]
    assert "ablation" in checks or any("no attention ablation" in n for n in notes)
    figures = report.summary["key_figures"]
    assert figures and all((tmp_path / f).exists() for f in figures)


def test_sections_run_alone(tmp_path, data, tiny):
    syn, bundle = data
    report = interpret_model(
        tiny, bundle, tmp_path, syn, sections=["permutation"], max_windows=64, n_repeats=2
    )
    assert {p.stem for p in tmp_path.glob("*.png")} == {"permutation_features", "permutation_lags"}
    assert set(report.summary["sections"]) == {"permutation"}
    with pytest.raises(ValueError, match=r"unknown section\(s\) \['nope'\]; expected some of"):
        interpret_model(tiny, bundle, tmp_path, sections=["nope"])
