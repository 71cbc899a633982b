"""What a search leaves in its folder: the trials table, the best trial as a ready
experiment config, the best-so-far plot, parameter importances and the search report
(written with the run report's code, `forecast.report.write_pages`)."""

from __future__ import annotations

import logging
import warnings
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from forecast.config import toml_text, with_values
from forecast.report import Block, write_pages
from forecast.runs import RunFolder

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from forecast.search import Search

log = logging.getLogger(__name__)


def trials_table(study: Any) -> pd.DataFrame:
    """One row per trial: number, state, value, each searched value (`params_<path>`),
    epochs run, seconds, and why it was pruned.

    Args:
        study: an `optuna.Study`.
    """
    rows = []
    for t in study.get_trials(deepcopy=False):
        rows.append(
            {
                "number": t.number,
                "state": t.state.name,
                "value": t.value if t.value is not None else np.nan,
                **{f"params_{k}": v for k, v in t.params.items()},
                "epochs_run": t.user_attrs.get("epochs_run"),
                "last_epoch_reported": t.last_step,
                "fit_seconds": t.user_attrs.get("fit_seconds"),
                "pruned": t.user_attrs.get("pruned"),
            }
        )
    return pd.DataFrame(rows)


def best_so_far(trials: pd.DataFrame, direction: str) -> pd.DataFrame:
    """Finished trials in order with the best value up to each (the data of the plot).

    Args:
        trials: `trials_table`.
        direction: 'minimize' or 'maximize'.
    """
    done = trials[trials["state"] == "COMPLETE"][["number", "value"]].sort_values("number")
    best = done["value"].cummin() if direction == "minimize" else done["value"].cummax()
    return done.assign(best_so_far=best.to_numpy()).reset_index(drop=True)


def plot_best_so_far(data: pd.DataFrame) -> Figure:
    """Each complete trial's validation loss and the best so far, by trial number.

    Args:
        data: `best_so_far`.
    """
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7, 3.6))
    ax = fig.add_subplot()
    ax.scatter(data["number"], data["value"], s=14, color="0.5", label="trial")
    ax.step(data["number"], data["best_so_far"], where="post", color="C0", label="best so far")
    ax.set_xlabel("trial")
    ax.set_ylabel("validation loss")
    ax.legend(frameon=False)
    fig.subplots_adjust(left=0.12, right=0.97, bottom=0.14, top=0.95)
    return fig


def importances(study: Any) -> pd.DataFrame | None:
    """`optuna.importance.get_param_importances` as a table (parameter, importance);
    None when the study cannot support it yet (too few complete trials, one value).

    Args:
        study: an `optuna.Study`.
    """
    import optuna

    with warnings.catch_warnings(record=True) as caught:  # e.g. "too few trials": all equal
        warnings.simplefilter("always")
        try:
            found = optuna.importance.get_param_importances(study)
        except (ValueError, RuntimeError, ZeroDivisionError) as err:
            log.info("parameter importances not computed: %s", err)
            return None
    if caught or not found:
        log.info("parameter importances not computed: %s", [str(w.message) for w in caught])
        return None
    return pd.DataFrame({"parameter": list(found), "importance": list(found.values())})


def plot_importances(table: pd.DataFrame) -> Figure:
    """Horizontal bars of the parameter importances.

    Args:
        table: `importances`.
    """
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7, 0.5 + 0.45 * len(table)))
    ax = fig.add_subplot()
    ax.barh(table["parameter"][::-1], table["importance"][::-1], color="C0")
    ax.set_xlabel("importance (optuna.importance, sums to 1)")
    fig.subplots_adjust(left=0.3, right=0.97, bottom=0.2, top=0.95)
    return fig


def best_config_text(search: Search, trial: Any) -> str:
    """The base experiment with the best trial's values, as TOML with a header saying
    where it came from (`run.threads` as the trials ran, so a run reproduces the loss).

    Args:
        search: the search.
        trial: the best `optuna.trial.FrozenTrial`.
    """
    raw = with_values(search.raw, trial.params)
    raw.setdefault("run", {})["threads"] = search.threads
    header = (
        f"# Best trial ({trial.number}) of study {search.study_name!r}: validation loss "
        f"{trial.value!r}\n# of {search.model} (seed {raw['run'].get('seeds', [0])[0]}). "
        "Run it: python run_experiment.py --config best_config.toml\n"
    )
    return header + toml_text(raw)


def write_search_outputs(search: Search, study: Any) -> None:
    """trials.csv, best_config.toml, best_so_far.png (+ .csv), importances.csv (+ .png)
    and report.html / report.md in the search folder.

    Args:
        search: the search.
        study: its finished `optuna.Study`.
    """
    out = RunFolder.existing(search.folder, marker="search.json")
    trials = trials_table(study)
    out.write_csv("trials.csv", trials)
    counts = trials["state"].value_counts().to_dict() if len(trials) else {}
    blocks: list[Block] = [
        ("h1", f"Search report: {search.study_name}"),
        (
            "p",
            f"Model {search.model}; {len(trials)} trials ({counts.get('COMPLETE', 0)} "
            f"complete, {counts.get('PRUNED', 0)} pruned, {counts.get('FAIL', 0)} failed) "
            f"of n_trials {search.spec.n_trials}; objective: {search.spec.direction} the "
            f"validation loss; sampler {search.spec.sampler}, pruner "
            f"{search.spec.pruner.get('type')}; storage {search.storage}.",
        ),
    ]
    complete = trials[trials["state"] == "COMPLETE"] if len(trials) else trials
    if len(complete):
        best = study.best_trial
        out.write_text("best_config.toml", best_config_text(search, best))
        params = pd.DataFrame({"setting": list(best.params), "value": list(best.params.values())})
        blocks += [
            ("h2", f"Best trial: {best.number}, validation loss {best.value:.6g}"),
            ("table", params),
            ("p", "As a ready config: best_config.toml (python run_experiment.py --config ...)."),
        ]
        data = best_so_far(trials, search.spec.direction)
        out.write_figure("best_so_far.png", plot_best_so_far(data), data)
        blocks += [("h2", "Best so far"), ("img", "best_so_far.png")]
    else:
        blocks += [("p", "No trial completed: no best config was written.")]
    table = importances(study)
    blocks.append(("h2", "Parameter importances"))
    if table is None:
        blocks.append(("p", "Not computed: optuna.importance needs more complete trials "
                            "(with differing values) than this study has."))  # fmt: skip
    else:
        out.write_csv("importances.csv", table)
        out.write_figure("importances.png", plot_importances(table))
        blocks += [("table", table), ("img", "importances.png")]
    blocks += [("h2", "Trials"), ("table", trials)]
    write_pages(search.folder, blocks)
