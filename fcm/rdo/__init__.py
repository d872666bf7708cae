"""Wrapper-aware rate–distortion optimisation: which coded samples matter to the cloud, and how the edge's encoder
is told (``../shared/docs/methods.md`` §4).

* :mod:`fcm.rdo.sensitivity` — weights ``w = diag(JᵀMJ)`` of the decoder-side chain (unpack → post-wrapper → back
  half), exact or from Rademacher probes.
* :mod:`fcm.rdo.maps` — pre-conditioning (clip, smooth, mean 1, shrink), block pooling, ``ΔQP = −3·log2(w̄)``.
* :mod:`fcm.rdo.settings` — :class:`RdoSettings`, what a config or the CLI says.
* :mod:`fcm.rdo.policies` — the policies by name (``sse``, ``wa-frame``, ``wa-gop``, ``wa-fixed``): each checks its
  settings, states its identity and builds its strategy, for a stream and for a sweep's inputs.
* :mod:`fcm.rdo.allocation` — the strategies the edge driver calls.
* :mod:`fcm.rdo.fixed_map` — offline maps with the identifiers and layout they belong to.
* :mod:`fcm.rdo.scaling` — the codec-agnostic route: per-block sample scaling, its map carried in the bitstream.

This package knows nothing of how a codec attaches a map (:mod:`fcm.codecs.roi` does).
"""

from fcm.rdo.allocation import BitAllocation
from fcm.rdo.maps import Preconditioning, block_means, precondition, qp_offsets
from fcm.rdo.policies import RDO_POLICIES, RdoPolicy, build_allocation, build_policy, rdo_modes
from fcm.rdo.scaling import BlockScales, scale_frames, unscale_frames
from fcm.rdo.settings import ROUTES, RdoSettings, as_rdo_mode

__all__ = [
    "RDO_POLICIES",
    "ROUTES",
    "BitAllocation",
    "BlockScales",
    "Preconditioning",
    "RdoPolicy",
    "RdoSettings",
    "as_rdo_mode",
    "block_means",
    "build_allocation",
    "build_policy",
    "precondition",
    "qp_offsets",
    "rdo_modes",
    "scale_frames",
    "unscale_frames",
]
