"""Optuna searches (`run_experiment.py --search`): two worker processes share one SQLite
study and together run exactly n_trials; a trial the training loop's per-epoch validation
loss condemns is pruned; running again continues the study; the best config reproduces
the best trial's validation loss."""

from __future__ import annotations

import sys
import tomllib
from pathlib import Path

import pandas as pd
import pytest

import run_experiment
from forecast.checkpoint import load_checkpoint
from forecast.config import load_config, read_toml
from forecast.data.source import load_source, make_bundle
from forecast.search import prepare_search, validation_loss
from tests.conftest import one_error_line

optuna = pytest.importorskip(
    "optuna", reason="Optuna is an optional extra: pip install -e '.[search]'"
)

ROOT = Path(__file__).resolve().parents[1]
SEARCH = """
models = ["lstm_plain"]
[run]
seeds = [0]
threads = 1
progress = false
plots = false
predictions = "none"
output_dir = "."
[data]
synthetic_rows = 600
input_length = 24
horizon = 6
[train]
epochs = 3
max_train_windows = 64
max_val_windows = 32
batch_size = 32
[model.lstm_plain]
hidden_size = 8
[search]
n_trials = 4
sampler = "random"
enqueue = [{"train.lr" = 1000.0}, {"train.lr" = 0.01}]   # a diverging lr, a good one
[search.space]
"train.lr" = {type = "float", low = 1e-3, high = 1e3, log = true}
"lstm_plain.hidden_size" = {type = "int", low = 4, high = 12}
[search.pruner]
type = "threshold"     # any epoch's validation loss above 5 prunes the trial
upper = 5.0
"""


@pytest.fixture(scope="module")
def searched(tmp_path_factory) -> Path:
    """The search file after a first search of 4 trials by 2 worker processes."""
    path = tmp_path_factory.mktemp("search") / "search_tiny.toml"
    path.write_text(SEARCH)
    assert run_experiment.main(["--search", str(path), "--workers", "2", "--quiet"]) == 0
    return path


def _study(path: Path):
    url = f"sqlite:///{path.parent / path.stem / 'study.db'}"
    return optuna.load_study(study_name=path.stem, storage=url)


def test_two_workers_run_exactly_n_trials_and_prune_the_bad_one(searched):
    trials = _study(searched).trials
    assert len(trials) == 4
    assert all(t.state.name in ("COMPLETE", "PRUNED") for t in trials)
    assert len({t.user_attrs["pid"] for t in trials}) == 2  # both processes took trials
    diverging = [t for t in trials if t.params["train.lr"] == 1000.0]
    assert [t.state.name for t in diverging] == ["PRUNED"]
    assert diverging[0].last_step == 1  # stopped after its first epoch
    good = [t for t in trials if t.params["train.lr"] == 0.01]
    assert [t.state.name for t in good] == ["COMPLETE"]
    folder = searched.parent / searched.stem
    table = pd.read_csv(folder / "trials.csv")
    assert sorted(table["number"]) == [0, 1, 2, 3]
    assert (table.set_index("number")["state"] == [t.state.name for t in trials]).all()
    for name in ("best_config.toml", "best_so_far.png", "report.html", "report.md"):
        assert (folder / name).is_file(), name


def test_rerun_continues_the_study_without_redoing_trials(searched):
    before = {t.number: (t.state, t.value, t.datetime_complete) for t in _study(searched).trials}
    args = ["--search", str(searched), "--set", "search.n_trials=6", "--quiet"]
    assert run_experiment.main(args) == 0
    after = _study(searched).trials
    assert len(after) == 6 and all(t.state.name in ("COMPLETE", "PRUNED") for t in after)
    assert {t.number: (t.state, t.value, t.datetime_complete) for t in after[:4]} == before
    assert run_experiment.main(args) == 0  # already full: nothing runs
    assert len(_study(searched).trials) == 6
    assert len(pd.read_csv(searched.parent / searched.stem / "trials.csv")) == 6


def test_best_config_reproduces_the_best_validation_loss(searched, tmp_path):
    best = _study(searched).best_trial
    config = searched.parent / searched.stem / "best_config.toml"
    args = ["--config", str(config), "--output-dir", str(tmp_path), "--run-name", "best"]
    assert run_experiment.main([*args, "--quiet", "--workers", "1"]) == 0
    run_dir = tmp_path / "best"
    history = pd.read_csv(run_dir / "history" / "lstm_plain_seed0.csv")
    reported = [best.intermediate_values[e] for e in history["epoch"]]
    assert history["val_loss"].tolist() == pytest.approx(reported, rel=1e-9, abs=0)
    # the kept weights (an epoch's, or the warm start's when no epoch beat it)
    cfg = load_config(config)
    df, roles, split, _ = load_source(cfg.data)
    val = make_bundle(cfg, df, roles, split).val
    model = load_checkpoint(run_dir / "models" / "lstm_plain_seed0.pt")
    assert validation_loss(model, val) == pytest.approx(best.value, rel=1e-9, abs=0)


def test_a_changed_search_is_refused(searched, capsys):
    code = run_experiment.main(["--search", str(searched), "--set", "search.sampler=tpe"])
    assert code == 2
    assert "holds a different search" in one_error_line(capsys)


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ('"train.lr" = {type = "normal", low = 1, high = 2}', "type must be one of"),
        ('"train.lr" = {type = "float", low = 0.0, high = 1.0, log = true}', "log = true"),
        ('"train.nope" = {type = "int", low = 1, high = 3}', "unknown key(s) ['nope']"),
        ('"lstm_plain.hidden_size" = {type = "int", low = 0, high = 3}', "hidden_size"),
    ],
)
def test_a_bad_space_is_one_error_line_and_no_folder(tmp_path, capsys, table, message):
    base = SEARCH.split("[search.space]")[0].replace(
        'enqueue = [{"train.lr" = 1000.0}, {"train.lr" = 0.01}]', ""
    )
    path = tmp_path / "bad.toml"
    path.write_text(f"{base}[search.space]\n{table}\n")
    assert run_experiment.main(["--search", str(path)]) == 2
    assert message in one_error_line(capsys)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.toml"]


def test_search_section_in_a_plain_run_and_missing_optuna(searched, capsys, monkeypatch, tmp_path):
    assert run_experiment.main(["--config", str(searched)]) == 2
    assert "--search" in one_error_line(capsys)
    other = tmp_path / "other.toml"
    other.write_text(SEARCH)
    monkeypatch.setitem(sys.modules, "optuna", None)  # `import optuna` raises ImportError
    assert run_experiment.main(["--search", str(other)]) == 2
    assert "pip install -e '.[search]'" in one_error_line(capsys)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["other.toml"]


@pytest.mark.parametrize("path", sorted((ROOT / "configs").glob("search_*.toml")), ids=str)
def test_every_ready_search_validates(path):
    search = prepare_search(read_toml(path), path)
    assert search.params and search.study_name == path.stem
    assert search.storage.endswith(f"{path.stem}/study.db")


def test_epoch_callbacks_see_every_validation_loss_and_may_end_training(one_thread):
    from forecast.config import config_from_dict, model_params
    from forecast.models.registry import create_model

    cfg = config_from_dict(tomllib.loads(SEARCH.split("[search]")[0]))  # the base experiment
    df, roles, split, _ = load_source(cfg.data)
    bundle = make_bundle(cfg, df, roles, split)
    model = create_model("lstm_plain", bundle.layout, **model_params(cfg, "lstm_plain", 0))
    seen = []
    model.epoch_callbacks.append(lambda epoch, loss: seen.append((epoch, loss)))
    model.fit(bundle.train, bundle.val)
    history = model.history_
    assert seen == list(zip(history["epoch"], history["val_loss"], strict=True))

    def stop_at_two(epoch: int, loss: float) -> None:
        if epoch == 2:
            raise optuna.TrialPruned("enough")

    model.epoch_callbacks[:] = [stop_at_two]
    with pytest.raises(optuna.TrialPruned, match="enough"):
        model.fit(bundle.train, bundle.val)
