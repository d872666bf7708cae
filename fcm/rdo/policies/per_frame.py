"""``wa-frame``: each frame's own weights (:func:`fcm.rdo.sensitivity.frame_sensitivity`).

In a sweep the input's weights are estimated once (they do not depend on the QP or codec) and charged in full to
every encode.
"""

from __future__ import annotations

from fcm.rdo.allocation import BitAllocation, PerFrameAllocation, PrecomputedAllocation
from fcm.rdo.policies.base import RDO_POLICIES, RdoPolicy, SweepInput


@RDO_POLICIES.register("wa-frame")
class PerFrameRdo(RdoPolicy):
    name = "wa-frame"
    estimates_weights = True

    def allocation(self) -> BitAllocation | None:
        return PerFrameAllocation(self.settings)

    def sweep_allocation(self, sweep_input: SweepInput) -> tuple[BitAllocation | None, float]:
        own = sweep_input.own_map()
        return PrecomputedAllocation(self.settings, own.offsets, own.layout), own.seconds
