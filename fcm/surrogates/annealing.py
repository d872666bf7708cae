"""Temperature schedules for :class:`fcm.surrogates.StochasticUniformAnnealing`.

With ``k`` the training step and ``r = min(k, steps)/steps`` (progress, held at 1 after ``steps``):

* ``"linear"``:      ``T(k) = start + (end − start)·r``
* ``"exponential"``: ``T(k) = start·(end/start)^r`` (geometric decay; needs ``start, end > 0``)

Both give ``T(0) = start`` and ``T(k) = end`` for ``k ≥ steps``; values lie in [0, 1].
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from fcm.errors import ConfigError

ScheduleKind = Literal["linear", "exponential"]


@dataclass(frozen=True)
class TemperatureSchedule:
    """``T(k)`` per the module doc; call it with the step: ``schedule(k)``."""

    kind: ScheduleKind = "exponential"
    start: float = 1.0
    end: float = 1e-3
    steps: int = 10_000

    def __post_init__(self) -> None:
        if self.kind not in ("linear", "exponential"):
            raise ConfigError(f"temperature schedule must be 'linear' or 'exponential', not {self.kind!r}")
        for name, value in (("start", self.start), ("end", self.end)):
            if not 0.0 <= value <= 1.0:
                raise ConfigError(f"temperature {name} must lie in [0, 1], got {value}")
        if self.kind == "exponential" and not (self.start > 0 and self.end > 0):
            raise ConfigError("an exponential temperature schedule needs start > 0 and end > 0")
        if self.steps < 1:
            raise ConfigError(f"temperature schedule needs steps ≥ 1, got {self.steps}")

    def __call__(self, step: int) -> float:
        if step < 0:
            raise ConfigError(f"training step must be ≥ 0, got {step}")
        if step >= self.steps:
            return self.end  # exactly, not a power that rounds near it
        progress = step / self.steps
        if self.kind == "linear":
            return self.start + (self.end - self.start) * progress
        return self.start * (self.end / self.start) ** progress
