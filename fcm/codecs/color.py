"""Exact RGB ↔ Y'CbCr conversion for the remote-inference anchor, in numpy.

What the anchor sends is a picture format (:class:`PictureFormat`): chroma sampling (4:2:0 or 4:4:4), bit depth (8 or
10) and sample range (full or limited). The conversion, stated once so that a reader can redo it by hand:

* **Matrix**: ITU-R BT.601 (``Kr = 0.299``, ``Kb = 0.114``; H.273 ``matrix_coefficients = 6``), on the RGB samples
  as they are (no linearisation): with ``R, G, B = rgb / 255``,
  ``Y' = Kr·R + (1 − Kr − Kb)·G + Kb·B``, ``Pb = (B − Y') / (2·(1 − Kb))``, ``Pr = (R − Y') / (2·(1 − Kr))``.
* **Range** (H.273, ``N`` = bit depth): *full* — ``Y = (2^N − 1)·Y'``, ``C = (2^N − 1)·P + 2^(N−1)``;
  *limited* — ``Y = (219·Y' + 16)·2^(N−8)``, ``C = (224·P + 128)·2^(N−8)``.
* **Chroma 4:2:0**: ``Pb``/``Pr`` are computed at full resolution and sited as H.273 / HEVC
  ``chroma_sample_loc_type`` 0 says (MPEG-2 "left" siting: horizontally on the even luma columns, vertically half
  way between two luma rows) — the siting a decoder assumes when a stream does not signal one, and the one FFmpeg's
  scaler uses: rows are averaged in pairs and columns filtered with ``[1, 2, 1] / 4`` around each even column.
  Decoding interpolates linearly back: vertically with weights 3/4 and 1/4 from the two nearest chroma rows,
  horizontally by copying onto even columns and averaging neighbours onto odd ones (edge samples repeated). Both keep
  the mean of every channel.
* **Rounding**: to nearest (half away from zero is never reached: values are clipped to ``[0, 2^N − 1]`` after
  ``floor(x + 0.5)``); the inverse rounds RGB to nearest and clips to ``[0, 255]``. All arithmetic in float64.

Odd picture sizes are padded by edge replication to even ones before 4:2:0 coding and cropped after decoding.

Why not FFmpeg's scaler: ``VideoFrame.reformat(format="yuv420p")`` in the ``av`` wheel shifts the channel means of
the bundled photos by about −1.0 to −1.4 code values with no codec at all (its fixed-point paths truncate), which
biases an anchor that should differ from the source only by what the codec does.

The default format follows the remote-inference anchor of MPEG FCM as implemented in CompressAI-Vision (the FCM
common test conditions' evaluation software): its VTM config codes remote-inference pictures as ``chroma_format
"420"`` at ``input_bitdepth: 10`` (``cfgs/codec/vtm.yaml``), converting with ``ffmpeg -pix_fmt yuv420p10le
-dst_range 1`` (full range, the scaler's default BT.601 matrix; ``codecs/encdec_utils/png_yuv.py``). fcm does the
same conversion exactly, with the same chroma siting and short linear filters in place of the scaler's.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fcm.errors import ConfigError, ShapeError

__all__ = ["DEFAULT_FORMAT", "PICTURE_FORMATS", "PictureFormat", "planes_to_rgb", "rgb_to_planes"]

_KR, _KB = 0.299, 0.114
_KG = 1.0 - _KR - _KB

#: picture format names accepted in configs, as ``yuv<chroma>p[10]`` like FFmpeg's pixel formats
PICTURE_FORMATS: tuple[str, ...] = ("yuv420p", "yuv420p10", "yuv444p", "yuv444p10")
RANGES: tuple[str, ...] = ("full", "limited")


@dataclass(frozen=True)
class PictureFormat:
    """How the remote anchor codes an RGB picture: chroma sampling, bit depth and sample range (matrix: BT.601)."""

    chroma: str = "420"
    bit_depth: int = 10
    full_range: bool = True

    def __post_init__(self) -> None:
        if self.chroma not in ("420", "444") or self.bit_depth not in (8, 10):
            raise ConfigError(f"unsupported picture format: chroma {self.chroma!r}, {self.bit_depth} bits")

    @classmethod
    def parse(cls, name: str, sample_range: str = "full") -> PictureFormat:
        """``"yuv420p10"``, ``"yuv444p"``… and ``"full"`` / ``"limited"`` → a format; a clear error otherwise."""
        if name not in PICTURE_FORMATS:
            raise ConfigError(f"unknown picture format {name!r}; known: {', '.join(PICTURE_FORMATS)}")
        if sample_range not in RANGES:
            raise ConfigError(f"unknown sample range {sample_range!r}; known: {', '.join(RANGES)}")
        return cls(chroma=name[3:6], bit_depth=10 if name.endswith("10") else 8, full_range=sample_range == "full")

    @property
    def name(self) -> str:
        return f"yuv{self.chroma}p" + ("10" if self.bit_depth == 10 else "")

    @property
    def range_name(self) -> str:
        return "full" if self.full_range else "limited"

    @property
    def pix_fmt(self) -> str:
        """FFmpeg pixel format of the planes handed to the encoder."""
        return self.name + ("le" if self.bit_depth == 10 else "")

    @property
    def subsampled(self) -> bool:
        return self.chroma == "420"

    def __str__(self) -> str:
        return f"{self.name} ({self.range_name} range, BT.601)"

    # H.273 quantisation of normalised luma Y' in [0, 1] and chroma P in [-0.5, 0.5]
    def _luma_scale(self) -> tuple[float, float]:
        if self.full_range:
            return float((1 << self.bit_depth) - 1), 0.0
        step = float(1 << (self.bit_depth - 8))
        return 219.0 * step, 16.0 * step

    def _chroma_scale(self) -> tuple[float, float]:
        mid = float(1 << (self.bit_depth - 1))
        if self.full_range:
            return float((1 << self.bit_depth) - 1), mid
        return 224.0 * float(1 << (self.bit_depth - 8)), mid


#: the default remote format: 10-bit 4:2:0, full range, as in the MPEG FCM remote-inference anchor (see above)
DEFAULT_FORMAT = PictureFormat("420", 10, True)


def _quantise(x: np.ndarray, scale: float, offset: float, bit_depth: int) -> np.ndarray:
    return np.clip(np.floor(x * scale + offset + 0.5), 0, (1 << bit_depth) - 1).astype(np.uint16)


def _downsample_420(c: np.ndarray) -> np.ndarray:
    """Chroma sited as ``chroma_sample_loc_type`` 0: rows averaged in pairs, columns ``[1, 2, 1] / 4`` at even ones."""
    rows = 0.5 * (c[0::2] + c[1::2])
    left = np.concatenate([rows[:, :1], rows[:, 1:-1:2]], axis=1)  # column 2j − 1 (column 0 repeated at the edge)
    return 0.25 * left + 0.5 * rows[:, 0::2] + 0.25 * rows[:, 1::2]


def _upsample_rows(c: np.ndarray) -> np.ndarray:
    """Vertically interstitial chroma back to every row: row 2k gets ¾·c[k] + ¼·c[k−1], row 2k+1 ¾·c[k] + ¼·c[k+1]."""
    n = c.shape[0]
    prev = c[np.r_[0, np.arange(n - 1)]]
    nxt = c[np.r_[np.arange(1, n), n - 1]]
    return np.stack([0.75 * c + 0.25 * prev, 0.75 * c + 0.25 * nxt], axis=1).reshape(2 * n, *c.shape[1:])


def _upsample_columns(c: np.ndarray) -> np.ndarray:
    """Chroma co-sited with even columns back to every column: even columns copy, odd ones average their neighbours."""
    nxt = np.concatenate([c[:, 1:], c[:, -1:]], axis=1)
    return np.stack([c, 0.5 * (c + nxt)], axis=2).reshape(c.shape[0], 2 * c.shape[1])


def rgb_to_planes(rgb: np.ndarray, fmt: PictureFormat) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``H×W×3`` ``uint8`` RGB → ``(Y, Cb, Cr)`` ``uint16`` planes; 4:2:0 needs even ``H`` and ``W``."""
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise ShapeError(f"expected an H×W×3 uint8 RGB image, got {rgb.shape} {rgb.dtype}")
    h, w = rgb.shape[:2]
    if fmt.subsampled and (h % 2 or w % 2):
        raise ShapeError(f"4:2:0 conversion needs even sizes, got {w}x{h}")
    x = rgb.astype(np.float64) / 255.0
    r, g, b = x[..., 0], x[..., 1], x[..., 2]
    y = _KR * r + _KG * g + _KB * b
    pb = (b - y) / (2.0 * (1.0 - _KB))
    pr = (r - y) / (2.0 * (1.0 - _KR))
    if fmt.subsampled:
        pb, pr = _downsample_420(pb), _downsample_420(pr)
    ys, yo = fmt._luma_scale()
    cs, co = fmt._chroma_scale()
    n = fmt.bit_depth
    return _quantise(y, ys, yo, n), _quantise(pb, cs, co, n), _quantise(pr, cs, co, n)


def planes_to_rgb(y: np.ndarray, cb: np.ndarray, cr: np.ndarray, fmt: PictureFormat) -> np.ndarray:
    """Inverse of :func:`rgb_to_planes`: ``uint8`` RGB of ``y``'s size."""
    h, w = y.shape
    expected = (h // 2, w // 2) if fmt.subsampled else (h, w)
    if cb.shape != expected or cr.shape != expected:
        raise ShapeError(f"chroma planes {cb.shape}/{cr.shape} do not match luma {y.shape} for {fmt.name}")
    ys, yo = fmt._luma_scale()
    cs, co = fmt._chroma_scale()
    yn = (y.astype(np.float64) - yo) / ys
    pb = (cb.astype(np.float64) - co) / cs
    pr = (cr.astype(np.float64) - co) / cs
    if fmt.subsampled:
        pb = _upsample_columns(_upsample_rows(pb))
        pr = _upsample_columns(_upsample_rows(pr))
    r = yn + 2.0 * (1.0 - _KR) * pr
    b = yn + 2.0 * (1.0 - _KB) * pb
    g = (yn - _KR * r - _KB * b) / _KG
    rgb = np.stack([r, g, b], axis=-1) * 255.0
    return np.clip(np.floor(rgb + 0.5), 0, 255).astype(np.uint8)
