"""Operating points: what a sweep measures at one (pipeline, codec, QP), aggregated over the dataset."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


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

    @property
    def bpp(self) -> float:
        """Bits per pixel of the original inputs: total bits / total pixels (the FCM CTTC convention)."""
        return self.bits / self.pixels

    @property
    def curve(self) -> str:
        """Name of the curve this point belongs to, ``pipeline/codec``."""
        return f"{self.pipeline}/{self.codec}"

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["bpp"] = self.bpp
        return d
