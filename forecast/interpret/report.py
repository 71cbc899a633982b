"""`interpret_model`: every interpretation of one fitted model, written to a folder.

Each figure is a PNG with its data as a CSV of the same name; `summary.json` and
`summary.md` hold the findings (including, with a known ground truth, whether each method
found the true driver and lag, said plainly either way).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from torch import nn

from forecast.data.prepare import DataBundle
from forecast.data.synthetic import GroundTruth, SyntheticDataset
from forecast.interpret import agreement as agr
from forecast.interpret._common import save_figure
from forecast.interpret.collect import AttentionSummary, collect_attention, window_attention
from forecast.interpret.gradients import GradientImportance, gradient_importance
from forecast.interpret.importance import lag_permutation_importance, permutation_importance
from forecast.interpret.plots import (
    plot_attention_heads,
    plot_attention_over_time,
    plot_feature_map,
    plot_temporal_attention,
    plot_window_attention,
)
from forecast.interpret.plots_importance import (
    plot_agreement,
    plot_deletion,
    plot_feature_importance,
    plot_lag_importance,
)
from forecast.models.base import Forecaster
from forecast.runs import atomic_write

logger = logging.getLogger(__name__)


@dataclass
class InterpretationReport:
    """What `interpret_model` wrote and found.

    Args:
        out_dir: the folder written.
        files: every file written (PNGs, CSVs, summary.json, summary.md).
        tables: the data frames behind the findings, by name.
        summary: the JSON summary (also in `out_dir/summary.json`).
        attention: the aggregated attention.
        gradients: integrated gradients, None for models without a torch network.
    """

    out_dir: Path
    files: list[Path] = field(default_factory=list)
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)
    summary: dict[str, Any] = field(default_factory=dict)
    attention: AttentionSummary | None = None
    gradients: GradientImportance | None = None


def _is_torch(model: Forecaster) -> bool:
    return isinstance(getattr(model, "network", None), nn.Module)


def _permutation_cells(features: pd.DataFrame, lags: pd.DataFrame, L: int) -> np.ndarray:
    """A separable [L, F] score from permutation importance: lag block x feature."""
    per_pos = np.zeros(L)
    for lo_lag, hi_lag, imp in lags[["lag_min", "lag_max", "importance"]].itertuples(index=False):
        per_pos[L - 1 - hi_lag : L - lo_lag] = max(float(imp), 0.0) / (hi_lag - lo_lag + 1)
    return np.outer(per_pos, features["importance"].clip(lower=0).to_numpy())


def _sentence(method: str, row: pd.Series, driver: str) -> str:
    scores = f"score {row['driver_score']:.4g} vs best distractor {row['runner_up_score']:.4g}"
    if row["driver_first"]:
        verdict = f"ranks the true driver `{driver}` first among the covariates ({scores})"
    else:
        verdict = (
            f"does NOT rank the true driver `{driver}` first among the covariates: it ranks "
            f"`{row['top_feature']}` first, the driver is number {row['driver_rank']} ({scores})"
        )
    overall = f"over all inputs `{row['top_overall']}` comes first"
    return f"- {method}: {verdict}; {overall}."


def _markdown(report: InterpretationReport, name: str, gt: agr.GroundTruthReport | None) -> str:
    s = report.summary
    lines = [f"# Interpretation of `{name}`", "", f"Windows: {s['n_windows']} ({s['part']} part)."]
    lines += ["", "## Most important feature per method", ""]
    for method, top in s["top_feature"].items():
        lines.append(f"- {method}: `{top}`")
    if s.get("deletion"):
        lines += ["", "## Deletion test: mean MSE increase over k deleted inputs", ""]
        ref = s["deletion"].get("random", {}).get("mean_increase", float("nan"))
        for method, d in s["deletion"].items():
            if method == "random":
                continue
            ratio = f", {d['vs_random']:.1f} x random" if d["vs_random"] is not None else ""
            lines.append(f"- {method}: {d['mean_increase']:.4g} (random: {ref:.4g}{ratio})")
    if gt is not None:
        driver, lag = gt.summary["driver"], gt.summary["lag"]
        lines += ["", f"## Ground truth: driver `{driver}`, lag {lag}", ""]
        lines += [_sentence(r["method"], r, driver) for _, r in gt.features.iterrows()]
        if "feature_attention" in s["top_feature"]:
            n_feat = len(report.attention.layout.encoder_features)
            lines.append(
                f"- (feature attention weights are shares over {n_feat} inputs: uniform "
                f"attention would give each {1 / n_feat:.4g})"
            )
        if "driver_attention_peak_lag" in gt.summary:
            g = gt.summary
            where = "one of" if g["driver_attention_peak_at_true_lag"] else "NOT one of"
            lines.append(
                f"- feature attention on `{driver}` over the input steps peaks at lag "
                f"{g['driver_attention_peak_lag']}, {where} the lags the forecast reads "
                f"({min(g['true_lags'])}-{max(g['true_lags'])})."
            )
        if "attention_mass" in gt.summary:
            m, u = gt.summary["attention_mass"], gt.summary["uniform_mass"]
            verdict = "more" if gt.summary["attention_beats_uniform"] else "NOT more"
            lines.append(
                f"- temporal attention: {m:.3f} of its mass lies within +-{gt.summary['window']} "
                f"steps of the true input position, {verdict} than uniform attention ({u:.3f}; "
                f"ratio {m / u:.2f}); median peak offset {gt.summary['median_peak_offset']:+.0f} "
                "steps (positive: later than the true position)."
            )
    if s.get("notes"):
        lines += ["", "## Notes", ""] + [f"- {n}" for n in s["notes"]]
    return "\n".join(lines) + "\n"


def interpret_model(
    model: Forecaster,
    bundle: DataBundle,
    out_dir: str | Path,
    truth: GroundTruth | SyntheticDataset | None = None,
    *,
    part: str = "test",
    max_windows: int | None = 512,
    n_repeats: int = 5,
    ig_steps: int = 32,
    ig_windows: int | None = 128,
    lag_block: int | None = None,
    window_index: int | None = None,
    top_k: int = 12,
    seed: int = 0,
    progress: bool = False,
) -> InterpretationReport:
    """Write every interpretation of a fitted model to `out_dir` (PNG + CSV each).

    Attention plots appear when the model returns attention; integrated gradients when
    it has a torch `.network`; permutation importance, agreement and the deletion test
    for every model.

    Args:
        model: a fitted forecaster.
        bundle: the prepared data it was trained on.
        out_dir: output folder (created; existing files of the same names are replaced).
        truth: known driver and lag (synthetic data) to check the methods against.
        part: which windows to explain: 'test', 'val' or 'train'.
        max_windows: windows used by permutation importance and the deletion test.
        n_repeats: permutation repeats (and random-deletion repeats).
        ig_steps: trapezoid intervals of integrated gradients.
        ig_windows: windows attributed by integrated gradients.
        lag_block: lags per block of the lag permutation importance (default ~L / 12).
        window_index: the window of the single-window plot (default: the middle one).
        top_k: features shown in bar charts and feature maps before 'other (n)'.
        seed: seeds every subsample and permutation.
        progress: show tqdm bars.
    """
    ds = bundle.part(part)
    if ds is None or len(ds) == 0:
        raise ValueError(f"the {part!r} part of the bundle has no windows to interpret")
    truth = truth.truth if isinstance(truth, SyntheticDataset) else truth
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    lay = ds.layout
    report = InterpretationReport(out)
    name = getattr(model, "name", type(model).__name__)
    notes: list[str] = []
    driver = truth.driver if truth is not None else None
    common = dict(max_windows=max_windows, seed=seed, progress=progress)

    def save(name: str, fig: Figure, data: pd.DataFrame) -> None:
        png, csv = save_figure(fig, data, out / f"{name}.png")
        report.files += [png, csv]
        report.tables[name] = data

    def write_csv(name: str, data: pd.DataFrame) -> None:
        report.files.append(
            atomic_write(out / f"{name}.csv", lambda p: data.to_csv(p, index=False))
        )
        report.tables[name] = data

    # -- attention
    att = collect_attention(model, ds, seed=seed, progress=progress)
    report.attention = att
    scores: dict[str, pd.Series] = {}
    lag_scores: dict[str, pd.Series] = {}
    block = lag_block or max(1, round(lay.input_length / 12))
    cells: dict[str, np.ndarray] = {}
    gt_pos = agr.true_positions(truth, lay) if truth is not None else None
    if att.has_temporal:
        idx = len(ds) // 2 if window_index is None else window_index
        win = window_attention(model, bundle, idx, part=part)
        feats = [*lay.targets, driver] if driver in lay.encoder_features else None
        save("attention_window", *plot_window_attention(win, features=feats))
        fig, data = plot_temporal_attention(att.temporal_mean, lay, truth_positions=gt_pos)
        save("attention_mean", fig, data)
        # One series at a time: origins of different series share timestamps.
        first = np.asarray(ds.series_index) == 0
        where = f" (series {bundle.frame.series_ids[0]})" if bundle.frame.n_series > 1 else ""
        fig, data = plot_attention_over_time(
            att.by_origin[first],
            bundle.frame.timestamps[att.origins[first]],
            lay,
            title=f"Where the attention looks as the forecast origin moves{where}",
        )
        save("attention_over_time", fig, data)
        per_pos = att.temporal_mean.mean(axis=0)  # [L]
        lag_scores["temporal_attention"] = agr.block_scores(per_pos, lay.input_length, block)
        cells["temporal_attention"] = np.repeat(per_pos[:, None], len(lay.encoder_features), 1)
        if att.median_windows < att.n_windows:
            notes.append(
                f"medians use a random subsample of {att.median_windows} of "
                f"{att.n_windows} windows; means use all"
            )
    else:
        notes.append("the model returns no temporal attention: no temporal attention plots")
    if att.has_feature:
        save("feature_attention", *plot_feature_map(att.feature_mean, lay, top_k=top_k))
        scores["feature_attention"] = att.feature_importance()
        fig, data = plot_feature_importance(
            scores["feature_attention"],
            top_k=top_k,
            highlight=driver,
            title="Mean feature attention",
            xlabel="mean attention weight",
        )
        save("feature_attention_bars", fig, data)
        fa = att.feature_mean
        cells["feature_attention"] = (
            fa * cells["temporal_attention"][:, :1] if "temporal_attention" in cells else fa
        )
    if att.heads.get("decoder_cross_attention"):
        save(
            "transformer_cross_attention",
            *plot_attention_heads(
                att.heads["decoder_cross_attention"],
                query_label="forecast step",
                key_label="encoder position (0 = oldest)",
                title="Decoder cross-attention per layer and head",
            ),
        )
    if att.heads.get("encoder_self_attention"):
        save(
            "transformer_encoder_attention",
            *plot_attention_heads(
                att.heads["encoder_self_attention"],
                query_label="encoder position (0 = oldest)",
                key_label="encoder position (0 = oldest)",
                title="Encoder self-attention per layer and head",
            ),
        )
    if att.rollout_mean is not None:
        save(
            "transformer_rollout",
            *plot_temporal_attention(
                att.rollout_mean,
                lay,
                truth_positions=gt_pos,
                title="Attention rollout (encoder self-attention x cross-attention)",
            ),
        )

    # -- permutation importance
    perm = permutation_importance(model, ds, n_repeats=n_repeats, **common)
    perm_lags = lag_permutation_importance(model, ds, block=block, n_repeats=n_repeats, **common)
    fig, _ = plot_feature_importance(
        perm,
        top_k=top_k,
        highlight=driver,
        title="Permutation importance (95% CI)",
        xlabel="increase in MSE (scaled) when the feature is permuted across windows",
    )
    save("permutation_features", fig, perm)
    save("permutation_lags", *plot_lag_importance(perm_lags))
    scores["permutation"] = perm.set_index("feature")["importance"]
    lag_scores["permutation"] = perm_lags.set_index("label")["importance"]
    cells["permutation"] = _permutation_cells(perm, perm_lags, lay.input_length)

    # -- integrated gradients
    if _is_torch(model):
        ig = gradient_importance(
            model, ds, steps=ig_steps, max_windows=ig_windows, seed=seed, progress=progress
        )
        report.gradients = ig
        save(
            "gradients_map",
            *plot_feature_map(
                ig.cells,
                lay,
                top_k=top_k,
                title="Integrated gradients: mean |attribution|",
                value_label="mean |attribution|",
            ),
        )
        fig, _ = plot_feature_importance(
            ig.features,
            top_k=top_k,
            highlight=driver,
            title="Integrated gradients per feature",
            xlabel="mean over windows of the summed |attribution|",
        )
        save("gradients_features", fig, ig.features)
        scores["integrated_gradients"] = ig.features.set_index("feature")["importance"]
        lag_scores["integrated_gradients"] = agr.block_scores(
            ig.cells.sum(axis=1), lay.input_length, block
        )
        cells["integrated_gradients"] = ig.cells
        notes.append(
            f"integrated gradients: completeness gap (max, relative) {ig.relative_delta:.2e}"
        )
        if ig.relative_delta > 0.05:
            notes.append(
                "integrated gradients: the completeness gap is large, so these attributions "
                "do not add up to the change in the forecast. Either autograd does not see "
                "the whole function (RevIN detaches its per-window mean and std, so the "
                "gradient misses every path through them) or the path is too coarse (raise "
                "ig_steps); read the gradient results with care"
            )
            logger.warning("%s: integrated gradients gap %.2g", name, ig.relative_delta)
    else:
        notes.append(f"{type(model).__name__} has no torch network: no integrated gradients")

    # -- agreement and deletion
    for kind, sc in (("features", scores), ("lags", lag_scores)):
        if len(sc) >= 2:
            table = agr.rank_agreement(sc)
            fig, _ = plot_agreement(
                agr.agreement_matrix(table), title=f"Rank agreement over {kind} (Spearman)"
            )
            save(f"agreement_{kind}", fig, table)
    deletion = agr.deletion_test(model, ds, cells, n_random=n_repeats, **common)
    save("deletion", *plot_deletion(deletion))
    del_summary = agr.deletion_summary(deletion)

    # -- ground truth
    gt = None
    if truth is not None:
        gt = agr.ground_truth_check(
            truth, lay, scores, temporal=att.temporal_mean, feature_map=att.feature_mean
        )
        write_csv("ground_truth", gt.features)
        if gt.attention is not None:
            write_csv("ground_truth_attention", gt.attention)

    report.summary = {
        "model": name,
        "part": part,
        "n_windows": len(ds),
        "top_feature": {m: str(s.idxmax()) for m, s in scores.items()},
        "deletion": {
            m: {"mean_increase": float(inc), "vs_random": float(r) if np.isfinite(r) else None}
            for m, inc, r in del_summary[["method", "mean_increase", "vs_random"]].itertuples(
                index=False
            )
        },
        "ground_truth": gt.summary if gt is not None else None,
        "notes": notes,
    }
    text = json.dumps(report.summary, indent=2, default=str)
    report.files.append(atomic_write(out / "summary.json", lambda p: p.write_text(text + "\n")))
    md = _markdown(report, report.summary["model"], gt)
    report.files.append(atomic_write(out / "summary.md", lambda p: p.write_text(md)))
    logger.info("interpretation of %s written to %s", report.summary["model"], out)
    return report
