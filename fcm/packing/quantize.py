"""Min–max quantization of features to n-bit integers and back."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fcm.errors import ShapeError

SUPPORTED_BIT_DEPTHS = (8, 10, 12, 16)
#: Largest magnitude of a range bound. With ``|lo|, |hi| <= 2**126`` the float32 span ``hi - lo`` is at most 2**127,
#: below float32's maximum (~2**128), so the span and every dequantized value are finite; beyond it they may overflow.
MAX_RANGE_MAGNITUDE = 2.0**126


@dataclass(frozen=True)
class QuantRange:
    """The float range ``[lo, hi]`` mapped onto ``[0, 2**bit_depth − 1]``; stored as float32 in bitstreams."""

    lo: float
    hi: float

    def __post_init__(self) -> None:
        if not (np.isfinite(self.lo) and np.isfinite(self.hi)) or self.hi < self.lo:
            raise ShapeError(f"invalid quantization range [{self.lo}, {self.hi}]")
        if max(abs(self.lo), abs(self.hi)) > MAX_RANGE_MAGNITUDE:
            raise ShapeError(
                f"quantization range [{self.lo}, {self.hi}] exceeds ±2**126, beyond which float32 "
                "dequantization would overflow"
            )

    @classmethod
    def of(cls, x: np.ndarray) -> QuantRange:
        if x.size == 0:
            raise ShapeError("cannot take the range of an empty tensor")
        lo, hi = np.float32(x.min()), np.float32(x.max())
        if not (np.isfinite(lo) and np.isfinite(hi)):
            raise ShapeError("features contain NaN or infinite values; refusing to quantize them")
        return cls(float(lo), float(hi))


def check_bit_depth(bit_depth: int) -> int:
    if bit_depth not in SUPPORTED_BIT_DEPTHS:
        raise ShapeError(f"bit depth must be one of {SUPPORTED_BIT_DEPTHS}, got {bit_depth}")
    return bit_depth


def quantize(x: np.ndarray, r: QuantRange, bit_depth: int) -> np.ndarray:
    """``q = round((x − lo) / (hi − lo) · (2ⁿ − 1))`` as ``uint16`` (a constant tensor maps to 0)."""
    peak = (1 << check_bit_depth(bit_depth)) - 1
    span = np.float32(r.hi) - np.float32(r.lo)
    if span <= 0:
        return np.zeros(x.shape, dtype=np.uint16)
    q = np.rint((x.astype(np.float32) - np.float32(r.lo)) * (np.float32(peak) / span))
    return np.clip(q, 0, peak).astype(np.uint16)


def dequantize(q: np.ndarray, r: QuantRange, bit_depth: int) -> np.ndarray:
    """``x = q · ((hi − lo) / (2ⁿ − 1)) + lo``, every step in ``float32``.

    Raises :class:`ShapeError` rather than return a non-finite value (possible only for a range that bypassed
    :class:`QuantRange`'s checks).
    """
    peak = (1 << check_bit_depth(bit_depth)) - 1
    lo = np.float32(r.lo)
    with np.errstate(over="ignore", invalid="ignore"):
        span = np.float32(r.hi) - lo
        x = q.astype(np.float32) * (span / np.float32(peak)) + lo
    if not np.isfinite(x).all():
        raise ShapeError(f"dequantizing with range [{r.lo}, {r.hi}] gives non-finite values")
    return x
