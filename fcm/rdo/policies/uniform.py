"""``wa-uniform``: the control — a map of unit weights, so every block's QP offset is 0.

It runs the map's whole delivery (the codec's per-block QP map or the sample scaling, with its block size and
rate-control checks) with no content in the map, so ``feature[wa-uniform]`` against ``feature`` measures what the
delivery itself costs, and a ``wa-*`` policy against ``wa-uniform`` what its weights gain.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from fcm.rdo.allocation import BitAllocation
from fcm.rdo.policies.base import RDO_POLICIES, RdoPolicy, SweepInput

if TYPE_CHECKING:
    from fcm.models.base import SplitModel
    from fcm.packing.packer import PackedFrames
    from fcm.wrappers.base import WrapperPair


class UniformAllocation(BitAllocation):
    """Unit weights on every sample of every frame, through the same map pipeline as measured weights."""

    def offsets(
        self,
        packed: PackedFrames,
        model: SplitModel | None,
        meta: dict[str, tuple[int, ...]],
        wrapper: WrapperPair | None,
    ) -> np.ndarray | None:
        return self.settings.offsets_from_weights(np.ones(packed.frames.shape, dtype=np.float64))


@RDO_POLICIES.register("wa-uniform")
class UniformRdo(RdoPolicy):
    name = "wa-uniform"

    def __init__(self, settings: Any) -> None:
        super().__init__(settings)
        self._shared = UniformAllocation(settings)  # no state: one strategy serves every stream and input

    def allocation(self) -> BitAllocation | None:
        return self._shared

    def sweep_allocation(self, sweep_input: SweepInput) -> tuple[BitAllocation | None, float]:
        return self._shared, 0.0
