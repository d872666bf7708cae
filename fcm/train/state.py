"""The resumable trainer state: everything a run needs to continue as if it had never stopped.

A ``torch.save``'d mapping, written atomically (temporary file, then rename): ``format`` (``"fcm-train-state"``),
``config`` (:meth:`fcm.train.config.TrainConfig.identity`), ``step`` (steps completed), ``wrapper`` and
``optimizer`` state dicts, ``rng`` (torch's CPU generator state, the CUDA generators' states when CUDA is used, the
batch sampler's numpy ``Generator`` state and Python's ``random`` state), ``wall_seconds`` (training time so far)
and ``rate_model`` (a learned rate model's state dict; absent or ``None`` when the rate model has no parameters).
Read back with ``weights_only=True``: loading runs no pickled code.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fcm.errors import ConfigError, WeightsError
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
    rate_model: dict[str, Any] | None = None


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
    data = dict(state.__dict__)
    if data["rate_model"] is None:  # the states of runs without a learned rate model are as before
        del data["rate_model"]
    save_mapping(path, FORMAT, data)


def load_state(path: Path, identity: str) -> TrainerState:
    """The state at ``path``; :class:`ConfigError` when it was saved by a run of another configuration."""
    data = load_mapping(path, FORMAT, "trainer state")
    if data["config"] != identity:
        raise ConfigError(
            f"{path} holds a run of another training configuration ({data['config']}, this one is {identity}); "
            "it will not resume it: delete that file or choose another checkpoint path"
        )
    _check_fields(data, path)
    return TrainerState(
        data["config"],
        data["step"],
        data["wrapper"],
        data["optimizer"],
        data["rng"],
        float(data["wall_seconds"]),
        data.get("rate_model"),
    )


def _check_fields(data: dict[str, Any], path: Path) -> None:
    """Refuse, field by field, a state whose values are not what :func:`save_state` writes (a damaged or edited
    file would otherwise end in a traceback deep in PyTorch, or resume at a negative step)."""

    def bad(field: str, expected: str) -> WeightsError:
        found = type(data.get(field)).__name__ if field in data else "nothing"
        return WeightsError(f"{path}: trainer state field {field!r} must be {expected}, found {found}")

    step = data.get("step")
    if isinstance(step, bool) or not isinstance(step, int):
        raise bad("step", "a non-negative integer")
    if step < 0:
        raise WeightsError(f"{path}: trainer state field 'step' must be a non-negative integer, found {step}")
    wall = data.get("wall_seconds")
    if isinstance(wall, bool) or not isinstance(wall, (int, float)) or not np.isfinite(wall) or wall < 0:
        raise bad("wall_seconds", "a finite non-negative number")
    for field in ("wrapper", "optimizer", "rng"):
        if not isinstance(data.get(field), dict):
            raise bad(field, "a mapping")
    if not all(isinstance(v, torch.Tensor) for v in data["wrapper"].values()):
        raise WeightsError(f"{path}: trainer state field 'wrapper' must map names to tensors")
    rate = data.get("rate_model")
    if rate is not None and not (isinstance(rate, dict) and all(isinstance(v, torch.Tensor) for v in rate.values())):
        raise WeightsError(f"{path}: trainer state field 'rate_model' must map names to tensors (or be absent)")
    rng = data["rng"]
    if not isinstance(rng.get("torch"), torch.Tensor) or rng["torch"].dtype != torch.uint8:
        raise WeightsError(f"{path}: trainer state rng 'torch' must be a uint8 tensor (torch.get_rng_state())")
    if not isinstance(rng.get("numpy"), dict):
        raise WeightsError(f"{path}: trainer state rng 'numpy' must be a mapping (a bit generator's state)")
    python = rng.get("python")
    if not (isinstance(python, list) and len(python) == 3 and isinstance(python[1], list)):
        raise WeightsError(f"{path}: trainer state rng 'python' must be [version, internal state, gauss]")
