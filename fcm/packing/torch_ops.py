"""The packing stages on torch tensors, driven by the same :class:`~fcm.packing.layout.Layout`.

Two uses share one code path:

- **training**: :func:`to_sample_frames` maps features to codec sample values (``(x − lo) · peak / span``, not
  rounded) and tiles them into frames; :func:`from_sample_frames` untiles frames and maps samples back to features.
  Both are differentiable (indexing, reshapes, concatenation and affine maps), so a codec surrogate can sit between
  them and gradients reach the front half;
- **inference**: :func:`pack_torch` is rounding and clipping of those frames and :func:`unpack_torch` their exact
  inverse path. They give exactly the frames and tensors of :meth:`Packer.pack <fcm.packing.packer.Packer.pack>` and
  :func:`~fcm.packing.packer.unpack` (bit for bit, tested), so what is trained is what is coded.

The arithmetic repeats numpy's float32 operations in the same order (subtract, then multiply by the float32
``peak / span``; multiply by the float32 ``span / peak``, then add). Scale factors are divided tensor by tensor, never
by a Python number: torch computes ``number / tensor`` as ``reciprocal(tensor) · number``, which rounds differently.
Ranges are side information sent as float32 numbers, so :meth:`SampleRanges.of` takes them from detached features:
within a frame the map to samples is an affine function of the features.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import torch

from fcm.errors import ShapeError
from fcm.packing.layout import Layout, TensorPlacement
from fcm.packing.packer import PackedFrames, Packer, RangeMode, neutral_fill
from fcm.packing.quantize import QuantRange, check_bit_depth

__all__ = [
    "SampleRanges",
    "dequantize_torch",
    "from_sample_frames",
    "from_samples",
    "pack_torch",
    "quantize_torch",
    "tile",
    "to_sample_frames",
    "to_samples",
    "unpack_torch",
    "untile",
]


# ---------------------------------------------------------------- tiling


def tile(layout: Layout, tensors: Mapping[str, torch.Tensor], fill: float | torch.Tensor = 0.0) -> torch.Tensor:
    """Place ``N×C×H×W`` tensors (one per placement, by name) into ``N`` frames of ``frame_height×frame_width``.

    The torch twin of :meth:`Layout.tile`, batched; ``fill`` (a number, or one value per frame as an ``N`` tensor)
    goes into unused tile slots, gaps between tensors and the alignment margin.
    """
    batch = _batch_size(layout, tensors)
    first = tensors[layout.placements[0].name]
    fills = torch.as_tensor(fill, dtype=first.dtype, device=first.device).reshape(-1, 1, 1)
    width = layout.frame_width

    def padding(rows: int, cols: int) -> torch.Tensor:
        return fills.expand(batch, rows, cols)

    def full_width(band: torch.Tensor) -> torch.Tensor:
        used = band.shape[2]
        return band if used == width else torch.cat([band, padding(band.shape[1], width - used)], dim=2)

    bands = []
    row = 0
    for p in layout.placements:
        if p.top > row:
            bands.append(padding(p.top - row, width))
        t = tensors[p.name]
        full_rows, rest = divmod(p.channels, p.cols)
        if full_rows:
            grid = t[:, : full_rows * p.cols].reshape(batch, full_rows, p.cols, p.height, p.width)
            bands.append(full_width(grid.transpose(2, 3).reshape(batch, full_rows * p.height, p.cols * p.width)))
        if rest:
            last = t[:, full_rows * p.cols :].transpose(1, 2).reshape(batch, p.height, rest * p.width)
            bands.append(full_width(last))
        row = p.bottom
    if row < layout.frame_height:
        bands.append(padding(layout.frame_height - row, width))
    return torch.cat(bands, dim=1)


def untile(layout: Layout, frames: torch.Tensor) -> OrderedDict[str, torch.Tensor]:
    """The exact inverse of :func:`tile`: ``{name: N×C×H×W}`` (layout order) read from ``N`` frames."""
    if frames.ndim != 3 or tuple(frames.shape[1:]) != (layout.frame_height, layout.frame_width):
        raise ShapeError(
            f"frames have shape {tuple(frames.shape)}, layout expects N×{layout.frame_height}×{layout.frame_width}"
        )
    batch = frames.shape[0]
    out: OrderedDict[str, torch.Tensor] = OrderedDict()
    for p in layout.placements:
        full_rows, rest = divmod(p.channels, p.cols)
        parts = []
        if full_rows:
            block = frames[:, p.top : p.top + full_rows * p.height, : p.cols * p.width]
            grid = block.reshape(batch, full_rows, p.height, p.cols, p.width).transpose(2, 3)
            parts.append(grid.reshape(batch, full_rows * p.cols, p.height, p.width))
        if rest:
            y = p.top + full_rows * p.height
            last = frames[:, y : y + p.height, : rest * p.width].reshape(batch, p.height, rest, p.width)
            parts.append(last.transpose(1, 2))
        out[p.name] = parts[0].contiguous() if len(parts) == 1 else torch.cat(parts, dim=1)
    return out


def _batch_size(layout: Layout, tensors: Mapping[str, torch.Tensor]) -> int:
    batch = None
    for p in layout.placements:
        t = tensors.get(p.name)
        if t is None:
            raise ShapeError(f"tensor {p.name!r} missing; got {list(tensors)}")
        if t.ndim != 4 or tuple(t.shape[1:]) != (p.channels, p.height, p.width):
            raise ShapeError(
                f"tensor {p.name!r} has shape {tuple(t.shape)}, layout expects N×{p.channels}×{p.height}×{p.width}"
            )
        if batch is not None and t.shape[0] != batch:
            raise ShapeError(f"tensors disagree on the batch size: {p.name!r} has {t.shape[0]}, others {batch}")
        batch = int(t.shape[0])
    assert batch is not None  # a Layout has at least one placement
    return batch


# ---------------------------------------------------------------- range quantization


def _peak(bit_depth: int, like: torch.Tensor) -> torch.Tensor:
    return torch.full_like(like, float((1 << check_bit_depth(bit_depth)) - 1))


def _bounds(x: torch.Tensor, lo: float | torch.Tensor, hi: float | torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``lo`` and ``hi`` as float32 tensors on ``x``'s device (numbers round to float32 as numpy's ``float32`` does)."""
    return (
        torch.as_tensor(lo, dtype=torch.float32, device=x.device),
        torch.as_tensor(hi, dtype=torch.float32, device=x.device),
    )


def to_samples(x: torch.Tensor, lo: float | torch.Tensor, hi: float | torch.Tensor, bit_depth: int) -> torch.Tensor:
    """Features → codec sample values before rounding, ``(x − lo) · (peak / span)`` in float32 (0 for a zero span).

    ``lo`` and ``hi`` broadcast against ``x`` (e.g. ``N×1×1×1``). Differentiable: the surrogate goes after this.
    """
    lo_t, hi_t = _bounds(x, lo, hi)
    span = hi_t - lo_t
    positive = span > 0
    # a zero span (constant features) maps to 0 as numpy's quantize does, without a division by zero in the graph
    scale = torch.where(positive, _peak(bit_depth, span) / torch.where(positive, span, torch.ones_like(span)), 0.0)
    return (x.to(torch.float32) - lo_t) * scale


def from_samples(s: torch.Tensor, lo: float | torch.Tensor, hi: float | torch.Tensor, bit_depth: int) -> torch.Tensor:
    """Codec sample values → features, ``s · (span / peak) + lo`` in float32 (the inverse map of :func:`to_samples`)."""
    lo_t, hi_t = _bounds(s, lo, hi)
    span = hi_t - lo_t
    return s.to(torch.float32) * (span / _peak(bit_depth, span)) + lo_t


def quantize_torch(x: torch.Tensor, lo: float | torch.Tensor, hi: float | torch.Tensor, bit_depth: int) -> torch.Tensor:
    """:func:`~fcm.packing.quantize.quantize` in torch: ``clip(rint(to_samples(x)), 0, peak)``.

    Returns float32 integer codes (torch rounds halves to even, as ``np.rint`` does); ``.to(torch.int32)`` or
    ``.numpy().astype(np.uint16)`` gives integers.
    """
    peak = (1 << check_bit_depth(bit_depth)) - 1
    return torch.round(to_samples(x, lo, hi, bit_depth)).clamp(0, peak)


def dequantize_torch(
    q: torch.Tensor, lo: float | torch.Tensor, hi: float | torch.Tensor, bit_depth: int
) -> torch.Tensor:
    """:func:`~fcm.packing.quantize.dequantize` in torch; raises :class:`ShapeError` rather than return non-finite
    values."""
    x = from_samples(q, lo, hi, bit_depth)
    if not bool(torch.isfinite(x).all()):
        raise ShapeError("dequantizing with these ranges gives non-finite values")
    return x


@dataclass(frozen=True)
class SampleRanges:
    """Each frame's quantization bounds per tensor: float32 ``N×P`` tensors ``lo`` and ``hi`` (layout order).

    In ``"frame"`` range mode every column of a row holds the frame's one range.
    """

    lo: torch.Tensor
    hi: torch.Tensor

    def __post_init__(self) -> None:
        if self.lo.ndim != 2 or self.lo.shape != self.hi.shape:
            raise ShapeError(
                f"range bounds must be two N×P tensors, got {tuple(self.lo.shape)}, {tuple(self.hi.shape)}"
            )

    @classmethod
    def of(cls, layout: Layout, tensors: Mapping[str, torch.Tensor], range_mode: RangeMode) -> SampleRanges:
        """The min–max ranges :meth:`Packer.pack` would signal for ``tensors`` (taken from detached features)."""
        with torch.no_grad():
            return cls.live(layout, {k: t.detach() for k, t in tensors.items()}, range_mode)

    @classmethod
    def live(cls, layout: Layout, tensors: Mapping[str, torch.Tensor], range_mode: RangeMode) -> SampleRanges:
        """The same ranges as :meth:`of`, as functions of the features (gradients reach the extreme values).

        For training: the codec works in samples, so its error in feature units scales with the range ``hi − lo``;
        with detached ranges a wrapper would see a codec error that does not grow with its output's scale.
        """
        _batch_size(layout, tensors)
        x = [tensors[p.name].to(torch.float32).flatten(1) for p in layout.placements]
        lo = torch.stack([t.amin(dim=1) for t in x], dim=1)
        hi = torch.stack([t.amax(dim=1) for t in x], dim=1)
        if not bool(torch.isfinite(lo).all() and torch.isfinite(hi).all()):
            raise ShapeError("features contain NaN or infinite values; refusing to quantize them")
        if range_mode == "frame":
            lo = lo.amin(dim=1, keepdim=True).expand_as(lo)
            hi = hi.amax(dim=1, keepdim=True).expand_as(hi)
        return cls(lo, hi)

    @classmethod
    def from_packed(cls, packed: PackedFrames, device: torch.device | str | None = None) -> SampleRanges:
        """The ranges a bitstream signals, as tensors."""
        count = len(packed.layout.placements)
        rows = [r * count if packed.range_mode == "frame" else r for r in packed.ranges]
        lo = torch.tensor([[r.lo for r in row] for row in rows], dtype=torch.float32, device=device)
        hi = torch.tensor([[r.hi for r in row] for row in rows], dtype=torch.float32, device=device)
        return cls(lo, hi)

    def bounds(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        """``lo`` and ``hi`` of tensor ``index`` (layout order), shaped ``N×1×1×1`` to broadcast over ``N×C×H×W``."""
        return self.lo[:, index].reshape(-1, 1, 1, 1), self.hi[:, index].reshape(-1, 1, 1, 1)

    def quant_ranges(self, range_mode: RangeMode) -> tuple[tuple[QuantRange, ...], ...]:
        """The ranges as :class:`PackedFrames` holds them (one per frame, or one per tensor)."""
        lo, hi = self.lo.tolist(), self.hi.tolist()
        if range_mode == "frame":
            return tuple((QuantRange(lo_row[0], hi_row[0]),) for lo_row, hi_row in zip(lo, hi, strict=True))
        return tuple(
            tuple(QuantRange(a, b) for a, b in zip(lo_row, hi_row, strict=True))
            for lo_row, hi_row in zip(lo, hi, strict=True)
        )


# ---------------------------------------------------------------- whole frames


def to_sample_frames(
    layout: Layout, tensors: Mapping[str, torch.Tensor], ranges: SampleRanges, bit_depth: int
) -> torch.Tensor:
    """Features → ``N`` frames of codec sample values before rounding (differentiable in the features).

    Unused slots hold the fill :meth:`Packer.pack` uses, computed from the rounded samples, so
    ``clip(rint(frames), 0, peak)`` is exactly the packed frames.
    """
    samples = OrderedDict(
        (p.name, to_samples(tensors[p.name], *ranges.bounds(i), bit_depth)) for i, p in enumerate(layout.placements)
    )
    return tile(layout, samples, _fills(layout, samples, bit_depth))


def from_sample_frames(
    layout: Layout, frames: torch.Tensor, ranges: SampleRanges, bit_depth: int
) -> OrderedDict[str, torch.Tensor]:
    """``N`` frames of codec sample values → ``N×C×H×W`` float32 features (differentiable in the frames)."""
    tiles = untile(layout, frames)
    return OrderedDict(
        (p.name, from_samples(tiles[p.name], *ranges.bounds(i), bit_depth)) for i, p in enumerate(layout.placements)
    )


def _fills(layout: Layout, samples: Mapping[str, torch.Tensor], bit_depth: int) -> torch.Tensor:
    """Per frame, :func:`neutral_fill` of the mean code of each tensor.

    Sums of integer codes are exact in float64 whatever the summation order, and Python divides them by the count
    with one correct rounding, as numpy's mean does: the means, hence the fill, equal the numpy packer's.
    """
    peak = (1 << check_bit_depth(bit_depth)) - 1
    with torch.no_grad():
        sums = torch.stack(
            [
                samples[p.name].detach().round().clamp(0, peak).to(torch.float64).flatten(1).sum(1)
                for p in layout.placements
            ],
            dim=1,
        ).tolist()
    sizes = [_size(p) for p in layout.placements]
    fills = [neutral_fill([s / n for s, n in zip(row, sizes, strict=True)]) for row in sums]
    first = samples[layout.placements[0].name]
    return torch.tensor(fills, dtype=torch.float32, device=first.device)


def _size(p: TensorPlacement) -> int:
    return p.channels * p.height * p.width


def pack_torch(packer: Packer, tensors: Mapping[str, torch.Tensor]) -> PackedFrames:
    """:meth:`Packer.pack` computed with torch (on the tensors' device): the same frames and ranges, bit for bit."""
    layout = packer.layout_for(tensors)
    ranges = SampleRanges.of(layout, tensors, packer.range_mode)
    peak = (1 << packer.bit_depth) - 1
    with torch.no_grad():
        frames = to_sample_frames(layout, tensors, ranges, packer.bit_depth).round().clamp(0, peak)
    codes = frames.to(device="cpu", dtype=torch.int32).numpy().astype(np.uint16)
    return PackedFrames(codes, layout, packer.bit_depth, packer.range_mode, ranges.quant_ranges(packer.range_mode))


def unpack_torch(packed: PackedFrames, device: torch.device | str | None = None) -> OrderedDict[str, torch.Tensor]:
    """:func:`~fcm.packing.packer.unpack` computed with torch: the same ``N×C×H×W`` float32 tensors, bit for bit."""
    frames = torch.from_numpy(packed.frames.astype(np.float32)).to(device)
    features = from_sample_frames(packed.layout, frames, SampleRanges.from_packed(packed, device), packed.bit_depth)
    if not all(bool(torch.isfinite(t).all()) for t in features.values()):
        raise ShapeError("dequantizing with the signalled ranges gives non-finite values")
    return features
