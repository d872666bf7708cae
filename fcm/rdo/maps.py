"""From raw sample weights to what an encoder takes: pre-conditioning, block pooling and per-block QP offsets.

* :func:`precondition`: per frame, clip outliers at a percentile, optionally smooth (box filter), normalise to mean 1
  (so the encoder's λ keeps its calibration), then shrink towards uniform: ``w ← (w + τ)/(1 + τ)`` (τ = 0 raw,
  τ → ∞ plain SSE).
* :func:`block_means`: the mean weight of each ``B×B`` block (edge blocks average the samples they hold).
* :func:`qp_offsets`: minimising ``w̄_b·SSE_b + λR_b`` is minimising ``SSE_b + (λ/w̄_b)R_b``; with
  ``λ ∝ 2^((QP−12)/3)`` that is ``ΔQP_b = −3·log2(w̄_b)``, rounded and clipped to ``±max_offset``. A block no sample of
  which matters (w̄ = 0: padding, unused tile slots) gets ``+max_offset``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from fcm.errors import ConfigError, ShapeError


@dataclass(frozen=True)
class Preconditioning:
    """How raw weights become encoder weights (see the module docstring).

    Attributes:
        clip_percentile: per-frame percentile (of the non-zero weights) above which weights are clipped; 100: none.
        smooth: radius in samples of a box filter applied after clipping; 0: none.
        tau: shrink towards uniform weights after normalising.
    """

    clip_percentile: float = 99.5
    smooth: int = 0
    tau: float = 0.0

    def __post_init__(self) -> None:
        def number(value: object) -> bool:
            return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)

        if not number(self.clip_percentile) or not 50.0 <= self.clip_percentile <= 100.0:
            raise ConfigError(f"clip_percentile must be a number in [50, 100], got {self.clip_percentile!r}")
        if not isinstance(self.smooth, int) or isinstance(self.smooth, bool) or self.smooth < 0:
            raise ConfigError(f"smooth must be a radius in samples >= 0, got {self.smooth!r}")
        if not number(self.tau) or self.tau < 0:
            raise ConfigError(f"tau must be a finite number >= 0, got {self.tau!r}")


def precondition(weights: np.ndarray, settings: Preconditioning = Preconditioning()) -> np.ndarray:
    """``N×H×W`` raw weights → clipped, smoothed, mean-1, shrunk weights (float64). An all-zero frame becomes 1."""
    w = np.asarray(weights, dtype=np.float64)
    if w.ndim != 3:
        raise ShapeError(f"weights must be N×H×W, got shape {w.shape}")
    if not np.isfinite(w).all() or (w < 0).any():
        raise ShapeError("weights must be finite and non-negative")
    out = np.empty_like(w)
    for i, frame in enumerate(w):
        positive = frame[frame > 0]
        if positive.size == 0:
            out[i] = 1.0
            continue
        f = (
            np.minimum(frame, np.percentile(positive, settings.clip_percentile))
            if settings.clip_percentile < 100
            else frame
        )
        if settings.smooth:
            f = _box_filter(f, settings.smooth)
        f = f / f.mean()
        out[i] = (f + settings.tau) / (1.0 + settings.tau)
    return out


def normalise(weights: np.ndarray) -> np.ndarray:
    """Each frame scaled to mean 1 (all-zero frames become 1): what a fixed map averages over inputs."""
    return precondition(weights, Preconditioning(clip_percentile=100.0))


def _box_filter(frame: np.ndarray, radius: int) -> np.ndarray:
    """Mean over the ``(2r+1)²`` window, the window clipped at the frame's edges (summed-area table)."""
    h, w = frame.shape
    table = np.zeros((h + 1, w + 1))
    table[1:, 1:] = frame.cumsum(0).cumsum(1)
    r0 = np.clip(np.arange(h) - radius, 0, h)
    r1 = np.clip(np.arange(h) + radius + 1, 0, h)
    c0 = np.clip(np.arange(w) - radius, 0, w)
    c1 = np.clip(np.arange(w) + radius + 1, 0, w)
    sums = table[r1][:, c1] - table[r0][:, c1] - table[r1][:, c0] + table[r0][:, c0]
    return sums / np.outer(r1 - r0, c1 - c0)


def block_means(weights: np.ndarray, block: int) -> np.ndarray:
    """``N×H×W`` → ``N×⌈H/B⌉×⌈W/B⌉`` mean weight of each block."""
    w = np.asarray(weights, dtype=np.float64)
    if w.ndim != 3:
        raise ShapeError(f"weights must be N×H×W, got shape {w.shape}")
    if block < 1:
        raise ConfigError(f"block size must be >= 1, got {block}")
    n, h, width = w.shape
    bh, bw = -(-h // block), -(-width // block)
    padded = np.zeros((n, bh * block, bw * block))
    padded[:, :h, :width] = w
    counts = np.zeros((bh * block, bw * block))
    counts[:h, :width] = 1
    sums = padded.reshape(n, bh, block, bw, block).sum(axis=(2, 4))
    return sums / counts.reshape(bh, block, bw, block).sum(axis=(1, 3))


def qp_offsets(block_weights: np.ndarray, max_offset: int = 6) -> np.ndarray:
    """``ΔQP_b = −3·log2(w̄_b)``, rounded, clipped to ``[−max_offset, max_offset]`` (int32; w̄ = 0 → ``+max_offset``)."""
    if not isinstance(max_offset, int) or isinstance(max_offset, bool) or not 0 <= max_offset <= 51:
        raise ConfigError(f"max_offset must be an integer in [0, 51], got {max_offset!r}")
    w = np.asarray(block_weights, dtype=np.float64)
    with np.errstate(divide="ignore"):
        delta = -3.0 * np.log2(w)
    delta = np.where(w > 0, delta, float(max_offset))
    return np.clip(np.rint(delta), -max_offset, max_offset).astype(np.int32)
