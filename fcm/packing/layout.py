"""Where each channel of each tensor sits in a monochrome frame (the MPEG FCM channel tiling).

Each ``C×H×W`` tensor becomes a grid of ``H×W`` tiles. For the widest tensor the grid is ``a×(C/a)`` with ``a`` the
largest divisor of ``C`` not above ``√C``, oriented so the mosaic is closest to square. The frame is that mosaic's
width (rounded up to ``align``); every tensor is re-flowed to it, ``floor(frame_width / W)`` tiles per row, and the
tensors are stacked top to bottom in spec order. Unused tile slots and the alignment margin are filled with a
neutral value.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from fcm.errors import ShapeError

#: frame dimensions are rounded up to a multiple of this (the smallest coding block of the codecs we drive)
DEFAULT_ALIGN = 8
#: the largest frame fcm will make or accept from a bitstream (samples); a guard against absurd allocations
MAX_FRAME_SAMPLES = 1 << 26
MAX_DIM = 1 << 15


@dataclass(frozen=True)
class TensorPlacement:
    """One tensor in the frame: its shape, its tile grid, and the frame row where its grid starts."""

    name: str
    channels: int
    height: int
    width: int
    cols: int
    top: int

    @property
    def rows(self) -> int:
        return -(-self.channels // self.cols)

    @property
    def bottom(self) -> int:
        return self.top + self.rows * self.height


@dataclass(frozen=True)
class Layout:
    """The tiling of a set of tensors into one frame. Validated on construction, so a layout read from a bitstream
    can never index outside its frame."""

    placements: tuple[TensorPlacement, ...]
    frame_height: int
    frame_width: int

    def __post_init__(self) -> None:
        if not self.placements:
            raise ShapeError("a layout needs at least one tensor")
        if not (0 < self.frame_height <= MAX_DIM and 0 < self.frame_width <= MAX_DIM):
            raise ShapeError(f"frame size {self.frame_width}×{self.frame_height} out of range")
        if self.frame_height * self.frame_width > MAX_FRAME_SAMPLES:
            raise ShapeError(f"frame of {self.frame_width}×{self.frame_height} samples is too large")
        names = [p.name for p in self.placements]
        if len(set(names)) != len(names):
            raise ShapeError(f"duplicate tensor names in layout: {names}")
        row = 0
        for p in self.placements:
            if min(p.channels, p.height, p.width, p.cols) <= 0:
                raise ShapeError(f"tensor {p.name!r}: non-positive dimension in layout")
            if p.top < row:
                raise ShapeError(f"tensor {p.name!r} overlaps the tensor above it")
            if p.cols * p.width > self.frame_width or p.bottom > self.frame_height:
                raise ShapeError(f"tensor {p.name!r} does not fit in the {self.frame_width}×{self.frame_height} frame")
            row = p.bottom

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(p.name for p in self.placements)

    @classmethod
    def for_shapes(cls, shapes: Sequence[tuple[str, int, int, int]], align: int = DEFAULT_ALIGN) -> Layout:
        """Derive the layout for tensors given as ``(name, C, H, W)`` (see the module docstring)."""
        if not shapes:
            raise ShapeError("no tensors to lay out")
        widths = []
        for name, c, h, w in shapes:
            if min(c, h, w) <= 0:
                raise ShapeError(f"tensor {name!r} has an empty shape {(c, h, w)}")
            widths.append(_near_square_cols(c, h, w) * w)
        frame_width = _round_up(max(widths), align)
        placements = []
        top = 0
        for name, c, h, w in shapes:
            cols = min(c, frame_width // w)
            placements.append(TensorPlacement(name, c, h, w, cols, top))
            top = placements[-1].bottom
        return cls(tuple(placements), _round_up(top, align), frame_width)

    def tile(self, tensors: Mapping[str, np.ndarray], fill: float = 0.0) -> np.ndarray:
        """Place ``C×H×W`` arrays (one per placement, by name) into a new ``frame_height×frame_width`` frame."""
        first = next(iter(tensors.values()))
        frame = np.full((self.frame_height, self.frame_width), fill, dtype=first.dtype)
        for p in self.placements:
            t = tensors.get(p.name)
            if t is None:
                raise ShapeError(f"tensor {p.name!r} missing; got {list(tensors)}")
            if tuple(t.shape) != (p.channels, p.height, p.width):
                raise ShapeError(
                    f"tensor {p.name!r} has shape {tuple(t.shape)}, layout expects {(p.channels, p.height, p.width)}"
                )
            full_rows, rest = divmod(p.channels, p.cols)
            if full_rows:
                block = t[: full_rows * p.cols].reshape(full_rows, p.cols, p.height, p.width)
                frame[p.top : p.top + full_rows * p.height, : p.cols * p.width] = block.transpose(0, 2, 1, 3).reshape(
                    full_rows * p.height, p.cols * p.width
                )
            if rest:
                y = p.top + full_rows * p.height
                frame[y : y + p.height, : rest * p.width] = (
                    t[full_rows * p.cols :].transpose(1, 0, 2).reshape(p.height, rest * p.width)
                )
        return frame

    def untile(self, frame: np.ndarray) -> dict[str, np.ndarray]:
        """The exact inverse of :meth:`tile`: ``{name: C×H×W array}`` read from a frame."""
        if frame.shape != (self.frame_height, self.frame_width):
            raise ShapeError(f"frame has shape {frame.shape}, layout expects {(self.frame_height, self.frame_width)}")
        out = {}
        for p in self.placements:
            full_rows, rest = divmod(p.channels, p.cols)
            parts = []
            if full_rows:
                block = frame[p.top : p.top + full_rows * p.height, : p.cols * p.width]
                parts.append(
                    block.reshape(full_rows, p.height, p.cols, p.width)
                    .transpose(0, 2, 1, 3)
                    .reshape(-1, p.height, p.width)
                )
            if rest:
                y = p.top + full_rows * p.height
                parts.append(
                    frame[y : y + p.height, : rest * p.width].reshape(p.height, rest, p.width).transpose(1, 0, 2)
                )
            out[p.name] = np.ascontiguousarray(np.concatenate(parts, axis=0))
        return out

    def region(self, name: str) -> tuple[slice, slice]:
        """Rows and columns of the frame spanned by tensor ``name``'s grid (including unused tile slots)."""
        p = next((p for p in self.placements if p.name == name), None)
        if p is None:
            raise ShapeError(f"no tensor {name!r} in layout; have {list(self.names)}")
        return slice(p.top, p.bottom), slice(0, p.cols * p.width)


def _round_up(n: int, align: int) -> int:
    return -(-n // align) * align


def _near_square_cols(c: int, h: int, w: int) -> int:
    """Columns of an ``a × C/a`` grid (a = largest divisor of C not above √C) whose mosaic is nearest square."""
    a = max(d for d in range(1, math.isqrt(c) + 1) if c % d == 0)
    b = c // a
    # rows=a, cols=b  or  rows=b, cols=a: pick the aspect ratio closest to 1
    return min((b, a), key=lambda cols: abs(math.log((cols * w) / ((c // cols) * h))))
