"""Seconds per training epoch of the peer libraries at the reference setup.

    /work/bench-venv/bin/python bench/peers/peer_throughput.py [--peers nf_lstm darts_rnn]
        [--repeats 3] [--threads 2] [--max-windows N] [--out bench/results/peer_throughput.json]

Reference setup (docs/benchmarks.md): ETTh1 training rows [0, 8640) z-scored with the
protocol's scaler, input 96, horizon 24, hidden / d_model 64, batch 32, one epoch over the
8,521 training windows, `torch.set_num_threads(2)`, CPU, float32, no validation. Time runs
from Lightning's `on_train_start` to `on_train_end` (a callback), so model construction,
the DataFrame -> library-dataset conversion and Trainer setup are excluded; per-batch
window sampling/collation inside the training loop is included (it is part of each
library's epoch). `--max-windows N` (smoke runs) keeps the first N + L + H - 1 training
rows, so every library trains on N windows. Needs the benchmark venv (bench/peers/setup.sh);
never the toolkit's.
"""

from __future__ import annotations

import argparse
import importlib.metadata as md
import json
import logging
import math
import os
import statistics
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))
from forecast.data.protocols import ETT_COLUMNS, ett_bundle  # noqa: E402

DEFAULT_DATA = REPO.parent / "shared" / "data" / "ETTh1.csv"
TARGET = "OT"
COVARIATES = [c for c in ETT_COLUMNS if c != TARGET]
Measured = dict[str, float]  # seconds (wall), cpu_seconds (process, all threads), batches


@dataclass(frozen=True)
class Setup:
    """The reference setup every peer (and ours, in compare_peers.py) is timed at.

    Args:
        data_path: ETTh1 CSV.
        input_length: L.
        horizon: H.
        hidden: hidden size / d_model.
        batch_size: windows per optimiser step.
        threads: torch intra-op threads.
        seed: weights and shuffling.
        max_windows: train on this many windows (the first ones) instead of all 8,521;
            None: all (the reference).
    """

    data_path: Path = DEFAULT_DATA
    input_length: int = 96
    horizon: int = 24
    hidden: int = 64
    batch_size: int = 32
    threads: int = 2
    seed: int = 0
    max_windows: int | None = None


@dataclass
class Timing:
    """Seconds per epoch of one model, every repeat kept."""

    name: str
    library: str
    version: str
    model: str
    track: str
    input_columns: int
    windows: int
    included: str
    config: dict[str, Any] = field(default_factory=dict)
    seconds: list[float] = field(default_factory=list)
    cpu_seconds: list[float] = field(default_factory=list)
    load: list[float] = field(default_factory=list)
    threads: list[int] = field(default_factory=list)  # torch's count after each epoch

    @property
    def median(self) -> float:
        return statistics.median(self.seconds) if self.seconds else math.nan

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["median_seconds"] = self.median
        out["median_cpu_seconds"] = (
            statistics.median(self.cpu_seconds) if self.cpu_seconds else None
        )
        out["windows_per_s"] = self.windows / self.median if self.seconds else math.nan
        return out


def load_average() -> float:
    """The 1-minute load average (other processes competing for the 2 cores)."""
    return os.getloadavg()[0]


def scaled_train_frame(setup: Setup) -> pd.DataFrame:
    """The training rows [0, 8640) of ETTh1, z-scored by the toolkit's protocol, float32.

    Columns: `date` plus the 7 ETT columns.
    """
    bundle = ett_bundle(str(setup.data_path), "M", setup.input_length, setup.horizon)
    end = bundle.borders[0][0]
    if setup.max_windows is not None:  # N windows need N + L + H - 1 rows
        end = min(end, n_train_windows(setup) + setup.input_length + setup.horizon - 1)
    values = bundle.frame.values[:end].astype(np.float32)  # [8640, 7]
    df = pd.DataFrame(values, columns=list(bundle.layout.targets))
    df.insert(0, "date", pd.DatetimeIndex(bundle.frame.timestamps[:end]))
    return df


def n_train_windows(setup: Setup) -> int:
    """Training windows: the protocol's 8640 - L - H + 1, at most `setup.max_windows`."""
    full = 8640 - setup.input_length - setup.horizon + 1
    return full if setup.max_windows is None else min(full, setup.max_windows)


# Filled by the timer callbacks. Module-level, because neuralforecast deep-copies its models
# (and with them the callbacks in their trainer kwargs) before fitting.
_TIMES: dict[str, dict[str, float]] = {}


def _timer(base: type, key: str) -> Any:
    """A Lightning callback (of `base`'s package: darts/neuralforecast use
    `pytorch_lightning`, pytorch-forecasting `lightning.pytorch`) timing training into
    `_TIMES[key]`: wall `seconds`, process `cpu_seconds` (every thread), `batches`."""
    _TIMES[key] = {"start": math.nan, "seconds": math.nan, "cpu_seconds": math.nan, "batches": 0}

    class TrainTimer(base):
        def on_train_start(self, trainer: Any, pl_module: Any) -> None:
            _TIMES[key]["start"] = time.perf_counter()
            _TIMES[key]["cpu_start"] = time.process_time()

        def on_train_batch_end(self, *args: Any, **kwargs: Any) -> None:
            _TIMES[key]["batches"] += 1

        def on_train_end(self, trainer: Any, pl_module: Any) -> None:
            _TIMES[key]["seconds"] = time.perf_counter() - _TIMES[key]["start"]
            _TIMES[key]["cpu_seconds"] = time.process_time() - _TIMES[key]["cpu_start"]

    return TrainTimer()


def _trainer_kwargs(timer: Any) -> dict[str, Any]:
    return {
        "accelerator": "cpu",
        "devices": 1,
        "enable_progress_bar": False,
        "enable_model_summary": False,
        "enable_checkpointing": False,
        "logger": False,
        "callbacks": [timer],
    }


# ------------------------------------------------------------------ neuralforecast
def _nf_long(df: pd.DataFrame, exog: bool) -> pd.DataFrame:
    cols = {"unique_id": "ETTh1", "ds": df["date"], "y": df[TARGET]}
    if exog:
        cols.update({c: df[c] for c in COVARIATES})
    return pd.DataFrame(cols)


def _nf_fit(setup: Setup, df: pd.DataFrame, make: Callable[..., Any], exog: bool) -> Measured:
    """neuralforecast samples `windows_batch_size` windows per step from one series, so one
    epoch is ceil(windows / batch) steps of `batch` windows."""
    import pytorch_lightning as pl
    from neuralforecast import NeuralForecast
    from neuralforecast.losses.pytorch import MSE

    timer = _timer(pl.Callback, "nf")
    steps = math.ceil(n_train_windows(setup) / setup.batch_size)
    model = make(
        h=setup.horizon,
        input_size=setup.input_length,
        loss=MSE(),
        max_steps=steps,
        batch_size=1,  # series per step; there is one
        windows_batch_size=setup.batch_size,
        scaler_type="identity",  # the data is already z-scored
        random_seed=setup.seed + 1,  # neuralforecast rejects seed 0 in places
        val_check_steps=10 * steps,
        **_trainer_kwargs(timer),
    )
    NeuralForecast(models=[model], freq="h").fit(_nf_long(df, exog), val_size=0)
    if _TIMES["nf"]["batches"] != steps:
        raise RuntimeError(f"neuralforecast ran {_TIMES['nf']['batches']} steps, expected {steps}")
    return _TIMES["nf"]


def nf_lstm(setup: Setup, df: pd.DataFrame) -> tuple[Measured, dict[str, Any]]:
    """neuralforecast LSTM: 1-layer LSTM encoder (hidden 64) + its MLP decoder, direct
    (recurrent=False, the default), 6 historic exogenous columns + the target."""
    from neuralforecast.models import LSTM

    cfg = {
        "encoder_n_layers": 1,
        "encoder_hidden_size": setup.hidden,
        "decoder_hidden_size": setup.hidden,
        "hist_exog_list": COVARIATES,
    }
    return _nf_fit(setup, df, lambda **kw: LSTM(**cfg, **kw), exog=True), cfg


def nf_dlinear(setup: Setup, df: pd.DataFrame) -> tuple[Measured, dict[str, Any]]:
    """neuralforecast DLinear on the target only (it takes no historic exogenous)."""
    from neuralforecast.models import DLinear

    return _nf_fit(setup, df, DLinear, exog=False), {"moving_avg_window": 25}


def nf_nlinear(setup: Setup, df: pd.DataFrame) -> tuple[Measured, dict[str, Any]]:
    """neuralforecast NLinear on the target only (it takes no historic exogenous)."""
    from neuralforecast.models import NLinear

    return _nf_fit(setup, df, NLinear, exog=False), {}


# ------------------------------------------------------------------ darts
def _darts_series(df: pd.DataFrame, cols: list[str]) -> Any:
    from darts import TimeSeries

    return TimeSeries.from_dataframe(df, time_col="date", value_cols=cols).astype(np.float32)


def _darts_fit(setup: Setup, model_cls: Any, cfg: dict[str, Any], fit: dict[str, Any]) -> Measured:
    import pytorch_lightning as pl

    timer = _timer(pl.Callback, "darts")
    model = model_cls(
        **cfg,
        batch_size=setup.batch_size,
        n_epochs=1,
        random_state=setup.seed,
        save_checkpoints=False,
        pl_trainer_kwargs=_trainer_kwargs(timer),
    )
    model.fit(**fit, verbose=False)
    expected = math.ceil(n_train_windows(setup) / setup.batch_size)
    if _TIMES["darts"]["batches"] != expected:
        raise RuntimeError(f"darts ran {_TIMES['darts']['batches']} batches, expected {expected}")
    return _TIMES["darts"]


def _darts_ms(setup: Setup, df: pd.DataFrame, model_cls: Any, cfg: dict[str, Any]) -> Measured:
    """Target OT, the other 6 columns as past covariates (track MS)."""
    fit = {"series": _darts_series(df, [TARGET]), "past_covariates": _darts_series(df, COVARIATES)}
    return _darts_fit(setup, model_cls, cfg, fit)


def darts_rnn_config(setup: Setup) -> dict[str, Any]:
    """RNNModel's settings at the reference setup: an LSTM of one layer, training_length
    L + H (the same training sequences as the protocol's windows)."""
    return {
        "model": "LSTM",
        "input_chunk_length": setup.input_length,
        "training_length": setup.input_length + setup.horizon,
        "hidden_dim": setup.hidden,
        "n_rnn_layers": 1,
    }


def darts_rnn(setup: Setup, df: pd.DataFrame) -> tuple[Measured, dict[str, Any]]:
    """darts RNNModel (LSTM, 1 layer, hidden 64) on the 7 columns as a multivariate target
    (track M: RNNModel takes no past covariates); training_length = L + H gives the same
    8,521 training sequences as the protocol's windows."""
    from darts.models import RNNModel

    cfg = darts_rnn_config(setup)
    measured = _darts_fit(setup, RNNModel, cfg, {"series": _darts_series(df, list(ETT_COLUMNS))})
    return measured, cfg


def darts_transformer(setup: Setup, df: pd.DataFrame) -> tuple[Measured, dict[str, Any]]:
    """darts TransformerModel sized like ours: d_model 64, 4 heads, 2 encoder layers,
    1 decoder layer, feed-forward 256, dropout 0.1."""
    from darts.models import TransformerModel

    cfg = {
        "input_chunk_length": setup.input_length,
        "output_chunk_length": setup.horizon,
        "d_model": setup.hidden,
        "nhead": 4,
        "num_encoder_layers": 2,
        "num_decoder_layers": 1,
        "dim_feedforward": 4 * setup.hidden,
        "dropout": 0.1,
    }
    return _darts_ms(setup, df, TransformerModel, cfg), cfg


def darts_dlinear(setup: Setup, df: pd.DataFrame) -> tuple[Measured, dict[str, Any]]:
    """darts DLinearModel, target OT + 6 past covariates."""
    from darts.models import DLinearModel

    cfg = {"input_chunk_length": setup.input_length, "output_chunk_length": setup.horizon}
    return _darts_ms(setup, df, DLinearModel, cfg), cfg


def darts_nlinear(setup: Setup, df: pd.DataFrame) -> tuple[Measured, dict[str, Any]]:
    """darts NLinearModel, target OT + 6 past covariates."""
    from darts.models import NLinearModel

    cfg = {"input_chunk_length": setup.input_length, "output_chunk_length": setup.horizon}
    return _darts_ms(setup, df, NLinearModel, cfg), cfg


def darts_tft(setup: Setup, df: pd.DataFrame) -> tuple[Measured, dict[str, Any]]:
    """darts TFTModel, hidden 64, 4 heads, MSE loss (no quantiles), relative index as its
    only future input, target OT + 6 past covariates."""
    from darts.models import TFTModel

    cfg = {
        "input_chunk_length": setup.input_length,
        "output_chunk_length": setup.horizon,
        "hidden_size": setup.hidden,
        "num_attention_heads": 4,
        "add_relative_index": True,
        "loss_fn": torch.nn.MSELoss(),
        "likelihood": None,
    }
    measured = _darts_ms(setup, df, TFTModel, cfg)
    return measured, {**cfg, "loss_fn": "MSELoss"}


# ------------------------------------------------------------- pytorch-forecasting
def ptf_tft(setup: Setup, df: pd.DataFrame) -> tuple[Measured, dict[str, Any]]:
    """pytorch-forecasting TemporalFusionTransformer, hidden 64, 4 heads, MSE-like point
    loss (RMSE), no target normaliser (the data is already z-scored), 7 unknown reals."""
    import lightning.pytorch as lpl
    from pytorch_forecasting import TemporalFusionTransformer, TimeSeriesDataSet
    from pytorch_forecasting.data.encoders import TorchNormalizer
    from pytorch_forecasting.metrics import RMSE

    frame = df.drop(columns="date").assign(time_idx=np.arange(len(df)), group="ETTh1")
    dataset = TimeSeriesDataSet(
        frame,
        time_idx="time_idx",
        target=TARGET,
        group_ids=["group"],
        max_encoder_length=setup.input_length,
        min_encoder_length=setup.input_length,
        max_prediction_length=setup.horizon,
        min_prediction_length=setup.horizon,
        time_varying_unknown_reals=list(ETT_COLUMNS),
        target_normalizer=TorchNormalizer(method="identity", center=False),
        scalers={c: None for c in COVARIATES},
        add_relative_time_idx=False,
        add_target_scales=False,
        add_encoder_length=False,
    )
    if len(dataset) != n_train_windows(setup):
        raise RuntimeError(f"pytorch-forecasting built {len(dataset)} windows")
    loader = dataset.to_dataloader(train=True, batch_size=setup.batch_size, num_workers=0)
    cfg = {"hidden_size": setup.hidden, "attention_head_size": 4, "hidden_continuous_size": 16}
    lpl.seed_everything(setup.seed, verbose=False)
    model = TemporalFusionTransformer.from_dataset(
        dataset, **cfg, dropout=0.1, learning_rate=1e-3, loss=RMSE(), log_interval=-1
    )
    timer = _timer(lpl.Callback, "ptf")
    trainer = lpl.Trainer(max_epochs=1, limit_val_batches=0, **_trainer_kwargs(timer))
    trainer.fit(model, train_dataloaders=loader)
    return _TIMES["ptf"], {**cfg, "loss": "RMSE", "dropout": 0.1}


# name -> (library package, model, track, input columns, timing function)
PEERS: dict[str, tuple[str, str, str, int, Callable[[Setup, pd.DataFrame], Any]]] = {
    "nf_lstm": ("neuralforecast", "LSTM", "MS", 7, nf_lstm),
    "darts_rnn": ("darts", "RNNModel(LSTM)", "M", 7, darts_rnn),
    "darts_transformer": ("darts", "TransformerModel", "MS", 7, darts_transformer),
    "darts_dlinear": ("darts", "DLinearModel", "MS", 7, darts_dlinear),
    "darts_nlinear": ("darts", "NLinearModel", "MS", 7, darts_nlinear),
    "nf_dlinear": ("neuralforecast", "DLinear", "U", 1, nf_dlinear),
    "nf_nlinear": ("neuralforecast", "NLinear", "U", 1, nf_nlinear),
    "darts_tft": ("darts", "TFTModel", "MS", 7, darts_tft),
    "ptf_tft": ("pytorch-forecasting", "TemporalFusionTransformer", "MS", 7, ptf_tft),
}
INCLUDED = (
    "Lightning on_train_start..on_train_end: the training loop with the library's own "
    "batch sampling/collation; excludes model construction, dataset building, Trainer setup"
)


def quiet() -> None:
    """Silence Lightning's and the peers' banners and warnings (they would drown the table)."""
    import lightning.pytorch  # noqa: F401  (each sets its loggers' levels on import,
    import pytorch_lightning  # noqa: F401  so import first, then lower them)

    warnings.filterwarnings("ignore")
    for name in (
        "pytorch_lightning",
        "lightning",
        "lightning.pytorch",
        "lightning.fabric",
        "darts",
        "neuralforecast",
        "pytorch_forecasting",
    ):
        logging.getLogger(name).setLevel(logging.ERROR)
    os.environ.setdefault("PL_DISABLE_FORK", "1")


def new_timing(name: str, setup: Setup) -> Timing:
    """An empty `Timing` for peer `name`."""
    library, model, track, columns, _ = PEERS[name]
    return Timing(
        name=name,
        library=library,
        version=md.version(library),
        model=model,
        track=track,
        input_columns=columns,
        windows=n_train_windows(setup),
        included=INCLUDED,
    )


def time_peer(name: str, setup: Setup, df: pd.DataFrame, timing: Timing) -> None:
    """One epoch of peer `name`; appends its seconds (and the load before it) to `timing`."""
    torch.set_num_threads(setup.threads)
    torch.manual_seed(setup.seed)
    timing.load.append(round(load_average(), 2))
    measured, cfg = PEERS[name][4](setup, df)
    timing.seconds.append(round(measured["seconds"], 3))
    timing.cpu_seconds.append(round(measured["cpu_seconds"], 3))
    timing.threads.append(torch.get_num_threads())
    timing.config = {k: v for k, v in cfg.items() if isinstance(v, int | float | str | list)}


def versions() -> dict[str, str]:
    """Versions of torch and the peer libraries in this environment."""
    out = {}
    for name in (
        "torch",
        "darts",
        "neuralforecast",
        "pytorch-forecasting",
        "lightning",
        "pytorch-lightning",
        "numpy",
        "pandas",
    ):
        try:
            out[name] = md.version(name)
        except md.PackageNotFoundError:
            out[name] = "not installed"
    return out


# Variables that set threads or their waiting: OpenMP's (torch), and OpenBLAS's (numpy's
# BLAS, whose threads spin for a while after a call, e.g. the read decoder's warm start).
ENV_VARIABLES = (
    "OMP_WAIT_POLICY",
    "GOMP_SPINCOUNT",
    "FORECAST_OPENMP",
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
)


def openmp() -> dict[str, Any]:
    """OpenMP's wait policy and torch's threads in this process, for the results file."""
    from forecast import threads

    choice = threads.current()
    return {
        "torch_threads": torch.get_num_threads(),
        "policy": threads.policy_of(os.environ),
        **{k: os.environ.get(k) for k in ENV_VARIABLES},
        "forecast_threads_choice": choice.as_dict() if choice is not None else None,
    }


def table(timings: list[Timing]) -> pd.DataFrame:
    """One row per model: median seconds per epoch, windows/s, every repeat, load."""
    rows = [
        {
            "name": t.name,
            "library": f"{t.library} {t.version}",
            "model": t.model,
            "track": t.track,
            "cols": t.input_columns,
            "s/epoch": round(t.median, 2),
            "windows/s": round(t.windows / t.median) if t.seconds else None,
            "cpu s": round(statistics.median(t.cpu_seconds), 2) if t.cpu_seconds else None,
            "repeats": " ".join(f"{s:.2f}" for s in t.seconds),
            "load": " ".join(f"{x:.1f}" for x in t.load),
            "threads": " ".join(str(n) for n in sorted(set(t.threads))),
        }
        for t in timings
    ]
    return pd.DataFrame(rows)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--data-path", type=Path, default=DEFAULT_DATA)
    p.add_argument("--peers", nargs="+", default=list(PEERS), choices=list(PEERS))
    p.add_argument("--repeats", type=int, default=3, help="epochs timed per model (median)")
    p.add_argument("--threads", type=int, default=2, help="torch.set_num_threads")
    p.add_argument("--max-windows", type=int, default=None, help="smoke runs: N windows")
    p.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "peer_throughput.json")
    args = p.parse_args()
    quiet()
    setup = Setup(data_path=args.data_path, threads=args.threads, max_windows=args.max_windows)
    df = scaled_train_frame(setup)
    timings = {name: new_timing(name, setup) for name in args.peers}
    for r in range(args.repeats):  # interleaved, so a load spike hits every model alike
        for name in args.peers:
            time_peer(name, setup, df, timings[name])
            t = timings[name]
            print(
                f"repeat {r + 1}: {name} {t.seconds[-1]:.2f} s (load {t.load[-1]:.1f})", flush=True
            )
    print(table(list(timings.values())).to_string(index=False))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "setup": {**asdict(setup), "data_path": str(setup.data_path)},
        "versions": versions(),
        "nproc": os.cpu_count(),
        "openmp": openmp(),
        "timings": [t.as_dict() for t in timings.values()],
    }
    args.out.write_text(json.dumps(payload, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
