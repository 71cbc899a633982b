"""The sanity gate of the benchmark protocol on the real ETTh1 file (skipped without it)."""

from __future__ import annotations

import pandas as pd
import pytest

from forecast import create_model
from forecast.data.protocols import ett_bundle
from forecast.evaluate import predict_dataset, score


@pytest.fixture(scope="module")
def etth1(request):
    from tests.conftest import ETTH1, reference_file

    return pd.read_csv(reference_file(ETTH1))


@pytest.mark.parametrize(
    ("track", "L", "H", "model", "mse", "mae", "tol"),
    [
        ("M", 96, 96, "naive", 1.2944, 0.7132, 0.001),
        ("U", 96, 24, "naive", 0.0343, 0.1394, 0.001),
        ("U", 336, 96, "nlinear", 0.0531, 0.1770, 0.002),
    ],
)
def test_sanity_gate(etth1, track, L, H, model, mse, mae, tol):
    data = ett_bundle(etth1, track, L, H)
    assert data.borders == [(8640, 11520, 14400)]
    assert len(data.test) == 2880 - H + 1
    fitted = create_model(model, data.layout).fit(data.train, data.val)
    result = score(predict_dataset(fitted, data.test), data, data.test)
    assert result["mse"] == pytest.approx(mse, abs=tol)
    assert result["mae"] == pytest.approx(mae, abs=tol)
