"""Hardened decoding: a payload is bounds-checked before any decoder sees it, decoded with error detection on,
and every frame checked (count, size, bit depth, corrupt flags, errors in the log). ``decode_bitstream`` is what
external encoders' outputs are decoded with too (:mod:`fcm.codecs.external`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from fcm.codecs.base import EncodedFrames
from fcm.codecs.ffmpeg.frames import luma_of
from fcm.codecs.ffmpeg.limits import MAX_EXPANSION, MAX_SIDE, SLACK_BYTES
from fcm.codecs.ffmpeg.logs import captured_ffmpeg_log, ffmpeg_errors, import_av, with_log
from fcm.errors import CodecError

if TYPE_CHECKING:
    from fcm.codecs.ffmpeg.codec import PyAVCodec

#: FFmpeg decoder options: treat bitstream damage as an error instead of silently concealing it where the decoder can
#: tell (H.264 slice errors, FFV1 CRCs, AV1 OBU errors).
_ERR_DETECT = "crccheck+bitstream+buffer+explode"
_PICTURE_TYPES = {1: "I", 2: "P", 3: "B"}


def check_payload_bounds(
    packets: Sequence[bytes], extradata: bytes, width: int, height: int, bit_depth: int, num_frames: int, who: str
) -> None:
    if not (1 <= width <= MAX_SIDE and 1 <= height <= MAX_SIDE):
        raise CodecError(f"{who}: declared frame size {width}x{height} is out of range")
    if num_frames < 1:
        raise CodecError(f"{who}: declared frame count {num_frames} must be >= 1")
    if not packets or any(not isinstance(p, bytes | bytearray) or len(p) == 0 for p in packets):
        raise CodecError(f"{who}: payload has a missing or empty packet")
    raw = num_frames * width * height * (1 if bit_depth <= 8 else 2)
    total = len(extradata) + sum(len(p) for p in packets)
    if total > MAX_EXPANSION * raw + SLACK_BYTES:
        raise CodecError(
            f"{who}: payload of {total} bytes is implausibly large for {num_frames} frame(s) of {width}x{height}"
        )


def open_av_decoder(av: Any, decoder: str, width: int, height: int, extradata: bytes) -> Any:
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


def decode_av_frames(
    decoder: str, packets: Sequence[bytes], extradata: bytes, width: int, height: int, parse: bool, who: str
) -> list[Any]:
    """Run ``packets`` (or, with ``parse``, one Annex-B/OBU byte stream split by FFmpeg's parser) through ``decoder``.

    Returns the decoded PyAV frames; raises CodecError on any failure, including errors the decoder only logs.
    """
    av = import_av()
    frames: list[Any] = []
    with captured_ffmpeg_log() as logs:
        try:
            ctx = open_av_decoder(av, decoder, width, height, extradata)
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
            raise CodecError(with_log(f"{who}: cannot decode payload: {type(exc).__name__}: {exc}", logs)) from exc
        errors = ffmpeg_errors(logs)
    if errors:
        raise CodecError(f"{who}: decoder reported damaged data: {'; '.join(errors[-3:])}")
    if any(f.is_corrupt for f in frames):
        raise CodecError(f"{who}: decoder flagged a decoded frame as corrupt")
    return frames


def frames_to_array(
    frames: Sequence[Any], width: int, height: int, bit_depth: int, num_frames: int, coded: tuple[int, int], who: str
) -> np.ndarray:
    if len(frames) != num_frames:
        raise CodecError(f"{who}: payload decoded to {len(frames)} frame(s), expected {num_frames}")
    out = np.empty((num_frames, height, width), dtype=np.uint16)
    for i, frame in enumerate(frames):
        out[i] = checked_luma(frame, i, width, height, bit_depth, coded, who)
    return out


def checked_luma(
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
    return luma_of(frame, bit_depth, height, width)


def decode_bitstream(
    decoder: str, data: bytes, width: int, height: int, bit_depth: int, num_frames: int, who: str = "decoder"
) -> np.ndarray:
    """Decode one elementary byte stream (e.g. an Annex-B ``.hevc`` file written by an external encoder) in process.

    FFmpeg's parser for ``decoder`` splits the stream into access units. Returns ``uint16`` luma of shape
    ``(num_frames, height, width)``; raises :class:`CodecError` on any failure or mismatch.
    """
    check_payload_bounds([data], b"", width, height, bit_depth, num_frames, who)
    frames = decode_av_frames(decoder, [data], b"", width, height, parse=True, who=who)
    return frames_to_array(frames, width, height, bit_depth, num_frames, (width, height), who)


def frame_types(codec: PyAVCodec, encoded: EncodedFrames) -> tuple[str, ...]:
    """Picture types (``"I"``, ``"P"``, ``"B"``) of the decoded frames of ``encoded``, in display order.

    A diagnostic for GOP structure; AV1 and VP9 report key frames as ``"I"`` and inter frames as ``"P"``.
    """
    frames = codec.decode_frames(encoded)
    return tuple(_PICTURE_TYPES.get(int(f.pict_type), "?") for f in frames)
