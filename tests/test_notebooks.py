"""Every notebook executes top to bottom in fast mode (FORECAST_FAST=1), so none can rot.

Needs nbformat, nbclient and ipykernel (the `test` extra). The notebooks are stored
without outputs; this runs them in a fresh kernel from the notebooks/ folder.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.conftest import reference_file

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
ETTH1 = Path(os.environ.get("FORECAST_DATA_ETTH1") or ROOT.parent / "shared/data/ETTh1.csv")


def test_notebooks_are_stored_without_outputs():
    assert {p.stem for p in NOTEBOOKS} >= {
        "quickstart",
        "attention_synthetic",
        "attention_etth1",
        "compare_baselines",
        "forecast_next_day",
    }
    for path in NOTEBOOKS:
        book = nbformat.read(path, as_version=4)
        for cell in book.cells:
            if cell.cell_type == "code":
                assert not cell.outputs and cell.execution_count is None, path.name


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_executes_in_fast_mode(path, monkeypatch):
    if "etth1" in path.stem:
        reference_file(ETTH1, "set FORECAST_DATA_ETTH1")
    monkeypatch.setenv("FORECAST_FAST", "1")
    monkeypatch.setenv("PYTHONPATH", str(ROOT))
    monkeypatch.setenv("MPLBACKEND", "Agg")
    book = nbformat.read(path, as_version=4)
    client = nbclient.NotebookClient(
        book,
        timeout=300,
        kernel_name="python3",
        resources={"metadata": {"path": str(path.parent)}},
    )
    client.execute()  # raises CellExecutionError with the failing cell and traceback
    errors = [
        out
        for cell in book.cells
        if cell.cell_type == "code"
        for out in cell.outputs
        if out.output_type == "error"
    ]
    assert not errors
