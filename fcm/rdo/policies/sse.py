"""``sse``: no map; the codec's own RDO (the anchor; run it in the same rate-control mode as the others)."""

from __future__ import annotations

from fcm.rdo.allocation import BitAllocation
from fcm.rdo.policies.base import RDO_POLICIES, RdoPolicy, SweepInput


@RDO_POLICIES.register("sse")
class CodecOwnRdo(RdoPolicy):
    name = "sse"
    makes_map = False

    def allocation(self) -> BitAllocation | None:
        return None

    def sweep_allocation(self, sweep_input: SweepInput) -> tuple[BitAllocation | None, float]:
        return None, 0.0
