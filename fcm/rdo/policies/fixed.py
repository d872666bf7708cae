"""``wa-fixed``: a fixed offline map (:class:`fcm.rdo.fixed_map.FixedMap`, made by ``fcm rdo-weights``): no Jacobian
work at encode time (a sweep charges it nothing per encode); refused when its identifiers or layout do not match."""

from __future__ import annotations

from typing import Any

from fcm.rdo.allocation import BitAllocation, FixedAllocation
from fcm.rdo.policies.base import RDO_POLICIES, RdoPolicy, SweepInput


@RDO_POLICIES.register("wa-fixed")
class FixedMapRdo(RdoPolicy):
    name = "wa-fixed"
    takes_map = True

    def __init__(self, settings: Any) -> None:
        super().__init__(settings)
        self._shared: FixedAllocation | None = None

    def allocation(self) -> BitAllocation | None:
        """Reads the map file now."""
        from fcm.rdo.fixed_map import FixedMap

        assert self.settings.map_path is not None  # check_settings refused a missing map
        return FixedAllocation(self.settings, FixedMap.load(self.settings.map_path))

    def prepare(self) -> None:
        if self._shared is None:  # the map holds no per-stream state: one strategy serves every input
            allocation = self.allocation()
            assert isinstance(allocation, FixedAllocation)
            self._shared = allocation

    def sweep_allocation(self, sweep_input: SweepInput) -> tuple[BitAllocation | None, float]:
        self.prepare()
        assert self._shared is not None
        return self._shared, 0.0

    def __getstate__(self) -> dict[str, Any]:  # a pipeline sent to a worker reads the map there
        return {**self.__dict__, "_shared": None}
