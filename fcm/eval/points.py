"""Operating points: what a sweep measures at one (pipeline, codec, QP), aggregated over the dataset."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

#: stages that run on the edge device, whatever the pipeline (remote: only ``encode``; ``wrap``: a pre-wrapper)
EDGE_STAGES: tuple[str, ...] = ("front", "wrap", "pack", "rdo", "encode")


#: how a point's metric follows from the mean of its per-input scores: the mean itself, or ``−10·log10(mean)`` (a
#: distortion such as a KL divergence turned into decibels, higher is better)
LINKS = ("mean", "neg_db")
#: the smallest mean ``neg_db`` takes (150 dB)
MIN_DB_MEAN = 1e-15


def apply_link(link: str, mean: np.ndarray | float) -> np.ndarray | float:
    """The metric of a mean of per-input scores under ``link`` (see :data:`LINKS`)."""
    if link == "mean":
        return mean
    # floored: a lossless point (mean KL 0) reads 150 dB, far above any lossy one, not infinity
    return -10.0 * np.log10(np.maximum(mean, MIN_DB_MEAN))


@dataclass(frozen=True, eq=False)
class InputSamples:
    """Per-input measurements behind one operating point, aligned by input id: what bootstrap intervals resample.

    ``scores`` are the per-input values whose mean is the point's metric (``None`` when the metric is not a mean over
    inputs, e.g. mAP), through ``link`` (:data:`LINKS`). ``statistic``, for such a metric: the metric when input
    ``i`` is counted ``w[i]`` times, for each row ``w`` of a ``draws × inputs`` matrix (columns in ``ids`` order;
    e.g. :class:`fcm.eval.coco_resample.ImageWeightedAP`), so it can be resampled all the same.
    ``extra`` holds the per-input values and link of other
    measures by name (e.g. ``"kl_db"``, ``"feature_psnr"``), for reports that rank curves on more than the primary
    metric.
    """

    ids: tuple[str, ...]
    bits: np.ndarray
    pixels: np.ndarray
    scores: np.ndarray | None = None
    link: str = "mean"
    statistic: Callable[[np.ndarray], np.ndarray] | None = None
    extra: dict[str, tuple[np.ndarray, str]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        n = len(self.ids)
        sizes = {len(self.bits), len(self.pixels)} | ({len(self.scores)} if self.scores is not None else set())
        sizes |= {len(v) for v, _ in self.extra.values()}
        if sizes != {n}:
            raise ValueError(f"input samples disagree in length: {n} ids, arrays of {sorted(sizes)}")
        for link in (self.link, *(link for _, link in self.extra.values())):
            if link not in LINKS:
                raise ValueError(f"unknown link {link!r}; known: {', '.join(LINKS)}")


@dataclass(frozen=True)
class OperatingPoint:
    """One point of a rate–accuracy curve.

    Attributes:
        dataset: dataset name.
        pipeline: ``"feature"`` (fcm: code the split features) or ``"remote"`` (code the image, run the whole model).
        codec: codec registry name.
        qp: the codec's quantizer.
        num_inputs: inputs measured.
        bits: every bit sent for the point's inputs: the whole fcm bitstream (header, side information, codec
            payload, CRC) for ``feature``; the whole coded image stream (self-contained HEVC/AVC/AV1/VP9 elementary
            stream: headers and picture) for ``remote``.
        pixels: original input pixels, summed over the inputs.
        metric_name: name of the primary metric (e.g. ``"top1_agreement"``, ``"mAP"``), in percent.
        metric: its value.
        metrics: every metric the evaluator reported (primary included).
        times: mean seconds per input of each stage (``front``, ``pack``, ``encode``, ``decode``, ``unpack``, ``back``).
        edge_macs: mean multiply–accumulates per input of what the edge computes before coding (the front half for
            ``feature``; 0 for ``remote``, which only encodes).
        edge_params: parameters of that computation (0 for ``remote``). Both are ``None`` where the records do not
            say (written before fcm measured them).
        samples: the per-input measurements (not written to reports; used for confidence intervals).
    """

    dataset: str
    pipeline: str
    codec: str
    qp: int
    num_inputs: int
    bits: int
    pixels: int
    metric_name: str
    metric: float
    metrics: dict[str, float] = field(default_factory=dict)
    times: dict[str, float] = field(default_factory=dict)
    edge_macs: float | None = 0.0
    edge_params: int | None = 0
    samples: InputSamples | None = field(default=None, compare=False, repr=False)

    @property
    def edge_seconds(self) -> float:
        """Mean edge time per input: the edge stages (:data:`EDGE_STAGES`) this point measured."""
        return float(sum(self.times.get(s, 0.0) for s in EDGE_STAGES))

    @property
    def bytes_per_input(self) -> float:
        return self.bits / 8.0 / self.num_inputs

    @property
    def bpp(self) -> float:
        """Bits per pixel of the original inputs: total bits / total pixels (the FCM CTTC convention)."""
        return self.bits / self.pixels

    @property
    def curve(self) -> str:
        """Name of the curve this point belongs to, ``pipeline/codec``."""
        return f"{self.pipeline}/{self.codec}"

    def to_dict(self) -> dict[str, Any]:
        d = {k: v for k, v in asdict(self).items() if k != "samples"}
        d["bpp"] = self.bpp
        d["edge_seconds"] = self.edge_seconds
        return d
