"""The sections of `interpret_model`, each runnable alone on a `Context`.

A section reads the model and data from the context, writes its figures (PNG + CSV) and
tables, adds its scores for the later sections (agreement, deletion) and appends plain
verdicts with their numbers to `ctx.verdicts`:

- `attention`: temporal and feature attention, per window and on average, transformer
  heads and rollout.
- `permutation`: permutation importance per feature and per lag block.
- `gradients`: integrated gradients per cell, per feature and per forecast step; no
  verdict when the completeness gap is large.
- `agreement`: rank agreement between methods and the deletion test.
- `checks`: what makes a map evidence: against a known truth (mass near the true lag
  with an interval, distractor lags, the peak's slope, the driver's rank), an untrained
  copy's maps through the same check, and the forecast with uniform attention instead.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from torch import nn

from forecast.data.prepare import DataBundle
from forecast.data.synthetic import GroundTruth
from forecast.data.windows import WindowDataset
from forecast.interpret import agreement as agr
from forecast.interpret import checks
from forecast.interpret._common import save_figure
from forecast.interpret.collect import collect_attention, window_attention
from forecast.interpret.gradients import MAX_GAP, gradient_importance
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
from forecast.io import atomic_write
from forecast.models.base import Forecaster


@dataclass
class Context:
    """What the sections share: the model, the data, options, and what they found.

    Args:
        model: a fitted forecaster.
        bundle: the prepared data it was trained on.
        ds: the windows explained.
        out: the output folder.
        truth: the known driver and lag, if any.
        options: the `interpret_model` keywords (max_windows, n_repeats, ig_steps, ...).
        files: every file written.
        tables: the data behind the findings, by name.
        scores: method -> importance per feature (for agreement and the truth check).
        lag_scores: method -> importance per lag block.
        cells: method -> [L, F] score per cell (for the deletion test).
        sections: section name -> its JSON summary.
        verdicts: plain sentences with numbers, in order.
        key_figures: the figures a report shows inline.
        notes: caveats.
    """

    model: Forecaster
    bundle: DataBundle
    ds: WindowDataset
    out: Path
    truth: GroundTruth | None
    options: dict[str, Any]
    files: list[Path] = field(default_factory=list)
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)
    scores: dict[str, pd.Series] = field(default_factory=dict)
    lag_scores: dict[str, pd.Series] = field(default_factory=dict)
    cells: dict[str, np.ndarray] = field(default_factory=dict)
    sections: dict[str, Any] = field(default_factory=dict)
    verdicts: list[str] = field(default_factory=list)
    key_figures: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    attention: Any = None
    gradients: Any = None

    @property
    def layout(self):
        return self.ds.layout

    @property
    def name(self) -> str:
        return getattr(self.model, "name", type(self.model).__name__)

    @property
    def block(self) -> int:
        return self.options.get("lag_block") or max(1, round(self.layout.input_length / 12))

    @property
    def is_torch(self) -> bool:
        return isinstance(getattr(self.model, "network", None), nn.Module)

    def save(self, name: str, fig: Figure, data: pd.DataFrame, key: bool = False) -> None:
        """Write a figure and its data; `key` marks it for the report."""
        png, csv = save_figure(fig, data, self.out / f"{name}.png")
        self.files += [png, csv]
        self.tables[name] = data
        if key:
            self.key_figures.append(png.name)

    def write_csv(self, name: str, data: pd.DataFrame) -> None:
        self.files.append(
            atomic_write(self.out / f"{name}.csv", lambda p: data.to_csv(p, index=False))
        )
        self.tables[name] = data


def _read_features(ctx: Context) -> list[str]:
    """The features a forecast can read: targets and past covariates (known covariates
    feed the decoder and are never read from the past)."""
    lay = ctx.layout
    return [*lay.targets, *lay.past_covariates]


def attention(ctx: Context) -> None:
    """Temporal and feature attention over the windows, as maps and bars."""
    lay, o = ctx.layout, ctx.options
    att = collect_attention(ctx.model, ctx.ds, seed=o["seed"], progress=o["progress"])
    ctx.attention = att
    truth = ctx.truth
    driver = truth.driver if truth is not None else None
    gt_pos = agr.true_positions(truth, lay) if truth is not None else None
    summary: dict[str, Any] = {"temporal": att.has_temporal, "feature": att.has_feature}
    if att.has_temporal:
        idx = len(ctx.ds) // 2 if o["window_index"] is None else o["window_index"]
        win = window_attention(ctx.model, ctx.bundle, idx, part=o["part"])
        feats = [*lay.targets, driver] if driver in lay.encoder_features else None
        ctx.save("attention_window", *plot_window_attention(win, features=feats))
        fig, data = plot_temporal_attention(att.temporal_mean, lay, truth_positions=gt_pos)
        ctx.save("attention_mean", fig, data, key=True)
        first = np.asarray(ctx.ds.series_index) == 0  # one series: origins share timestamps
        frame = ctx.bundle.frame
        where = f" (series {frame.series_ids[0]})" if frame.n_series > 1 else ""
        fig, data = plot_attention_over_time(
            att.by_origin[first],
            frame.timestamps[att.origins[first]],
            lay,
            title=f"Where the attention looks as the forecast origin moves{where}",
        )
        ctx.save("attention_over_time", fig, data)
        per_pos = att.temporal_mean.mean(axis=0)  # [L]
        ctx.lag_scores["temporal_attention"] = agr.block_scores(
            per_pos, lay.input_length, ctx.block
        )
        ctx.cells["temporal_attention"] = np.repeat(per_pos[:, None], len(lay.encoder_features), 1)
        peak = int(lay.input_length - 1 - np.argmax(per_pos))
        summary["peak_lag"] = peak
        if att.median_windows < att.n_windows:
            ctx.notes.append(
                f"medians use a random subsample of {att.median_windows} of "
                f"{att.n_windows} windows; means use all"
            )
    else:
        ctx.notes.append("the model returns no temporal attention: no temporal attention plots")
    if att.has_feature:
        ctx.save("feature_attention", *plot_feature_map(att.feature_mean, lay))
        share = att.feature_importance()
        read = [f for f in _read_features(ctx) if f in share.index]
        joint = np.isclose(att.feature_mean.sum(), 1.0, atol=1e-3)  # a map over (step, feature)
        shown = share.loc[read] if joint else share
        shown = shown / max(float(shown.sum()), 1e-12)
        ctx.scores["feature_attention"] = share
        fig, data = plot_feature_importance(
            shown,
            highlight=driver,
            title="Feature attention: share of the attention per feature",
            xlabel="share of the attention",
            uniform=1.0 / len(shown),
        )
        ctx.save("feature_attention_bars", fig, data, key=True)
        fa = att.feature_mean
        ctx.cells["feature_attention"] = (
            fa
            if joint
            else (
                fa * ctx.cells["temporal_attention"][:, :1]
                if "temporal_attention" in ctx.cells
                else fa
            )
        )
        summary["top_feature"] = str(shown.idxmax())
    _transformer_maps(ctx, gt_pos)
    ctx.sections["attention"] = summary


def _transformer_maps(ctx: Context, gt_pos: pd.DataFrame | None) -> None:
    att = ctx.attention
    if att.heads.get("decoder_cross_attention"):
        ctx.save(
            "transformer_cross_attention",
            *plot_attention_heads(
                att.heads["decoder_cross_attention"],
                query_label="forecast step",
                key_label="encoder position (0 = oldest)",
                title="Decoder cross-attention per layer and head",
            ),
        )
    if att.heads.get("encoder_self_attention"):
        ctx.save(
            "transformer_encoder_attention",
            *plot_attention_heads(
                att.heads["encoder_self_attention"],
                query_label="encoder position (0 = oldest)",
                key_label="encoder position (0 = oldest)",
                title="Encoder self-attention per layer and head",
            ),
        )
    if att.rollout_mean is not None:
        ctx.save(
            "transformer_rollout",
            *plot_temporal_attention(
                att.rollout_mean,
                ctx.layout,
                truth_positions=gt_pos,
                title="Attention rollout (encoder self-attention x cross-attention)",
            ),
        )


def permutation(ctx: Context) -> None:
    """Permutation importance per feature and per lag block, with 95% intervals."""
    o = ctx.options
    common = dict(max_windows=o["max_windows"], seed=o["seed"], progress=o["progress"])
    driver = ctx.truth.driver if ctx.truth is not None else None
    perm = permutation_importance(ctx.model, ctx.ds, n_repeats=o["n_repeats"], **common)
    lags = lag_permutation_importance(
        ctx.model, ctx.ds, block=ctx.block, n_repeats=o["n_repeats"], **common
    )
    fig, _ = plot_feature_importance(
        perm,
        highlight=driver,
        title="Permutation importance (95% CI)",
        xlabel="increase in MSE (scaled) when the feature is permuted across windows",
    )
    ctx.save("permutation_features", fig, perm, key=True)
    ctx.save("permutation_lags", *plot_lag_importance(lags))
    ctx.scores["permutation"] = perm.set_index("feature")["importance"]
    ctx.lag_scores["permutation"] = lags.set_index("label")["importance"]
    ctx.cells["permutation"] = _permutation_cells(perm, lags, ctx.layout.input_length)
    top = perm.sort_values("importance", ascending=False).iloc[0]
    ctx.sections["permutation"] = {"top_feature": str(top["feature"])}
    ctx.verdicts.append(
        f"Permutation importance: permuting `{top['feature']}` raises the MSE most "
        f"(+{top['importance']:.3g}, scaled)."
    )


def _permutation_cells(features: pd.DataFrame, lags: pd.DataFrame, L: int) -> np.ndarray:
    """A separable [L, F] score from permutation importance: lag block x feature."""
    per_pos = np.zeros(L)
    for lo_lag, hi_lag, imp in lags[["lag_min", "lag_max", "importance"]].itertuples(index=False):
        per_pos[L - 1 - hi_lag : L - lo_lag] = max(float(imp), 0.0) / (hi_lag - lo_lag + 1)
    return np.outer(per_pos, features["importance"].clip(lower=0).to_numpy())


def gradients(ctx: Context) -> None:
    """Integrated gradients per cell, per feature and per forecast step (torch models)."""
    if not ctx.is_torch:
        ctx.notes.append(
            f"{type(ctx.model).__name__} has no torch network: no integrated gradients"
        )
        return
    o, lay = ctx.options, ctx.layout
    driver = ctx.truth.driver if ctx.truth is not None else None
    ig = gradient_importance(
        ctx.model,
        ctx.ds,
        steps=o["ig_steps"],
        max_windows=o["ig_windows"],
        seed=o["seed"],
        per_step=True,
        progress=o["progress"],
    )
    ctx.gradients = ig
    ctx.save(
        "gradients_map",
        *plot_feature_map(
            ig.cells,
            lay,
            title="Integrated gradients: mean |attribution|",
            value_label="mean |attribution|",
        ),
    )
    fig, _ = plot_feature_importance(
        ig.features,
        highlight=driver,
        title="Integrated gradients per feature",
        xlabel="mean over windows of the summed |attribution|",
    )
    ctx.save("gradients_features", fig, ig.features)
    if ig.step_map is not None:
        shares = ig.step_map / np.maximum(ig.step_map.sum(axis=1, keepdims=True), 1e-12)
        ctx.save(
            "gradients_per_step",
            *plot_temporal_attention(
                shares,
                lay,
                truth_positions=agr.true_positions(ctx.truth, lay) if ctx.truth else None,
                title="Integrated gradients per forecast step (share of |attribution|)",
                value_label="share of |attribution|",
            ),
            key=True,
        )
    summary = {"completeness_gap": ig.relative_delta, "trusted": ig.trusted}
    ctx.notes.append(
        f"integrated gradients: completeness gap (max, relative) {ig.relative_delta:.2e}"
    )
    if not ig.trusted:
        ctx.verdicts.append(
            f"Integrated gradients: NO verdict: the completeness gap is {ig.relative_delta:.2g} "
            f"(above {MAX_GAP}), so the attributions do not add up to the change in the "
            "forecast (raise ig_steps)."
        )
    else:
        ctx.scores["integrated_gradients"] = ig.features.set_index("feature")["importance"]
        ctx.lag_scores["integrated_gradients"] = agr.block_scores(
            ig.cells.sum(axis=1), lay.input_length, ctx.block
        )
        ctx.cells["integrated_gradients"] = ig.cells
        top = ig.features.sort_values("importance", ascending=False).iloc[0]
        summary["top_feature"] = str(top["feature"])
        ctx.verdicts.append(
            f"Integrated gradients (completeness gap {ig.relative_delta:.1e}): "
            f"`{top['feature']}` carries the largest attribution ({top['share']:.0%})."
        )
    ctx.sections["gradients"] = summary


def agreement(ctx: Context) -> None:
    """Rank agreement between the methods and the deletion test."""
    o = ctx.options
    for kind, sc in (("features", ctx.scores), ("lags", ctx.lag_scores)):
        if len(sc) >= 2:
            table = agr.rank_agreement(sc)
            fig, _ = plot_agreement(
                agr.agreement_matrix(table), title=f"Rank agreement over {kind} (Spearman)"
            )
            ctx.save(f"agreement_{kind}", fig, table)
            ctx.sections.setdefault("agreement", {})[kind] = {
                f"{a} vs {b}": (None if np.isnan(r) else round(float(r), 3))
                for a, b, r in table[["method_a", "method_b", "spearman"]].itertuples(index=False)
            }
    if not ctx.cells:
        return
    deletion = agr.deletion_test(
        ctx.model,
        ctx.ds,
        ctx.cells,
        n_random=o["n_repeats"],
        max_windows=o["max_windows"],
        seed=o["seed"],
        progress=o["progress"],
    )
    ctx.save("deletion", *plot_deletion(deletion))
    summary = agr.deletion_summary(deletion)
    ctx.sections["deletion"] = {
        m: {"mean_increase": float(inc), "vs_random": float(r) if np.isfinite(r) else None}
        for m, inc, r in summary[["method", "mean_increase", "vs_random"]].itertuples(index=False)
    }
    for method, d in ctx.sections["deletion"].items():
        if method == "random" or d["vs_random"] is None:
            continue
        how = "more" if d["vs_random"] > 1 else "LESS"
        ctx.verdicts.append(
            f"Deletion test: removing the inputs {method} ranks highest raises the error "
            f"{d['vs_random']:.1f}x as much as removing random inputs ({how} than random)."
        )


def truth_checks(ctx: Context) -> None:
    """Checks that decide whether a map is evidence (see `forecast.interpret.checks`)."""
    summary: dict[str, Any] = {}
    att, lay, truth = ctx.attention, ctx.layout, ctx.truth
    has_temporal = att is not None and att.has_temporal
    if truth is not None:
        gt = agr.ground_truth_check(
            truth,
            lay,
            ctx.scores,
            temporal=att.temporal_mean if has_temporal else None,
            feature_map=att.feature_mean if att is not None and att.has_feature else None,
        )
        ctx.write_csv("ground_truth", gt.features)
        if gt.attention is not None:
            ctx.write_csv("ground_truth_attention", gt.attention)
        summary["ground_truth"] = gt.summary
        for _, row in gt.features.iterrows():
            ctx.verdicts.append(_rank_sentence(row, truth.driver))
        if has_temporal and att.temporal_sample is not None:
            check = checks.temporal_truth_check(att.temporal_sample, truth, lay)
            summary["temporal_check"] = check.summary()
            gt.summary.update(
                attention_ratio_ci=list(check.ci),
                indistinguishable_from_uniform=check.uniform_like,
                peak_slope=check.slope,
                entropy=check.entropy,
            )
            ctx.verdicts.append(f"Temporal attention: {check.verdict}.")
            ctx.verdicts.append(
                f"Its peak moves {check.slope:+.2f} lags per forecast step (a driver at a "
                f"fixed lag gives -1); entropy {check.entropy:.2f} of the maximum."
            )
            for name, d in check.distractors.items():
                ctx.verdicts.append(
                    f"At the lag {d['lag']} that the correlated distractor `{name}` would "
                    f"suggest: {d['mass_ratio']:.2f}x uniform (at the true lag: "
                    f"{check.mass_ratio:.2f}x within +-2 steps)."
                )
        if att is not None and att.has_feature:
            share = att.feature_importance()
            read = [f for f in _read_features(ctx) if f in share.index]
            fc = checks.feature_truth_check(share.loc[read], truth)
            summary["feature_check"] = fc
    if has_temporal and ctx.is_torch:
        summary.update(_model_checks(ctx, truth))
    ctx.sections["checks"] = summary


def _model_checks(ctx: Context, truth: GroundTruth | None) -> dict[str, Any]:
    """The randomised-model check and the uniform-attention ablation."""
    o, out = ctx.options, {}
    fresh = checks.untrained_copy(ctx.model)
    maps = collect_attention(fresh, ctx.ds, seed=o["seed"]).temporal_sample
    if truth is not None and maps is not None:
        check = checks.temporal_truth_check(maps, truth, ctx.layout)
        out["untrained_check"] = check.summary()
        ctx.verdicts.append(f"An untrained copy of the model, same check: {check.verdict}.")
    try:
        ablation = checks.attention_ablation(
            ctx.model, ctx.ds, max_windows=o["max_windows"], seed=o["seed"]
        )
    except ValueError as err:  # no attention module to replace
        ctx.notes.append(f"no attention ablation: {err}")
        return out
    out["ablation"] = ablation
    if ablation["increase"] < 0.05:
        ctx.verdicts.append(
            f"Ablation: with uniform attention the error changes by only "
            f"{ablation['increase']:+.1%}: the forecast does not depend on where the model "
            "looks, so its attention maps explain nothing."
        )
    else:
        ctx.verdicts.append(
            f"Ablation: with uniform attention the error rises {ablation['increase']:+.0%} "
            f"(MSE {ablation['mse']:.4g} -> {ablation['mse_uniform_attention']:.4g}): the "
            "forecast depends on where the model looks."
        )
    return out


def _rank_sentence(row: pd.Series, driver: str) -> str:
    scores = f"score {row['driver_score']:.4g} vs best distractor {row['runner_up_score']:.4g}"
    if row["driver_first"]:
        return f"{row['method']}: ranks the true driver `{driver}` first ({scores})."
    return (
        f"{row['method']}: does NOT rank the true driver `{driver}` first: `{row['top_feature']}`"
        f" comes first, the driver is number {row['driver_rank']} ({scores})."
    )


SECTIONS = {
    "attention": attention,
    "permutation": permutation,
    "gradients": gradients,
    "agreement": agreement,
    "checks": truth_checks,
}
"""The sections of `interpret_model`, in the order they run."""
