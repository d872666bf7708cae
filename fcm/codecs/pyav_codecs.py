"""In-process inner codecs driving FFmpeg encoders through PyAV's ``av.CodecContext``.

No container, no temporary file, no subprocess: frames go into an encoder context and the packets it returns are kept
byte for byte in an :class:`~fcm.codecs.base.EncodedFrames`; decoding feeds those bytes to an FFmpeg decoder.

What each codec carries, as measured with the FFmpeg libraries inside the ``av==18.1.0`` wheel (libx265 4.2,
SVT-AV1 4.1; ``tests/test_codecs.py`` keeps the evidence as tests, e.g. the H.264 SPS's ``chroma_format_idc``):

============  ===========  ==============================  ===========================================  ==========
registry      encoder      encoder input pixel format      bitstream                                    bit depths
============  ===========  ==============================  ===========================================  ==========
``x265``      libx265      ``gray`` / ``gray10le``         HEVC 4:0:0 (decoded back as gray/gray10le)   8, 10
``x264``      libx264      ``gray`` / ``gray10le``         H.264 High / High 10, ``chroma_format_idc``  8, 10
                                                           0; FFmpeg's decoder returns it as 4:2:0 with
                                                           synthesized neutral chroma, which is dropped
``svtav1``    libsvtav1    ``yuv420p`` / ``yuv420p10le``   AV1 4:2:0, chroma planes a flat mid-grey     8, 10
                                                           (the encoder takes nothing else)
``vp9``       libvpx-vp9   ``yuv420p``                     VP9 profile 0, flat mid-grey chroma; this    8
                                                           libvpx build has no high-bit-depth formats
``ffv1``      ffv1         ``gray`` / ``gray10le``         FFV1 version 3, lossless, CRC per slice      8, 10
============  ===========  ==============================  ===========================================  ==========

Conventions shared by every codec here:

* ``CodecParams.qp`` is the standard's luma QP on the 8-bit scale for H.264/HEVC (0–51 at every bit depth, as with
  HM/VTM and x265). x264 takes high-bit-depth QPs on its own shifted scale, so ``X264`` passes
  ``qp + 6 * (bit_depth - 8)``; at a given ``qp`` x264 and x265 therefore use the same quantizer step.
* ``rate_control="cqp"``: one QP for every frame (I and P alike: x264/x265 ``ipratio=1``), adaptive quantization and
  mb-tree/cu-tree off. ``"crf"``: the encoder's constant-quality mode with its adaptive quantization on.
* ``gop="intra"``: every frame a key frame. ``"lowdelay"``: one key frame, then P frames only; no B frames, no
  reordering, so packets come in display order. Either way there is exactly one packet per frame.
* Deterministic: the same input gives the same bytes on any machine. Encoders whose output depends on their thread
  count run with a fixed one (x264, VP9, FFV1: one thread; x265: one frame thread and no lookahead slices; its WPP
  row threads do not change the output). SVT-AV1 runs with its own thread pool, whose output does not depend on it.
* Quiet: x265 runs with ``log-level=error``, SVT-AV1 with ``SVT_LOG=1`` (unless already set in the environment), and
  FFmpeg's own log messages are captured rather than printed.
* Frames smaller than an encoder accepts (x265: 16×16, SVT-AV1: 4×4) are padded by edge replication before encoding
  and cropped after decoding; :class:`EncodedFrames` always states the caller's size.

``decode`` raises :class:`fcm.errors.CodecError` for anything wrong with a payload: a PyAV/FFmpeg error, an error the
decoder logs while concealing damage (e.g. a failed FFV1 slice CRC), a frame flagged corrupt, a wrong number of
frames, or a wrong size or bit depth. Damage a decoder cannot notice (HEVC and VP9 have no checksums by default)
decodes to wrong pixels; the fcm container's own checksum is what catches that.
"""

from __future__ import annotations

import contextlib
import os
import re
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from fractions import Fraction
from typing import Any, ClassVar

import numpy as np

from fcm.codecs.base import Codec, CodecParams, EncodedFrames
from fcm.codecs.color import DEFAULT_FORMAT, PICTURE_FORMATS, PictureFormat, planes_to_rgb, rgb_to_planes
from fcm.codecs.roi import attach_regions, cached_block_regions
from fcm.errors import CodecError, ShapeError

# ``av`` is imported lazily (see _import_av) so that ``import fcm.codecs`` stays light; PyAV objects are typed Any.

__all__ = [
    "X264",
    "X265",
    "DecoderSession",
    "EncoderSession",
    "Ffv1",
    "PictureDecoderSession",
    "PictureEncoderSession",
    "PyAVCodec",
    "SvtAv1",
    "Vp9",
    "decode_bitstream",
    "frame_types",
]

#: Nominal frame rate handed to encoders; with constant QP it changes nothing but the stream's timing fields.
_FPS = 25
#: Largest frame side accepted in a payload to decode (guards against absurd declared sizes).
_MAX_SIDE = 1 << 15
#: A payload may hold at most this many times the raw frame bytes (plus :data:`_SLACK_BYTES`) before decode refuses
#: it: even lossless coding of noise stays far below, and it bounds what garbage can make the decoder chew on.
_MAX_EXPANSION = 4
_SLACK_BYTES = 1 << 20
#: FFmpeg decoder options: treat bitstream damage as an error instead of silently concealing it where the decoder can
#: tell (H.264 slice errors, FFV1 CRCs, AV1 OBU errors).
_ERR_DETECT = "crccheck+bitstream+buffer+explode"
_PICTURE_TYPES = {1: "I", 2: "P", 3: "B"}
#: FFmpeg's AVColorRange and AVColorSpace values used to describe remote-anchor pictures
_AVCOL_RANGE_MPEG, _AVCOL_RANGE_JPEG = 1, 2
_AVCOL_SPC_SMPTE170M = 6  # BT.601 (525); same matrix as BT470BG
#: FFmpeg's deprecated full-range ("J") pixel formats, which its decoders still return for 8-bit full-range streams
_FULL_RANGE_ALIASES = {"yuvj420p": "yuv420p", "yuvj444p": "yuv444p"}
_BT601_SPACES = (2, 5, 6)  # unspecified (2) and the two BT.601 codes (BT470BG, SMPTE170M): the BT.601 matrix
#: Warnings with which libx264/libx265/libsvtav1 report a ``*-params`` entry they ignored.
_REJECTED_PARAM = re.compile(r"unknown option|invalid value|error parsing option", re.IGNORECASE)


def _import_av() -> Any:
    try:
        import av
    except ImportError as exc:  # pragma: no cover - av is a hard dependency in practice
        raise CodecError(f"PyAV (the 'av' package) is needed for the in-process codecs: {exc}") from exc
    return av


# ----------------------------------------------------------------------------------------------------------------------
# FFmpeg log capture
# ----------------------------------------------------------------------------------------------------------------------


#: Captures in progress in this process; PyAV's repeated-message suppression is off while any is (see below).
_capture_depth = 0
_capture_lock = threading.Lock()
#: PyAV's skip-repeated setting and log level before the outermost capture began, restored when the last one ends.
_capture_skip_repeated = [True]
_capture_level: list[Any] = [None]


@contextmanager
def _thread_scheduling_kept() -> Iterator[None]:
    """Give the calling thread back its scheduling policy and priority if the codec library changed them.

    SVT-AV1 run as root switches the thread that opens an encoder to real-time scheduling (``SCHED_FIFO``, priority
    99), and every process started from it afterwards inherits that: a sweep's workers, a training subprocess, an
    external encoder. A real-time thread that spins (an OpenMP barrier) never yields to its peers on the same core,
    so such a process can run hundreds of times slower. The change is undone as soon as the call returns.
    """
    if not hasattr(os, "sched_getscheduler"):  # not POSIX
        yield
        return
    try:
        policy, priority = os.sched_getscheduler(0), os.sched_getparam(0).sched_priority
    except OSError:
        yield
        return
    try:
        yield
    finally:
        with contextlib.suppress(OSError):
            if (os.sched_getscheduler(0), os.sched_getparam(0).sched_priority) != (policy, priority):
                os.sched_setscheduler(0, policy, os.sched_param(priority))


@contextmanager
def _captured_ffmpeg_log(warnings: bool = False) -> Iterator[list[tuple[int, str, str]]]:
    """Collect FFmpeg's log messages (WARNING or worse) emitted by this thread while the block runs; callers that
    judge damage keep the ERROR ones (:func:`_errors`). ``warnings`` states that the caller reads warnings too.

    PyAV discards FFmpeg's log by default; decoders report some damage (FFV1 slice CRC mismatches, a damaged H.264
    SPS, unknown AV1 OBUs) and encoder wrappers report rejected ``*-params`` entries only there, so we install PyAV's
    callback for the duration and restore the previous level afterwards. Messages are captured, not printed.

    PyAV drops a message identical to the previous one it saw, even one seen in an earlier, unrelated decode, so a
    damaged stream whose only error is one line was rejected the first time and accepted the second. Suppression is
    therefore off while any capture runs: what is captured depends on the bytes decoded, not on process history.
    """
    global _capture_depth
    av = _import_av()
    with _capture_lock:
        if _capture_depth == 0:
            # the level is process-wide: set once for all concurrent captures (threads of a server) and restored
            # when the last one ends, so one thread's capture never turns another's off
            _capture_skip_repeated[0] = av.logging.get_skip_repeated()
            _capture_level[0] = av.logging.get_level()
            av.logging.set_skip_repeated(False)
            if _capture_level[0] is None or _capture_level[0] < av.logging.WARNING:
                av.logging.set_level(av.logging.WARNING)
        _capture_depth += 1
    try:
        with av.logging.Capture(local=True) as logs:
            yield logs
    finally:
        with _capture_lock:
            _capture_depth -= 1
            if _capture_depth == 0:
                av.logging.set_skip_repeated(_capture_skip_repeated[0])
                if av.logging.get_level() != _capture_level[0]:
                    av.logging.set_level(_capture_level[0])


def _errors(logs: Sequence[tuple[int, str, str]]) -> list[str]:
    av = _import_av()
    return [
        f"{name}: {message.strip()}" if name else message.strip()
        for level, name, message in logs
        if level <= av.logging.ERROR
    ]


def _with_log(message: str, logs: Sequence[tuple[int, str, str]]) -> str:
    errors = _errors(logs)
    return f"{message} (FFmpeg: {'; '.join(errors[-3:])})" if errors else message


# ----------------------------------------------------------------------------------------------------------------------
# Frames in and out
# ----------------------------------------------------------------------------------------------------------------------


def _check_frames(frames: np.ndarray, bit_depth: int) -> np.ndarray:
    """Validate the encoder input contract: integer array (N, H, W), N, H, W >= 1, values in [0, 2**bit_depth)."""
    if not isinstance(frames, np.ndarray):
        raise ShapeError(f"frames must be a numpy array, got {type(frames).__name__}")
    if frames.ndim != 3 or 0 in frames.shape:
        raise ShapeError(f"frames must have shape (N, H, W) with N, H, W >= 1, got {frames.shape}")
    if not np.issubdtype(frames.dtype, np.integer):
        raise CodecError(f"frames must hold integer samples (uint16), got dtype {frames.dtype}")
    h, w = frames.shape[1:]
    if h > _MAX_SIDE or w > _MAX_SIDE:
        raise ShapeError(f"frames of {w}x{h} exceed the largest supported side {_MAX_SIDE}")
    lo, hi = int(frames.min()), int(frames.max())
    if lo < 0 or hi >= 1 << bit_depth:
        raise CodecError(
            f"frame samples must lie in [0, {(1 << bit_depth) - 1}] for {bit_depth}-bit coding, got [{lo}, {hi}]"
        )
    return frames.astype(np.uint16, copy=False)


def _pad_edge(frames: np.ndarray, height: int, width: int) -> np.ndarray:
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
class _Layout:
    """How a monochrome frame is handed to an encoder."""

    pix_fmt: str
    #: write flat mid-grey 4:2:0 chroma planes (for encoders without a monochrome input format)
    neutral_chroma: bool

    def sample_dtype(self, bit_depth: int) -> np.dtype:
        return np.dtype(np.uint8) if bit_depth <= 8 else np.dtype("<u2")


def _make_frame(av: Any, luma: np.ndarray, layout: _Layout, bit_depth: int, pts: int) -> Any:
    h, w = luma.shape
    frame = av.VideoFrame(w, h, layout.pix_fmt)
    dtype = layout.sample_dtype(bit_depth)
    _plane_view(frame.planes[0], dtype, h, w)[...] = luma
    if layout.neutral_chroma:
        neutral = 1 << (bit_depth - 1)
        for plane in frame.planes[1:]:
            np.frombuffer(plane, dtype=dtype)[...] = neutral
    frame.pts = pts
    frame.time_base = Fraction(1, _FPS)
    return frame


def _luma_of(frame: Any, bit_depth: int, height: int, width: int) -> np.ndarray:
    dtype = np.dtype(np.uint8) if bit_depth <= 8 else np.dtype("<u2")
    return _plane_view(frame.planes[0], dtype, height, width).astype(np.uint16)


def _encoder_pixel_formats(encoder: str) -> frozenset[str]:
    """Pixel formats FFmpeg's ``encoder`` accepts."""
    av = _import_av()
    return frozenset(f.name for f in (av.codec.Codec(encoder, "w").video_formats or ()))


def _picture_format_of(frame: Any, expected: PictureFormat | None, who: str) -> PictureFormat:
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


def _picture_frame(av: Any, image: np.ndarray, coded_w: int, coded_h: int, fmt: PictureFormat, pts: int) -> Any:
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
    frame.time_base = Fraction(1, _FPS)
    return frame


def _describer(fmt: PictureFormat) -> Callable[[Any], None]:
    """Sets what a picture stream's own headers (VUI / colour config) signal: BT.601 and the sample range."""

    def describe(ctx: Any) -> None:
        ctx.color_range = _AVCOL_RANGE_JPEG if fmt.full_range else _AVCOL_RANGE_MPEG
        ctx.colorspace = _AVCOL_SPC_SMPTE170M

    return describe


def _rgb_of(frame: Any, fmt: PictureFormat, coded_w: int, coded_h: int, width: int, height: int) -> np.ndarray:
    """A decoded picture in ``fmt`` back to ``height`` x ``width`` RGB ``uint8``."""
    dtype = np.dtype(np.uint8) if fmt.bit_depth == 8 else np.dtype("<u2")
    ch, cw = (coded_h // 2, coded_w // 2) if fmt.subsampled else (coded_h, coded_w)
    y = _plane_view(frame.planes[0], dtype, coded_h, coded_w)
    cb, cr = (_plane_view(frame.planes[i], dtype, ch, cw) for i in (1, 2))
    rgb = planes_to_rgb(y, cb, cr, fmt)
    return np.ascontiguousarray(rgb[:height, :width])


# ----------------------------------------------------------------------------------------------------------------------
# Decoding (shared with fcm.codecs.external for in-process decoding of external encoders' bitstreams)
# ----------------------------------------------------------------------------------------------------------------------


def _check_payload_bounds(
    packets: Sequence[bytes], extradata: bytes, width: int, height: int, bit_depth: int, num_frames: int, who: str
) -> None:
    if not (1 <= width <= _MAX_SIDE and 1 <= height <= _MAX_SIDE):
        raise CodecError(f"{who}: declared frame size {width}x{height} is out of range")
    if num_frames < 1:
        raise CodecError(f"{who}: declared frame count {num_frames} must be >= 1")
    if not packets or any(not isinstance(p, bytes | bytearray) or len(p) == 0 for p in packets):
        raise CodecError(f"{who}: payload has a missing or empty packet")
    raw = num_frames * width * height * (1 if bit_depth <= 8 else 2)
    total = len(extradata) + sum(len(p) for p in packets)
    if total > _MAX_EXPANSION * raw + _SLACK_BYTES:
        raise CodecError(
            f"{who}: payload of {total} bytes is implausibly large for {num_frames} frame(s) of {width}x{height}"
        )


def _open_decoder(av: Any, decoder: str, width: int, height: int, extradata: bytes) -> Any:
    ctx = av.CodecContext.create(decoder, "r")
    # FFV1 (and some others) refuse to open without dimensions; the stream's own headers still rule.
    ctx.width, ctx.height = width, height
    # One thread: deterministic log capture in this thread, and libdav1d was seen to hang on close with frame
    # threads after a decode error.
    ctx.thread_count = 1
    if extradata:
        ctx.extradata = extradata
    aligned = ((width + 63) // 64 * 64) * ((height + 63) // 64 * 64)
    # max_pixels stops a forged header from making the decoder allocate huge frames.
    ctx.options = {"err_detect": _ERR_DETECT, "max_pixels": str(aligned)}
    return ctx


def _decode_av_frames(
    decoder: str, packets: Sequence[bytes], extradata: bytes, width: int, height: int, parse: bool, who: str
) -> list[Any]:
    """Run ``packets`` (or, with ``parse``, one Annex-B/OBU byte stream split by FFmpeg's parser) through ``decoder``.

    Returns the decoded PyAV frames; raises CodecError on any failure, including errors the decoder only logs.
    """
    av = _import_av()
    frames: list[Any] = []
    with _captured_ffmpeg_log() as logs:
        try:
            ctx = _open_decoder(av, decoder, width, height, extradata)
            if parse:
                units = [pkt for data in packets for pkt in ctx.parse(bytes(data))] + list(ctx.parse(None))
            else:
                units = [av.Packet(bytes(p)) for p in packets]
            for unit in units:
                frames.extend(ctx.decode(unit))
            frames.extend(ctx.decode(None))
        except CodecError:
            raise
        except Exception as exc:  # any failure on untrusted bytes must surface as CodecError
            raise CodecError(_with_log(f"{who}: cannot decode payload: {type(exc).__name__}: {exc}", logs)) from exc
        errors = _errors(logs)
    if errors:
        raise CodecError(f"{who}: decoder reported damaged data: {'; '.join(errors[-3:])}")
    if any(f.is_corrupt for f in frames):
        raise CodecError(f"{who}: decoder flagged a decoded frame as corrupt")
    return frames


def _frames_to_array(
    frames: Sequence[Any], width: int, height: int, bit_depth: int, num_frames: int, coded: tuple[int, int], who: str
) -> np.ndarray:
    if len(frames) != num_frames:
        raise CodecError(f"{who}: payload decoded to {len(frames)} frame(s), expected {num_frames}")
    out = np.empty((num_frames, height, width), dtype=np.uint16)
    for i, frame in enumerate(frames):
        out[i] = _checked_luma(frame, i, width, height, bit_depth, coded, who)
    return out


def _checked_luma(
    frame: Any, index: int, width: int, height: int, bit_depth: int, coded: tuple[int, int], who: str
) -> np.ndarray:
    """A decoded frame's luma cropped to ``height`` x ``width``, after checking its coded size and bit depth."""
    if (frame.width, frame.height) != coded:
        raise CodecError(
            f"{who}: frame {index} decoded as {frame.width}x{frame.height}, expected {coded[0]}x{coded[1]}"
        )
    bits = frame.format.components[0].bits
    if bits != bit_depth:
        raise CodecError(
            f"{who}: frame {index} decoded with {bits}-bit luma ({frame.format.name}), expected {bit_depth}-bit"
        )
    return _luma_of(frame, bit_depth, height, width)


def decode_bitstream(
    decoder: str, data: bytes, width: int, height: int, bit_depth: int, num_frames: int, who: str = "decoder"
) -> np.ndarray:
    """Decode one elementary byte stream (e.g. an Annex-B ``.hevc`` file written by an external encoder) in process.

    FFmpeg's parser for ``decoder`` splits the stream into access units. Returns ``uint16`` luma of shape
    ``(num_frames, height, width)``; raises :class:`CodecError` on any failure or mismatch.
    """
    _check_payload_bounds([data], b"", width, height, bit_depth, num_frames, who)
    frames = _decode_av_frames(decoder, [data], b"", width, height, parse=True, who=who)
    return _frames_to_array(frames, width, height, bit_depth, num_frames, (width, height), who)


def frame_types(codec: PyAVCodec, encoded: EncodedFrames) -> tuple[str, ...]:
    """Picture types (``"I"``, ``"P"``, ``"B"``) of the decoded frames of ``encoded``, in display order.

    A diagnostic for GOP structure; AV1 and VP9 report key frames as ``"I"`` and inter frames as ``"P"``.
    """
    frames = codec._decode_frames(encoded)
    return tuple(_PICTURE_TYPES.get(int(f.pict_type), "?") for f in frames)


# ----------------------------------------------------------------------------------------------------------------------
# The codecs
# ----------------------------------------------------------------------------------------------------------------------


class PyAVCodec(Codec):
    """Base of the in-process codecs: everything but the encoder's option set is shared.

    Subclasses define the class attributes below and :meth:`_layout` / :meth:`_encoder_options`.
    """

    #: FFmpeg encoder and decoder names
    encoder: ClassVar[str] = ""
    decoder: ClassVar[str] = ""
    #: preset used when ``CodecParams.preset`` is None
    default_preset: ClassVar[str | None] = None
    #: whether ``rate_control="crf"`` is available
    supports_crf: ClassVar[bool] = True
    #: smallest width/height the encoder accepts; smaller frames are edge-padded up to it
    min_size: ClassVar[int] = 1
    #: option keys whose values are ``key=value:key=value`` lists, merged rather than replaced by user options
    param_list_keys: ClassVar[tuple[str, ...]] = ()

    # -- hooks --------------------------------------------------------------------------------------------------------

    def _layout(self, bit_depth: int) -> _Layout:  # pragma: no cover - abstract in spirit
        raise NotImplementedError

    def _encoder_options(self, bit_depth: int, params: CodecParams) -> dict[str, str]:  # pragma: no cover
        raise NotImplementedError

    def _gop_size(self, params: CodecParams) -> int:
        """AVCodecContext.gop_size: 1 for all-intra; otherwise large enough that only the first frame is a key."""
        return 1 if params.gop == "intra" else 1 << 30

    def _prepare_environment(self) -> None:
        """Process-wide settings an encoder library reads at start (only SVT-AV1 needs one)."""

    # -- helpers ------------------------------------------------------------------------------------------------------

    def coded_size(self, width: int, height: int) -> tuple[int, int]:
        """Size of the frames actually handed to the encoder (and returned by the decoder) for a ``width`` x
        ``height`` input."""
        return max(width, self.min_size), max(height, self.min_size)

    def _preset(self, params: CodecParams) -> str | None:
        return params.preset if params.preset is not None else self.default_preset

    def _merged_options(self, base: dict[str, str], extra: Sequence[tuple[str, str]]) -> dict[str, str]:
        """User options override ours; for ``param_list_keys`` their entries are appended (later entries win)."""
        opts = dict(base)
        for key, value in extra:
            if key in self.param_list_keys and opts.get(key):
                opts[key] = f"{opts[key]}:{value}"
            else:
                opts[key] = str(value)
        return opts

    def _check_rate_control(self, params: CodecParams) -> None:
        if params.rate_control == "crf" and not self.supports_crf:
            raise CodecError(f"codec {self.name!r} does not support rate_control='crf'")

    def _roi_plan(
        self, offsets: np.ndarray | None, shape: tuple[int, int, int], bit_depth: int, params: CodecParams
    ) -> tuple[list[np.ndarray], int] | None:
        """The ROI regions of each frame and the block size the map's shape selects (one of ``qp_block_sizes``)."""
        if offsets is None:
            return None
        if not self.supports_block_qp_offsets:
            raise CodecError(f"per-block QP offsets are not supported yet by codec {self.name!r}")
        if params.rate_control != "crf":
            raise CodecError(
                f"codec {self.name!r} applies per-block QP offsets only with rate_control='crf' "
                "(adaptive quantization is off in 'cqp')"
            )
        n, h, w = shape
        offsets = np.asarray(offsets)
        grids = {b: (n, -(-h // b), -(-w // b)) for b in self.qp_block_sizes}
        matching = [b for b, grid in grids.items() if grid == offsets.shape]
        if not matching:
            expected = " or ".join(f"{grid} (blocks of {b}x{b})" for b, grid in grids.items())
            raise ShapeError(f"block_qp_offsets must have shape {expected}, got {offsets.shape}")
        b = matching[0]
        if not np.issubdtype(offsets.dtype, np.integer):
            raise CodecError(f"block_qp_offsets must be integers, got dtype {offsets.dtype}")
        qp_range = 51 + 6 * (bit_depth - 8)
        if offsets.size and int(np.abs(offsets).max()) > qp_range:
            raise CodecError(f"block_qp_offsets must lie in [-{qp_range}, {qp_range}] at {bit_depth} bits")
        return [cached_block_regions(frame_offsets, b, qp_range) for frame_offsets in offsets], b

    def _block_size_options(self, block: int) -> tuple[tuple[str, str], ...]:
        """Encoder options that make the encoder's quantizer groups ``block`` samples wide (default: none)."""
        return ()

    def _intra_period_options(self, period: int) -> tuple[tuple[str, str], ...]:
        """Encoder options for a key frame every ``period`` frames in low delay (appended to the user's options;
        the context's ``gop_size`` is set to ``period`` as well)."""
        return ()

    # -- the Codec interface ------------------------------------------------------------------------------------------

    def encode(
        self,
        frames: np.ndarray,
        bit_depth: int,
        params: CodecParams,
        block_qp_offsets: np.ndarray | None = None,
    ) -> EncodedFrames:
        """Encode ``frames`` (see :meth:`Codec.encode`); one packet per frame, bytes exactly as the encoder made them.

        Raises :class:`ShapeError` for a malformed frame array and :class:`CodecError` for unsupported settings or an
        encoder failure.
        """
        self.check_params(bit_depth, params)
        frames = _check_frames(frames, bit_depth)
        self._check_rate_control(params)
        plan = self._roi_plan(block_qp_offsets, frames.shape, bit_depth, params)
        rois = None
        if plan is not None:
            rois, block = plan
            params = replace(params, options=self._block_size_options(block) + params.options)
        n, h, w = frames.shape
        coded_w, coded_h = self.coded_size(w, h)
        padded = _pad_edge(frames, coded_h, coded_w)
        layout = self._layout(bit_depth)

        def make_frames(av: Any) -> Iterator[Any]:
            for i in range(n):
                frame = _make_frame(av, padded[i], layout, bit_depth, pts=i)
                yield frame if rois is None else attach_regions(frame, rois[i])

        extradata, packets = self._run_encoder(make_frames, coded_w, coded_h, layout.pix_fmt, bit_depth, params, n)
        return EncodedFrames(
            codec=self.name,
            width=w,
            height=h,
            bit_depth=bit_depth,
            num_frames=n,
            extradata=extradata,
            packets=tuple(packets),
        )

    def _run_encoder(
        self,
        make_frames: Callable[[Any], Iterator[Any]],
        coded_w: int,
        coded_h: int,
        pix_fmt: str,
        bit_depth: int,
        params: CodecParams,
        n: int,
        configure: Callable[[Any], None] | None = None,
    ) -> tuple[bytes, list[bytes]]:
        """Open the encoder with this codec's options, feed it ``make_frames(av)`` and return (extradata, packets).

        ``configure(ctx)``, when given, sets further context fields (e.g. the colour description) before opening.

        Unknown options, parameters the encoder logs as rejected, failures and a packet count other than ``n`` all
        raise :class:`CodecError`.
        """
        encoder = _AvEncoder(self, coded_w, coded_h, pix_fmt, bit_depth, params, self._gop_size(params), configure)
        packets: list[bytes] = []
        for frame in encoder.guarded(lambda: make_frames(encoder.av)):
            packets.extend(encoder.encode(frame))
        packets.extend(encoder.encode(None))
        if len(packets) != n:
            raise CodecError(f"{self.name}: encoder produced {len(packets)} packets for {n} frames")
        return encoder.extradata, packets

    # -- streaming ----------------------------------------------------------------------------------------------------

    supports_streaming = True

    def open_encoder(
        self,
        width: int,
        height: int,
        bit_depth: int,
        params: CodecParams,
        intra_period: int = 0,
        qp_block: int | None = None,
    ) -> EncoderSession:
        """A streaming encoder for ``width`` x ``height`` frames (see :class:`EncoderSession`)."""
        return EncoderSession(self, width, height, bit_depth, params, intra_period, qp_block)

    def open_decoder(self, width: int, height: int, bit_depth: int, extradata: bytes = b"") -> DecoderSession:
        """A streaming decoder for what :meth:`open_encoder` made (see :class:`DecoderSession`)."""
        return DecoderSession(self, width, height, bit_depth, extradata)

    def open_picture_encoder(
        self,
        width: int,
        height: int,
        params: CodecParams,
        fmt: PictureFormat = DEFAULT_FORMAT,
        intra_period: int = 0,
    ) -> PictureEncoderSession:
        """A streaming encoder of RGB pictures in ``fmt`` (a video coded as video: the remote anchor)."""
        return PictureEncoderSession(self, width, height, params, fmt, intra_period)

    def open_picture_decoder(
        self, width: int, height: int, fmt: PictureFormat, extradata: bytes = b""
    ) -> PictureDecoderSession:
        """A streaming decoder for what :meth:`open_picture_encoder` made: RGB pictures."""
        return PictureDecoderSession(self, width, height, fmt, extradata)

    # -- coding the image itself (the remote-inference anchor) ---------------------------------------------------------

    codes_images = True

    def check_image_format(self, fmt: PictureFormat) -> None:
        """Raise :class:`CodecError` if this codec's encoder cannot take pictures in ``fmt``."""
        supported = _encoder_pixel_formats(self.encoder)
        if fmt.pix_fmt not in supported:
            known = ", ".join(f for f in PICTURE_FORMATS if PictureFormat.parse(f).pix_fmt in supported)
            raise CodecError(f"codec {self.name!r} cannot code {fmt.name} pictures; it takes: {known or 'none'}")

    def _image_coded_size(self, width: int, height: int) -> tuple[int, int]:
        w, h = self.coded_size(width + width % 2, height + height % 2)  # 4:2:0 needs even sizes
        return w + w % 2, h + h % 2

    def encode_image(
        self, image: np.ndarray, params: CodecParams, fmt: PictureFormat = DEFAULT_FORMAT
    ) -> EncodedFrames:
        """Encode one ``H×W×3`` ``uint8`` RGB image as a single picture in ``fmt`` with this codec's settings.

        The conversion is :mod:`fcm.codecs.color`'s exact BT.601 one; the stream signals matrix (BT.601) and range
        (full/limited) in its own headers, so :meth:`decode_image` needs nothing else. Sizes are edge-padded to even
        ones (and to the encoder's minimum). This is what a remote-inference anchor sends.
        """
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ShapeError(f"expected an H×W×3 uint8 RGB image, got {image.shape} {image.dtype}")
        self.check_params(fmt.bit_depth, params)
        self.check_image_format(fmt)
        self._check_rate_control(params)
        h, w = image.shape[:2]
        coded_w, coded_h = self._image_coded_size(w, h)

        def make_frames(av: Any) -> Iterator[Any]:
            yield _picture_frame(av, image, coded_w, coded_h, fmt, pts=0)

        intra = CodecParams(params.qp, params.rate_control, "intra", params.preset, params.options)
        extradata, packets = self._run_encoder(
            make_frames, coded_w, coded_h, fmt.pix_fmt, fmt.bit_depth, intra, 1, configure=_describer(fmt)
        )
        return EncodedFrames(self.name, w, h, fmt.bit_depth, 1, extradata, tuple(packets))

    def decode_image(self, encoded: EncodedFrames, fmt: PictureFormat | None = None) -> np.ndarray:
        """Decode :meth:`encode_image`'s output to an ``H×W×3`` ``uint8`` RGB image; :class:`CodecError` if damaged.

        Chroma sampling, bit depth and range come from the stream's own headers. ``fmt``, when given, is what the
        caller coded with: a stream holding anything else is refused, and a stream that cannot signal its range
        (FFV1) needs ``fmt``.
        """
        if encoded.codec != self.name or encoded.num_frames != 1 or encoded.bit_depth not in (8, 10):
            raise CodecError(f"{self.name}: not a one-picture 8/10-bit image payload of this codec")
        if len(encoded.packets) != 1:
            raise CodecError(f"{self.name}: an image payload holds one packet, this one {len(encoded.packets)}")
        coded_w, coded_h = self._image_coded_size(encoded.width, encoded.height)
        _check_payload_bounds(encoded.packets, encoded.extradata, coded_w, coded_h, encoded.bit_depth, 1, self.name)
        frames = _decode_av_frames(
            self.decoder, encoded.packets, encoded.extradata, coded_w, coded_h, parse=False, who=f"{self.name} (image)"
        )
        if len(frames) != 1 or (frames[0].width, frames[0].height) != (coded_w, coded_h):
            raise CodecError(f"{self.name}: image payload did not decode to one {coded_w}x{coded_h} picture")
        frame = frames[0]
        fmt = _picture_format_of(frame, fmt, self.name)
        if fmt.bit_depth != encoded.bit_depth:
            raise CodecError(
                f"{self.name}: image decoded at {fmt.bit_depth} bits, payload declares {encoded.bit_depth}"
            )
        return _rgb_of(frame, fmt, coded_w, coded_h, encoded.width, encoded.height)

    def _thread_count(self) -> int:
        return 1

    def _decode_frames(self, encoded: EncodedFrames) -> list[Any]:
        who = f"{self.name}"
        if not isinstance(encoded, EncodedFrames):
            raise CodecError(f"{who}: expected EncodedFrames, got {type(encoded).__name__}")
        if encoded.codec != self.name:
            raise CodecError(f"{who}: payload was made by codec {encoded.codec!r}, not {self.name!r}")
        if encoded.bit_depth not in self.bit_depths:
            raise CodecError(f"{who}: payload declares unsupported bit depth {encoded.bit_depth}")
        _check_payload_bounds(
            encoded.packets,
            encoded.extradata,
            encoded.width,
            encoded.height,
            encoded.bit_depth,
            encoded.num_frames,
            who,
        )
        if len(encoded.packets) != encoded.num_frames:
            raise CodecError(f"{who}: payload has {len(encoded.packets)} packets for {encoded.num_frames} frames")
        coded_w, coded_h = self.coded_size(encoded.width, encoded.height)
        return _decode_av_frames(
            self.decoder, encoded.packets, encoded.extradata, coded_w, coded_h, parse=False, who=who
        )

    def decode(self, encoded: EncodedFrames) -> np.ndarray:
        """Decode to ``uint16`` luma of shape ``(num_frames, height, width)``; chroma planes, if any, are dropped.

        Raises :class:`CodecError` for any payload problem (see the module docstring).
        """
        frames = self._decode_frames(encoded)
        coded = self.coded_size(encoded.width, encoded.height)
        return _frames_to_array(
            frames, encoded.width, encoded.height, encoded.bit_depth, encoded.num_frames, coded, self.name
        )

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


def _param_string(params: dict[str, str]) -> str:
    return ":".join(f"{k}={v}" for k, v in params.items())


#: x264's and x265's speed presets, fastest first
_X26X_PRESETS = (
    "ultrafast",
    "superfast",
    "veryfast",
    "faster",
    "fast",
    "medium",
    "slow",
    "slower",
    "veryslow",
    "placebo",
)


class X265(PyAVCodec):
    """HEVC via libx265, true 4:0:0 (``gray`` / ``gray10le``), 8 and 10 bits.

    ``qp`` 0–51 (CRF 0–51 with ``rate_control="crf"``); preset default ``"medium"``. Block QP offsets (16x16, CRF
    only) go to x265's per-block quant offsets; ``qg-size=16`` is set in CRF mode so they act at that granularity.
    No SEI with the encoder's version string (``info=0``): it would cost ~2 kB per stream.
    """

    name = "x265"
    presets = _X26X_PRESETS
    encoder = "libx265"
    decoder = "hevc"
    bit_depths = (8, 10)
    qp_range = (0, 51)
    supports_block_qp_offsets = True
    qp_block_sizes = (16, 8)
    default_preset = "medium"
    min_size = 16  # libx265 refuses smaller pictures ("Image size is too small")
    param_list_keys = ("x265-params",)

    def _layout(self, bit_depth: int) -> _Layout:
        return _Layout("gray" if bit_depth == 8 else "gray10le", neutral_chroma=False)

    def _block_size_options(self, block: int) -> tuple[tuple[str, str], ...]:
        return (("x265-params", f"qg-size={block}"),) if block != 16 else ()

    def _intra_period_options(self, period: int) -> tuple[tuple[str, str], ...]:
        return (("x265-params", f"keyint={period}:min-keyint={period}"),)

    def _encoder_options(self, bit_depth: int, params: CodecParams) -> dict[str, str]:
        x265: dict[str, str] = {
            "log-level": "error",
            "info": "0",
            # Output must not depend on the machine: a fixed single frame thread and no lookahead slices (WPP row
            # threads are deterministic in x265).
            "frame-threads": "1",
            "lookahead-slices": "0",
            "bframes": "0",
            "scenecut": "0",
            "keyint": "1" if params.gop == "intra" else "-1",
            "min-keyint": "1",
            # Same QP for I and P frames (x265 would otherwise lower I-frame QP by ~3).
            "ipratio": "1",
            "pbratio": "1",
        }
        if self.threads is not None:  # the wavefront thread pool: the output does not depend on its size
            x265["pools"] = str(self.threads)
        if params.rate_control == "cqp":
            x265 |= {"qp": str(params.qp), "aq-mode": "0", "cutree": "0"}
        else:
            x265 |= {"crf": str(params.qp), "qg-size": "16"}
        opts = {"x265-params": _param_string(x265)}
        preset = self._preset(params)
        if preset:
            opts["preset"] = preset
        return opts


class X264(PyAVCodec):
    """H.264 via libx264, true 4:0:0 (``gray`` / ``gray10le`` → High / High 10 profile, ``chroma_format_idc`` 0).

    ``qp`` is on the 8-bit H.264/HEVC scale 0–51 at both bit depths; x264's own high-bit-depth QP is
    ``qp + 6 * (bit_depth - 8)`` (measured: x264 10-bit QP 34 ≈ x265 10-bit QP 22 in bytes and PSNR). CRF is passed
    unchanged (x264 shifts it itself). Preset default ``"medium"``. Block QP offsets: 16x16 macroblocks, CRF only.
    Note: x264 always writes an SEI with its version and settings (~0.5 kB) into the first packet; it is kept, as the
    payload holds exactly what the encoder produced.
    """

    name = "x264"
    presets = _X26X_PRESETS
    encoder = "libx264"
    decoder = "h264"
    bit_depths = (8, 10)
    qp_range = (0, 51)
    supports_block_qp_offsets = True
    default_preset = "medium"
    param_list_keys = ("x264-params",)

    def _layout(self, bit_depth: int) -> _Layout:
        return _Layout("gray" if bit_depth == 8 else "gray10le", neutral_chroma=False)

    def _intra_period_options(self, period: int) -> tuple[tuple[str, str], ...]:
        return (("x264-params", f"keyint={period}:min-keyint={period}"),)

    def _encoder_options(self, bit_depth: int, params: CodecParams) -> dict[str, str]:
        keyint = "1" if params.gop == "intra" else "infinite"
        x264: dict[str, str] = {
            "keyint": keyint,
            "min-keyint": "1",
            "scenecut": "0",
            "bframes": "0",
            "ipratio": "1",
            "pbratio": "1",
        }
        opts: dict[str, str] = {}
        if params.rate_control == "cqp":
            opts["qp"] = str(params.qp + 6 * (bit_depth - 8))
            x264 |= {"aq-mode": "0", "mbtree": "0"}
        else:
            opts["crf"] = str(params.qp)
        opts["x264-params"] = _param_string(x264)
        preset = self._preset(params)
        if preset:
            opts["preset"] = preset
        return opts


class SvtAv1(PyAVCodec):
    """AV1 via SVT-AV1 (libsvtav1), 4:2:0 with flat mid-grey chroma (``yuv420p`` / ``yuv420p10le``), decoded by
    libdav1d. SVT-AV1 accepts nothing monochrome.

    ``qp`` 1–63: SVT-AV1's CQP needs ``qp >= 1`` (0 would silently fall back to its default CRF). ``"crf"`` is its
    CRF mode (AQ on). Preset default ``"8"`` (0 slowest … 13 fastest). Low delay uses SVT-AV1's low-delay prediction
    structure (``pred-struct=1``): P frames only, though with its layered QP offsets. Frames under 4x4 are padded.
    """

    name = "svtav1"
    encoder = "libsvtav1"
    decoder = "libdav1d"
    bit_depths = (8, 10)
    qp_range = (1, 63)
    default_preset = "8"
    presets = tuple(str(p) for p in range(-1, 14))  # SVT-AV1's encoder modes, slowest to fastest
    min_size = 4  # "Source Width must be at least 4"
    param_list_keys = ("svtav1-params",)

    def _layout(self, bit_depth: int) -> _Layout:
        return _Layout("yuv420p" if bit_depth == 8 else "yuv420p10le", neutral_chroma=True)

    def _prepare_environment(self) -> None:
        # SVT-AV1 prints its configuration banner to stderr unless told otherwise; 1 keeps errors only.
        os.environ.setdefault("SVT_LOG", "1")

    def _thread_count(self) -> int:
        return 0  # SVT-AV1 ignores it; its output does not depend on its thread pool

    def _intra_period_options(self, period: int) -> tuple[tuple[str, str], ...]:
        return (("svtav1-params", f"keyint={period}"),)

    def _encoder_options(self, bit_depth: int, params: CodecParams) -> dict[str, str]:
        opts = {"qp" if params.rate_control == "cqp" else "crf": str(params.qp)}
        # gop_size=1 makes FFmpeg send every frame as a key picture; low delay: one key frame, P frames only.
        svt = {} if params.gop == "intra" else {"keyint": "-1", "pred-struct": "1"}
        if svt:
            opts["svtav1-params"] = _param_string(svt)
        preset = self._preset(params)
        if preset:
            opts["preset"] = preset
        return opts


class Vp9(PyAVCodec):
    """VP9 via libvpx-vp9, 8-bit 4:2:0 with flat mid-grey chroma (this libvpx build offers no 10-bit formats).

    ``qp`` 0–63 is libvpx's quantizer scale: CQP pins it with ``qmin = qmax = qp`` in constant-quality mode
    (``qp=0`` is lossless), AQ off. ``"crf"`` is libvpx's constant-quality mode (``crf=qp``, ``b=0``) with variance AQ.
    ``preset`` is libvpx's ``cpu-used`` (0 slowest … 8 fastest), default ``"4"``, with ``deadline=good``. No alt-ref
    frames and no lag, so one visible frame per packet.
    """

    name = "vp9"
    encoder = "libvpx-vp9"
    decoder = "vp9"
    bit_depths = (8,)
    qp_range = (0, 63)
    default_preset = "4"
    presets = tuple(str(p) for p in range(9))  # cpu-used

    def _layout(self, bit_depth: int) -> _Layout:
        return _Layout("yuv420p", neutral_chroma=True)

    def _intra_period_options(self, period: int) -> tuple[tuple[str, str], ...]:
        return (("keyint_min", str(period)),)

    def _encoder_options(self, bit_depth: int, params: CodecParams) -> dict[str, str]:
        opts = {
            "deadline": "good",
            "cpu-used": self._preset(params) or "4",
            "lag-in-frames": "0",
            "auto-alt-ref": "0",
            "b": "0",
            "crf": str(params.qp),
        }
        if params.rate_control == "cqp":
            opts |= {"qmin": str(params.qp), "qmax": str(params.qp), "aq-mode": "0"}
        else:
            opts |= {"aq-mode": "1"}
        if params.gop == "lowdelay":
            opts["keyint_min"] = str(self._gop_size(params))  # = gop size: no automatic key frames
        return opts


class Ffv1(PyAVCodec):
    """FFV1 (version 3, range coder, 4 slices with CRCs), lossless, ``gray`` / ``gray10le``.

    ``qp`` is ignored (any value in 0–63 is accepted, so that a QP sweep can include it) and ``preset`` too;
    ``rate_control="crf"`` is refused. ``"intra"`` resets the coder's context every frame, ``"lowdelay"`` keeps
    adapting across frames (only the first frame is a key frame); both are intra coding.
    """

    name = "ffv1"
    encoder = "ffv1"
    decoder = "ffv1"
    bit_depths = (8, 10)
    qp_range = (0, 63)
    lossless = True
    supports_crf = False

    def _layout(self, bit_depth: int) -> _Layout:
        return _Layout("gray" if bit_depth == 8 else "gray10le", neutral_chroma=False)

    def _encoder_options(self, bit_depth: int, params: CodecParams) -> dict[str, str]:
        # Everything explicit so that a change of FFmpeg defaults cannot change the bytes.
        return {"level": "3", "coder": "1", "context": "0", "slices": "4", "slicecrc": "1"}


# ----------------------------------------------------------------------------------------------------------------------
# Encoders and decoders that run frame by frame
# ----------------------------------------------------------------------------------------------------------------------


class _AvEncoder:
    """An opened FFmpeg encoder context with a codec's options: frames in, packet bytes out, errors as CodecError.

    Unknown option names and ``*-params`` entries the encoder logs as rejected are refused at the first frame (when
    FFmpeg opens the context), failures at any frame.
    """

    def __init__(
        self,
        codec: PyAVCodec,
        coded_w: int,
        coded_h: int,
        pix_fmt: str,
        bit_depth: int,
        params: CodecParams,
        gop_size: int,
        configure: Callable[[Any], None] | None = None,
    ) -> None:
        self.codec = codec
        self.av = av = _import_av()
        options = codec._merged_options(codec._encoder_options(bit_depth, params), params.options)
        codec._prepare_environment()
        with _captured_ffmpeg_log(warnings=True) as logs:
            try:
                ctx = av.CodecContext.create(codec.encoder, "w")
                ctx.width, ctx.height, ctx.pix_fmt = coded_w, coded_h, pix_fmt
                ctx.time_base = Fraction(1, _FPS)
                ctx.framerate = Fraction(_FPS, 1)
                ctx.gop_size = gop_size
                ctx.max_b_frames = 0
                ctx.thread_count = codec._thread_count()
                if configure is not None:
                    configure(ctx)
                ctx.options = options
            except (av.FFmpegError, EOFError, ValueError, OSError) as exc:
                raise CodecError(_with_log(f"{codec.name}: encoder {codec.encoder} failed: {exc}", logs)) from exc
        self.ctx = ctx
        self._opened = False
        self._rejected: list[str] = []

    def guarded(self, make: Callable[[], Iterator[Any]]) -> Iterator[Any]:
        """``make()``'s frames, with any PyAV/FFmpeg failure while building them (e.g. ROI side data through a
        filter graph) raised as :class:`CodecError`."""
        av, codec = self.av, self.codec
        try:
            yield from make()
        except (av.FFmpegError, EOFError, ValueError, OSError) as exc:
            raise CodecError(f"{codec.name}: preparing a frame for {codec.encoder} failed: {exc}") from exc

    def encode(self, frame: Any) -> list[bytes]:
        """Packets the encoder has ready after ``frame`` (``None``: drain it)."""
        av, codec = self.av, self.codec
        with _captured_ffmpeg_log(warnings=True) as logs, _thread_scheduling_kept():
            try:
                packets = [bytes(p) for p in self.ctx.encode(frame)]
            except (av.FFmpegError, EOFError, ValueError, OSError) as exc:
                raise CodecError(_with_log(f"{codec.name}: encoder {codec.encoder} failed: {exc}", logs)) from exc
            if not self._opened:
                # After opening, PyAV's options hold what avcodec_open2 did not consume: unknown option names.
                leftover = dict(self.ctx.options)
                if leftover:  # refused at every call: a caller that goes on after the error gets it again
                    raise CodecError(
                        f"{codec.name}: encoder {codec.encoder} has no option(s) {', '.join(sorted(leftover))}"
                    )
        rejected = [msg.strip() for _, _, msg in logs if _REJECTED_PARAM.search(msg)]
        if rejected:
            self._rejected = rejected
        if self._rejected:
            raise CodecError(f"{codec.name}: encoder {codec.encoder} rejected: {'; '.join(self._rejected)}")
        self._opened = True
        return packets

    @property
    def extradata(self) -> bytes:
        return bytes(self.ctx.extradata or b"")


class _StreamingEncoder:
    """What both streaming encoders share: the opened encoder, packet counting and the final drain."""

    codec: PyAVCodec
    _encoder: _AvEncoder
    frames_in: int
    packets_out: int
    _flushed: bool

    @property
    def extradata(self) -> bytes:
        """The codec's global header (often empty: x264/x265/VP9/AV1 keep parameter sets in the first packet)."""
        return self._encoder.extradata

    def _check_open(self) -> None:
        if self._flushed:
            raise CodecError(f"{self.codec.name}: the encoder session is flushed; open another")

    def _encode(self, frame: Any) -> list[bytes]:
        packets = self._encoder.encode(frame)
        self.frames_in += 1  # counted once the encoder took it
        self.packets_out += len(packets)
        return packets

    def flush(self) -> list[bytes]:
        """Drain the encoder: the remaining packets. Afterwards there is one packet per pushed frame."""
        if self._flushed:
            return []
        self._flushed = True
        packets = self._encoder.encode(None)
        self.packets_out += len(packets)
        if self.packets_out != self.frames_in:
            raise CodecError(
                f"{self.codec.name}: encoder produced {self.packets_out} packets for {self.frames_in} frames"
            )
        return packets


class EncoderSession(_StreamingEncoder):
    """A streaming encoder: :meth:`push` one frame at a time and get the packets the encoder has ready (zero or
    more: an encoder with lookahead holds a few frames back), :meth:`flush` at the end for the rest.

    There is exactly one packet per frame, in display order (no B frames), so packet ``i`` belongs to frame ``i``.
    ``params.gop`` ``"intra"`` makes every frame a key frame; ``"lowdelay"`` one key frame every ``intra_period``
    frames (0: only the first) and P frames between. With ``qp_block``, frames may carry per-block QP offsets on
    that block grid (the codec's ROI route; ``rate_control="crf"``). Memory does not grow with the frame count.
    """

    def __init__(
        self,
        codec: PyAVCodec,
        width: int,
        height: int,
        bit_depth: int,
        params: CodecParams,
        intra_period: int = 0,
        qp_block: int | None = None,
    ) -> None:
        codec.check_params(bit_depth, params)
        codec._check_rate_control(params)
        if not (1 <= width <= _MAX_SIDE and 1 <= height <= _MAX_SIDE):
            raise ShapeError(f"frames of {width}x{height} are out of range (1–{_MAX_SIDE} per side)")
        if qp_block is not None:
            if qp_block not in codec.qp_block_sizes or not codec.supports_block_qp_offsets:
                raise CodecError(f"codec {codec.name!r} takes no per-block QP offsets on {qp_block}x{qp_block} blocks")
            if params.rate_control != "crf":
                raise CodecError(f"codec {codec.name!r} applies per-block QP offsets only with rate_control='crf'")
            params = replace(params, options=codec._block_size_options(qp_block) + params.options)
        self.codec, self.width, self.height, self.bit_depth = codec, width, height, bit_depth
        self.params, self.qp_block = params, qp_block
        self.coded_w, self.coded_h = codec.coded_size(width, height)
        self.layout = codec._layout(bit_depth)
        gop, params = _with_intra_period(codec, params, intra_period)
        self._encoder = _AvEncoder(codec, self.coded_w, self.coded_h, self.layout.pix_fmt, bit_depth, params, gop)
        self.frames_in = 0
        self.packets_out = 0
        self._flushed = False

    def push(self, frame: np.ndarray, block_qp_offsets: np.ndarray | None = None) -> list[bytes]:
        """Encode one ``H×W`` frame of ``bit_depth``-bit samples; the packets now ready (possibly none)."""
        self._check_open()
        frame = np.asarray(frame)
        if frame.shape != (self.height, self.width):
            raise ShapeError(f"expected a {self.height}x{self.width} frame, got shape {frame.shape}")
        samples = _check_frames(frame[None], self.bit_depth)
        regions = None
        if block_qp_offsets is not None:
            if self.qp_block is None:
                raise CodecError("this encoder session was opened without qp_block: it takes no QP offsets")
            offsets = np.asarray(block_qp_offsets)
            grid = (-(-self.height // self.qp_block), -(-self.width // self.qp_block))
            if offsets.shape not in (grid, (1, *grid)):
                raise ShapeError(f"block_qp_offsets must have shape {grid}, got {offsets.shape}")
            plan = self.codec._roi_plan(offsets.reshape(1, *grid), samples.shape, self.bit_depth, self.params)
            assert plan is not None
            regions = plan[0][0]
        padded = _pad_edge(samples, self.coded_h, self.coded_w)[0]

        def make() -> Iterator[Any]:
            av_frame = _make_frame(self._encoder.av, padded, self.layout, self.bit_depth, pts=self.frames_in)
            yield av_frame if regions is None else attach_regions(av_frame, regions)

        (av_frame,) = self._encoder.guarded(make)
        return self._encode(av_frame)


class DecoderSession:
    """A streaming decoder: :meth:`push` one packet at a time and get the frames it has ready (``uint16`` ``H×W``
    luma, cropped to the caller's size), :meth:`flush` at the end. Any damage the decoder notices, a frame flagged
    corrupt, a wrong size or bit depth raises :class:`CodecError` at the packet that shows it."""

    def __init__(self, codec: PyAVCodec, width: int, height: int, bit_depth: int, extradata: bytes = b"") -> None:
        if bit_depth not in codec.bit_depths:
            raise CodecError(f"{codec.name}: unsupported bit depth {bit_depth}")
        if not (1 <= width <= _MAX_SIDE and 1 <= height <= _MAX_SIDE):
            raise CodecError(f"{codec.name}: declared frame size {width}x{height} is out of range")
        self.codec, self.width, self.height, self.bit_depth = codec, width, height, bit_depth
        self.coded = codec.coded_size(width, height)
        self._max_packet = _MAX_EXPANSION * self.coded[0] * self.coded[1] * (1 if bit_depth <= 8 else 2) + _SLACK_BYTES
        self._av = av = _import_av()
        with _captured_ffmpeg_log() as logs:
            try:
                self._ctx = _open_decoder(av, codec.decoder, *self.coded, extradata)
            except Exception as exc:  # untrusted extradata
                raise CodecError(_with_log(f"{codec.name}: cannot open the decoder: {exc}", logs)) from exc
        self.frames_out = 0
        self._flushed = False

    def _convert(self, frame: Any) -> np.ndarray:
        """A decoded frame as the caller's samples (monochrome: luma cropped to the declared size)."""
        return _checked_luma(
            frame, self.frames_out, self.width, self.height, self.bit_depth, self.coded, self.codec.name
        )

    def push(self, packet: bytes) -> list[np.ndarray]:
        """Decode one packet; the frames now ready (possibly none)."""
        if self._flushed:
            raise CodecError(f"{self.codec.name}: the decoder session is flushed; open another")
        if not isinstance(packet, (bytes, bytearray)) or not packet:
            raise CodecError(f"{self.codec.name}: a packet must be non-empty bytes")
        if len(packet) > self._max_packet:
            raise CodecError(
                f"{self.codec.name}: a packet of {len(packet)} bytes is implausibly large for one "
                f"{self.width}x{self.height} frame"
            )
        return self._decode(self._av.Packet(bytes(packet)))

    def flush(self) -> list[np.ndarray]:
        """Drain the decoder: the frames it still holds."""
        if self._flushed:
            return []
        self._flushed = True
        return self._decode(None)

    def _decode(self, packet: Any) -> list[np.ndarray]:
        who = self.codec.name
        with _captured_ffmpeg_log() as logs:
            try:
                frames = list(self._ctx.decode(packet))
            except Exception as exc:  # any failure on untrusted bytes must surface as CodecError
                raise CodecError(_with_log(f"{who}: cannot decode packet: {type(exc).__name__}: {exc}", logs)) from exc
            errors = _errors(logs)
        if errors:
            raise CodecError(f"{who}: decoder reported damaged data: {'; '.join(errors[-3:])}")
        out = []
        for frame in frames:
            if frame.is_corrupt:
                raise CodecError(f"{who}: decoder flagged frame {self.frames_out} as corrupt")
            out.append(self._convert(frame))
            self.frames_out += 1
        return out


def _with_intra_period(codec: PyAVCodec, params: CodecParams, intra_period: int) -> tuple[int, CodecParams]:
    """The context's GOP size and the params (with the codec's key-frame options) for ``intra_period``."""
    if intra_period < 0:
        raise ValueError(f"intra_period must be >= 0 (0: only the first frame is a key frame), got {intra_period}")
    if params.gop == "lowdelay" and intra_period:
        return intra_period, replace(params, options=params.options + codec._intra_period_options(intra_period))
    return codec._gop_size(params), params


class PictureEncoderSession(_StreamingEncoder):
    """A streaming encoder of ``H×W×3`` ``uint8`` RGB pictures in a :class:`PictureFormat` (the conversion and
    signalling of :meth:`PyAVCodec.encode_image`), one packet per picture in display order; see
    :class:`EncoderSession` for the GOP and the push/flush contract."""

    def __init__(
        self, codec: PyAVCodec, width: int, height: int, params: CodecParams, fmt: PictureFormat, intra_period: int = 0
    ) -> None:
        codec.check_params(fmt.bit_depth, params)
        codec.check_image_format(fmt)
        codec._check_rate_control(params)
        if not (1 <= width <= _MAX_SIDE and 1 <= height <= _MAX_SIDE):
            raise ShapeError(f"pictures of {width}x{height} are out of range (1–{_MAX_SIDE} per side)")
        self.codec, self.width, self.height, self.fmt = codec, width, height, fmt
        self.coded_w, self.coded_h = codec._image_coded_size(width, height)
        gop, params = _with_intra_period(codec, params, intra_period)
        self._encoder = _AvEncoder(
            codec, self.coded_w, self.coded_h, fmt.pix_fmt, fmt.bit_depth, params, gop, _describer(fmt)
        )
        self.frames_in = self.packets_out = 0
        self._flushed = False

    def push(self, image: np.ndarray) -> list[bytes]:
        """Encode one RGB picture; the packets now ready (possibly none)."""
        self._check_open()
        if image.shape != (self.height, self.width, 3) or image.dtype != np.uint8:
            raise ShapeError(f"expected a {self.height}x{self.width}x3 uint8 picture, got {image.shape} {image.dtype}")
        return self._encode(
            _picture_frame(self._encoder.av, image, self.coded_w, self.coded_h, self.fmt, self.frames_in)
        )


class PictureDecoderSession(DecoderSession):
    """A streaming decoder of :class:`PictureEncoderSession` streams: ``H×W×3`` ``uint8`` RGB pictures, each checked
    to be in the format it was coded in."""

    def __init__(self, codec: PyAVCodec, width: int, height: int, fmt: PictureFormat, extradata: bytes = b"") -> None:
        self.fmt = fmt
        super().__init__(codec, width, height, fmt.bit_depth, extradata)
        self.coded = codec._image_coded_size(width, height)
        coded_w, coded_h = self.coded
        self._max_packet = _MAX_EXPANSION * coded_w * coded_h * 3 * (1 if fmt.bit_depth <= 8 else 2) + _SLACK_BYTES

    def _convert(self, frame: Any) -> np.ndarray:
        fmt = _picture_format_of(frame, self.fmt, self.codec.name)
        if (frame.width, frame.height) != self.coded:
            raise CodecError(f"{self.codec.name}: picture {self.frames_out} decoded as {frame.width}x{frame.height}")
        return _rgb_of(frame, fmt, *self.coded, self.width, self.height)
