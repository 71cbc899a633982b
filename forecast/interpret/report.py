"""`interpret_model`: the interpretation sections of one fitted model, written to a folder.

Each figure is a PNG with its data as a CSV of the same name; `summary.json` and
`summary.md` hold the verdicts, each a sentence with its numbers, including, with a known
ground truth, whether each method found the true driver and lag, said plainly either
way, and whether the attention maps pass the checks that make them evidence
(`forecast.interpret.checks`). The sections (`forecast.interpret.sections`) can be run
alone: `interpret_model(..., sections=["permutation"])`.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from forecast.data.prepare import DataBundle
from forecast.data.synthetic import GroundTruth, SyntheticDataset
from forecast.interpret.collect import AttentionSummary
from forecast.interpret.gradients import GradientImportance
from forecast.interpret.sections import SECTIONS, Context
from forecast.io import atomic_write
from forecast.models.base import Forecaster

logger = logging.getLogger(__name__)

EVIDENCE = (
    "A map is evidence only where these checks pass: mass near the truth clearly above "
    "uniform, an untrained copy called uniform, and a forecast that changes when the "
    "attention is replaced by uniform weights."
)


@dataclass
class InterpretationReport:
    """What `interpret_model` wrote and found.

    Args:
        out_dir: the folder written.
        files: every file written (PNGs, CSVs, summary.json, summary.md).
        tables: the data frames behind the findings, by name.
        summary: the JSON summary (also in `out_dir/summary.json`).
        attention: the aggregated attention (None when the section did not run).
        gradients: integrated gradients, None for models without a torch network.
    """

    out_dir: Path
    files: list[Path] = field(default_factory=list)
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)
    summary: dict[str, Any] = field(default_factory=dict)
    attention: AttentionSummary | None = None
    gradients: GradientImportance | None = None


def _markdown(ctx: Context, summary: dict[str, Any]) -> str:
    lines = [f"# Interpretation of `{ctx.name}`", ""]
    lines += [f"Windows: {summary['n_windows']} ({summary['part']} part).", ""]
    if ctx.truth is not None:
        lines += [f"Ground truth: driver `{ctx.truth.driver}`, lag {ctx.truth.lag} rows.", ""]
    lines += ["## What the evidence shows", ""] + [f"- {v}" for v in ctx.verdicts]
    if summary["top_feature"]:
        lines += ["", "## Most important feature per method", ""]
        lines += [f"- {m}: `{top}`" for m, top in summary["top_feature"].items()]
        if "feature_attention" in summary["top_feature"] and ctx.attention is not None:
            n = len(ctx.scores["feature_attention"])
            lines.append(
                f"- (feature attention: shares of the attention; uniform attention would "
                f"give each of the {n} encoder features {1 / n:.3g})"
            )
    lines += ["", EVIDENCE]
    if ctx.notes:
        lines += ["", "## Notes", ""] + [f"- {n}" for n in ctx.notes]
    return "\n".join(lines) + "\n"


def interpret_model(
    model: Forecaster,
    bundle: DataBundle,
    out_dir: str | Path,
    truth: GroundTruth | SyntheticDataset | None = None,
    *,
    sections: Sequence[str] = tuple(SECTIONS),
    part: str = "test",
    max_windows: int | None = 512,
    n_repeats: int = 5,
    ig_steps: int = 32,
    ig_windows: int | None = 128,
    lag_block: int | None = None,
    window_index: int | None = None,
    seed: int = 0,
    progress: bool = False,
) -> InterpretationReport:
    """Write the interpretation sections of a fitted model to `out_dir` (PNG + CSV each).

    Attention plots appear when the model returns attention; integrated gradients when
    it has a torch `.network`; permutation importance, agreement and the deletion test
    for every model; the checks (truth, untrained copy, uniform-attention ablation)
    where they apply.

    Args:
        model: a fitted forecaster.
        bundle: the prepared data it was trained on.
        out_dir: output folder (created; existing files of the same names are replaced).
        truth: known driver and lag (synthetic data) to check the methods against.
        sections: which of 'attention', 'permutation', 'gradients', 'agreement',
            'checks' to run (in that order; later ones use what earlier ones found).
        part: which windows to explain: 'test', 'val' or 'train'.
        max_windows: windows used by permutation importance, deletion and ablation.
        n_repeats: permutation repeats (and random-deletion repeats).
        ig_steps: trapezoid intervals of integrated gradients.
        ig_windows: windows attributed by integrated gradients.
        lag_block: lags per block of the lag permutation importance (default ~L / 12).
        window_index: the window of the single-window plot (default: the middle one).
        seed: seeds every subsample and permutation.
        progress: show tqdm bars.
    """
    unknown = [s for s in sections if s not in SECTIONS]
    if unknown:
        raise ValueError(f"unknown section(s) {unknown}; expected some of {list(SECTIONS)}")
    ds = bundle.part(part)
    if ds is None or len(ds) == 0:
        raise ValueError(f"the {part!r} part of the bundle has no windows to interpret")
    truth = truth.truth if isinstance(truth, SyntheticDataset) else truth
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    options = dict(
        part=part,
        max_windows=max_windows,
        n_repeats=n_repeats,
        ig_steps=ig_steps,
        ig_windows=ig_windows,
        lag_block=lag_block,
        window_index=window_index,
        seed=seed,
        progress=progress,
    )
    ctx = Context(model, bundle, ds, out, truth, options)
    for name in SECTIONS:  # the defined order, whatever order was asked
        if name in sections:
            SECTIONS[name](ctx)
    checks = ctx.sections.get("checks", {})
    summary = {
        "model": ctx.name,
        "part": part,
        "n_windows": len(ds),
        "top_feature": {m: str(s.idxmax()) for m, s in ctx.scores.items()},
        "deletion": ctx.sections.get("deletion", {}),
        "ground_truth": checks.get("ground_truth"),
        "sections": ctx.sections,
        "verdicts": ctx.verdicts,
        "key_figures": ctx.key_figures,
        "notes": ctx.notes,
    }
    text = json.dumps(summary, indent=2, default=str)
    ctx.files.append(atomic_write(out / "summary.json", lambda p: p.write_text(text + "\n")))
    md = _markdown(ctx, summary)
    ctx.files.append(atomic_write(out / "summary.md", lambda p: p.write_text(md)))
    logger.info("interpretation of %s written to %s", ctx.name, out)
    return InterpretationReport(out, ctx.files, ctx.tables, summary, ctx.attention, ctx.gradients)
