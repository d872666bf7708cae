"""Wrapper-aware rate–distortion optimisation: which coded samples matter to the cloud, and how the edge's encoder
is told (``../shared/docs/methods.md`` §4).

* :mod:`fcm.rdo.sensitivity` — weights ``w = diag(JᵀMJ)`` of the decoder-side chain (unpack → post-wrapper → back
  half), exact or from Rademacher probes.
* :mod:`fcm.rdo.maps` — pre-conditioning (clip, smooth, mean 1, shrink), block pooling, ``ΔQP = −3·log2(w̄)``.
* :mod:`fcm.rdo.allocation` — the strategies (``sse``, ``wa-frame``, ``wa-gop``, ``wa-fixed``) the edge driver calls.
* :mod:`fcm.rdo.fixed_map` — offline maps with the identifiers and layout they belong to.
* :mod:`fcm.rdo.scaling` — the codec-agnostic route: per-block sample scaling, its map carried in the bitstream.

This package knows nothing of how a codec attaches a map (:mod:`fcm.codecs.roi` does).
"""

from fcm.rdo.allocation import (
    RDO_MODES,
    ROUTES,
    BitAllocation,
    RdoSettings,
    as_rdo_mode,
    build_allocation,
)
from fcm.rdo.maps import Preconditioning, block_means, precondition, qp_offsets
from fcm.rdo.scaling import BlockScales, scale_frames, unscale_frames

__all__ = [
    "RDO_MODES",
    "ROUTES",
    "BitAllocation",
    "BlockScales",
    "Preconditioning",
    "RdoSettings",
    "as_rdo_mode",
    "block_means",
    "build_allocation",
    "precondition",
    "qp_offsets",
    "scale_frames",
    "unscale_frames",
]
