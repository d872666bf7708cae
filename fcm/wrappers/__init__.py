"""Learned pre/post wrappers around the inner codec (see :mod:`fcm.wrappers.base`), their registry
(:mod:`fcm.wrappers.registry`, whose docstring states the contract) and checkpoints.
"""

from __future__ import annotations

from pathlib import Path

from fcm.models.base import SplitModel
from fcm.wrappers.architectures import ChannelReduction, FpnFusion, IdentityWrapper
from fcm.wrappers.base import WrapperPair, state_dict_tag
from fcm.wrappers.checkpoint import load_wrapper, read_checkpoint, save_wrapper
from fcm.wrappers.family import FamilyVariant, WrapperFamily, is_family_file, load_family, save_family
from fcm.wrappers.registry import WRAPPERS, build_wrapper

__all__ = [
    "WRAPPERS",
    "ChannelReduction",
    "FamilyVariant",
    "FpnFusion",
    "IdentityWrapper",
    "WrapperFamily",
    "WrapperPair",
    "build_wrapper",
    "is_family_file",
    "load_family",
    "load_wrapper",
    "load_wrapper_or_family",
    "read_checkpoint",
    "save_family",
    "save_wrapper",
    "state_dict_tag",
]


def load_wrapper_or_family(path: str | Path, model: SplitModel) -> WrapperPair | WrapperFamily:
    """The wrapper checkpoint or the wrapper family (:mod:`fcm.wrappers.family`) at ``path``, for ``model``."""
    return load_family(path, model) if is_family_file(path) else load_wrapper(path, model)
