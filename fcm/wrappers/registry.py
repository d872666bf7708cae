"""The registry of wrapper architectures by name.

Registry contract: ``WRAPPERS.get(name)`` is a :class:`~fcm.wrappers.base.WrapperPair` subclass whose constructor
takes the split's :class:`~fcm.models.SplitSpec` and keyword options (validated there, raising
:class:`~fcm.errors.ConfigError`), builds a pair whose ``coded_spec`` states what it emits, and whose ``name`` class
attribute equals the registered name (it is written into bitstreams and checkpoints).

Its own module so that checkpoints (:mod:`fcm.wrappers.checkpoint`) rebuild a wrapper by name without importing the
package that re-exports them.
"""

from __future__ import annotations

from typing import Any

from fcm.models.base import SplitSpec
from fcm.registry import Registry
from fcm.wrappers.architectures import ChannelReduction, FpnFusion, IdentityWrapper
from fcm.wrappers.base import WrapperPair

WRAPPERS: Registry[type[WrapperPair]] = Registry("wrapper")
WRAPPERS.add(IdentityWrapper.name, IdentityWrapper)
WRAPPERS.add(ChannelReduction.name, ChannelReduction)
WRAPPERS.add(FpnFusion.name, FpnFusion)


def build_wrapper(name: str, spec: SplitSpec, **options: Any) -> WrapperPair:
    """A freshly initialised wrapper ``name`` for split ``spec``."""
    return WRAPPERS.get(name)(spec, **options)
