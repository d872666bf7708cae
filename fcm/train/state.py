"""The resumable trainer state: everything a run needs to continue as if it had never stopped.

A ``torch.save``'d mapping, written atomically (temporary file, then rename): ``format`` (``"fcm-train-state"``),
``config`` (:meth:`fcm.train.config.TrainConfig.identity`), ``step`` (steps completed), ``wrapper`` and
``optimizer`` state dicts, ``rng`` (torch's CPU generator state, the CUDA generators' states when CUDA is used, the
batch sampler's numpy ``Generator`` state and Python's ``random`` state) and ``wall_seconds`` (training time so far).
Read back with ``weights_only=True``: loading runs no pickled code.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fcm.errors import ConfigError
from fcm.torch_files import load_mapping, save_mapping

FORMAT = "fcm-train-state"


@dataclass
class TrainerState:
    """What :func:`save_state` writes and :func:`load_state` returns."""

    config: str
    step: int
    wrapper: dict[str, Any]
    optimizer: dict[str, Any]
    rng: dict[str, Any]
    wall_seconds: float


def capture_rng(sampler: np.random.Generator) -> dict[str, Any]:
    """The state of every random source training draws from."""
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": _plain(sampler.bit_generator.state),
        "python": _plain(random.getstate()),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict[str, Any], sampler: np.random.Generator) -> None:
    """Undo :func:`capture_rng`: set every random source back."""
    torch.set_rng_state(state["torch"])
    sampler.bit_generator.state = state["numpy"]
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _plain(value: Any) -> Any:
    """Tuples → lists, numpy ints → ints, recursively: what ``weights_only`` loading accepts."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, np.integer):
        return int(value)
    return value


def save_state(path: Path, state: TrainerState) -> None:
    save_mapping(path, FORMAT, dict(state.__dict__))


def load_state(path: Path, identity: str) -> TrainerState:
    """The state at ``path``; :class:`ConfigError` when it was saved by a run of another configuration."""
    data = load_mapping(path, FORMAT, "trainer state")
    if data["config"] != identity:
        raise ConfigError(
            f"{path} holds a run of another training configuration ({data['config']}, this one is {identity}); "
            "it will not resume it: delete that file or choose another checkpoint path"
        )
    return TrainerState(
        data["config"], data["step"], data["wrapper"], data["optimizer"], data["rng"], data["wall_seconds"]
    )
