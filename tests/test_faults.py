"""Faults that used to crash, mislead or endanger: crafted and damaged checkpoints,
file-system errors, damaged results on resume, unreadable CSVs, run names that escape the
output folder, stale temporary files, and the cost of --help."""

from __future__ import annotations

import errno
import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

import run_experiment
from forecast import ColumnRoles, create_model, prepare_data
from forecast.checkpoint import (
    CheckpointError,
    atomic_save,
    load_checkpoint,
    read_checkpoint,
    save_checkpoint,
)
from forecast.config import config_from_dict
from forecast.io import STALE_TMP, atomic_write, read_csv, read_json
from forecast.runner import Runner
from forecast.runs import RunFolder
from tests.conftest import one_error_line, reference_file

ROOT = Path(__file__).resolve().parents[1]


def _cli(tmp_path: Path, *extra: str) -> list[str]:
    """A small, fast baselines-only run on synthetic data, written under tmp_path/out."""
    return [
        "--models", "naive", "--synthetic-rows", "300", "--input-length", "24",
        "--horizon", "4", "--seeds", "0", "--no-progress", "--quiet",
        "--set", "run.workers=1", "--set", "run.plots=false",
        "--output-dir", str(tmp_path / "out"), *extra,
    ]  # fmt: skip


# ------------------------------------------------------------------ checkpoints
@pytest.fixture(scope="module")
def fitted(tmp_path_factory, one_thread):
    """A tiny fitted torch model and its checkpoint file."""
    rng = np.random.default_rng(0)
    n = 200
    df = pd.DataFrame(
        {
            "date": pd.date_range("2024-01-01", periods=n, freq="h"),
            "y": np.sin(np.arange(n) / 5) + rng.normal(0, 0.1, n),
        }
    )
    data = prepare_data(
        df, ColumnRoles(("y",), calendar=False), input_length=12, horizon=3, stride=1
    )
    model = create_model(
        "lstm_plain", data.layout, epochs=1, hidden_size=4, progress=False, device="cpu"
    )
    model.fit(data.train, data.val)
    path = save_checkpoint(model, tmp_path_factory.mktemp("ckpt") / "m.pt", scaler=data.scaler)
    return model, path


def _copy(path: Path, tmp_path: Path, name: str = "copy.pt") -> Path:
    dest = tmp_path / name
    shutil.copyfile(path, dest)
    return dest


def _same_weights(a, b) -> bool:
    sa, sb = a.network.state_dict(), b.network.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_checkpoint_naming_a_foreign_module_is_refused_without_importing_it(
    fitted, tmp_path, monkeypatch
):
    marker = tmp_path / "marker"
    (tmp_path / "evil_ckpt_mod.py").write_text(
        f"from pathlib import Path\nPath({str(marker)!r}).write_text('ran')\n"
        "from forecast.models.torch_base import TorchForecaster\n"
        "class Evil(TorchForecaster):\n    pass\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.chdir(tmp_path)
    payload = read_checkpoint(fitted[1])
    for name in ("evil", "lstm_plain"):  # an unknown name, and a registered one
        crafted = {**payload, "name": name, "class": "evil_ckpt_mod:Evil"}
        hashed = atomic_save(crafted, tmp_path / f"{name}.pt")
        unhashed = tmp_path / f"{name}_v1.pt"  # an old-format file: no hash to pass
        torch.save({**crafted, "format": 1}, unhashed)
        for path in (hashed, unhashed):
            with pytest.raises(CheckpointError, match="is not a registered torch model") as e:
                load_checkpoint(path)
            assert str(path) in str(e.value)
    assert not marker.exists() and "evil_ckpt_mod" not in sys.modules


def test_checkpoint_round_trip_is_hashed_and_exact(fitted, tmp_path):
    model, path = fitted
    outer = torch.load(path, weights_only=True)  # still plain data
    assert outer["format"] == 2 and len(outer["sha256"]) == 64
    again = load_checkpoint(path)
    assert _same_weights(model, again) and again.config == model.config


def test_flipped_byte_is_refused_naming_the_file(fitted, tmp_path):
    model, path = fitted
    size = path.stat().st_size
    for offset in [size // 2, *np.linspace(0, size - 1, 24).astype(int)]:
        bad = _copy(path, tmp_path)
        data = bytearray(bad.read_bytes())
        data[offset] ^= 0xFF
        bad.write_bytes(bytes(data))
        try:
            loaded = load_checkpoint(bad)
        except CheckpointError as err:
            assert str(bad) in str(err)
            continue
        # A byte outside the content (e.g. zip padding) may change nothing that is read.
        assert offset != size // 2 and _same_weights(model, loaded)
    with pytest.raises(CheckpointError, match="damaged"):
        bad = _copy(path, tmp_path)
        data = bytearray(bad.read_bytes())
        data[size // 2] ^= 0x01
        bad.write_bytes(bytes(data))
        load_checkpoint(bad)


@pytest.mark.parametrize("keep", [0, 0.1, 0.5, 0.99])
def test_truncated_checkpoint_is_refused_naming_the_file(fitted, tmp_path, keep):
    bad = _copy(fitted[1], tmp_path)
    data = bad.read_bytes()
    bad.write_bytes(data[: int(len(data) * keep)])
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(bad)
    assert str(err.value).startswith(f"{bad}: ")


def test_old_checkpoint_without_hash_loads_with_a_warning(fitted, tmp_path, caplog):
    model, path = fitted
    old = tmp_path / "old.pt"
    torch.save({**read_checkpoint(path), "format": 1}, old)
    with caplog.at_level(logging.WARNING, logger="forecast.checkpoint"):
        loaded = load_checkpoint(old)
    assert _same_weights(model, loaded)
    assert any("has no integrity hash" in r.getMessage() and str(old) in r.getMessage()
               for r in caplog.records)  # fmt: skip


# ------------------------------------------------------------------ file-system errors
def test_output_folder_that_is_read_only(tmp_path, capsys, monkeypatch):
    out = tmp_path / "out"
    out.mkdir()
    out.chmod(0o500)
    if os.geteuid() == 0:  # root writes anyway: make mkdir fail as a read-only folder does
        real = os.mkdir

        def mkdir(path, mode=0o777, **kw):
            if Path(path).parent == out:
                raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(path))
            return real(path, mode, **kw)

        monkeypatch.setattr(os, "mkdir", mkdir)
    try:
        assert run_experiment.main(_cli(tmp_path, "--run-name", "r")) == 2
        line = one_error_line(capsys)
        assert str(out / "r") in line and "Permission denied" in line
    finally:
        out.chmod(0o700)
    assert not list(out.iterdir())


def test_output_path_that_is_a_file(tmp_path, capsys):
    (tmp_path / "out").write_text("mine")
    assert run_experiment.main(_cli(tmp_path, "--run-name", "r")) == 2
    assert str(tmp_path / "out") in one_error_line(capsys)
    assert (tmp_path / "out").read_text() == "mine"


def _disk_full(*args, **kwargs):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def test_full_disk_before_the_run_starts_leaves_nothing(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(Path, "write_text", _disk_full)  # config.json is the first file
    assert run_experiment.main(_cli(tmp_path, "--run-name", "r")) == 2
    line = one_error_line(capsys)
    assert str(tmp_path / "out/r/config.json") in line and "No space left" in line
    assert not list((tmp_path / "out").iterdir())


def test_full_disk_during_the_run_keeps_it_resumable(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(np, "savez_compressed", _disk_full)  # a pair's predictions
    assert run_experiment.main(_cli(tmp_path, "--run-name", "r")) == 2
    line = one_error_line(capsys)
    assert str(tmp_path / "out/r/results") in line and ".npz" in line
    run_dir = tmp_path / "out/r"
    assert (run_dir / "config.json").is_file()
    assert not [p for p in run_dir.rglob("*") if STALE_TMP.match(p.name)]  # no temp left
    monkeypatch.undo()
    assert run_experiment.main(["--resume", str(run_dir), "--quiet"]) == 0


def test_atomic_write_names_the_file_of_an_anonymous_os_error(tmp_path):
    with pytest.raises(OSError) as err:
        atomic_write(tmp_path / "a.txt", _disk_full)
    assert err.value.errno == errno.ENOSPC and err.value.filename == str(tmp_path / "a.txt")
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("dataset", ["csv", "ETTh1"])
def test_data_path_that_is_a_folder(tmp_path, capsys, dataset):
    folder = tmp_path / "data"
    folder.mkdir()
    args = ["--dataset", dataset, "--data-path", str(folder), "--targets", "OT"]
    assert run_experiment.main(_cli(tmp_path, *args)) == 2
    assert str(folder) in one_error_line(capsys)
    assert not (tmp_path / "out").exists()


# ------------------------------------------------------------------ unreadable CSVs
@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b"", "is empty"),
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\xff\xfe\x80\x81" * 20, "not a text CSV"),
        (b"PK\x03\x04\x14\x00\x00\x00\x08\x00\xc3\x28\x9f\x00\xe9\xfa" * 30, "not a text CSV"),
    ],
    ids=["empty", "png", "zip"],
)
def test_empty_or_binary_csv_gives_one_line_naming_the_file(tmp_path, capsys, content, expected):
    path = tmp_path / "data.csv"
    path.write_bytes(content)
    with pytest.raises(ValueError, match=expected) as err:
        read_csv(path)
    assert str(err.value).startswith(f"{path}: ")
    args = ["--dataset", "csv", "--data-path", str(path), "--targets", "y"]
    assert run_experiment.main(_cli(tmp_path, *args)) == 2
    assert one_error_line(capsys).startswith(f"error: {path}: ")
    assert not (tmp_path / "out").exists()


def test_empty_file_as_a_registered_dataset(tmp_path, capsys):
    path = tmp_path / "ETTh1.csv"
    path.write_bytes(b"")
    assert run_experiment.main(_cli(tmp_path, "--dataset", "ETTh1", "--data-path", str(path))) == 2
    assert str(path) in one_error_line(capsys)


# ------------------------------------------------------------------ run names
@pytest.mark.parametrize("name", ["../../x", "../x", "a/b", "/tmp/abs", "..", ".", "a\\b", " "])
def test_run_name_cannot_leave_the_output_folder(tmp_path, capsys, name):
    work = tmp_path / "w"
    work.mkdir()
    before = sorted(tmp_path.rglob("*"))
    assert run_experiment.main(_cli(work, "--run-name", name)) == 2
    assert "run.name" in one_error_line(capsys)
    assert sorted(tmp_path.rglob("*")) == before
    assert run_experiment.main(_cli(work, "--run-name", name, "--check")) == 2
    with pytest.raises(ValueError, match="plain folder name"):
        RunFolder(work / "out", name)
    assert sorted(tmp_path.rglob("*")) == before


# ------------------------------------------------------------------ resume
@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> Path:
    """A finished baselines-only run folder (copy it before damaging it)."""
    tmp = tmp_path_factory.mktemp("finished")
    assert run_experiment.main(_cli(tmp, "--run-name", "done")) == 0
    return tmp / "out/done"


def _resumed_copy(finished: Path, tmp_path: Path) -> Path:
    run_dir = tmp_path / "run"
    shutil.copytree(finished, run_dir)
    return run_dir


def _board(run_dir: Path) -> pd.DataFrame:
    return pd.read_csv(run_dir / "leaderboard.csv")[["model", "mse", "mae"]]


@pytest.mark.parametrize(
    ("file", "damage"),
    [
        ("seed0.npz", "truncate"),
        ("seed0.npz", "garbage"),
        ("seed0.json", "truncate"),
        ("seed0.json", "garbage"),
        ("seed0.json", "empty"),
    ],
)
def test_resume_refits_damaged_results_with_a_warning(finished, tmp_path, caplog, file, damage):
    run_dir = _resumed_copy(finished, tmp_path)
    target = run_dir / "results/naive" / file
    data = target.read_bytes()
    damaged = {"truncate": data[: len(data) // 2], "garbage": b"\x00\xff" * 40, "empty": b""}
    target.write_bytes(damaged[damage])
    with caplog.at_level(logging.WARNING):
        assert run_experiment.main(["--resume", str(run_dir), "--quiet"]) == 0
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any(str(target) in w and "refitting" in w for w in warnings), warnings
    pd.testing.assert_frame_equal(_board(run_dir), _board(finished))


def test_resume_over_a_damaged_config_names_it(finished, tmp_path, capsys):
    run_dir = _resumed_copy(finished, tmp_path)
    (run_dir / "config.json").write_text('{"config": {"run": ')
    assert run_experiment.main(["--resume", str(run_dir)]) == 2
    line = one_error_line(capsys)
    assert line.startswith(f"error: {run_dir / 'config.json'}: not a valid JSON file")


def test_resume_removes_stale_temporary_files_only(finished, tmp_path):
    run_dir = _resumed_copy(finished, tmp_path)
    stale = [
        run_dir / "results/naive/.seed0.npz.k2j_x9a1.tmp",
        run_dir / ".leaderboard.csv.abcdefgh.tmp",
    ]
    kept = [run_dir / "notes.tmp", run_dir / ".mine.tmp", run_dir / "results/.x.toolong12.tmp"]
    for p in stale + kept:
        p.write_text("left behind")
    assert run_experiment.main(["--resume", str(run_dir), "--quiet"]) == 0
    assert not any(p.exists() for p in stale)
    assert all(p.read_text() == "left behind" for p in kept)


def test_resume_with_a_damaged_environment_file_warns(finished, tmp_path, caplog):
    run_dir = _resumed_copy(finished, tmp_path)
    (run_dir / "environment.json").write_text("{")
    with caplog.at_level(logging.WARNING):
        assert run_experiment.main(["--resume", str(run_dir), "--quiet"]) == 0
    assert any(str(run_dir / "environment.json") in r.getMessage() for r in caplog.records)


# ------------------------------------------------------------------ --help without torch
WRAPPER = """
import contextlib, io, sys
sys.path.insert(0, {root!r})
import run_experiment
with contextlib.redirect_stdout(io.StringIO()):
    try:
        code = run_experiment.main(sys.argv[1:])
    except SystemExit as exit:
        code = exit.code
print(code, 'torch' in sys.modules)
"""


@pytest.mark.parametrize("option", ["--help", "--list-datasets"])
def test_help_and_dataset_list_do_not_import_torch(tmp_path, option):
    script = tmp_path / "wrap.py"
    script.write_text(WRAPPER.format(root=str(ROOT)))
    out = subprocess.run(
        [sys.executable, str(script), option],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
        check=True,
    )
    assert out.stdout.split() == ["0", "False"], out.stdout + out.stderr


# ------------------------------------------------------------------ reference files under CI
def test_missing_reference_file_skips_locally_and_fails_under_ci(tmp_path, monkeypatch):
    missing = tmp_path / "ETTh1.csv"
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="not found"):
        reference_file(missing)
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="CI=true"):
        reference_file(missing)
    missing.write_text("x")
    assert reference_file(missing) == missing


def test_damaged_checkpoint_on_resume_is_skipped_with_a_warning(tmp_path, caplog, one_thread):
    args = _cli(tmp_path, "--run-name", "r", "--models", "lstm_plain", "--set", "train.epochs=1")
    assert run_experiment.main([*args, "--set", "lstm_plain.hidden_size=4"]) == 0
    run_dir = tmp_path / "out/r"
    ckpt = run_dir / "models/lstm_plain_seed0.pt"
    ckpt.write_bytes(ckpt.read_bytes()[:100])
    cfg = config_from_dict(read_json(run_dir / "config.json")["config"])
    runner = Runner(cfg, run_dir, mode="resume")
    with caplog.at_level(logging.WARNING):
        assert runner.first_seed_model("lstm_plain") is None
    assert any(str(ckpt) in r.getMessage() for r in caplog.records)
