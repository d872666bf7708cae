"""The fcm container: a versioned, self-describing bitstream (format described in ``docs/bitstream.md``).

``write(header, payload) -> bytes`` and ``read(data) -> (header, payload)``. A decoder needs nothing but these bytes
and the model weights: model and split names, the weights tag, the integer side information of the split, tensor
shapes, the packing layout, the quantization ranges, the bit depth, the codec's name and parameters and its exact
output (extradata and packets) are all inside.

Every problem with the input — truncation, corruption (CRC-32 mismatch), a wrong magic, a future version, fields out
of range — raises :class:`fcm.errors.BitstreamError` naming it. Lengths and counts are checked against the bytes
that remain before anything is allocated, so garbage can neither exhaust memory nor loop.

Over 500 lines on purpose: every field, version rule and check of the container in one module, read against
``docs/bitstream.md`` (a writer and its reader side by side, so a format change cannot touch one alone).
"""

from __future__ import annotations

import math
import re
import struct
import zlib
from dataclasses import dataclass, field
from typing import TypeVar

from fcm.codecs.base import CodecParams, EncodedFrames, GopStructure, RateControl
from fcm.errors import BitstreamError, FcmError
from fcm.packing.layout import MAX_DIM, Layout, TensorPlacement
from fcm.packing.packer import RANGE_MODES, RangeMode
from fcm.packing.quantize import SUPPORTED_BIT_DEPTHS, QuantRange
from fcm.rdo.scaling import BlockScales

MAGIC = b"FCM\x1a"
#: the newest version this fcm reads and writes; a writer uses the lowest version that can hold its header, so a stream
#: without a wrapper or float side information is still version 1, byte for byte what older fcm wrote
VERSION = 3
_PREAMBLE = struct.Struct("<4sBI")  # magic, version, body length
_CRC = struct.Struct("<I")
MAX_STRING = 255
#: Names (model, split, weights tag, meta keys, tensor names, codec, preset, option and note keys): 1–64 characters
#: from this set (the preset may also be empty). Nothing printable can smuggle a newline or terminal escape.
NAME_CHARS = "A-Za-z0-9_.:/+-"
MAX_NAME = 64
#: Option and note values: 0–255 printable ASCII characters (space to ``~``).
VALUE_CHARS = r"\x20-\x7e"
_NAME = re.compile(f"[{NAME_CHARS}]{{1,{MAX_NAME}}}")
_PRESET = re.compile(f"[{NAME_CHARS}]{{0,{MAX_NAME}}}")  # empty: the codec's default
_VALUE = re.compile(f"[{VALUE_CHARS}]{{0,{MAX_STRING}}}")
#: a wrapper's weights tag: 16 lower-case hex digits (see fcm.wrappers.state_dict_tag)
_TAG = re.compile("[0-9a-f]{16}")
MAX_TENSORS = 64
MAX_META = 32
#: float side information (version 2): at most this many entries of at most MAX_SIDE_VALUES float32 values each
MAX_SIDE_INFO = 32
MAX_SIDE_VALUES = 4096
MAX_FRAMES = 1 << 20
#: block scales (version 3): block side bounds and the most blocks a stream's map may hold (16 MiB of steps)
MIN_SCALE_BLOCK = 4
MAX_SCALE_BLOCK = 256
MAX_SCALE_MAP = 1 << 24
# the index into these tuples is what the bitstream stores: never reorder them
_RATE_CONTROLS: tuple[RateControl, ...] = ("cqp", "crf")
_GOPS: tuple[GopStructure, ...] = ("intra", "lowdelay")
_Choice = TypeVar("_Choice", bound=str)


@dataclass(frozen=True)
class WrapperRef:
    """Which learned wrapper a stream was coded with: its registered name and the tag of its weights."""

    name: str
    weights_tag: str

    def __str__(self) -> str:
        return f"{self.name} (weights {self.weights_tag})"


@dataclass(frozen=True)
class Header:
    """Everything in an fcm bitstream except the codec payload.

    ``wrapper`` and ``side_info`` (finite float32 values by name) need version 2, ``block_scales`` version 3; without
    them a stream is version 1.
    """

    model: str
    split: str
    weights_tag: str
    meta: dict[str, tuple[int, ...]]
    layout: Layout
    bit_depth: int
    range_mode: RangeMode
    ranges: tuple[tuple[QuantRange, ...], ...]
    codec: str
    params: CodecParams
    #: free-form ``(key, value)`` strings for provenance (e.g. the fcm version); not needed to decode
    notes: tuple[tuple[str, str], ...] = field(default_factory=tuple)
    wrapper: WrapperRef | None = None
    side_info: dict[str, tuple[float, ...]] = field(default_factory=dict)
    #: per-block sample scaling the frames were coded with (version 3; :mod:`fcm.rdo.scaling`), undone after decoding
    block_scales: BlockScales | None = None

    @property
    def num_frames(self) -> int:
        return len(self.ranges)

    @property
    def version(self) -> int:
        """The format version this header needs: 3 with block scales, 2 with a wrapper or float side information,
        else 1."""
        if self.block_scales is not None:
            return 3
        return 2 if self.wrapper is not None or self.side_info else 1


# ---------------------------------------------------------------- writing


class FieldWriter:
    """Appends the container's field encodings (LEB128 integers, zig-zag, float32, length-prefixed bytes)."""

    def __init__(self) -> None:
        self.buf = bytearray()

    def uint(self, v: int) -> None:  # LEB128
        if v < 0:
            raise ValueError(f"cannot write negative {v} as unsigned")
        while True:
            byte = v & 0x7F
            v >>= 7
            if v:
                self.buf.append(byte | 0x80)
            else:
                self.buf.append(byte)
                return

    def sint(self, v: int) -> None:  # zig-zag
        self.uint((v << 1) if v >= 0 else ((-v) << 1) - 1)

    def f32(self, v: float) -> None:
        self.buf += struct.pack("<f", v)

    def raw(self, b: bytes) -> None:
        self.uint(len(b))
        self.buf += b

    def string(self, s: str, what: str, pattern: re.Pattern[str] = _NAME) -> None:
        _check_string(s, what, pattern)
        self.raw(s.encode("ascii"))

    def choice(self, value: str, options: tuple[str, ...]) -> None:
        self.uint(options.index(value))


def write(header: Header, payload: EncodedFrames) -> bytes:
    """Serialize ``header`` and the codec ``payload`` into one fcm bitstream."""
    if payload.codec != header.codec:
        raise ValueError(f"payload was made by {payload.codec!r} but the header names {header.codec!r}")
    lay = header.layout
    if (payload.width, payload.height, payload.bit_depth, payload.num_frames) != (
        lay.frame_width,
        lay.frame_height,
        header.bit_depth,
        header.num_frames,
    ):
        raise ValueError("payload frame size, bit depth or count disagrees with the header")
    version = header.version
    w = FieldWriter()
    w.string(header.model, "model name")
    w.string(header.split, "split name")
    w.string(header.weights_tag, "weights tag")
    if version >= 2:
        write_wrapper(w, header.wrapper)
    write_meta(w, header.meta)
    if version >= 2:
        _write_side_info(w, header.side_info)
    w.uint(header.bit_depth)
    w.choice(header.range_mode, RANGE_MODES)
    write_layout(w, lay)
    w.uint(header.num_frames)
    for frame_ranges in header.ranges:
        write_ranges(w, frame_ranges)
    if version >= 3:
        _write_block_scales(w, header)
    write_codec(w, header.codec, header.params)
    write_pairs(w, header.notes, "note")
    w.raw(payload.extradata)
    w.uint(len(payload.packets))
    for packet in payload.packets:
        w.raw(packet)
    body = bytes(w.buf)
    head = _PREAMBLE.pack(MAGIC, version, len(body))
    return head + body + _CRC.pack(zlib.crc32(head + body))


def write_meta(w: FieldWriter, meta: dict[str, tuple[int, ...]]) -> None:
    """Integer side information by name (shared with the video container, as are the writers below)."""
    w.uint(len(meta))
    for key, values in meta.items():
        w.string(key, "meta key")
        w.uint(len(values))
        for v in values:
            w.sint(int(v))


def write_layout(w: FieldWriter, lay: Layout) -> None:
    w.uint(lay.frame_height)
    w.uint(lay.frame_width)
    w.uint(len(lay.placements))
    for p in lay.placements:
        w.string(p.name, "tensor name")
        for v in (p.channels, p.height, p.width, p.cols, p.top):
            w.uint(v)


def write_ranges(w: FieldWriter, frame_ranges: tuple[QuantRange, ...]) -> None:
    for r in frame_ranges:
        w.f32(r.lo)
        w.f32(r.hi)


def write_codec(w: FieldWriter, codec: str, params: CodecParams) -> None:
    w.string(codec, "codec name")
    w.sint(params.qp)
    w.choice(params.rate_control, _RATE_CONTROLS)
    w.choice(params.gop, _GOPS)
    w.string(params.preset or "", "preset", _PRESET)
    write_pairs(w, params.options, "codec option")


def write_wrapper(w: FieldWriter, wrapper: WrapperRef | None) -> None:
    if wrapper is None:
        w.uint(0)
        return
    w.uint(1)
    w.string(wrapper.name, "wrapper name")
    w.string(wrapper.weights_tag, "wrapper weights tag", _TAG)


def _write_side_info(w: FieldWriter, side_info: dict[str, tuple[float, ...]]) -> None:
    if len(side_info) > MAX_SIDE_INFO:
        raise BitstreamError(f"invalid side information: {len(side_info)} entries, at most {MAX_SIDE_INFO}")
    w.uint(len(side_info))
    for key, values in side_info.items():
        w.string(key, "side information key")
        try:
            values32 = [float(struct.unpack("<f", struct.pack("<f", v))[0]) for v in values]
        except (struct.error, OverflowError, TypeError) as e:  # not a number, or beyond float32
            raise BitstreamError(f"invalid side information {key!a}: {e}") from None
        if len(values32) > MAX_SIDE_VALUES or not all(math.isfinite(v) for v in values32):
            raise BitstreamError(
                f"invalid side information {key!a}: at most {MAX_SIDE_VALUES} values, all finite in float32"
            )
        w.uint(len(values32))
        for v in values32:
            w.f32(v)


def _write_block_scales(w: FieldWriter, header: Header) -> None:
    scales = header.block_scales
    if scales is None:
        w.uint(0)
        return
    try:
        scales.check_frames(
            (header.num_frames, header.layout.frame_height, header.layout.frame_width), header.bit_depth
        )
    except FcmError as e:
        raise BitstreamError(f"invalid block scales: {e}") from None
    if not MIN_SCALE_BLOCK <= scales.block <= MAX_SCALE_BLOCK or len(scales.steps) > MAX_SCALE_MAP:
        raise BitstreamError(
            f"invalid block scales: blocks of {MIN_SCALE_BLOCK}–{MAX_SCALE_BLOCK} samples, at most {MAX_SCALE_MAP} "
            "blocks in all"
        )
    w.uint(scales.block)
    for c in scales.centres:
        w.uint(c)
    w.raw(zlib.compress(scales.steps, 9))


def write_pairs(w: FieldWriter, pairs: tuple[tuple[str, str], ...], what: str) -> None:
    w.uint(len(pairs))
    for k, v in pairs:
        w.string(k, f"{what} key")
        w.string(v, f"{what} value", _VALUE)


def _check_string(s: object, what: str, pattern: re.Pattern[str]) -> None:
    """Raise BitstreamError unless ``s`` is a string ``pattern`` matches in full; the message escapes ``s``."""
    if not isinstance(s, str) or not pattern.fullmatch(s):
        if pattern is _VALUE:
            allowed = f"at most {MAX_STRING} printable ASCII characters"
        elif pattern is _TAG:
            allowed = "16 lower-case hexadecimal digits"
        else:
            allowed = f"{0 if pattern is _PRESET else 1}–{MAX_NAME} characters from [{NAME_CHARS}]"
        shown = ascii(s[:80]) + ("…" if len(s) > 80 else "") if isinstance(s, str) else type(s).__name__
        raise BitstreamError(f"invalid {what} {shown}: must be {allowed}")


# ---------------------------------------------------------------- reading


class FieldReader:
    """Reads :class:`FieldWriter`'s encodings, every length and count checked against the bytes that remain."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def remaining(self) -> int:
        return len(self.data) - self.pos

    def uint(self, what: str, limit: int | None = None) -> int:
        v = shift = 0
        while True:
            if self.pos >= len(self.data):
                raise BitstreamError(f"truncated: ran out of bytes reading {what}")
            byte = self.data[self.pos]
            self.pos += 1
            v |= (byte & 0x7F) << shift
            if not byte & 0x80:
                break
            shift += 7
            if shift > 63:
                raise BitstreamError(f"corrupt: integer {what} is too long")
        if byte == 0 and shift:  # one value, one encoding: the writer never ends a varint with a zero byte
            raise BitstreamError(f"corrupt: integer {what} is not minimally encoded")
        if v >= 1 << 64:
            raise BitstreamError(f"corrupt: integer {what} does not fit in 64 bits")
        if limit is not None and v > limit:
            raise BitstreamError(f"corrupt: {what} = {v} exceeds its limit {limit}")
        return v

    def sint(self, what: str) -> int:
        v = self.uint(what)
        return (v >> 1) if not v & 1 else -((v + 1) >> 1)

    def count(self, what: str, limit: int, min_bytes_each: int = 1) -> int:
        n = self.uint(what, limit)
        if n * min_bytes_each > self.remaining():
            raise BitstreamError(f"truncated: {what} = {n} needs more bytes than remain ({self.remaining()})")
        return n

    def f32(self, what: str) -> float:
        if self.remaining() < 4:
            raise BitstreamError(f"truncated: ran out of bytes reading {what}")
        (v,) = struct.unpack_from("<f", self.data, self.pos)
        self.pos += 4
        return v

    def raw(self, what: str) -> bytes:
        n = self.uint(f"length of {what}")
        if n > self.remaining():
            raise BitstreamError(f"truncated: {what} needs {n} bytes, {self.remaining()} remain")
        b = self.data[self.pos : self.pos + n]
        self.pos += n
        return bytes(b)

    def string(self, what: str, pattern: re.Pattern[str] = _NAME) -> str:
        n = self.uint(f"length of {what}", MAX_STRING)
        if n > self.remaining():
            raise BitstreamError(f"truncated: {what} needs {n} bytes, {self.remaining()} remain")
        s = self.data[self.pos : self.pos + n].decode("latin-1")  # every byte maps to one character; checked next
        self.pos += n
        try:
            _check_string(s, what, pattern)
        except BitstreamError as e:
            raise BitstreamError(f"corrupt: {e}") from None
        return s

    def choice(self, what: str, options: tuple[_Choice, ...]) -> _Choice:
        i = self.uint(what)
        if i >= len(options):
            raise BitstreamError(f"corrupt: {what} index {i} is not one of {options}")
        return options[i]


def read(data: bytes) -> tuple[Header, EncodedFrames]:
    """Parse an fcm bitstream. Raises :class:`BitstreamError` for any invalid input."""
    return _parse(data)


def _parse(data: bytes) -> tuple[Header, EncodedFrames]:
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise BitstreamError(f"expected bytes, got {type(data).__name__}")
    data = bytes(data)
    if len(data) < _PREAMBLE.size:
        raise BitstreamError(f"truncated: {len(data)} bytes is shorter than the {_PREAMBLE.size}-byte preamble")
    magic, version, body_len = _PREAMBLE.unpack_from(data)
    if magic != MAGIC:
        raise BitstreamError(f"bad magic {magic!r}: not an fcm bitstream (expected {MAGIC!r})")
    if version > VERSION:
        raise BitstreamError(f"unsupported version {version}: this fcm reads version {VERSION} and older")
    if version < 1:
        raise BitstreamError(f"corrupt: invalid version {version}")
    end = _PREAMBLE.size + body_len
    if len(data) < end + _CRC.size:
        raise BitstreamError(f"truncated: header says {end + _CRC.size} bytes, got {len(data)}")
    if len(data) > end + _CRC.size:
        raise BitstreamError(f"corrupt: {len(data) - end - _CRC.size} unexpected bytes after the end of the stream")
    (crc,) = _CRC.unpack_from(data, end)
    if zlib.crc32(data[:end]) != crc:
        raise BitstreamError("checksum mismatch: the bitstream is corrupted")
    r = FieldReader(data[:end])
    r.pos = _PREAMBLE.size
    try:
        header, payload = _parse_body(r, version)
    except BitstreamError:
        raise
    except (FcmError, ValueError) as e:  # dataclass validation (Layout, QuantRange, CodecParams)
        raise BitstreamError(f"corrupt: {e}") from e
    if r.remaining():
        raise BitstreamError(f"corrupt: {r.remaining()} unparsed bytes at the end of the body")
    return header, payload


def _parse_body(r: FieldReader, version: int) -> tuple[Header, EncodedFrames]:
    model = r.string("model name")
    split = r.string("split name")
    weights_tag = r.string("weights tag")
    wrapper = read_wrapper(r) if version >= 2 else None
    meta = read_meta(r)
    side_info = _read_side_info(r) if version >= 2 else {}
    bit_depth = read_bit_depth(r)
    range_mode = r.choice("range mode", RANGE_MODES)
    layout = read_layout(r)
    frame_height, frame_width = layout.frame_height, layout.frame_width
    per_frame = ranges_per_frame(range_mode, layout)
    num_frames = r.count("frame count", MAX_FRAMES, 8 * per_frame)
    if num_frames < 1:
        raise BitstreamError("corrupt: frame count is 0")
    ranges = tuple(read_ranges(r, per_frame) for _ in range(num_frames))
    block_scales = _read_block_scales(r, num_frames, frame_height, frame_width, bit_depth) if version >= 3 else None
    codec, params = read_codec(r)
    notes = read_pairs(r, "note")
    extradata = r.raw("codec extradata")
    packets = tuple(r.raw("packet") for _ in range(r.count("packet count", MAX_FRAMES * 4, 1)))
    header = Header(
        model,
        split,
        weights_tag,
        meta,
        layout,
        bit_depth,
        range_mode,
        ranges,
        codec,
        params,
        notes,
        wrapper,
        side_info,
        block_scales,
    )
    if header.version != version:  # one header, one encoding: a version-2 stream must use what version 2 adds
        raise BitstreamError(f"corrupt: a version-{version} stream whose header needs version {header.version}")
    payload = EncodedFrames(codec, frame_width, frame_height, bit_depth, num_frames, extradata, packets)
    return header, payload


def read_meta(r: FieldReader) -> dict[str, tuple[int, ...]]:
    meta: dict[str, tuple[int, ...]] = {}
    for _ in range(r.count("meta entry count", MAX_META, 2)):
        key = r.string("meta key")
        if key in meta:
            raise BitstreamError(f"corrupt: meta key {key!a} appears twice")
        values = tuple(r.sint(f"meta {key}") for _ in range(r.count(f"meta {key} length", 16)))
        meta[key] = values
    return meta


def read_bit_depth(r: FieldReader) -> int:
    bit_depth = r.uint("bit depth", 64)
    if bit_depth not in SUPPORTED_BIT_DEPTHS:
        raise BitstreamError(f"corrupt: bit depth {bit_depth} is not one of {SUPPORTED_BIT_DEPTHS}")
    return bit_depth


def read_layout(r: FieldReader) -> Layout:
    frame_height = r.uint("frame height", MAX_DIM)
    frame_width = r.uint("frame width", MAX_DIM)
    placements = []
    for _ in range(r.count("tensor count", MAX_TENSORS, 6)):
        name = r.string("tensor name")
        fields = ("channels", "height", "width", "cols", "top")
        c, h, w, cols, top = (r.uint(f"tensor {name} {f}", MAX_DIM) for f in fields)
        placements.append(TensorPlacement(name, c, h, w, cols, top))
    return Layout(tuple(placements), frame_height, frame_width)  # validates the geometry


def ranges_per_frame(range_mode: RangeMode, layout: Layout) -> int:
    return 1 if range_mode == "frame" else len(layout.placements)


def read_ranges(r: FieldReader, per_frame: int) -> tuple[QuantRange, ...]:
    return tuple(QuantRange(r.f32("range low"), r.f32("range high")) for _ in range(per_frame))


def read_codec(r: FieldReader) -> tuple[str, CodecParams]:
    codec = r.string("codec name")
    qp = r.sint("qp")
    rate_control = r.choice("rate control", _RATE_CONTROLS)
    gop = r.choice("GOP structure", _GOPS)
    preset = r.string("preset", _PRESET) or None
    options = read_pairs(r, "codec option")
    return codec, CodecParams(qp, rate_control, gop, preset, options)


def read_wrapper(r: FieldReader) -> WrapperRef | None:
    present = r.uint("wrapper flag", 1)
    if not present:
        return None
    return WrapperRef(r.string("wrapper name"), r.string("wrapper weights tag", _TAG))


def _read_side_info(r: FieldReader) -> dict[str, tuple[float, ...]]:
    side_info: dict[str, tuple[float, ...]] = {}
    for _ in range(r.count("side information count", MAX_SIDE_INFO, 2)):
        key = r.string("side information key")
        if key in side_info:
            raise BitstreamError(f"corrupt: side information key {key!a} appears twice")
        n = r.count(f"side information {key} length", MAX_SIDE_VALUES, 4)
        values = tuple(r.f32(f"side information {key}") for _ in range(n))
        if not all(math.isfinite(v) for v in values):
            raise BitstreamError(f"corrupt: side information {key!a} holds a non-finite value")
        side_info[key] = values
    return side_info


def _read_block_scales(r: FieldReader, n: int, height: int, width: int, bit_depth: int) -> BlockScales | None:
    block = r.uint("scale block size", MAX_SCALE_BLOCK)
    if block == 0:
        return None
    if block < MIN_SCALE_BLOCK:
        raise BitstreamError(f"corrupt: scale block size {block} is below {MIN_SCALE_BLOCK}")
    centres = tuple(r.uint("scale centre", (1 << bit_depth) - 1) for _ in range(n))
    shape = (n, -(-height // block), -(-width // block))
    size = shape[0] * shape[1] * shape[2]
    if size > MAX_SCALE_MAP:  # checked before inflating: a small stream cannot ask for a huge map
        raise BitstreamError(f"corrupt: a block scale map of {size} blocks exceeds {MAX_SCALE_MAP}")
    packed = r.raw("block scale steps")
    inflater = zlib.decompressobj()
    try:
        steps = inflater.decompress(packed, size)  # never more than the map can hold
    except zlib.error as e:
        raise BitstreamError(f"corrupt: block scale steps do not inflate: {e}") from None
    if len(steps) != size or inflater.unconsumed_tail or inflater.unused_data or not inflater.eof:
        raise BitstreamError(f"corrupt: block scale steps are not one zlib stream of exactly {size} values")
    try:
        return BlockScales(block, centres, shape, steps)
    except FcmError as e:
        raise BitstreamError(f"corrupt: {e}") from None


def read_pairs(r: FieldReader, what: str) -> tuple[tuple[str, str], ...]:
    return tuple(
        (r.string(f"{what} key"), r.string(f"{what} value", _VALUE)) for _ in range(r.count(f"{what} count", 64, 2))
    )
