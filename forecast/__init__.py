"""forecast: time-series forecasting with attention you can inspect.

The names below are imported on first use, so `import forecast` (and e.g. the command
line's --help) does not load torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from forecast.threads import prepare_openmp

# OpenMP reads its wait policy once, when torch loads it: set it now (unless the user
# did, or torch is loaded already). See forecast/threads.py.
prepare_openmp()

if TYPE_CHECKING:
    from forecast.data.frame import ColumnRoles, SeriesFrame, prepare_frame
    from forecast.data.prepare import DataBundle, prepare_data
    from forecast.data.split import SplitSpec
    from forecast.models.registry import create_model, list_models
    from forecast.pipeline import Pipeline, load

_WHERE = {
    "ColumnRoles": "forecast.data.frame",
    "SeriesFrame": "forecast.data.frame",
    "prepare_frame": "forecast.data.frame",
    "DataBundle": "forecast.data.prepare",
    "prepare_data": "forecast.data.prepare",
    "SplitSpec": "forecast.data.split",
    "create_model": "forecast.models.registry",
    "list_models": "forecast.models.registry",
    "Pipeline": "forecast.pipeline",
    "load": "forecast.pipeline",
}

__all__ = [
    "ColumnRoles",
    "DataBundle",
    "Pipeline",
    "SeriesFrame",
    "SplitSpec",
    "create_model",
    "list_models",
    "load",
    "prepare_data",
    "prepare_frame",
]
__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module 'forecast' has no attribute {name!r}")
    value = getattr(importlib.import_module(_WHERE[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_WHERE])
