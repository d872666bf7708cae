"""Video split inference, frame by frame: ``encode_video`` runs the front on each frame, packs it, pushes it into a
streaming encoder and writes each frame's access unit as soon as its packet is out; ``decode_video`` reads access
units as they arrive, decodes, unpacks and runs the back half, yielding one result per frame.

Neither keeps more than the codec's own lookahead of frames: memory does not grow with the sequence length. The
stream is one low-delay (or all-intra) sequence, so its rate is real stream bytes over the clip's duration (kbps).
"""

from __future__ import annotations

import contextlib
import time
import warnings
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from fractions import Fraction
from typing import TYPE_CHECKING, Any, BinaryIO

import numpy as np
import torch

from fcm.codecs import CodecParams, get_codec
from fcm.errors import BitstreamError, CodecError, ConfigError, ShapeError
from fcm.models import Features, SplitModel
from fcm.numerics import DEFAULT_TORCH_THREADS
from fcm.numerics import torch_threads as pinned_threads
from fcm.packing import PackedFrames, Packer, RangeMode, unpack
from fcm.video.container import AccessUnit, VideoHeader, VideoReader, VideoWriter

if TYPE_CHECKING:
    from fcm.codecs.base import Codec
    from fcm.rdo.allocation import BitAllocation
    from fcm.wrappers import WrapperPair

#: frames a decoder may hold back before it must give one out (the codecs here hold none in low delay)
MAX_DECODER_DELAY = 16


@dataclass(frozen=True)
class VideoEncodeStats:
    """What ``encode_video`` wrote: frames, the stream's real size, and rates."""

    frames: int
    bytes: int
    fps: Fraction
    #: bytes of each frame's access unit (header and end record not included)
    unit_bytes: tuple[int, ...]
    input_size: tuple[int, int]
    seconds: float
    #: time in the edge half's model (front), packing, bit allocation and the codec
    front_s: float
    codec_s: float

    @property
    def duration_s(self) -> float:
        return self.frames / float(self.fps)

    @property
    def kbps(self) -> float:
        """The whole stream (header, access units, end record) in kilobits per second of video."""
        return 8 * self.bytes / 1000 / self.duration_s

    @property
    def encode_fps(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else float("inf")


@dataclass(frozen=True)
class VideoFrameResult:
    """One decoded frame: its index, the task output and the features the back half took."""

    index: int
    output: Any
    features: Features
    codec_s: float
    back_s: float


def encode_video(
    frames: Iterable[np.ndarray],
    model: SplitModel,
    codec: str | Codec,
    params: CodecParams,
    sink: BinaryIO,
    fps: Fraction,
    *,
    intra_period: int = 0,
    bit_depth: int | None = None,
    range_mode: RangeMode = "frame",
    wrapper: WrapperPair | None = None,
    allocation: BitAllocation | None = None,
    on_frame: Callable[[int], None] | None = None,
    torch_threads: int | None = DEFAULT_TORCH_THREADS,
) -> VideoEncodeStats:
    """Code a sequence of RGB frames (all of one size) as one fcm video stream written to ``sink``.

    ``params.gop`` ``"lowdelay"``: a key frame every ``intra_period`` frames (0: only the first), P frames between;
    ``"intra"``: every frame a key frame. ``allocation`` (QP route only) gives each frame its block QP offsets; a
    ``wa-gop`` allocation computes them on each group's first frame and reuses them for the rest. ``on_frame(i)`` is
    called after frame ``i`` is pushed (a progress bar). The front, wrapper and allocation run with ``torch_threads``
    intra-op threads (default 1: the same bytes on any core count; ``None`` keeps the caller's; :mod:`fcm.numerics`).
    """
    from fcm import __version__
    from fcm.bitstream import WrapperRef
    from fcm.pipeline import check_wrapper_split, resolve_codec, run_front

    with pinned_threads(torch_threads):
        codec = resolve_codec(codec)
        depth = codec.default_bit_depth if bit_depth is None else bit_depth
        codec.check_params(depth, params)
        if not codec.supports_streaming:
            raise CodecError(f"codec {codec.name!r} cannot code video frame by frame; use an in-process codec")
        if allocation is not None and allocation.route != "qp":
            raise ConfigError("video coding takes bit allocation through the codec's QP map (route qp) only")
        if wrapper is not None:
            check_wrapper_split(wrapper, model)
        if params.gop == "intra":
            intra_period = 1
        packer = Packer(depth, range_mode)
        writer = VideoWriter(sink)
        pending: deque[tuple] = deque()  # each pushed frame's ranges, until its packet comes out
        unit_bytes: list[int] = []
        session: Any = None
        header_fields: dict[str, Any] = {}
        input_size: tuple[int, int] | None = None
        front_s = codec_s = 0.0
        t_start = time.perf_counter()

        def emit(packets: list[bytes]) -> None:
            for packet in packets:
                if writer.header is None:
                    writer.start(VideoHeader(**header_fields, extradata=session.extradata))
                unit_bytes.append(writer.add(AccessUnit(writer.frames, pending.popleft(), packet)))

        for i, image in enumerate(frames):
            edge = run_front(image, model, torch_threads=None)
            front_s += edge.front_s
            if input_size is None:
                input_size = edge.input_size
            elif edge.input_size != input_size:
                raise ShapeError(
                    f"frame {i} is {edge.input_size[1]}x{edge.input_size[0]}, the first "
                    f"{input_size[1]}x{input_size[0]}: a video's frames share one size"
                )
            tensors = edge.features.tensors
            if wrapper is not None:
                with torch.no_grad():
                    tensors = wrapper.encode(tensors)
            packed = packer.pack(tensors)
            meta = {"input_size": edge.input_size, **edge.features.meta}
            offsets = None if allocation is None else allocation.offsets(packed, model, edge.features.meta, wrapper)
            if session is None:
                layout = packed.layout
                qp_block = None if offsets is None else _block_of(codec, offsets, layout)
                session = codec.open_encoder(
                    layout.frame_width, layout.frame_height, depth, params, intra_period, qp_block
                )
                header_fields = {
                    "model": model.name,
                    "split": model.split,
                    "weights_tag": model.weights_tag,
                    "meta": meta,
                    "layout": layout,
                    "bit_depth": depth,
                    "range_mode": packed.range_mode,
                    "codec": codec.name,
                    "params": params,
                    "fps": fps,
                    "intra_period": intra_period,
                    "wrapper": None if wrapper is None else WrapperRef(wrapper.name, wrapper.weights_tag),
                    "notes": (("fcm", __version__),),
                }
            elif packed.layout != header_fields["layout"] or meta != header_fields["meta"]:
                raise ShapeError(f"frame {i}'s features are packed differently from the first frame's")
            pending.append(packed.ranges[0])
            t0 = time.perf_counter()
            packets = session.push(packed.frames[0], None if offsets is None else offsets[0])
            codec_s += time.perf_counter() - t0
            emit(packets)
            if on_frame is not None:
                on_frame(i)
        if session is None:
            raise ConfigError("the video has no frames")
        t0 = time.perf_counter()
        packets = session.flush()
        codec_s += time.perf_counter() - t0
        emit(packets)
        writer.finish()
        assert input_size is not None
        return VideoEncodeStats(
            writer.frames,
            writer.bytes,
            fps,
            tuple(unit_bytes),
            input_size,
            time.perf_counter() - t_start,
            front_s,
            codec_s,
        )


def _block_of(codec: Codec, offsets: np.ndarray, layout: Any) -> int:
    """The QP block side an offsets map (``1×GH×GW``) is drawn on."""
    for block in codec.qp_block_sizes:
        if offsets.shape[1:] == (-(-layout.frame_height // block), -(-layout.frame_width // block)):
            return block
    raise ShapeError(f"a QP offsets map of shape {offsets.shape} fits no block size of codec {codec.name!r}")


def decode_video(
    source: BinaryIO,
    model: SplitModel | None = None,
    wrapper: WrapperPair | None = None,
    weights: str | None = None,
) -> tuple[VideoHeader, Iterator[VideoFrameResult]]:
    """Read a video stream's header from ``source`` and return it with an iterator of per-frame results, each
    yielded as soon as its access unit has arrived and decoded. A truncated or damaged stream yields every frame
    before the damage, then raises :class:`BitstreamError` (naming how many frames were complete)."""
    from fcm.pipeline import check_wrapper, check_wrapper_split

    reader = VideoReader(source)
    header = reader.header
    if model is None:
        from fcm.models import get_model

        model = get_model(header.model, header.split, weights)
    if (model.name, model.split) != (header.model, header.split):
        raise BitstreamError(
            f"the video is for {header.model}/{header.split}, but the model given is {model.name}/{model.split}"
        )
    if model.weights_tag != header.weights_tag:
        warnings.warn(
            f"the video was encoded with {header.model} weights {header.weights_tag}, decoding with "
            f"{model.weights_tag}: the results may be meaningless",
            stacklevel=2,
        )
    check_wrapper(header.wrapper, wrapper)
    if wrapper is not None:
        check_wrapper_split(wrapper, model)
    try:
        codec = get_codec(header.codec)
    except KeyError as e:
        raise BitstreamError(f"the video names codec {header.codec!r}, which this fcm does not have") from e
    if not codec.supports_streaming:
        raise BitstreamError(f"codec {header.codec!r} cannot decode frame by frame")
    return header, _decode_frames(reader, header, codec, model, wrapper)


def _decode_frames(
    reader: VideoReader, header: VideoHeader, codec: Codec, model: SplitModel, wrapper: WrapperPair | None
) -> Iterator[VideoFrameResult]:
    from fcm.pipeline import refuse_non_finite, run_back

    layout = header.layout
    try:
        decoder = codec.open_decoder(layout.frame_width, layout.frame_height, header.bit_depth, header.extradata)
    except CodecError as e:
        raise BitstreamError(f"the video's codec setup does not decode: {e}") from e
    pending: deque[tuple] = deque()
    index = 0

    def finish(frame: np.ndarray, codec_s: float) -> VideoFrameResult:
        nonlocal index
        if not pending:  # e.g. a VP9 superframe: one packet, several pictures
            raise BitstreamError(f"the decoder gave frame {index} for a packet that already had its frame")
        try:
            packed = PackedFrames(frame[None], layout, header.bit_depth, header.range_mode, (pending.popleft(),))
        except ShapeError as e:
            raise BitstreamError(f"frame {index} does not match the header: {e}") from e
        tensors = unpack(packed)
        t0 = time.perf_counter()
        try:
            with torch.no_grad():
                if wrapper is not None:
                    tensors = wrapper.decode(tensors)
            features = Features(tensors, dict(header.meta))
            features.check(model.spec)
        except ShapeError as e:
            raise BitstreamError(f"the video does not fit split {model.name}/{model.split}: {e}") from e
        refuse_non_finite(features.tensors, f"frame {index}'s features")
        output = run_back(features, model)  # the image decoder's back half, errors included (a non-finite output)
        result = VideoFrameResult(index, output, features, codec_s, time.perf_counter() - t0)
        index += 1
        return result

    units = iter(reader)
    while True:
        try:
            unit = next(units)
        except StopIteration:
            break
        except BitstreamError:  # truncated or damaged: the complete frames the decoder still holds come first
            with contextlib.suppress(CodecError):
                held = decoder.flush()
                for frame in held[: len(pending)]:
                    yield finish(frame, 0.0)
            raise
        pending.append(unit.ranges)
        t0 = time.perf_counter()
        try:
            decoded = decoder.push(unit.packet)
        except CodecError as e:
            raise BitstreamError(f"frame {unit.index}'s packet does not decode: {e}") from e
        codec_s = time.perf_counter() - t0
        if len(pending) > MAX_DECODER_DELAY:
            raise BitstreamError(f"the decoder holds more than {MAX_DECODER_DELAY} frames back")
        for frame in decoded:
            yield finish(frame, codec_s)
    try:
        rest = decoder.flush()
    except CodecError as e:
        raise BitstreamError(f"the video's last frames do not decode: {e}") from e
    for frame in rest:
        yield finish(frame, 0.0)
    if pending or index != reader.frames:
        raise BitstreamError(f"the video's {reader.frames} packets decoded to {index} frames")
