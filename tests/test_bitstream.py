"""The container on its own: exact round trip of every field, and one documented error for bad input."""

import dataclasses
import importlib.util
import json
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from fcm import bitstream
from fcm.bitstream import Header
from fcm.codecs.base import CodecParams, EncodedFrames
from fcm.errors import BitstreamError, ShapeError
from fcm.packing import Layout, QuantRange, dequantize


def _header(range_mode="frame", frames=2):
    layout = Layout.for_shapes([("p2", 256, 16, 24), ("p3", 256, 8, 12)])
    per = 1 if range_mode == "frame" else 2
    ranges = tuple(tuple(QuantRange(-1.5 - i - j, 2.25 + i + j) for j in range(per)) for i in range(frames))
    return Header(
        model="faster_rcnn_r50_fpn",
        split="fpn",
        weights_tag="258fb6c6deadbeef",
        meta={"input_size": (480, 640), "image_size": (800, 1066), "neg": (-3,)},
        layout=layout,
        bit_depth=10,
        range_mode=range_mode,
        ranges=ranges,
        codec="x265",
        params=CodecParams(qp=-6, rate_control="crf", gop="lowdelay", preset="fast", options=(("tune", "psnr"),)),
        notes=(("fcm", "0.1.0"),),
    )


def _payload(h: Header, packets=(b"\x00\x00\x01abc", b"", b"\xff" * 300)):
    return EncodedFrames(
        h.codec, h.layout.frame_width, h.layout.frame_height, h.bit_depth, h.num_frames, b"\x01\x02", tuple(packets)
    )


@pytest.mark.parametrize("range_mode", ["frame", "tensor"])
def test_round_trip_every_field(range_mode):
    h = _header(range_mode)
    p = _payload(h)
    data = bitstream.write(h, p)
    h2, p2 = bitstream.read(data)
    assert h2 == h
    assert p2 == p
    assert bitstream.read(bytearray(data))[0] == h


def test_overhead_is_small():
    h = _header()
    p = _payload(h, packets=(b"x" * 1000,))
    data = bitstream.write(h, p)
    # preamble, every side-information field of this 2-frame, 2-tensor header (names, sizes, 4 ranges, options,
    # notes), packet framing and CRC: 175 bytes when written
    assert len(data) - p.num_bytes < 200


def test_float_ranges_are_exact_float32():
    h = _header()
    data = bitstream.write(h, _payload(h))
    h2, _ = bitstream.read(data)
    for a, b in zip(h.ranges, h2.ranges):
        for ra, rb in zip(a, b):
            assert np.float32(ra.lo) == np.float32(rb.lo) and np.float32(ra.hi) == np.float32(rb.hi)


def _load_fuzz_tool():
    spec = importlib.util.spec_from_file_location("fuzz_bitstream", TOOLS / "fuzz_bitstream.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


TOOLS = Path(__file__).resolve().parents[1] / "tools"
fuzz_tool = _load_fuzz_tool()
_recrc = fuzz_tool.recrc


def test_documented_errors():
    h = _header()
    data = bitstream.write(h, _payload(h))
    with pytest.raises(BitstreamError, match="bad magic"):
        bitstream.read(b"RIFF" + data[4:])
    with pytest.raises(BitstreamError, match=f"unsupported version {bitstream.VERSION + 1}"):
        bitstream.read(_recrc(data[:4] + bytes([bitstream.VERSION + 1]) + data[5:]))
    with pytest.raises(BitstreamError, match="truncated"):
        bitstream.read(data[:3])
    with pytest.raises(BitstreamError, match="truncated"):
        bitstream.read(data[:-1])
    with pytest.raises(BitstreamError, match="checksum mismatch"):
        bitstream.read(data[:20] + bytes([data[20] ^ 1]) + data[21:])
    with pytest.raises(BitstreamError, match="unexpected bytes"):
        bitstream.read(data + b"\x00")
    with pytest.raises(BitstreamError, match="expected bytes"):
        bitstream.read("not bytes")  # type: ignore[arg-type]


def test_structural_fuzz_with_valid_checksums():
    """Random edits whose CRC is recomputed reach the field parser: it must answer BitstreamError or a valid result."""
    h = _header("tensor")
    data = bitstream.write(h, _payload(h))
    rng = np.random.default_rng(11)
    outcomes = {"ok": 0, "error": 0}
    for _ in range(3000):
        b = bytearray(data[:-4])
        for _ in range(rng.integers(1, 4)):
            pos = int(rng.integers(9, len(b)))  # keep magic/version/length to reach the body parser
            b[pos] = int(rng.integers(0, 256))
        try:
            bitstream.read(_recrc(bytes(b)))
            outcomes["ok"] += 1
        except BitstreamError:
            outcomes["error"] += 1
    assert outcomes["error"] > 500 and sum(outcomes.values()) == 3000


def test_huge_declared_lengths_do_not_allocate():
    h = _header()
    data = bytearray(bitstream.write(h, _payload(h)))
    # declare an absurd body length: rejected as truncated before anything is read
    data[5:9] = struct.pack("<I", 0xFFFFFFF0)
    with pytest.raises(BitstreamError, match="truncated"):
        bitstream.read(bytes(data))


def test_writer_rejects_inconsistent_payload():
    h = _header()
    p = _payload(h)
    with pytest.raises(ValueError, match="disagrees"):
        bitstream.write(h, EncodedFrames(p.codec, p.width + 8, p.height, p.bit_depth, p.num_frames))


def test_golden_container_hash():
    """The serialized form of a fixed header and payload: any format change must be deliberate (bump VERSION)."""
    import hashlib

    h = _header("tensor")
    digest = hashlib.sha256(bitstream.write(h, _payload(h))).hexdigest()
    assert digest == "bd82689272d3a0f56d120cbb04ccf511100b8c68a98fa7181f4efe72574f5339", digest


def test_duplicate_meta_keys_are_rejected():
    h = _header()
    data = bytearray(bitstream.write(h, _payload(h)))
    first = data.index(b"image_size")
    data[first : first + 10] = b"input_size"  # now 'input_size' appears twice
    with pytest.raises(BitstreamError, match="appears twice"):
        bitstream.read(_recrc(bytes(data)))


# ----------------------------------------------------------------------------------------------------------------------
# Strings: a documented printable set, checked on write and on read, escaped in messages
# ----------------------------------------------------------------------------------------------------------------------

#: every string field of the header, as a function putting ``s`` into it
STRING_FIELDS = {
    "model name": lambda h, s: dataclasses.replace(h, model=s),
    "split name": lambda h, s: dataclasses.replace(h, split=s),
    "weights tag": lambda h, s: dataclasses.replace(h, weights_tag=s),
    "meta key": lambda h, s: dataclasses.replace(h, meta={**h.meta, s: (1,)}),
    "tensor name": lambda h, s: dataclasses.replace(
        h, layout=Layout.for_shapes([(s, 4, 2, 2)]), ranges=((QuantRange(0, 1),),) * 2
    ),
    "codec name": lambda h, s: dataclasses.replace(h, codec=s),
    "preset": lambda h, s: dataclasses.replace(h, params=dataclasses.replace(h.params, preset=s)),
    "codec option key": lambda h, s: dataclasses.replace(h, params=dataclasses.replace(h.params, options=((s, "1"),))),
    "codec option value": lambda h, s: dataclasses.replace(
        h, params=dataclasses.replace(h.params, options=(("k", s),))
    ),
    "note key": lambda h, s: dataclasses.replace(h, notes=((s, "1"),)),
    "note value": lambda h, s: dataclasses.replace(h, notes=(("k", s),)),
}
HOSTILE = ["two\nlines", "\x1b[31mred", "caf\u00e9", "tab\there", "nul\x00"]


def _written(h: Header) -> bytes:
    return bitstream.write(
        h,
        EncodedFrames(
            h.codec, h.layout.frame_width, h.layout.frame_height, h.bit_depth, h.num_frames, b"", (b"x",) * h.num_frames
        ),
    )


def _is_one_clean_line(message: str) -> bool:
    return message.isprintable()


@pytest.mark.parametrize("what", list(STRING_FIELDS))
def test_strings_outside_the_set_are_refused_on_write(what):
    too_long = "x" * (bitstream.MAX_STRING + 1 if what.endswith("value") else bitstream.MAX_NAME + 1)
    for hostile in [*HOSTILE, too_long]:
        with pytest.raises(BitstreamError, match=f"invalid {what}") as e:
            _written(STRING_FIELDS[what](_header(), hostile))
        assert _is_one_clean_line(str(e.value)), str(e.value)


@pytest.mark.parametrize("what", list(STRING_FIELDS))
def test_strings_outside_the_set_are_refused_on_read(what):
    placeholder = "Zq9Zq9Zq9"
    data = _written(STRING_FIELDS[what](_header(), placeholder))
    for hostile in ("two\nline", "\x1b[31mred", "caf\xe9_abc", "bell\x07xx"):
        forged = data.replace(placeholder.encode(), hostile.ljust(len(placeholder), "x").encode("latin-1"))
        assert len(forged) == len(data) and forged != data
        with pytest.raises(BitstreamError, match=f"corrupt: invalid {what}") as e:
            bitstream.read(_recrc(forged))
        assert _is_one_clean_line(str(e.value)), str(e.value)


def test_allowed_strings_round_trip():
    h = STRING_FIELDS["codec option value"](_header(), "aq-mode=2:psy-rd=1.0, with spaces ~!")
    h = STRING_FIELDS["preset"](h, "")
    h2, _ = bitstream.read(_written(h))
    assert h2 == dataclasses.replace(h, params=dataclasses.replace(h.params, preset=None))
    name = "a" * bitstream.MAX_NAME
    assert bitstream.read(_written(STRING_FIELDS["model name"](_header(), name)))[0].model == name


def test_cli_prints_a_forged_header_on_one_escaped_line(tmp_path, capsys):
    from fcm.cli import main

    placeholder = "Zq9Zq9Zq9"
    data = _written(STRING_FIELDS["tensor name"](_header(), placeholder))
    path = tmp_path / "forged.fcm"
    path.write_bytes(_recrc(data.replace(placeholder.encode(), b"\n\x1b[2J\x1b[Hx")))
    assert main(["info", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "\x1b" not in err and "\\x1b[2J" in err


# ----------------------------------------------------------------------------------------------------------------------
# Ranges: finite, ordered, and small enough that float32 dequantization cannot overflow
# ----------------------------------------------------------------------------------------------------------------------


def _with_range(lo: float, hi: float) -> bytes:
    """The two-frame header with frame 0's range forged to [lo, hi] (as float32), CRC recomputed."""
    h = _header()
    data = _written(h)
    old = struct.pack("<ff", *(h.ranges[0][0].lo, h.ranges[0][0].hi))
    assert data.count(old) == 1
    return _recrc(data.replace(old, struct.pack("<ff", lo, hi)))


@pytest.mark.parametrize(
    ("lo", "hi", "message"),
    [
        (-3e38, 3e38, "exceeds"),  # span overflows float32: this decoded to NaN probabilities before
        (-(2.0**127), 0.0, "exceeds"),
        (0.0, float("inf"), "invalid quantization range"),
        (float("nan"), 1.0, "invalid quantization range"),
        (2.0, 1.0, "invalid quantization range"),
    ],
)
def test_ranges_that_cannot_dequantize_are_refused_on_read(lo, hi, message):
    with pytest.raises(BitstreamError, match=f"corrupt: .*{message}"):
        bitstream.read(_with_range(lo, hi))


def test_largest_allowed_range_dequantizes_finitely():
    limit = QuantRange(-(2.0**126), 2.0**126)
    h, _ = bitstream.read(_with_range(limit.lo, limit.hi))
    assert h.ranges[0][0] == limit
    for bit_depth in (8, 10, 16):
        q = np.array([0, 1, (1 << bit_depth) - 1], np.uint16)
        x = dequantize(q, limit, bit_depth)
        assert np.isfinite(x).all() and x[0] == limit.lo and x[-1] == limit.hi
    with pytest.raises(ShapeError, match="exceeds"):
        QuantRange(0.0, 2.0**127)


def test_dequantize_refuses_to_return_non_finite_values():
    forged = object.__new__(QuantRange)  # a range that skipped validation, as a buggy reader could produce
    object.__setattr__(forged, "lo", -3e38)
    object.__setattr__(forged, "hi", 3e38)
    with pytest.raises(ShapeError, match="non-finite"):
        dequantize(np.array([0, 1023], np.uint16), forged, 10)


# ----------------------------------------------------------------------------------------------------------------------
# The fuzz tool (tools/fuzz_bitstream.py) on real codec streams
# ----------------------------------------------------------------------------------------------------------------------


def test_fuzz_tool_runs_and_finds_no_bug():
    proc = subprocess.run(
        [sys.executable, str(TOOLS / "fuzz_bitstream.py"), "--cases", "70", "--seed", "3"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    result = json.loads(proc.stdout)
    assert proc.returncode == 0, result["bugs"]
    assert result["cases"] == 70 and sum(result["totals"].values()) == 70
    assert result["totals"]["rejected"] > 0 and set(result["by_kind"]) == set(fuzz_tool.MUTATIONS)


def test_fuzz_mutations_are_seeded_and_change_the_stream():
    data = bytes(range(256)) * 4
    for kind in fuzz_tool.MUTATIONS:
        a = fuzz_tool.mutate(data, kind, np.random.default_rng(5), payload_start=300)
        b = fuzz_tool.mutate(data, kind, np.random.default_rng(5), payload_start=300)
        assert a == b and a != data, kind


def _reframed(body: bytes) -> bytes:
    """A version-1 stream around ``body`` (the bytes after the preamble) with the body length and CRC recomputed."""
    return _recrc(bitstream.MAGIC + b"\x01" + struct.pack("<I", len(body)) + body + b"\0" * 4)


def test_varints_must_be_minimal():
    data = _written(_header())
    body = data[9:-4]
    # the tensor count 2 (followed by the first name, "p2") as the two-byte varint 0x82 0x00: same value, 2nd encoding
    assert body.count(b"\x02\x02p2") == 1 and bitstream.read(_reframed(body))[0] == _header()
    with pytest.raises(BitstreamError, match="tensor count is not minimally encoded"):
        bitstream.read(_reframed(body.replace(b"\x02\x02p2", b"\x82\x00\x02p2")))


def test_zero_frames_are_rejected():
    h = dataclasses.replace(_header(), ranges=())
    data = bitstream.write(h, EncodedFrames(h.codec, h.layout.frame_width, h.layout.frame_height, h.bit_depth, 0))
    with pytest.raises(BitstreamError, match="frame count is 0"):
        bitstream.read(data)


# ----------------------------------------------------------------------------------------------------------------------
# Version 2: the wrapper a stream was coded with, and float side information


def _v2_header(range_mode="frame"):
    return dataclasses.replace(
        _header(range_mode),
        wrapper=bitstream.WrapperRef("channel_reduction", "0123456789abcdef"),
        side_info={"scale": (0.5, -2.25, 1e-3), "bias": ()},
    )


def test_plain_streams_stay_version_1_and_wrapped_ones_are_version_2():
    plain, wrapped = _header(), _v2_header()
    assert plain.version == 1 and wrapped.version == 2
    assert bitstream.write(plain, _payload(plain))[4] == 1  # byte for byte what fcm wrote before version 2
    data = bitstream.write(wrapped, _payload(wrapped))
    assert data[4] == 2
    h2, p2 = bitstream.read(data)
    assert h2.wrapper == wrapped.wrapper and str(h2.wrapper) == "channel_reduction (weights 0123456789abcdef)"
    assert h2.side_info == {"scale": (0.5, -2.25, np.float32(1e-3).item()), "bias": ()}  # stored as float32
    assert dataclasses.replace(h2, side_info=wrapped.side_info) == wrapped and p2 == _payload(wrapped)
    side_only = dataclasses.replace(plain, side_info={"mu": (1.0,)})
    assert bitstream.read(bitstream.write(side_only, _payload(side_only)))[0] == side_only


def test_golden_version_2_hash():
    """A fixed wrapped header: version 2's serialized form may only change deliberately."""
    import hashlib

    h = _v2_header("tensor")
    digest = hashlib.sha256(bitstream.write(h, _payload(h))).hexdigest()
    assert digest == "0022726cff8cbb926206d6e8e5b732514f74eae78fbf160639a5a2f45eb6b401", digest


def test_version_2_errors():
    h = _v2_header()
    data = bitstream.write(h, _payload(h))
    # a version-2 preamble on a version-1 body, and the reverse, are both refused
    plain = bitstream.write(_header(), _payload(_header()))
    with pytest.raises(BitstreamError, match="corrupt"):
        bitstream.read(_recrc(plain[:4] + b"\x02" + plain[5:]))
    with pytest.raises(BitstreamError, match="corrupt"):
        bitstream.read(_recrc(data[:4] + b"\x01" + data[5:]))
    with pytest.raises(BitstreamError, match="unsupported version 4"):
        bitstream.read(_recrc(data[:4] + b"\x04" + data[5:]))
    # a non-finite value, refused on write and on read
    nan = dataclasses.replace(h, side_info={"scale": (float("nan"),)})
    with pytest.raises(BitstreamError, match="invalid side information 'scale'"):
        bitstream.write(nan, _payload(nan))
    finite = bitstream.write(dataclasses.replace(h, side_info={"scale": (2.0,)}), _payload(h))
    at = finite.index(struct.pack("<f", 2.0))
    with pytest.raises(BitstreamError, match="non-finite"):
        bitstream.read(_recrc(finite[:at] + struct.pack("<f", float("inf")) + finite[at + 4 :]))
    two = dataclasses.replace(h, side_info={"mu_a": (1.0,), "mu_b": (2.0,)})
    dup = bytearray(bitstream.write(two, _payload(two)))
    at = dup.index(b"mu_b")
    dup[at : at + 4] = b"mu_a"
    with pytest.raises(BitstreamError, match="side information key 'mu_a' appears twice"):
        bitstream.read(_recrc(bytes(dup)))
    bad = dataclasses.replace(h, wrapper=bitstream.WrapperRef("bad name", "x"))
    with pytest.raises(BitstreamError, match="invalid wrapper name 'bad name'"):
        bitstream.write(bad, _payload(bad))
    with pytest.raises(BitstreamError, match="wrapper flag"):
        at = data.index(b"258fb6c6deadbeef") + 16  # the wrapper flag follows the weights tag
        bitstream.read(_recrc(data[:at] + b"\x02" + data[at + 1 :]))


def test_wrapper_tag_and_side_information_are_checked_on_write():
    h = _v2_header()
    bad_tag = dataclasses.replace(h, wrapper=bitstream.WrapperRef("channel_reduction", "zz"))
    with pytest.raises(BitstreamError, match="invalid wrapper weights tag 'zz': must be 16 lower-case hex"):
        bitstream.write(bad_tag, _payload(bad_tag))
    for value in (1e39, "x"):  # beyond float32, not a number
        bad = dataclasses.replace(h, side_info={"scale": (value,)})
        with pytest.raises(BitstreamError, match="invalid side information 'scale'"):
            bitstream.write(bad, _payload(bad))
