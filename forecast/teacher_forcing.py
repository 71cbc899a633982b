"""Teacher-forcing schedules: the probability of feeding the true previous target, per epoch.

A decoder trained only on true previous values never sees its own errors, then has to
run on them at test time (exposure bias). Scheduled sampling (Bengio et al., 2015) starts
mostly teacher-forced, for fast and stable early learning, and moves towards
free-running. Ratio 0 is free-running training. Adding a schedule is one function plus
one entry in `SCHEDULES`.

>>> s = TeacherForcingSchedule("linear", start=1.0, end=0.0, epochs=5)
>>> [round(s(e), 2) for e in range(6)]
[1.0, 0.75, 0.5, 0.25, 0.0, 0.0]
>>> round(TeacherForcingSchedule("inverse_sigmoid", start=1.0, k=5.0)(0), 3)
0.833
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass


def _constant(epoch: int, s: TeacherForcingSchedule) -> float:
    return s.start


def _linear(epoch: int, s: TeacherForcingSchedule) -> float:
    # Reaches `end` at the last epoch, then stays there.
    frac = min(epoch / max(s.epochs - 1, 1), 1.0)
    return s.start + (s.end - s.start) * frac


def _exponential(epoch: int, s: TeacherForcingSchedule) -> float:
    return s.start * s.decay**epoch


def _inverse_sigmoid(epoch: int, s: TeacherForcingSchedule) -> float:
    # Bengio et al. (2015): eps_i = k / (k + exp(i / k)), k >= 1; larger k decays later.
    return s.start * s.k / (s.k + math.exp(epoch / s.k))


SCHEDULES: dict[str, Callable[[int, TeacherForcingSchedule], float]] = {
    "constant": _constant,
    "linear": _linear,
    "exponential": _exponential,
    "inverse_sigmoid": _inverse_sigmoid,
}
"""Schedules by name: f(epoch from 0, schedule) -> ratio."""


@dataclass(frozen=True)
class TeacherForcingSchedule:
    """A teacher-forcing ratio per epoch (epochs count from 0), always clipped to [0, 1].

    Args:
        name: 'constant', 'linear', 'exponential' or 'inverse_sigmoid'.
        start: the ratio at epoch 0 (inverse_sigmoid: its scale, see below).
        end: linear: the ratio reached at the last epoch.
        epochs: linear: the number of epochs of the decay.
        decay: exponential: ratio = start * decay ** epoch.
        k: inverse_sigmoid: ratio = start * k / (k + exp(epoch / k)), k >= 1.
    """

    name: str = "constant"
    start: float = 1.0
    end: float = 0.0
    epochs: int = 1
    decay: float = 0.9
    k: float = 5.0

    def __post_init__(self) -> None:
        if self.name not in SCHEDULES:
            raise ValueError(
                f"unknown teacher-forcing schedule {self.name!r}; expected one of {list(SCHEDULES)}"
            )
        for field in ("start", "end"):
            value = getattr(self, field)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"teacher-forcing {field} must be in [0, 1], got {value}")
        if not 0.0 < self.decay <= 1.0:
            raise ValueError(f"teacher-forcing decay must be in (0, 1], got {self.decay}")
        if self.k < 1.0:
            raise ValueError(f"inverse-sigmoid k must be >= 1, got {self.k}")

    def __call__(self, epoch: int) -> float:
        """The ratio at `epoch` (0 = the first epoch).

        Args:
            epoch: epoch index from 0.
        """
        return min(max(SCHEDULES[self.name](epoch, self), 0.0), 1.0)
