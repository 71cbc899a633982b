"""forecast: time-series forecasting with attention you can inspect."""

from forecast.data.frame import ColumnRoles, SeriesFrame, prepare_frame
from forecast.data.prepare import DataBundle, prepare_data
from forecast.data.split import SplitSpec
from forecast.models.registry import create_model, list_models

__all__ = [
    "ColumnRoles",
    "DataBundle",
    "SeriesFrame",
    "SplitSpec",
    "create_model",
    "list_models",
    "prepare_data",
    "prepare_frame",
]
__version__ = "0.1.0"
