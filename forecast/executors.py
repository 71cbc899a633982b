"""Where the (model, seed) fits of a run happen (`fit_pairs`): one after another in this
process, in a pool of local worker processes (`run.workers` > 1), or as tasks on a Ray
cluster (`run.executor = "ray"`, `run.address`).

Either way a fit runs in a worker that loads the data itself from the config (so every
Ray node needs the data file at the same path, or the embedded synthetic data), writes its
files into a scratch folder and sends them back (`pair_files`); this process, which owns
the run folder, stores them (`Runner.store`) as each fit finishes. The run folder, resume
and the leaderboard are therefore the same as with local fits. Workers import the
installed `forecast` package (install it on every node, `pip install -e '.[distributed]'`);
only the config and the (model, seed) travel with a task.

Ray is an optional extra: it is imported only here, and only for `executor = "ray"`.
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import json
import logging
import multiprocessing
import signal
import socket
import sys
import tempfile
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from forecast.config import ConfigError, ExperimentConfig, config_from_dict, config_to_dict
from forecast.runner import Runner, set_threads
from forecast.runs import RunFolder
from forecast.threads import fixed_count

log = logging.getLogger(__name__)

RAY_MISSING = (
    "run.executor = 'ray' needs Ray, which is not installed: pip install -e '.[distributed]'"
)


def pair_files(r: Runner, name: str, seed: int) -> dict[str, bytes]:
    """Fit one (model, seed) away from its run folder: its files as `Runner.fit_pair`
    writes them, read back from a scratch folder, the done-marker last.

    Args:
        r: a worker's runner (mode 'worker').
        name: the model.
        seed: the seed.
    """
    with tempfile.TemporaryDirectory(prefix="forecast-pair-") as tmp:
        scratch = RunFolder(tmp, "pair")
        r.fit_pair(name, seed, scratch)
        files = {
            p.relative_to(scratch.path).as_posix(): p.read_bytes()
            for p in sorted(scratch.path.rglob("*"))
            if p.is_file()
        }
    marker = f"results/{name}/seed{seed}.json"
    return {**{k: v for k, v in files.items() if k != marker}, marker: files[marker]}


def fit_elsewhere(
    r: Runner, todo: list[tuple[str, int]], stored: Callable[[str, int], None]
) -> None:
    """Fit the `todo` pairs in worker processes or on Ray and store each one as it ends.

    Args:
        r: the runner of the run folder.
        todo: (model, seed) pairs not done yet.
        stored: called with (model, seed) after each pair is stored.
    """
    if not todo:
        return
    if r.cfg.run.executor == "ray":
        _fit_on_ray(r, todo, stored)
    else:
        _fit_in_pool(r, todo, stored)


def fit_pairs(r: Runner) -> dict[tuple[str, int], tuple[dict, np.ndarray]]:
    """Every (model, seed) pair's metrics row and test predictions, seeds outer.

    Pairs already done are read back; the rest are fitted here or, with `run.workers`
    > 1 or `run.executor` 'ray', elsewhere (see `forecast.executors`), stored into the run
    folder as each one finishes, then read back.

    Args:
        r: the runner.
    """
    cfg = r.cfg
    pairs = [(n, s) for s in cfg.run.seeds for n in r.names]
    bar = tqdm(total=len(pairs), desc="experiment", unit="fit", disable=not cfg.run.progress)
    todo = [p for p in pairs if not r.is_done(*p)]
    out = {}

    def stored(name: str, seed: int) -> None:
        bar.set_postfix(model=name, seed=seed)
        bar.update(1)

    try:
        if cfg.run.executor == "ray" or (cfg.run.workers > 1 and len(todo) > 1):
            bar.update(len(pairs) - len(todo))
            fit_elsewhere(r, todo, stored)
            out = {p: r.pair(*p, log_reuse=False) for p in pairs}  # all done: read back
        else:
            for p in pairs:
                bar.set_postfix(model=p[0], seed=p[1])
                out[p] = r.pair(*p)
                bar.update(1)
    finally:
        bar.close()
    return out


# ------------------------------------------------------------------ local processes
_WORKER: Runner | None = None  # the Runner of a pool process


def _die_with_parent() -> None:
    """Linux: ask the kernel to SIGTERM this worker when its parent dies (e.g. is killed),
    so no orphan keeps training after the run is gone."""
    if not sys.platform.startswith("linux"):
        return
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _init_worker(stored: dict, level: int) -> None:
    global _WORKER
    _die_with_parent()
    logging.basicConfig(level=level, format="%(levelname)s %(name)s [worker]: %(message)s")
    cfg = config_from_dict(stored)
    cfg.run.progress = False
    set_threads(cfg)
    _WORKER = Runner(cfg, None, mode="worker")


def _work(name: str, seed: int) -> tuple[str, int, dict[str, bytes]]:
    return name, seed, pair_files(_WORKER, name, seed)


def _fit_in_pool(
    r: Runner, todo: list[tuple[str, int]], stored: Callable[[str, int], None]
) -> None:
    ctx = multiprocessing.get_context("spawn")  # no forked torch state
    args = (config_to_dict(r.cfg), logging.getLogger().getEffectiveLevel())
    workers = min(r.cfg.run.workers, len(todo))
    with cf.ProcessPoolExecutor(workers, ctx, _init_worker, args) as pool:
        futures = [pool.submit(_work, *p) for p in todo]
        try:
            for fut in cf.as_completed(futures):
                name, seed, files = fut.result()
                r.store(files)
                stored(name, seed)
        except BaseException:
            pool.shutdown(wait=False, cancel_futures=True)
            raise


# ------------------------------------------------------------------------------ Ray
def _import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise ConfigError(RAY_MISSING) from None
    return ray


@contextlib.contextmanager
def cluster(cfg: ExperimentConfig) -> Iterator[None]:
    """Connected to the Ray cluster of `cfg` for the duration (a no-op for 'local').

    Connects to `run.address`, or starts a local Ray instance (`workers` CPUs, every core
    when workers is 1) for an address of None or 'local'; a process already connected
    (`ray.init` called before) keeps its connection. Disconnects (and stops a local
    instance it started) at the end.

    Args:
        cfg: the experiment.
    """
    if cfg.run.executor != "ray":
        yield
        return
    ray = _import_ray()
    started = not ray.is_initialized()
    if started:
        address = cfg.run.address
        if address in (None, "local"):
            cpus = cfg.run.workers if cfg.run.workers > 1 else None
            ray.init(num_cpus=cpus, include_dashboard=False)
        else:
            _check_reachable(address)
            try:
                ray.init(address=address)
            except (ConnectionError, RuntimeError, ValueError) as err:
                raise ConnectionError(
                    f"run.address {address!r}: cannot connect to a Ray cluster there ({err})"
                ) from None
        log.info("Ray cluster: %s", ray.cluster_resources())
    try:
        yield
    finally:
        if started:
            ray.shutdown()


def _check_reachable(address: str) -> None:
    """A `ConnectionError` naming `address` when nothing listens there ('HOST:PORT'; other
    forms, e.g. 'auto', are left to Ray): `ray.init` would retry for minutes."""
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit() or "/" in host:
        return
    try:
        socket.create_connection((host, int(port)), timeout=10).close()
    except OSError as err:
        raise ConnectionError(
            f"run.address {address!r}: no Ray cluster answers there ({err.strerror or err}); "
            "start one with `ray start --head --port PORT` or fix the address"
        ) from None


_RAY_RUNNER: tuple[str, Runner] | None = None  # a Ray worker's Runner, by its config


def _ray_fit(stored: dict, name: str, seed: int, level: int) -> dict[str, bytes]:
    """A Ray task: one (model, seed)'s files (see `pair_files`). The worker process keeps
    its `Runner` (the loaded data) for the next task of the same config."""
    global _RAY_RUNNER
    key = json.dumps(stored, sort_keys=True, default=str)
    if _RAY_RUNNER is None or _RAY_RUNNER[0] != key:
        import torch

        logging.basicConfig(level=level, format="%(levelname)s %(name)s [ray]: %(message)s")
        cfg = config_from_dict(stored)
        cfg.run.progress = False
        torch.set_num_threads(fixed_count(cfg.run.threads))  # the CPUs the task asked for
        _RAY_RUNNER = key, Runner(cfg, None, mode="worker")
    return pair_files(_RAY_RUNNER[1], name, seed)


def _fit_on_ray(r: Runner, todo: list[tuple[str, int]], stored: Callable[[str, int], None]) -> None:
    """One Ray task per pair (on the cluster `cluster` connected to), stored as each
    finishes; an error in a task is raised here as itself."""
    ray = _import_ray()
    task = ray.remote(num_cpus=fixed_count(r.cfg.run.threads))(_ray_fit)
    config = ray.put(config_to_dict(r.cfg))
    level = logging.getLogger().getEffectiveLevel()
    pending = {task.remote(config, name, seed, level): (name, seed) for name, seed in todo}
    try:
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1)
            for ref in ready:
                name, seed = pending.pop(ref)
                try:
                    files = ray.get(ref)
                except ray.exceptions.RayTaskError as err:
                    cause = getattr(err, "cause", None)
                    if isinstance(cause, BaseException):
                        raise cause from None
                    raise
                r.store(files)
                stored(name, seed)
    finally:
        for ref in pending:  # interrupted or failed: stop the fits still queued or running
            ray.cancel(ref, force=True)
