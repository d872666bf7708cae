"""The codec-agnostic route: per-block sample scaling instead of per-block QP offsets.

Scaling a block's samples by ``s`` before coding and by ``1/s`` after decoding divides its coding error by ``s`` at the
same quantizer step: the encoder then spends bits as if that block's QP were ``QP − 6·log2(s)``. So a QP offset
``ΔQP_b`` becomes the scale ``s_b = 2^(−k_b/6)`` with ``k_b = ΔQP_b``, applied around a centre value ``c`` of the
frame (the rounded frame mean): ``x' = c + s_b·(x − c)``. Any codec can carry it, but the decoder needs the map: it
travels in the fcm bitstream (:class:`BlockScales`, format version 3).

10-bit headroom: a block whose samples would leave ``[0, 2^B − 1]`` after scaling up is scaled up only as far as it
fits (its ``k_b`` raised to the smallest step that keeps every sample in range). Scaling down costs precision (the
scaled samples are rounded), which the scale-up of the decoder magnifies: at ``k = 12`` a rounding error of ±½ becomes
±2 samples, far below the coding error at the QPs where weights matter.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from fcm.errors import ShapeError

#: largest |k| a stream may signal (2^(±32/6): a factor of about 40)
MAX_STEP = 32


@dataclass(frozen=True)
class BlockScales:
    """Per-block sample scaling of a stream: block side, each frame's centre value and the ``N×⌈H/B⌉×⌈W/B⌉`` steps
    ``k`` (scale ``2^(−k/6)``), kept as ``int8`` bytes so headers compare by value."""

    block: int
    centres: tuple[int, ...]
    shape: tuple[int, int, int]
    steps: bytes

    def __post_init__(self) -> None:
        n, bh, bw = self.shape
        if not 1 <= self.block <= 256:
            raise ShapeError(f"scale block size {self.block} out of range [1, 256]")
        if len(self.centres) != n or len(self.steps) != n * bh * bw:
            raise ShapeError(
                f"block scales hold {len(self.centres)} centres and {len(self.steps)} steps for {self.shape}"
            )
        steps = np.frombuffer(self.steps, dtype=np.int8)
        if steps.size and (int(steps.min()) < -MAX_STEP or int(steps.max()) > MAX_STEP):  # no copies of the map
            raise ShapeError(f"block scale steps must lie in [-{MAX_STEP}, {MAX_STEP}]")

    @classmethod
    def of(cls, block: int, centres: tuple[int, ...], steps: np.ndarray) -> BlockScales:
        arr = np.ascontiguousarray(steps, dtype=np.int8)
        if arr.ndim != 3:
            raise ShapeError(f"block scale steps must be N×rows×cols, got shape {arr.shape}")
        n, bh, bw = arr.shape
        return cls(int(block), tuple(int(c) for c in centres), (n, bh, bw), arr.tobytes())

    def step_map(self) -> np.ndarray:
        return np.frombuffer(self.steps, dtype=np.int8).reshape(self.shape)

    def check_frames(self, shape: tuple[int, ...], bit_depth: int) -> None:
        n, h, w = shape
        expected = (n, -(-h // self.block), -(-w // self.block))
        if self.shape != expected:
            raise ShapeError(f"block scales cover {self.shape} blocks, frames of {tuple(shape)} need {expected}")
        if any(not 0 <= c < (1 << bit_depth) for c in self.centres):
            raise ShapeError(f"block scale centres must be {bit_depth}-bit sample values")


def _expand(per_block: np.ndarray, block: int, h: int, w: int) -> np.ndarray:
    return np.repeat(np.repeat(per_block, block, axis=0), block, axis=1)[:h, :w]


def scale_frames(frames: np.ndarray, offsets: np.ndarray, bit_depth: int, block: int) -> tuple[np.ndarray, BlockScales]:
    """Scale each block by ``2^(−k/6)`` with ``k`` the block's QP offset, raised where headroom requires it."""
    frames = np.asarray(frames)
    n, h, w = frames.shape
    peak = (1 << bit_depth) - 1
    offsets = np.asarray(offsets)
    bh, bw = -(-h // block), -(-w // block)
    if offsets.shape != (n, bh, bw):
        raise ShapeError(f"offsets must have shape {(n, bh, bw)}, got {offsets.shape}")
    out = np.empty_like(frames)
    steps = np.empty((n, bh, bw), dtype=np.int32)
    centres = []
    for i in range(n):
        x = frames[i].astype(np.float64)
        c = int(np.clip(np.rint(x.mean()), 0, peak))
        padded = np.full((bh * block, bw * block), float(c))
        padded[:h, :w] = x
        blocks = padded.reshape(bh, block, bw, block)
        above = blocks.max(axis=(1, 3)) - c
        below = c - blocks.min(axis=(1, 3))
        with np.errstate(divide="ignore", invalid="ignore"):
            room = np.minimum(np.where(above > 0, (peak - c) / above, np.inf), np.where(below > 0, c / below, np.inf))
        # smallest k whose scale fits: 2^(-k/6) <= room  <=>  k >= -6 log2(room)
        with np.errstate(divide="ignore"):
            k_min = np.where(np.isfinite(room), np.ceil(-6.0 * np.log2(np.maximum(room, 1e-300)) - 1e-9), -MAX_STEP)
        k = np.clip(np.maximum(offsets[i], k_min), -MAX_STEP, MAX_STEP).astype(np.int32)
        scale = _expand(2.0 ** (-k / 6.0), block, h, w)
        out[i] = np.clip(np.rint(c + scale * (x - c)), 0, peak).astype(frames.dtype)
        steps[i] = k
        centres.append(c)
    return out, BlockScales.of(block, tuple(centres), steps)


def unscale_frames(frames: np.ndarray, scales: BlockScales, bit_depth: int) -> np.ndarray:
    """Undo :func:`scale_frames` on decoded frames (rounded, clipped to the bit depth)."""
    frames = np.asarray(frames)
    scales.check_frames(frames.shape, bit_depth)
    n, h, w = frames.shape
    peak = (1 << bit_depth) - 1
    out = np.empty_like(frames)
    steps = scales.step_map().astype(np.float64)
    for i in range(n):
        gain = _expand(2.0 ** (steps[i] / 6.0), scales.block, h, w)
        c = scales.centres[i]
        out[i] = np.clip(np.rint(c + gain * (frames[i].astype(np.float64) - c)), 0, peak).astype(frames.dtype)
    return out


def equivalent_qp_shift(scales: BlockScales) -> float:
    """Mean QP offset the scaling amounts to (for reports)."""
    steps = scales.step_map()
    return float(steps.mean()) if steps.size else math.nan
