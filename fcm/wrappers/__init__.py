"""Learned pre/post wrappers around the inner codec (see :mod:`fcm.wrappers.base`), their registry and checkpoints.

Registry contract: ``WRAPPERS.get(name)`` is a :class:`~fcm.wrappers.base.WrapperPair` subclass whose constructor
takes the split's :class:`~fcm.models.SplitSpec` and keyword options (validated there, raising
:class:`~fcm.errors.ConfigError`), builds a pair whose ``coded_spec`` states what it emits, and whose ``name`` class
attribute equals the registered name (it is written into bitstreams and checkpoints).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fcm.models.base import SplitModel, SplitSpec
from fcm.registry import Registry
from fcm.wrappers.architectures import ChannelReduction, FpnFusion, IdentityWrapper
from fcm.wrappers.base import WrapperPair, state_dict_tag
from fcm.wrappers.checkpoint import load_wrapper, read_checkpoint, save_wrapper
from fcm.wrappers.family import FamilyVariant, WrapperFamily, is_family_file, load_family, save_family

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

WRAPPERS: Registry[type[WrapperPair]] = Registry("wrapper")
WRAPPERS.add(IdentityWrapper.name, IdentityWrapper)
WRAPPERS.add(ChannelReduction.name, ChannelReduction)
WRAPPERS.add(FpnFusion.name, FpnFusion)


def build_wrapper(name: str, spec: SplitSpec, **options: Any) -> WrapperPair:
    """A freshly initialised wrapper ``name`` for split ``spec``."""
    return WRAPPERS.get(name)(spec, **options)


def load_wrapper_or_family(path: str | Path, model: SplitModel) -> WrapperPair | WrapperFamily:
    """The wrapper checkpoint or the wrapper family (:mod:`fcm.wrappers.family`) at ``path``, for ``model``."""
    return load_family(path, model) if is_family_file(path) else load_wrapper(path, model)
