"""Feature tensors ⇄ quantized monochrome frames (one frame per input)."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch

from fcm.errors import ShapeError
from fcm.packing.layout import DEFAULT_ALIGN, Layout
from fcm.packing.quantize import QuantRange, check_bit_depth, dequantize, quantize

RangeMode = Literal["frame", "tensor"]
RANGE_MODES: tuple[RangeMode, ...] = ("frame", "tensor")


@dataclass(frozen=True)
class PackedFrames:
    """Frames ready for a codec plus everything needed to unpack them (all of it goes into the bitstream).

    ``ranges[i]`` holds frame ``i``'s quantization ranges: one for ``range_mode="frame"``, one per tensor (layout
    order) for ``"tensor"``.
    """

    frames: np.ndarray
    layout: Layout
    bit_depth: int
    range_mode: RangeMode
    ranges: tuple[tuple[QuantRange, ...], ...]

    def __post_init__(self) -> None:
        n = len(self.ranges)
        per_frame = 1 if self.range_mode == "frame" else len(self.layout.placements)
        if self.range_mode not in RANGE_MODES:
            raise ShapeError(f"range mode must be one of {RANGE_MODES}, got {self.range_mode!r}")
        if any(len(r) != per_frame for r in self.ranges):
            raise ShapeError(f"each frame needs {per_frame} quantization range(s) in {self.range_mode!r} mode")
        expected = (n, self.layout.frame_height, self.layout.frame_width)
        if self.frames.shape != expected:
            raise ShapeError(f"frames have shape {self.frames.shape}, expected {expected}")


def neutral_fill(code_means: Sequence[float]) -> int:
    """The sample value of a frame's unused tile slots and alignment margin, given each tensor's mean code.

    It is the mean level (the mean of the per-tensor means), which costs the codec least. Shared by the numpy and
    torch packers so that their frames agree bit for bit.
    """
    return round(float(np.mean(code_means)))


class Packer:
    """Tiles named ``N×C×H×W`` tensors into ``N`` frames and min–max quantizes them to ``bit_depth`` bits."""

    def __init__(self, bit_depth: int = 10, range_mode: RangeMode = "frame", align: int = DEFAULT_ALIGN) -> None:
        self.bit_depth = check_bit_depth(bit_depth)
        if range_mode not in RANGE_MODES:
            raise ShapeError(f"range mode must be one of {RANGE_MODES}, got {range_mode!r}")
        self.range_mode: RangeMode = range_mode
        self.align = align

    def layout_for(self, tensors: Mapping[str, torch.Tensor]) -> Layout:
        shapes = []
        batch = None
        for name, t in tensors.items():
            if t.ndim != 4:
                raise ShapeError(f"tensor {name!r} must be N×C×H×W, got shape {tuple(t.shape)}")
            if batch is not None and t.shape[0] != batch:
                raise ShapeError(f"tensors disagree on the batch size: {name!r} has {t.shape[0]}, others {batch}")
            batch = t.shape[0]
            shapes.append((name, int(t.shape[1]), int(t.shape[2]), int(t.shape[3])))
        return Layout.for_shapes(shapes, self.align)

    def pack(self, tensors: Mapping[str, torch.Tensor]) -> PackedFrames:
        layout = self.layout_for(tensors)
        arrays = {name: t.detach().to("cpu", torch.float32).numpy() for name, t in tensors.items()}
        n = next(iter(arrays.values())).shape[0]
        frames = np.empty((n, layout.frame_height, layout.frame_width), dtype=np.uint16)
        all_ranges = []
        for i in range(n):
            per_input = {name: a[i] for name, a in arrays.items()}
            ranges: tuple[QuantRange, ...]
            if self.range_mode == "frame":
                lo = min(QuantRange.of(a).lo for a in per_input.values())
                hi = max(QuantRange.of(a).hi for a in per_input.values())
                ranges = (QuantRange(lo, hi),)
                tensor_ranges = [ranges[0]] * len(per_input)
            else:
                ranges = tuple(QuantRange.of(per_input[p.name]) for p in layout.placements)
                tensor_ranges = list(ranges)
            quantized = {
                p.name: quantize(per_input[p.name], r, self.bit_depth)
                for p, r in zip(layout.placements, tensor_ranges, strict=True)
            }
            fill = neutral_fill([float(q.mean()) for q in quantized.values()])
            frames[i] = layout.tile(quantized, fill=fill)
            all_ranges.append(ranges)
        return PackedFrames(frames, layout, self.bit_depth, self.range_mode, tuple(all_ranges))


def unpack(packed: PackedFrames) -> OrderedDict[str, torch.Tensor]:
    """Dequantize and untile ``packed.frames`` back into ``N×C×H×W`` float32 tensors (layout order)."""
    per_name: dict[str, list[np.ndarray]] = {p.name: [] for p in packed.layout.placements}
    for frame, ranges in zip(packed.frames, packed.ranges, strict=True):
        tiles = packed.layout.untile(frame)
        tensor_ranges = ranges * len(per_name) if packed.range_mode == "frame" else ranges
        for p, r in zip(packed.layout.placements, tensor_ranges, strict=True):
            per_name[p.name].append(dequantize(tiles[p.name], r, packed.bit_depth))
    return OrderedDict((name, torch.from_numpy(np.stack(arrs))) for name, arrs in per_name.items())
