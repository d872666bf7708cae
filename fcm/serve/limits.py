"""What one decode request may cost the server, judged from the stream's header before anything is decoded.

A few kilobytes of a flat picture can claim an enormous tensor: the codec decodes it quickly, but the back half then
runs on every sample it claims (the audit's 7 KB stream claiming 80×640×640 samples of ``efficientnet_lite0:stage4``
took 100 s and 4.5 GB). Sample counts alone do not bound that work, because the back half's cost per sample differs
by a factor of a hundred between a classifier's last stage and a detector's FPN heads. So each served entry's back
half (with its post-wrapper) is measured once at start-up on a reference picture — multiply–accumulates per coded
sample, counted by :func:`fcm.models.cost.measure_cost` — and a stream is admitted only if its claimed coded samples
times that rate stay within the configured budget. Convolutional back halves scale linearly with their input's
area; the parts that do not (a detector's box head runs per proposal) are scaled too, and a stream smaller than the
reference is charged the reference's whole cost, so the estimate errs high, never low.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from fcm.errors import BitstreamError

if TYPE_CHECKING:
    from fcm.bitstream import Header
    from fcm.models.base import SplitModel
    from fcm.wrappers.base import WrapperPair

__all__ = ["BackHalfRate", "claimed_samples", "measure_back_half"]

#: side of the reference picture the back half is measured on at start-up
REFERENCE_SIDE = 256


@dataclass(frozen=True)
class BackHalfRate:
    """An entry's measured back-half cost: multiply–accumulates per coded sample (post-wrapper included)."""

    macs_per_sample: float
    reference_macs: int
    reference_samples: int

    def estimate(self, samples: int) -> float:
        """MACs for a stream of ``samples`` coded samples: the reference's whole cost scaled by the area ratio,
        never less than the reference (a detector's box head costs the same for any input size)."""
        return self.reference_macs * max(1.0, samples / max(self.reference_samples, 1))


def measure_back_half(model: SplitModel, wrapper: WrapperPair | None) -> BackHalfRate:
    """Run the edge half on a fixed noise picture and count what the cloud half (post-wrapper, then back) costs."""
    import numpy as np
    import torch

    from fcm.edge import run_front
    from fcm.models.base import Features
    from fcm.models.cost import measure_cost

    picture = np.random.default_rng(0).integers(0, 256, (REFERENCE_SIDE, REFERENCE_SIDE, 3), dtype=np.uint8)
    edge = run_front(picture, model, torch_threads=None)
    coded = edge.features.tensors
    if wrapper is not None:
        with torch.no_grad():
            coded = wrapper.encode(coded)
    samples = sum(int(t.numel()) for t in coded.values())

    def cloud(tensors: Any) -> Any:
        restored = tensors if wrapper is None else wrapper.decode(tensors)
        return model.back(Features(restored, edge.features.meta))

    macs = measure_cost(cloud, coded).macs
    return BackHalfRate(macs / max(samples, 1), macs, samples)


def claimed_samples(header: Header) -> int:
    """The coded tensor samples a stream's header says it carries (every frame)."""
    return header.num_frames * sum(p.channels * p.height * p.width for p in header.layout.placements)


def check_cost(header: Header, rate: BackHalfRate, max_macs: float) -> None:
    """A :class:`BitstreamError` when the back half would cost more than ``max_macs`` on what ``header`` claims."""
    samples = claimed_samples(header)
    estimate = rate.estimate(samples)
    if estimate > max_macs:
        raise BitstreamError(
            f"the stream claims {samples} coded samples, about {estimate / 1e9:.1f} GMAC of back-half work; this "
            f"server allows {max_macs / 1e9:.1f} GMAC per request (--max-back-gmacs)"
        )
