"""Wrapper checkpoints: the weights together with everything needed to rebuild and trust them.

A checkpoint is a ``torch.save``'d mapping (read back with ``weights_only=True``, so loading runs no pickled code):

``format`` (``"fcm-wrapper"``), ``format_version`` (1), ``wrapper`` (registered name), ``options`` (its keyword
options), ``model``, ``split`` and ``model_weights_tag`` (the split it was trained for), ``input_spec`` /
``coded_spec`` (``[name, channels, stride]`` per tensor), ``weights_tag`` (:func:`~fcm.wrappers.base.state_dict_tag`
of the weights), ``state_dict`` and ``training`` (free-form provenance: surrogate, steps, QPs, seed …).

:func:`load_wrapper` rebuilds the pair for a given model and refuses a checkpoint made for another model or split, of
an unknown architecture, or whose weights do not hash to the tag it states.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from fcm.errors import FcmError, WeightsError
from fcm.models.base import SplitModel, SplitSpec
from fcm.torch_files import load_mapping, save_mapping
from fcm.wrappers.base import WrapperPair

__all__ = [
    "FORMAT",
    "check_checkpoint",
    "checkpoint_payload",
    "load_wrapper",
    "read_checkpoint",
    "save_wrapper",
    "wrapper_from_checkpoint",
]

FORMAT = "fcm-wrapper"
FORMAT_VERSION = 1


def _spec_rows(spec: SplitSpec) -> list[list[Any]]:
    return [[t.name, t.channels, t.stride] for t in spec.tensors]


def save_wrapper(
    path: str | Path, wrapper: WrapperPair, model: SplitModel, training: dict[str, Any] | None = None
) -> str:
    """Write ``wrapper``'s checkpoint to ``path`` (atomically: a temporary file renamed); returns its weights tag."""
    save_mapping(Path(path), FORMAT, checkpoint_payload(wrapper, model, training))
    return wrapper.weights_tag


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """The checkpoint mapping at ``path``, checked for its format; :class:`WeightsError` names any problem."""
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"wrapper checkpoint not found: {path}")
    return check_checkpoint(load_mapping(path, FORMAT, "wrapper checkpoint"), str(path))


def checkpoint_payload(
    wrapper: WrapperPair, model: SplitModel, training: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The mapping :func:`save_wrapper` writes (without its ``format`` key): to embed a checkpoint in another file."""
    return {
        "format_version": FORMAT_VERSION,
        "wrapper": wrapper.name,
        "options": dict(wrapper.options),
        "model": model.name,
        "split": model.split,
        "model_weights_tag": model.weights_tag,
        "input_spec": _spec_rows(wrapper.input_spec),
        "coded_spec": _spec_rows(wrapper.coded_spec),
        "weights_tag": wrapper.weights_tag,
        "state_dict": {k: v.detach().cpu() for k, v in wrapper.state_dict().items()},
        "training": dict(training or {}),
    }


def check_checkpoint(data: Any, path: str) -> dict[str, Any]:
    """``data`` if it is a wrapper checkpoint mapping of this format version with every required key, else a
    :class:`WeightsError` naming ``path`` and the problem."""
    if not isinstance(data, dict):
        raise WeightsError(f"{path}: a wrapper checkpoint must be a mapping")
    if data.get("format_version") != FORMAT_VERSION:
        raise WeightsError(f"{path}: checkpoint format version {data.get('format_version')!r} is not {FORMAT_VERSION}")
    required = ("wrapper", "options", "model", "split", "model_weights_tag", "weights_tag", "state_dict")
    missing = [k for k in required if k not in data]
    if missing:
        raise WeightsError(f"{path}: checkpoint lacks {missing}")
    return data


def _check_shapes_before_building(
    cls: type[WrapperPair], spec: SplitSpec, options: dict[str, Any], state_dict: dict[str, Any], path: str
) -> None:
    """Refuse options whose modules would not hold ``state_dict`` before anything is allocated.

    The wrapper is first built on PyTorch's ``meta`` device (shapes only, no storage), so options from a hostile or
    damaged file (``hidden: 300000``) cost nothing: the weights the file carries must have exactly those shapes.
    """
    with torch.device("meta"):
        probe = cls(spec, **options)
    expected = {k: tuple(v.shape) for k, v in probe.state_dict().items()}
    found = {k: tuple(v.shape) for k, v in state_dict.items() if isinstance(v, torch.Tensor)}
    if len(found) != len(state_dict):
        raise WeightsError(f"{path}: checkpoint state_dict holds values that are not tensors")
    for key, value in state_dict.items():  # shapes must be backed by stored values: a stride-0 view claims any shape
        if value.untyped_storage().nbytes() < value.numel() * value.element_size():
            raise WeightsError(
                f"{path}: checkpoint weight {key!r} of shape {tuple(value.shape)} is backed by "
                f"{value.untyped_storage().nbytes()} stored bytes (an expanded view, not weights)"
            )
    if expected != found:
        wrong = sorted(k for k in expected.keys() | found.keys() if expected.get(k) != found.get(k))
        first = wrong[0]
        raise WeightsError(
            f"{path}: the options {options} do not match the weights the checkpoint carries ({len(wrong)} of "
            f"{len(expected.keys() | found.keys())} entries differ; {first!r}: options give {expected.get(first)}, "
            f"weights are {found.get(first)})"
        )


def load_wrapper(path: str | Path, model: SplitModel) -> WrapperPair:
    """Rebuild the wrapper of checkpoint ``path`` for ``model``, in eval mode."""
    return wrapper_from_checkpoint(read_checkpoint(path), model, str(path))


def wrapper_from_checkpoint(data: dict[str, Any], model: SplitModel, source: str) -> WrapperPair:
    """Rebuild the wrapper of a checkpoint mapping (as :func:`read_checkpoint` returns; ``source`` names it in
    errors) for ``model``, in eval mode: refused for another model, split or model weights, an unknown architecture,
    or weights that do not hash to the tag it states."""
    from fcm.wrappers.registry import WRAPPERS

    path = source
    if (data["model"], data["split"]) != (model.name, model.split):
        raise WeightsError(f"{path} was trained for {data['model']}/{data['split']}, not {model.name}/{model.split}")
    if data["model_weights_tag"] != model.weights_tag:
        raise WeightsError(f"{path} was trained on model weights {data['model_weights_tag']}, not {model.weights_tag}")
    if not isinstance(data["options"], dict) or not isinstance(data["state_dict"], dict):
        raise WeightsError(f"{path}: checkpoint options and state_dict must be mappings")
    try:
        cls = WRAPPERS.get(data["wrapper"])
        _check_shapes_before_building(cls, model.spec, data["options"], data["state_dict"], path)
        wrapper = cls(model.spec, **data["options"])
        wrapper.load_state_dict(data["state_dict"], strict=True)
    except (FcmError, TypeError, RuntimeError) as e:
        raise WeightsError(f"{path}: cannot rebuild wrapper {data['wrapper']!r} from it: {e}") from e
    if wrapper.weights_tag != data["weights_tag"]:
        raise WeightsError(
            f"{path}: weights hash to {wrapper.weights_tag}, but the checkpoint states {data['weights_tag']} "
            "(damaged or edited file)"
        )
    return wrapper.eval()
