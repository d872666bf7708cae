"""The fcm video stream: a self-describing header, then one access unit per frame, so a receiver decodes frame by
frame as bytes arrive (format in ``docs/bitstream.md``, section *Video streams*).

::

    preamble   "FCMV" · version (1 byte) · header length (u32 LE)
    header     model, split, weights tag, wrapper, meta, bit depth, range mode, layout, codec + parameters,
               frame rate, intra period, codec extradata, notes        (the image format's field encodings)
    crc32      of preamble + header
    access unit, once per frame:
               body length (u32 LE, > 0) · body: frame index, the frame's quantization ranges, its codec packet
               · crc32 of the body
    end        body length 0 · frame count (u32 LE) · crc32 of those 8 bytes

A stream cut anywhere gives every complete access unit before the cut, then a :class:`BitstreamError` saying how many
frames were complete; so does a stream whose end record is missing. Lengths are checked against the layout's frame
size before anything is read, so garbage can neither exhaust memory nor loop.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from fractions import Fraction
from typing import BinaryIO

from fcm.bitstream import (
    MAX_FRAMES,
    FieldReader,
    FieldWriter,
    WrapperRef,
    ranges_per_frame,
    read_bit_depth,
    read_codec,
    read_layout,
    read_meta,
    read_pairs,
    read_ranges,
    read_wrapper,
    write_codec,
    write_layout,
    write_meta,
    write_pairs,
    write_ranges,
    write_wrapper,
)
from fcm.codecs.base import CodecParams
from fcm.errors import BitstreamError, FcmError
from fcm.packing.layout import Layout
from fcm.packing.packer import RANGE_MODES, RangeMode
from fcm.packing.quantize import QuantRange

MAGIC = b"FCMV"
VERSION = 1
_PREAMBLE = struct.Struct("<4sBI")
_U32 = struct.Struct("<I")
#: the largest header (names, layout, options, extradata) a reader accepts
MAX_HEADER = 1 << 20
#: frame rates are stored as a fraction of two integers up to this
MAX_RATE_TERM = 1 << 20
#: an access unit may hold at most this many times the raw frame's bytes, plus this slack
_MAX_EXPANSION = 4
_SLACK = 1 << 20
_READ_CHUNK = 1 << 20


@dataclass(frozen=True)
class VideoHeader:
    """Everything a receiver needs before the first frame: the model and split, how frames are packed and coded."""

    model: str
    split: str
    weights_tag: str
    meta: dict[str, tuple[int, ...]]
    layout: Layout
    bit_depth: int
    range_mode: RangeMode
    codec: str
    params: CodecParams
    fps: Fraction
    #: frames between key frames with ``params.gop == "lowdelay"`` (0: only the first); 1 for all-intra
    intra_period: int
    wrapper: WrapperRef | None = None
    extradata: bytes = b""
    notes: tuple[tuple[str, str], ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        if not (0 < self.fps.numerator <= MAX_RATE_TERM and 0 < self.fps.denominator <= MAX_RATE_TERM):
            raise BitstreamError(f"invalid frame rate {self.fps}: a positive fraction of terms up to {MAX_RATE_TERM}")
        if not 0 <= self.intra_period <= MAX_FRAMES:
            raise BitstreamError(f"invalid intra period {self.intra_period}")

    @property
    def ranges_per_frame(self) -> int:
        return ranges_per_frame(self.range_mode, self.layout)

    @property
    def max_unit_bytes(self) -> int:
        """The largest access unit body a reader accepts for this header's frames."""
        raw = self.layout.frame_width * self.layout.frame_height * (1 if self.bit_depth <= 8 else 2)
        return _MAX_EXPANSION * raw + _SLACK + 8 * self.ranges_per_frame + 32


@dataclass(frozen=True)
class AccessUnit:
    """One frame: its index, its quantization ranges, and its codec packet (exactly the encoder's bytes)."""

    index: int
    ranges: tuple[QuantRange, ...]
    packet: bytes


def write_header(header: VideoHeader) -> bytes:
    """The preamble, header and checksum that start a video stream."""
    w = FieldWriter()
    w.string(header.model, "model name")
    w.string(header.split, "split name")
    w.string(header.weights_tag, "weights tag")
    write_wrapper(w, header.wrapper)
    write_meta(w, header.meta)
    w.uint(header.bit_depth)
    w.choice(header.range_mode, RANGE_MODES)
    write_layout(w, header.layout)
    write_codec(w, header.codec, header.params)
    w.uint(header.fps.numerator)
    w.uint(header.fps.denominator)
    w.uint(header.intra_period)
    w.raw(header.extradata)
    write_pairs(w, header.notes, "note")
    body = bytes(w.buf)
    if len(body) > MAX_HEADER:
        raise BitstreamError(f"video header of {len(body)} bytes exceeds {MAX_HEADER}")
    head = _PREAMBLE.pack(MAGIC, VERSION, len(body)) + body
    return head + _U32.pack(zlib.crc32(head))


def write_unit(header: VideoHeader, unit: AccessUnit) -> bytes:
    """One access unit's bytes (length, body, checksum)."""
    if len(unit.ranges) != header.ranges_per_frame:
        raise BitstreamError(
            f"frame {unit.index} has {len(unit.ranges)} ranges, the header needs {header.ranges_per_frame}"
        )
    if not unit.packet:
        raise BitstreamError(f"frame {unit.index} has an empty packet")
    w = FieldWriter()
    w.uint(unit.index)
    write_ranges(w, unit.ranges)
    w.raw(unit.packet)
    body = bytes(w.buf)
    if len(body) > header.max_unit_bytes:
        raise BitstreamError(f"frame {unit.index}'s access unit of {len(body)} bytes exceeds the format's bound")
    return _U32.pack(len(body)) + body + _U32.pack(zlib.crc32(body))


def write_end(frames: int) -> bytes:
    """The end record after ``frames`` access units."""
    tail = _U32.pack(0) + _U32.pack(frames)
    return tail + _U32.pack(zlib.crc32(tail))


class VideoWriter:
    """Writes a video stream to ``sink`` as it is made: :meth:`start` with the header, :meth:`add` each frame's unit,
    :meth:`finish` with the end record. Counts the bytes written (the stream's real size)."""

    def __init__(self, sink: BinaryIO) -> None:
        self.sink = sink
        self.header: VideoHeader | None = None
        self.frames = 0
        self.bytes = 0
        self.finished = False

    def _put(self, data: bytes) -> None:
        self.sink.write(data)
        self.bytes += len(data)

    def start(self, header: VideoHeader) -> None:
        if self.header is not None:
            raise FcmError("the video stream has already started")
        self._put(write_header(header))
        self.header = header

    def add(self, unit: AccessUnit) -> int:
        """Write one frame's access unit (frames in order from 0); its size in bytes."""
        if self.header is None or self.finished:
            raise FcmError("add() needs a started, unfinished video stream")
        if unit.index != self.frames:
            raise FcmError(f"access unit {unit.index} out of order: frame {self.frames} comes next")
        if self.frames >= MAX_FRAMES:
            raise FcmError(f"a video stream holds at most {MAX_FRAMES} frames; start another stream")
        data = write_unit(self.header, unit)
        self._put(data)
        self.frames += 1
        return len(data)

    def finish(self) -> None:
        if self.header is None or self.finished:
            raise FcmError("finish() needs a started, unfinished video stream")
        self._put(write_end(self.frames))
        self.finished = True


class VideoReader:
    """Reads a video stream from ``source`` (a binary file object; reads block until bytes arrive or the stream
    ends). The header is read and checked on construction; iterating yields each frame's :class:`AccessUnit` as soon
    as its bytes are complete, and raises :class:`BitstreamError` for truncation, corruption or a missing end."""

    def __init__(self, source: BinaryIO) -> None:
        self.source = source
        self.frames = 0
        self.bytes = 0
        self.header = self._read_header()

    def _exact(self, n: int, what: str) -> bytes:
        chunks, left = [], n
        while left:
            chunk = self.source.read(min(left, _READ_CHUNK))  # memory follows the bytes that arrive, not a claim
            if not chunk:
                done = f"{self.frames} complete frame(s)"
                raise BitstreamError(f"truncated: the stream ends inside {what} ({n - left} of {n} bytes) after {done}")
            chunks.append(chunk)
            left -= len(chunk)
        data = b"".join(chunks)
        self.bytes += n
        return data

    def _read_header(self) -> VideoHeader:
        pre = self._exact(_PREAMBLE.size, "the preamble")
        magic, version, length = _PREAMBLE.unpack(pre)
        if magic != MAGIC:
            raise BitstreamError(f"bad magic {magic!r}: not an fcm video stream (expected {MAGIC!r})")
        if version != VERSION:
            raise BitstreamError(f"unsupported video stream version {version}: this fcm reads version {VERSION}")
        if length > MAX_HEADER:
            raise BitstreamError(f"corrupt: a header of {length} bytes exceeds {MAX_HEADER}")
        body = self._exact(length, "the header")
        (crc,) = _U32.unpack(self._exact(4, "the header checksum"))
        if zlib.crc32(pre + body) != crc:
            raise BitstreamError("checksum mismatch: the video stream's header is corrupted")
        r = FieldReader(body)
        try:
            header = _parse_header(r)
        except BitstreamError:
            raise
        except (FcmError, ValueError) as e:  # dataclass validation (Layout, CodecParams)
            raise BitstreamError(f"corrupt: {e}") from e
        if r.remaining():
            raise BitstreamError(f"corrupt: {r.remaining()} unparsed bytes at the end of the header")
        return header

    def __iter__(self) -> Iterator[AccessUnit]:
        header = self.header
        while True:
            (length,) = _U32.unpack(self._exact(4, f"the length of frame {self.frames}'s access unit"))
            if length == 0:
                (count,) = _U32.unpack(self._exact(4, "the end record"))
                (crc,) = _U32.unpack(self._exact(4, "the end record's checksum"))
                if zlib.crc32(_U32.pack(0) + _U32.pack(count)) != crc:
                    raise BitstreamError("checksum mismatch: the end record is corrupted")
                if count != self.frames:
                    raise BitstreamError(
                        f"corrupt: the end record counts {count} frames, the stream holds {self.frames}"
                    )
                if self.source.read(1):
                    raise BitstreamError("corrupt: bytes after the end of the video stream")
                return
            if length > header.max_unit_bytes:
                raise BitstreamError(
                    f"corrupt: frame {self.frames}'s access unit claims {length} bytes, more than a "
                    f"{header.layout.frame_width}x{header.layout.frame_height} frame can take"
                )
            body = self._exact(length, f"frame {self.frames}'s access unit")
            (crc,) = _U32.unpack(self._exact(4, f"frame {self.frames}'s checksum"))
            if zlib.crc32(body) != crc:
                raise BitstreamError(f"checksum mismatch: frame {self.frames}'s access unit is corrupted")
            r = FieldReader(body)
            index = r.uint("frame index", MAX_FRAMES)
            if index != self.frames:
                raise BitstreamError(f"corrupt: access unit for frame {index} where frame {self.frames} comes next")
            try:
                ranges = read_ranges(r, header.ranges_per_frame)
            except ValueError as e:  # QuantRange validation
                raise BitstreamError(f"corrupt: frame {index}'s ranges: {e}") from e
            packet = r.raw("packet")
            if r.remaining() or not packet:
                raise BitstreamError(f"corrupt: frame {index}'s access unit is malformed")
            self.frames += 1
            yield AccessUnit(index, ranges, packet)


def _parse_header(r: FieldReader) -> VideoHeader:
    model = r.string("model name")
    split = r.string("split name")
    weights_tag = r.string("weights tag")
    wrapper = read_wrapper(r)
    meta = read_meta(r)
    bit_depth = read_bit_depth(r)
    range_mode = r.choice("range mode", RANGE_MODES)
    layout = read_layout(r)
    codec, params = read_codec(r)
    num = r.uint("frame rate numerator", MAX_RATE_TERM)
    den = r.uint("frame rate denominator", MAX_RATE_TERM)
    if num == 0 or den == 0:
        raise BitstreamError(f"corrupt: frame rate {num}/{den}")
    intra_period = r.uint("intra period", MAX_FRAMES)
    extradata = r.raw("codec extradata")
    notes = read_pairs(r, "note")
    return VideoHeader(
        model,
        split,
        weights_tag,
        meta,
        layout,
        bit_depth,
        range_mode,
        codec,
        params,
        Fraction(num, den),
        intra_period,
        wrapper,
        extradata,
        notes,
    )
