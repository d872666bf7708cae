"""Coding the image itself (8-bit 4:2:0), for the remote-inference anchor: the same encoders and settings as the
feature codecs, fed an RGB picture instead of a packed feature frame.

``encode_rgb`` converts RGB to BT.601 limited-range YUV 4:2:0 (FFmpeg's default, what a camera pipeline sends),
pads odd sizes by edge replication, and returns the encoder's exact output; ``decode_rgb`` returns the RGB picture
at the original size.
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np

from fcm.codecs import get_codec
from fcm.codecs.base import CodecParams, EncodedFrames
from fcm.codecs.pyav_codecs import (
    _FPS,
    PyAVCodec,
    _captured_ffmpeg_log,
    _decode_av_frames,
    _import_av,
    _with_log,
)
from fcm.errors import CodecError, ShapeError

BIT_DEPTH = 8


def _pyav_codec(name: str) -> PyAVCodec:
    codec = get_codec(name)
    if not isinstance(codec, PyAVCodec) or codec.lossless:
        raise CodecError(f"codec {name!r} cannot code RGB images for the remote pipeline")
    return codec


def _coded_size(codec: PyAVCodec, width: int, height: int) -> tuple[int, int]:
    w, h = codec.coded_size(width + width % 2, height + height % 2)  # 4:2:0 needs even sizes
    return w + w % 2, h + h % 2


def encode_rgb(image: np.ndarray, codec_name: str, params: CodecParams) -> EncodedFrames:
    """Encode one ``H×W×3`` ``uint8`` RGB image as a single 8-bit 4:2:0 picture."""
    codec = _checked_codec(image, codec_name, params)
    h, w = image.shape[:2]
    coded_w, coded_h = _coded_size(codec, w, h)
    padded = np.pad(image, ((0, coded_h - h), (0, coded_w - w), (0, 0)), mode="edge")
    options = codec._merged_options(codec._encoder_options(BIT_DEPTH, params), params.options)
    av = _import_av()
    codec._prepare_environment()
    with _captured_ffmpeg_log(warnings=True) as logs:
        try:
            ctx = av.CodecContext.create(codec.encoder, "w")
            ctx.width, ctx.height, ctx.pix_fmt = coded_w, coded_h, "yuv420p"
            ctx.time_base = Fraction(1, _FPS)
            ctx.framerate = Fraction(_FPS, 1)
            ctx.gop_size = 1
            ctx.max_b_frames = 0
            ctx.thread_count = codec._thread_count()
            ctx.options = options
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(padded), format="rgb24").reformat(format="yuv420p")
            frame.pts = 0
            frame.time_base = Fraction(1, _FPS)
            packets = [bytes(p) for p in ctx.encode(frame)] + [bytes(p) for p in ctx.encode(None)]
            extradata = bytes(ctx.extradata or b"")
        except (av.FFmpegError, EOFError, ValueError, OSError) as exc:
            raise CodecError(_with_log(f"{codec.name}: encoder {codec.encoder} failed on an RGB image: {exc}", logs))
    if len(packets) != 1:
        raise CodecError(f"{codec.name}: encoder produced {len(packets)} packets for one image")
    return EncodedFrames(codec.name, w, h, BIT_DEPTH, 1, extradata, tuple(packets))


def _checked_codec(image: np.ndarray, codec_name: str, params: CodecParams) -> PyAVCodec:
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ShapeError(f"expected an H×W×3 uint8 RGB image, got {image.shape} {image.dtype}")
    codec = _pyav_codec(codec_name)
    codec.check_params(BIT_DEPTH, params)
    codec._check_rate_control(params)
    return codec


def decode_rgb(encoded: EncodedFrames) -> np.ndarray:
    """Decode :func:`encode_rgb`'s output to an ``H×W×3`` ``uint8`` RGB image."""
    codec = _pyav_codec(encoded.codec)
    coded_w, coded_h = _coded_size(codec, encoded.width, encoded.height)
    frames = _decode_av_frames(codec.decoder, encoded.packets, encoded.extradata, coded_w, coded_h, parse=False,
                               who=f"{codec.name} (RGB)")
    if len(frames) != 1:
        raise CodecError(f"{codec.name}: RGB payload decoded to {len(frames)} frames, expected 1")
    rgb = frames[0].to_ndarray(format="rgb24")
    return np.ascontiguousarray(rgb[: encoded.height, : encoded.width])
