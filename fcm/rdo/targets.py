"""What wrapper-aware RDO's weights protect (:mod:`fcm.rdo.sensitivity` computes them): ``kl`` (the classifier's
output distribution), ``output`` (the back half's raw output) or ``features`` (the restored split tensors).

A module of its own, light (no torch), so the CLI's choices come from here.
"""

from __future__ import annotations

from typing import Literal

from fcm.errors import ConfigError

Target = Literal["kl", "output", "features"]
TARGETS: tuple[Target, ...] = ("kl", "output", "features")


def as_target(value: str) -> Target:
    for target in TARGETS:
        if value == target:
            return target
    raise ConfigError(f"unknown sensitivity target {value!r}; known: {', '.join(TARGETS)}")
