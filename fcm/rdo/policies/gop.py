"""``wa-gop``: the weights of the first frame of each group of ``gop`` frames, reused for the group (the packing
layout is fixed, so the maps line up).

In a sweep, consecutive inputs ``[k·gop, (k+1)·gop)`` of the dataset form a GOP (as frames of a video would) and use
the map of its first input, charged ``1/gop`` of its weights time (what a stream pays per frame). The key map
depends only on the key input, so results do not depend on ``--jobs`` or on the order workers take inputs; the
policy keeps the last few key maps. A follower whose key input cannot be read or packs to another layout starts
its own GOP (its own map, charged in full).
"""

from __future__ import annotations

from typing import Any

from fcm.rdo.allocation import BitAllocation, GopAllocation, PrecomputedAllocation
from fcm.rdo.policies.base import RDO_POLICIES, KeyMap, RdoPolicy, SweepInput

#: key maps a sweep's policy keeps (a worker takes inputs in order, so the current GOP's key is the newest)
KEPT_KEY_MAPS = 4


@RDO_POLICIES.register("wa-gop")
class GopRdo(RdoPolicy):
    name = "wa-gop"
    estimates_weights = True

    def __init__(self, settings: Any) -> None:
        super().__init__(settings)
        self._key_maps: dict[Any, KeyMap] = {}

    @classmethod
    def option_keys(cls) -> frozenset[str]:
        return super().option_keys() | {"gop"}

    @classmethod
    def identity(cls, settings: Any) -> dict[str, Any]:
        return super().identity(settings) | {"gop": settings.gop}

    def allocation(self) -> BitAllocation | None:
        return GopAllocation(self.settings)

    def sweep_allocation(self, sweep_input: SweepInput) -> tuple[BitAllocation | None, float]:
        own = sweep_input.own_map()
        key_index = sweep_input.index - sweep_input.index % self.settings.gop
        key = (key_index, sweep_input.variant)
        if key_index == sweep_input.index:
            self._key_maps[key] = own
        elif key not in self._key_maps:
            found = sweep_input.map_of(key_index)
            if found is not None:
                self._key_maps[key] = found
        found = self._key_maps.get(key)
        if found is None or found.layout != own.layout:  # no key map, or another layout: a GOP of its own
            return PrecomputedAllocation(self.settings, own.offsets, own.layout), own.seconds
        while len(self._key_maps) > KEPT_KEY_MAPS:
            self._key_maps.pop(next(iter(self._key_maps)))
        return PrecomputedAllocation(self.settings, found.offsets, found.layout), found.seconds / self.settings.gop

    def __getstate__(self) -> dict[str, Any]:  # a pipeline sent to a worker starts with no maps
        return {**self.__dict__, "_key_maps": {}}
