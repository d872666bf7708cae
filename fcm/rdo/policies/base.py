"""The RDO policy contract and its registry.

Registry contract: ``RDO_POLICIES.get(name)`` is an :class:`RdoPolicy` subclass whose ``name`` class attribute is
the registered name (the ``mode`` of :class:`fcm.rdo.settings.RdoSettings`, the ``[variant]`` of a sweep's
``feature[…]`` pipeline). The class states the settings it takes (:meth:`RdoPolicy.check_settings`), what of them
changes what it codes (:meth:`RdoPolicy.identity`, for results folders), and, built with one stream's or one
pipeline's settings, gives the strategy a stream is coded with (:meth:`RdoPolicy.allocation`) and, in a sweep, each
input's strategy and the seconds its map costs per encode (:meth:`RdoPolicy.sweep_allocation`). A new policy is one
module under :mod:`fcm.rdo.policies` that registers itself with ``@RDO_POLICIES.register(name)`` and is imported by
the package.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import asdict
from typing import TYPE_CHECKING, Any, ClassVar, NamedTuple, Protocol

import numpy as np

from fcm.errors import ConfigError
from fcm.registry import Registry

if TYPE_CHECKING:
    from fcm.rdo.allocation import BitAllocation
    from fcm.rdo.settings import RdoSettings


class KeyMap(NamedTuple):
    """One input's block map as the edge packs it, the layout it was made for and the seconds it took."""

    offsets: np.ndarray
    layout: Any
    seconds: float


class SweepInput(Protocol):
    """What a sweep offers a policy about the input being measured (:class:`fcm.eval.pipelines.CodedPipeline`)."""

    #: the input's position in the dataset
    index: int
    #: what else the map depends on (bit depth, wrapper weights): a key for the maps a policy keeps
    variant: Any

    def own_map(self) -> KeyMap:
        """This input's weights turned into a block map (computed once per input and variant)."""

    def map_of(self, index: int) -> KeyMap | None:
        """Input ``index``'s map (as a GOP key), or None where that input cannot be read."""


class RdoPolicy(ABC):
    """How the edge allocates bits across blocks; see the module docstring for the contract."""

    name: ClassVar[str]
    #: False only for the codec's own RDO: no block map, so no other setting matters
    makes_map: ClassVar[bool] = True
    #: the weights come from the Jacobian at encode time: ``target``, ``probes`` and ``seed`` matter
    estimates_weights: ClassVar[bool] = False
    #: the weights come from an offline map file (``map``; its target is the map's)
    takes_map: ClassVar[bool] = False

    def __init__(self, settings: RdoSettings) -> None:
        self.settings = settings

    @classmethod
    def check_settings(cls, settings: RdoSettings) -> None:
        """Raise ConfigError for settings this policy does not take."""
        if cls.takes_map and not settings.map_path:
            raise ConfigError(f"rdo mode {cls.name!r} needs map: the file `fcm rdo-weights` wrote")
        if not cls.takes_map and settings.map_path:
            raise ConfigError(f"rdo map is only used by a mode that reads one (wa-fixed), not {cls.name!r}")
        if cls.takes_map and settings.target is not None:
            raise ConfigError(f"rdo mode {cls.name!r} takes its target from the map; drop target")

    @classmethod
    def option_keys(cls) -> frozenset[str]:
        """The config keys (:data:`fcm.rdo.settings.RdoSettings.KEYS`) this policy reads besides ``mode``."""
        if not cls.makes_map:
            return frozenset()
        keys = {"route", "block", "max_offset", "clip_percentile", "smooth", "tau"}
        if cls.estimates_weights:
            keys |= {"target", "probes", "seed"}
        if cls.takes_map:
            keys.add("map")
        return frozenset(keys)

    @classmethod
    def identity(cls, settings: RdoSettings) -> dict[str, Any]:
        """The settings that change what this policy codes (the map file is identified by its content elsewhere)."""
        if not cls.makes_map:
            return {"mode": cls.name}
        out: dict[str, Any] = {
            "mode": cls.name,
            "route": settings.route,
            "block": settings.block,
            "max_offset": settings.max_offset,
        }
        out |= asdict(settings.precondition)
        if cls.estimates_weights:
            out |= {"target": settings.target, "probes": settings.probes, "seed": settings.seed}
        return out

    def prepare(self) -> None:
        """Read what the policy needs before its first input (a map file), so a sweep fails before measuring."""
        return None  # most policies read nothing ahead

    @abstractmethod
    def allocation(self) -> BitAllocation | None:
        """The strategy one stream is coded with (``None``: the codec's own RDO); use one per stream."""

    @abstractmethod
    def sweep_allocation(self, sweep_input: SweepInput) -> tuple[BitAllocation | None, float]:
        """The strategy for one sweep input and the seconds its map costs per encode."""


#: mode name → policy class (contract: the module docstring)
RDO_POLICIES: Registry[type[RdoPolicy]] = Registry("rdo mode")
