"""Marshalling between numpy planes and PyAV frames: monochrome feature frames (padded to what an encoder accepts)
and colour pictures for the remote anchor, with their pixel formats checked."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import numpy as np

from fcm.codecs.color import PICTURE_FORMATS, PictureFormat, planes_to_rgb, rgb_to_planes
from fcm.codecs.ffmpeg.limits import MAX_SIDE, NOMINAL_FPS
from fcm.codecs.ffmpeg.logs import import_av
from fcm.errors import CodecError, ShapeError

#: FFmpeg's AVColorRange and AVColorSpace values used to describe remote-anchor pictures
_AVCOL_RANGE_MPEG, _AVCOL_RANGE_JPEG = 1, 2
_AVCOL_SPC_SMPTE170M = 6  # BT.601 (525); same matrix as BT470BG
#: FFmpeg's deprecated full-range ("J") pixel formats, which its decoders still return for 8-bit full-range streams
_FULL_RANGE_ALIASES = {"yuvj420p": "yuv420p", "yuvj444p": "yuv444p"}
_BT601_SPACES = (2, 5, 6)  # unspecified (2) and the two BT.601 codes (BT470BG, SMPTE170M): the BT.601 matrix


def check_frames(frames: np.ndarray, bit_depth: int) -> np.ndarray:
    """Validate the encoder input contract: integer array (N, H, W), N, H, W >= 1, values in [0, 2**bit_depth)."""
    if not isinstance(frames, np.ndarray):
        raise ShapeError(f"frames must be a numpy array, got {type(frames).__name__}")
    if frames.ndim != 3 or 0 in frames.shape:
        raise ShapeError(f"frames must have shape (N, H, W) with N, H, W >= 1, got {frames.shape}")
    if not np.issubdtype(frames.dtype, np.integer):
        raise CodecError(f"frames must hold integer samples (uint16), got dtype {frames.dtype}")
    h, w = frames.shape[1:]
    if h > MAX_SIDE or w > MAX_SIDE:
        raise ShapeError(f"frames of {w}x{h} exceed the largest supported side {MAX_SIDE}")
    lo, hi = int(frames.min()), int(frames.max())
    if lo < 0 or hi >= 1 << bit_depth:
        raise CodecError(
            f"frame samples must lie in [0, {(1 << bit_depth) - 1}] for {bit_depth}-bit coding, got [{lo}, {hi}]"
        )
    return frames.astype(np.uint16, copy=False)


def pad_edge(frames: np.ndarray, height: int, width: int) -> np.ndarray:
    h, w = frames.shape[1:]
    if (h, w) == (height, width):
        return frames
    return np.pad(frames, ((0, 0), (0, height - h), (0, width - w)), mode="edge")


def _plane_view(plane: Any, dtype: np.dtype, rows: int, cols: int) -> np.ndarray:
    """A numpy view of the first ``rows`` x ``cols`` samples of a PyAV plane (rows are ``line_size`` bytes apart)."""
    itemsize = np.dtype(dtype).itemsize
    buf = np.frombuffer(plane, dtype=dtype)
    return buf.reshape(plane.height, plane.line_size // itemsize)[:rows, :cols]


@dataclass(frozen=True)
class PlaneLayout:
    """How a monochrome frame is handed to an encoder."""

    pix_fmt: str
    #: write flat mid-grey 4:2:0 chroma planes (for encoders without a monochrome input format)
    neutral_chroma: bool

    def sample_dtype(self, bit_depth: int) -> np.dtype:
        return np.dtype(np.uint8) if bit_depth <= 8 else np.dtype("<u2")


def make_frame(av: Any, luma: np.ndarray, layout: PlaneLayout, bit_depth: int, pts: int) -> Any:
    h, w = luma.shape
    frame = av.VideoFrame(w, h, layout.pix_fmt)
    dtype = layout.sample_dtype(bit_depth)
    _plane_view(frame.planes[0], dtype, h, w)[...] = luma
    if layout.neutral_chroma:
        neutral = 1 << (bit_depth - 1)
        for plane in frame.planes[1:]:
            np.frombuffer(plane, dtype=dtype)[...] = neutral
    frame.pts = pts
    frame.time_base = Fraction(1, NOMINAL_FPS)
    return frame


def luma_of(frame: Any, bit_depth: int, height: int, width: int) -> np.ndarray:
    dtype = np.dtype(np.uint8) if bit_depth <= 8 else np.dtype("<u2")
    return _plane_view(frame.planes[0], dtype, height, width).astype(np.uint16)


def encoder_pixel_formats(encoder: str) -> frozenset[str]:
    """Pixel formats FFmpeg's ``encoder`` accepts."""
    av = import_av()
    return frozenset(f.name for f in (av.codec.Codec(encoder, "w").video_formats or ()))


def picture_format_of(frame: Any, expected: PictureFormat | None, who: str) -> PictureFormat:
    """The :class:`PictureFormat` of a decoded remote-anchor picture, from what its stream signalled.

    A stream that signals no range (FFV1 has no field for it) takes ``expected``'s and is refused without it: fcm
    never guesses. One that signals a format other than ``expected`` is refused.
    """
    pix_fmt = _FULL_RANGE_ALIASES.get(frame.format.name, frame.format.name)
    by_pix_fmt = {PictureFormat.parse(name).pix_fmt: name for name in PICTURE_FORMATS}
    name = by_pix_fmt.get(pix_fmt)
    if name is None:
        raise CodecError(f"{who}: image decoded as {frame.format.name}, which is not a remote-anchor picture format")
    if int(frame.colorspace) not in _BT601_SPACES:
        raise CodecError(f"{who}: image stream signals colour matrix {int(frame.colorspace)}, not BT.601")
    signalled = int(frame.color_range)
    if pix_fmt != frame.format.name or signalled == _AVCOL_RANGE_JPEG:
        sample_range = "full"
    elif signalled == _AVCOL_RANGE_MPEG:
        sample_range = "limited"
    elif expected is not None:
        sample_range = expected.range_name
    else:
        raise CodecError(f"{who}: the image stream does not signal its sample range; give the format it was coded in")
    fmt = PictureFormat.parse(name, sample_range)
    if expected is not None and fmt != expected:
        raise CodecError(f"{who}: image stream holds {fmt}, expected {expected}")
    return fmt


def picture_frame(av: Any, image: np.ndarray, coded_w: int, coded_h: int, fmt: PictureFormat, pts: int) -> Any:
    """An RGB ``uint8`` image as an encoder frame in ``fmt`` (edge-padded to the coded size, BT.601, range tagged)."""
    h, w = image.shape[:2]
    padded = np.pad(image, ((0, coded_h - h), (0, coded_w - w), (0, 0)), mode="edge")
    dtype = np.dtype(np.uint8) if fmt.bit_depth == 8 else np.dtype("<u2")
    frame = av.VideoFrame(coded_w, coded_h, fmt.pix_fmt)
    for plane, values in zip(frame.planes, rgb_to_planes(padded, fmt), strict=True):
        _plane_view(plane, dtype, *values.shape)[...] = values
    frame.color_range = _AVCOL_RANGE_JPEG if fmt.full_range else _AVCOL_RANGE_MPEG
    frame.colorspace = _AVCOL_SPC_SMPTE170M
    frame.pts = pts
    frame.time_base = Fraction(1, NOMINAL_FPS)
    return frame


def describer(fmt: PictureFormat) -> Callable[[Any], None]:
    """Sets what a picture stream's own headers (VUI / colour config) signal: BT.601 and the sample range."""

    def describe(ctx: Any) -> None:
        ctx.color_range = _AVCOL_RANGE_JPEG if fmt.full_range else _AVCOL_RANGE_MPEG
        ctx.colorspace = _AVCOL_SPC_SMPTE170M

    return describe


def rgb_of(frame: Any, fmt: PictureFormat, coded_w: int, coded_h: int, width: int, height: int) -> np.ndarray:
    """A decoded picture in ``fmt`` back to ``height`` x ``width`` RGB ``uint8``."""
    dtype = np.dtype(np.uint8) if fmt.bit_depth == 8 else np.dtype("<u2")
    ch, cw = (coded_h // 2, coded_w // 2) if fmt.subsampled else (coded_h, coded_w)
    y = _plane_view(frame.planes[0], dtype, coded_h, coded_w)
    cb, cr = (_plane_view(frame.planes[i], dtype, ch, cw) for i in (1, 2))
    rgb = planes_to_rgb(y, cb, cr, fmt)
    return np.ascontiguousarray(rgb[:height, :width])
