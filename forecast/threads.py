"""Torch threads and OpenMP's wait policy, chosen from the cores and the machine's load.

A small network (an LSTM of hidden 64 at batch 32) runs ~100 short kernels per training
step; with several OpenMP threads, each kernel ends by waking the team. Two things then
decide the speed far more than the code does:

- the wait policy: threads that busy-wait between kernels are fastest on an idle machine
  and slowest on a busy one (a spinning thread holds a core that the thread it waits for
  needs), threads that sleep at once pay a wake-up per kernel on an idle one;
- the thread count: more threads than free cores makes every kernel wait for a thread
  that is not running.

libgomp reads its policy (`OMP_WAIT_POLICY`, `GOMP_SPINCOUNT`) once, when torch loads it,
so `prepare_openmp()` runs from `import forecast`, before torch is imported: on a busy
machine it sets `OMP_WAIT_POLICY=PASSIVE`, on an idle one it keeps libgomp's default
(a short spin, then sleep), unless the user set either variable (`FORECAST_OPENMP=off`
opts out). The thread count can change at any time; `apply(requested)` sets it (and caps
numpy's BLAS threads at the same count, `limit_blas`), once per
process for `"auto"` (later calls reuse the first choice: the process's own training
would otherwise count as load), records the choice (`current()`, written to a run's
environment manifest) and warns once when an explicit setting is in the slow regime.

What was measured (bench/threads.py on 2 cores; figures in docs/benchmarks.md): one
thread runs the step equally fast under every policy and, under load, slows only by its
share of the cores; two threads are fastest on an idle machine with a spinning policy and
many times slower beside busy processes with any policy, PASSIVE the least bad there but
several times slower than spinning when idle. So auto uses the free cores only (1 on a
busy 2-core machine) and sleeps rather than spins where the machine is busy.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import sys
from collections.abc import Mapping
from dataclasses import asdict, dataclass

__all__ = ["ThreadChoice", "apply", "choose", "current", "machine_load", "usable_cores"]

log = logging.getLogger(__name__)

MAX_AUTO_THREADS = 8
"""Auto never picks more threads than this: the small networks here gain little from
more, and each more thread is one more to wake per kernel (a rule, not measured beyond
2 cores)."""
OMP_VARIABLES = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")


@dataclass(frozen=True)
class ThreadChoice:
    """Threads and OpenMP policy in effect, and what they were chosen from.

    Args:
        threads: torch intra-op threads.
        policy: OpenMP wait policy: 'passive' or 'libgomp default' (chosen by forecast),
            'user: ...' (the user's variables), 'libgomp default (...)' (torch was
            imported before forecast, or FORECAST_OPENMP=off).
        cores: cores this process may run on.
        load: the load seen when choosing (busy cores besides this process).
        requested: 'auto' or the user's thread count.
        warning: why the user's explicit setting is slow here, or None.
    """

    threads: int
    policy: str
    cores: int
    load: float
    requested: int | str
    warning: str | None = None

    def as_dict(self) -> dict:
        """The choice as plain data (for the environment manifest)."""
        return asdict(self)


def usable_cores() -> int:
    """Cores this process may run on (its CPU affinity; all cores where unknown)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def machine_load() -> float:
    """Busy cores besides this process: the larger of the 1-minute load average and the
    runnable tasks right now (Linux `/proc/loadavg`, this process not counted). The
    average lags a load that just started; the instant count misses one that pauses."""
    try:
        average = os.getloadavg()[0]
    except (AttributeError, OSError):
        average = 0.0
    try:
        with open("/proc/loadavg") as f:
            running = int(f.read().split()[3].split("/")[0]) - 1
    except (OSError, ValueError, IndexError):
        running = 0
    return float(max(average, running, 0))


def torch_default_threads(env: Mapping[str, str] = os.environ) -> int:
    """The intra-op thread count torch starts with: `OMP_NUM_THREADS` (or
    `MKL_NUM_THREADS`) when set, else the machine's physical cores (what ATen's
    `intraop_default_num_threads` picks), else every logical CPU.

    Args:
        env: the environment (os.environ).
    """
    for key in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        value = env.get(key, "")
        if value.isdigit() and int(value) > 0:
            return int(value)
    try:
        root = "/sys/devices/system/cpu"
        cores = set()
        for name in os.listdir(root):
            path = f"{root}/{name}/topology/core_cpus_list"
            if name.startswith("cpu") and name[3:].isdigit() and os.path.exists(path):
                with open(path) as f:
                    cores.add(f.read().strip())
        if cores:
            return len(cores)
    except OSError:
        pass
    return os.cpu_count() or 1


def _users_count(torch_threads: int, env: Mapping[str, str]) -> int | None:
    """The thread count the user chose before forecast's first decision: torch's count
    when it differs from torch's default (`torch.set_num_threads` was called), or when
    `OMP_NUM_THREADS` / `MKL_NUM_THREADS` is set; None if torch still has its default."""
    if any(env.get(k) for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")):
        return torch_threads
    return torch_threads if torch_threads != torch_default_threads(env) else None


def policy_of(env: Mapping[str, str]) -> str:
    """The wait policy that `env` gives libgomp, as recorded in `ThreadChoice.policy`.

    Args:
        env: the environment torch was loaded with (os.environ).
    """
    ours = env.get("FORECAST_OPENMP")
    if ours == "passive":
        return "passive"
    if ours == "default":
        return "libgomp default"
    user = {k: env[k] for k in OMP_VARIABLES if k in env}
    if user:
        return "user: " + ", ".join(f"{k}={v}" for k, v in sorted(user.items()))
    if ours == "off":
        return "libgomp default (FORECAST_OPENMP=off)"
    return "libgomp default (torch imported before forecast)"


def openmp_policy(cores: int, load: float) -> str:
    """The wait policy for a machine with `cores` usable cores and `load` busy ones:
    'passive' when fewer than 1.5 cores are free (spinning threads there wait on
    descheduled ones), else 'default' (libgomp's short spin, fastest when idle).

    Args:
        cores: usable cores.
        load: busy cores besides this process.

    >>> openmp_policy(2, 2.0), openmp_policy(2, 0.2)
    ('passive', 'default')
    """
    return "passive" if cores - load < 1.5 else "default"


def prepare_openmp(env: os._Environ | dict = os.environ) -> str | None:
    """Choose OpenMP's wait policy (`openmp_policy`) and put it in `env` before torch
    loads, unless the user set `OMP_WAIT_POLICY` or `GOMP_SPINCOUNT`, opted out
    (`FORECAST_OPENMP=off`), a parent process chose already (the variables are
    inherited) or torch is loaded (then it is too late). Returns the policy it set, or
    None.

    Args:
        env: the environment (os.environ).
    """
    if "FORECAST_OPENMP" in env or "torch" in sys.modules:
        return None
    if any(k in env for k in OMP_VARIABLES):
        return None
    policy = openmp_policy(usable_cores(), machine_load())
    if policy == "passive":
        env["OMP_WAIT_POLICY"] = "PASSIVE"
    env["FORECAST_OPENMP"] = policy  # marks the policy as ours; workers inherit it
    return policy


def check_threads(requested: int | str) -> None:
    """Raise ValueError unless `requested` is 'auto' or an integer >= 1.

    Args:
        requested: a thread setting.
    """
    if requested == "auto":
        return
    if isinstance(requested, bool) or not isinstance(requested, int) or requested < 1:
        raise ValueError(f"threads must be 'auto' or an integer >= 1, got {requested!r}")


def fixed_count(requested: int | str | None) -> int:
    """A fixed thread count for work that asks a scheduler for CPUs (a Ray task) or must
    repeat exactly (search trials): the count given, 1 for 'auto' (or None).

    Args:
        requested: a thread setting ('auto', None or a count).

    >>> fixed_count("auto"), fixed_count(3)
    (1, 3)
    """
    return requested if isinstance(requested, int) and not isinstance(requested, bool) else 1


def choose(cores: int, load: float, requested: int | str, policy: str) -> ThreadChoice:
    """The thread count for `requested` on `cores` cores with `load` busy cores besides
    this process, and a warning when an explicit count is in the slow regime.

    Auto: the free cores (rounded to nearest), at least 1, at most `MAX_AUTO_THREADS`.

    Args:
        cores: usable cores.
        load: busy cores besides this process.
        requested: 'auto' or a thread count >= 1.
        policy: the wait policy in effect (`policy_of`).

    >>> choose(2, 0.1, "auto", "libgomp default").threads
    2
    >>> choose(2, 2.0, "auto", "passive").threads
    1
    """
    free = max(cores - load, 0.0)
    auto = int(min(max(math.floor(free + 0.5), 1), cores, MAX_AUTO_THREADS))
    if requested == "auto":
        return ThreadChoice(auto, policy, cores, load, "auto")
    check_threads(requested)
    warning = None
    busy_wait = "OMP_WAIT_POLICY=ACTIVE" in policy.upper()
    if requested > 1 and requested > free + 0.5:
        warning = (
            f"threads={requested} with {free:.1f} of {cores} cores free (load {load:.1f}): "
            f"OpenMP threads on a busy machine can make each step 10-100x slower; "
            f"threads='auto' picks {auto} here"
        )
    elif requested > 1 and busy_wait and load > 0.5:
        warning = (
            f"{policy.removeprefix('user: ')} with threads={requested} under load "
            f"{load:.1f}: busy-waiting threads can make each step 10-100x slower; "
            "unset OMP_WAIT_POLICY or use threads=1"
        )
    return ThreadChoice(requested, policy, cores, load, requested, warning)


_CHOICE: ThreadChoice | None = None
_WARNED: set[str] = set()


def apply(requested: int | str | None = "auto") -> ThreadChoice:
    """Set torch's thread count for `requested` ('auto' or an int; None is 'auto') and
    return the choice. 'auto' is decided once per process: later 'auto' calls reuse the
    choice in effect (the first auto one, or the last explicit count, e.g. the runner's
    `run.threads`). A count the user gave torch (`torch.set_num_threads` before the first
    decision or since the last one, `OMP_NUM_THREADS`) is kept by 'auto' (and warned
    about like an explicit one). An explicit count is set each call (cheap when
    unchanged); its warning is logged once per process.

    Args:
        requested: 'auto' or a thread count >= 1.
    """
    global _CHOICE
    import torch

    requested = "auto" if requested is None else requested
    now = torch.get_num_threads()
    if _CHOICE is not None and requested != "auto" and _CHOICE.requested == requested == now:
        return _CHOICE  # the same explicit count, still in effect (predict calls per batch)
    users = None
    if requested == "auto" and _CHOICE is not None:
        users = None if now == _CHOICE.threads else now  # changed since: the user's count
    elif requested == "auto":
        users = _users_count(now, os.environ)
    if requested == "auto" and _CHOICE is not None and users is None:
        choice = _CHOICE  # decided already (auto, or an explicit count of the runner)
    elif users is not None:  # torch.set_num_threads or OMP_NUM_THREADS: kept
        kept = choose(usable_cores(), machine_load(), users, policy_of(os.environ))
        choice = dataclasses.replace(kept, requested=f"auto (kept the user's {users})")
    else:
        choice = choose(usable_cores(), machine_load(), requested, policy_of(os.environ))
    if torch.get_num_threads() != choice.threads:
        torch.set_num_threads(choice.threads)
    if choice is not _CHOICE:
        limit_blas(choice.threads)
    if choice.warning and choice.warning not in _WARNED:
        _WARNED.add(choice.warning)
        log.warning(choice.warning)
    _CHOICE = choice
    return choice


def limit_blas(threads: int) -> None:
    """Cap the BLAS libraries loaded in this process (numpy's OpenBLAS: the least-squares
    warm starts and ridge fits) at `threads`, like torch's pool: their threads spin after
    each call, on cores torch's threads then wait for. Uses threadpoolctl (scikit-learn's
    own dependency); a no-op without it.

    Args:
        threads: the thread count chosen for torch.
    """
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - scikit-learn depends on it
        return
    threadpool_limits(limits=threads, user_api="blas")


def current() -> ThreadChoice | None:
    """The last choice `apply` made in this process, or None if it was never called."""
    return _CHOICE
