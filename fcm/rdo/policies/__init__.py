"""RDO policies by name: how the edge allocates bits across blocks (contract: :mod:`fcm.rdo.policies.base`).

Built in: ``sse`` (:mod:`~fcm.rdo.policies.sse`), ``wa-frame`` (:mod:`~fcm.rdo.policies.per_frame`), ``wa-gop``
(:mod:`~fcm.rdo.policies.gop`), ``wa-fixed`` (:mod:`~fcm.rdo.policies.fixed`), ``wa-uniform``
(:mod:`~fcm.rdo.policies.uniform`, the control).
"""

from __future__ import annotations

import importlib
import pkgutil
from typing import TYPE_CHECKING

from fcm.rdo.policies.base import RDO_POLICIES, KeyMap, RdoPolicy, SweepInput

if TYPE_CHECKING:
    from fcm.rdo.allocation import BitAllocation
    from fcm.rdo.settings import RdoSettings

__all__ = ["RDO_POLICIES", "KeyMap", "RdoPolicy", "SweepInput", "build_allocation", "build_policy", "rdo_modes"]

# every module of this package registers its policy on import: a new policy is one new module
for _module in sorted(m.name for m in pkgutil.iter_modules(__path__) if m.name != "base"):
    importlib.import_module(f"{__name__}.{_module}")
del _module


def rdo_modes() -> list[str]:
    """The registered mode names, sorted."""
    return RDO_POLICIES.names()


def build_policy(settings: RdoSettings) -> RdoPolicy:
    """The policy ``settings.mode`` names, built with ``settings``."""
    return RDO_POLICIES.get(settings.mode)(settings)


def build_allocation(settings: RdoSettings) -> BitAllocation | None:
    """The strategy one stream is coded with (``None`` for ``sse``); ``wa-fixed`` reads its map file now."""
    return build_policy(settings).allocation()
