"""Streaming sessions: frames pushed one at a time into a live encoder, packets out as the encoder gives them;
decoders fed packet by packet. Feature frames (:class:`EncoderSession`, :class:`DecoderSession`) and pictures for
the remote anchor (:class:`PictureEncoderSession`, :class:`PictureDecoderSession`)."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import replace
from fractions import Fraction
from typing import TYPE_CHECKING, Any

import numpy as np

from fcm.codecs.base import CodecParams
from fcm.codecs.color import PictureFormat
from fcm.codecs.ffmpeg.decode import checked_luma, open_av_decoder
from fcm.codecs.ffmpeg.frames import (
    check_frames,
    describer,
    make_frame,
    pad_edge,
    picture_format_of,
    picture_frame,
    rgb_of,
)
from fcm.codecs.ffmpeg.limits import MAX_EXPANSION, MAX_SIDE, NOMINAL_FPS, SLACK_BYTES
from fcm.codecs.ffmpeg.logs import captured_ffmpeg_log, ffmpeg_errors, import_av, thread_scheduling_kept, with_log
from fcm.codecs.roi import attach_regions
from fcm.errors import CodecError, ShapeError

if TYPE_CHECKING:
    from fcm.codecs.ffmpeg.codec import PyAVCodec

#: Warnings with which libx264/libx265/libsvtav1 report a ``*-params`` entry they ignored.
_REJECTED_PARAM = re.compile(r"unknown option|invalid value|error parsing option", re.IGNORECASE)
#: The warning with which libx264/libx265 drop a frame's ROI map (their adaptive quantization is off: the
#: ultrafast and superfast presets turn it off); without this check a wrapper-aware map would silently do nothing.
_SKIPPED_ROI = re.compile(r"skipping ROI", re.IGNORECASE)


class AvEncoder:
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
        self.av = av = import_av()
        options = codec.merged_options(codec.encoder_options(bit_depth, params), params.options)
        codec.prepare_environment()
        with captured_ffmpeg_log(warnings=True) as logs:
            try:
                ctx = av.CodecContext.create(codec.encoder, "w")
                ctx.width, ctx.height, ctx.pix_fmt = coded_w, coded_h, pix_fmt
                ctx.time_base = Fraction(1, NOMINAL_FPS)
                ctx.framerate = Fraction(NOMINAL_FPS, 1)
                ctx.gop_size = gop_size
                ctx.max_b_frames = 0
                ctx.thread_count = codec.thread_count()
                if configure is not None:
                    configure(ctx)
                ctx.options = options
            except (av.FFmpegError, EOFError, ValueError, OSError) as exc:
                raise CodecError(with_log(f"{codec.name}: encoder {codec.encoder} failed: {exc}", logs)) from exc
        self.ctx = ctx
        self._opened = False
        self._rejected: list[str] = []
        self._roi_skipped = ""

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
        with captured_ffmpeg_log(warnings=True) as logs, thread_scheduling_kept():
            try:
                packets = [bytes(p) for p in self.ctx.encode(frame)]
            except (av.FFmpegError, EOFError, ValueError, OSError) as exc:
                raise CodecError(with_log(f"{codec.name}: encoder {codec.encoder} failed: {exc}", logs)) from exc
            if not self._opened:
                # After opening, PyAV's options hold what avcodec_open2 did not consume: unknown option names.
                leftover = dict(self.ctx.options)
                if leftover:  # refused at every call: a caller that goes on after the error gets it again
                    raise CodecError(
                        f"{codec.name}: encoder {codec.encoder} has no option(s) {', '.join(sorted(leftover))}"
                    )
        skipped = [msg.strip() for _, _, msg in logs if _SKIPPED_ROI.search(msg)]
        if skipped:  # logged once per context: kept, so every later call is refused too
            self._roi_skipped = (
                f"{codec.name}: encoder {codec.encoder} ignores the per-block QP map ({skipped[0]}): its adaptive "
                "quantization is off (the ultrafast preset, superfast for x265, or aq-mode=0); use preset veryfast "
                "or slower"
            )
        if self._roi_skipped:
            raise CodecError(self._roi_skipped)
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
    _encoder: AvEncoder
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
        codec.check_rate_control(params)
        if not (1 <= width <= MAX_SIDE and 1 <= height <= MAX_SIDE):
            raise ShapeError(f"frames of {width}x{height} are out of range (1–{MAX_SIDE} per side)")
        if qp_block is not None:
            if qp_block not in codec.qp_block_sizes or not codec.supports_block_qp_offsets:
                raise CodecError(f"codec {codec.name!r} takes no per-block QP offsets on {qp_block}x{qp_block} blocks")
            if params.rate_control != "crf":
                raise CodecError(f"codec {codec.name!r} applies per-block QP offsets only with rate_control='crf'")
            params = replace(params, options=codec.block_size_options(qp_block) + params.options)
        self.codec, self.width, self.height, self.bit_depth = codec, width, height, bit_depth
        self.params, self.qp_block = params, qp_block
        self.coded_w, self.coded_h = codec.coded_size(width, height)
        self.layout = codec.plane_layout(bit_depth)
        gop, params = _with_intra_period(codec, params, intra_period)
        self._encoder = AvEncoder(codec, self.coded_w, self.coded_h, self.layout.pix_fmt, bit_depth, params, gop)
        self.frames_in = 0
        self.packets_out = 0
        self._flushed = False

    def push(self, frame: np.ndarray, block_qp_offsets: np.ndarray | None = None) -> list[bytes]:
        """Encode one ``H×W`` frame of ``bit_depth``-bit samples; the packets now ready (possibly none)."""
        self._check_open()
        frame = np.asarray(frame)
        if frame.shape != (self.height, self.width):
            raise ShapeError(f"expected a {self.height}x{self.width} frame, got shape {frame.shape}")
        samples = check_frames(frame[None], self.bit_depth)
        regions = None
        if block_qp_offsets is not None:
            if self.qp_block is None:
                raise CodecError("this encoder session was opened without qp_block: it takes no QP offsets")
            offsets = np.asarray(block_qp_offsets)
            grid = (-(-self.height // self.qp_block), -(-self.width // self.qp_block))
            if offsets.shape not in (grid, (1, *grid)):
                raise ShapeError(f"block_qp_offsets must have shape {grid}, got {offsets.shape}")
            plan = self.codec.roi_plan(offsets.reshape(1, *grid), samples.shape, self.bit_depth, self.params)
            assert plan is not None
            regions = plan[0][0]
        padded = pad_edge(samples, self.coded_h, self.coded_w)[0]

        def make() -> Iterator[Any]:
            av_frame = make_frame(self._encoder.av, padded, self.layout, self.bit_depth, pts=self.frames_in)
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
        if not (1 <= width <= MAX_SIDE and 1 <= height <= MAX_SIDE):
            raise CodecError(f"{codec.name}: declared frame size {width}x{height} is out of range")
        self.codec, self.width, self.height, self.bit_depth = codec, width, height, bit_depth
        self.coded = codec.coded_size(width, height)
        self._max_packet = MAX_EXPANSION * self.coded[0] * self.coded[1] * (1 if bit_depth <= 8 else 2) + SLACK_BYTES
        self._av = av = import_av()
        with captured_ffmpeg_log() as logs:
            try:
                self._ctx = open_av_decoder(av, codec.decoder, *self.coded, extradata)
            except Exception as exc:  # untrusted extradata
                raise CodecError(with_log(f"{codec.name}: cannot open the decoder: {exc}", logs)) from exc
        self.frames_out = 0
        self._flushed = False

    def _convert(self, frame: Any) -> np.ndarray:
        """A decoded frame as the caller's samples (monochrome: luma cropped to the declared size)."""
        return checked_luma(
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
        with captured_ffmpeg_log() as logs:
            try:
                frames = list(self._ctx.decode(packet))
            except Exception as exc:  # any failure on untrusted bytes must surface as CodecError
                raise CodecError(with_log(f"{who}: cannot decode packet: {type(exc).__name__}: {exc}", logs)) from exc
            errors = ffmpeg_errors(logs)
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
        return intra_period, replace(params, options=params.options + codec.intra_period_options(intra_period))
    return codec.gop_size(params), params


class PictureEncoderSession(_StreamingEncoder):
    """A streaming encoder of ``H×W×3`` ``uint8`` RGB pictures in a :class:`PictureFormat` (the conversion and
    signalling of :meth:`PyAVCodec.encode_image`), one packet per picture in display order; see
    :class:`EncoderSession` for the GOP and the push/flush contract."""

    def __init__(
        self, codec: PyAVCodec, width: int, height: int, params: CodecParams, fmt: PictureFormat, intra_period: int = 0
    ) -> None:
        codec.check_params(fmt.bit_depth, params)
        codec.check_image_format(fmt)
        codec.check_rate_control(params)
        if not (1 <= width <= MAX_SIDE and 1 <= height <= MAX_SIDE):
            raise ShapeError(f"pictures of {width}x{height} are out of range (1–{MAX_SIDE} per side)")
        self.codec, self.width, self.height, self.fmt = codec, width, height, fmt
        self.coded_w, self.coded_h = codec.image_coded_size(width, height)
        gop, params = _with_intra_period(codec, params, intra_period)
        self._encoder = AvEncoder(
            codec, self.coded_w, self.coded_h, fmt.pix_fmt, fmt.bit_depth, params, gop, describer(fmt)
        )
        self.frames_in = self.packets_out = 0
        self._flushed = False

    def push(self, image: np.ndarray) -> list[bytes]:
        """Encode one RGB picture; the packets now ready (possibly none)."""
        self._check_open()
        if image.shape != (self.height, self.width, 3) or image.dtype != np.uint8:
            raise ShapeError(f"expected a {self.height}x{self.width}x3 uint8 picture, got {image.shape} {image.dtype}")
        return self._encode(
            picture_frame(self._encoder.av, image, self.coded_w, self.coded_h, self.fmt, self.frames_in)
        )


class PictureDecoderSession(DecoderSession):
    """A streaming decoder of :class:`PictureEncoderSession` streams: ``H×W×3`` ``uint8`` RGB pictures, each checked
    to be in the format it was coded in."""

    def __init__(self, codec: PyAVCodec, width: int, height: int, fmt: PictureFormat, extradata: bytes = b"") -> None:
        self.fmt = fmt
        super().__init__(codec, width, height, fmt.bit_depth, extradata)
        self.coded = codec.image_coded_size(width, height)
        coded_w, coded_h = self.coded
        self._max_packet = MAX_EXPANSION * coded_w * coded_h * 3 * (1 if fmt.bit_depth <= 8 else 2) + SLACK_BYTES

    def _convert(self, frame: Any) -> np.ndarray:
        fmt = picture_format_of(frame, self.fmt, self.codec.name)
        if (frame.width, frame.height) != self.coded:
            raise CodecError(f"{self.codec.name}: picture {self.frames_out} decoded as {frame.width}x{frame.height}")
        return rgb_of(frame, fmt, *self.coded, self.width, self.height)
