"""Conformance: the payload fcm stores is a standard elementary stream that the FFmpeg command-line tool decodes to
exactly fcm's decoded luma (an independent build of the decoders: Debian's ``ffmpeg`` package, not PyAV's wheel).

HEVC and H.264 packets are Annex-B with in-band parameter sets, so concatenating them is a ``.hevc``/``.h264`` file;
AV1 (low-overhead OBUs, one temporal unit per packet) and VP9 (one frame per packet) are wrapped in IVF here.
"""

from __future__ import annotations

import shutil
import struct
import subprocess
from pathlib import Path

import numpy as np
import pytest

from fcm.codecs import CodecParams, EncodedFrames, get_codec

pytestmark = pytest.mark.skipif(
    shutil.which("ffmpeg") is None, reason="ffmpeg CLI not installed (apt-get install ffmpeg)"
)

#: codec → (demuxer and file suffix, IVF fourcc or None, decoded pixel format per bit depth)
STREAMS = {
    "x265": ("hevc", None, {8: "gray", 10: "gray10le"}),
    "x264": ("h264", None, {8: "yuv420p", 10: "yuv420p10le"}),
    "svtav1": ("ivf", b"AV01", {8: "yuv420p", 10: "yuv420p10le"}),
    "vp9": ("ivf", b"VP90", {8: "yuv420p"}),
}
CASES = [(name, bd) for name, (_, _, formats) in STREAMS.items() for bd in formats]


def _frames(bit_depth: int, n: int = 3, height: int = 64, width: int = 96) -> np.ndarray:
    """Smooth moving gradients with a little noise: something every codec codes lossily but recognisably."""
    y, x = np.mgrid[0:height, 0:width]
    rng = np.random.default_rng(bit_depth)
    peak = (1 << bit_depth) - 1
    frames = [
        (0.5 + 0.4 * np.sin((x + 4 * i) / 9.0) * np.cos(y / 7.0)) * peak + rng.normal(0, peak / 100, x.shape)
        for i in range(n)
    ]
    return np.clip(np.rint(frames), 0, peak).astype(np.uint16)


def _ivf(fourcc: bytes, encoded: EncodedFrames) -> bytes:
    """An IVF file (the libvpx/AV1 test-vector container): 32-byte header, then 12-byte frame headers."""
    out = bytearray(
        struct.pack(
            "<4sHH4sHHIII4x", b"DKIF", 0, 32, fourcc, encoded.width, encoded.height, 25, 1, len(encoded.packets)
        )
    )
    for pts, packet in enumerate(encoded.packets):
        out += struct.pack("<IQ", len(packet), pts) + packet
    return bytes(out)


def _ffmpeg_luma(path: Path, demuxer: str, pix_fmt: str, encoded: EncodedFrames) -> np.ndarray:
    proc = subprocess.run(
        [
            "ffmpeg",
            "-nostdin",
            "-v",
            "error",
            "-f",
            demuxer,
            "-i",
            str(path),
            "-fps_mode",
            "passthrough",
            "-f",
            "rawvideo",
            "-pix_fmt",
            pix_fmt,
            "-",
        ],
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0 and not proc.stderr, proc.stderr.decode(errors="replace")
    n, h, w = encoded.num_frames, encoded.height, encoded.width
    dtype = np.dtype("<u2") if encoded.bit_depth > 8 else np.dtype(np.uint8)
    luma = h * w
    frame_samples = luma if pix_fmt.startswith("gray") else luma + 2 * (luma // 4)  # 4:2:0 adds two quarter planes
    samples = np.frombuffer(proc.stdout, dtype=dtype)
    assert samples.size == n * frame_samples, f"ffmpeg gave {samples.size} samples, expected {n * frame_samples}"
    return samples.reshape(n, frame_samples)[:, :luma].reshape(n, h, w).astype(np.uint16)


@pytest.mark.parametrize(("name", "bit_depth"), CASES)
def test_ffmpeg_cli_decodes_the_payload_bit_exactly(tmp_path, name, bit_depth):
    demuxer, fourcc, formats = STREAMS[name]
    codec = get_codec(name)
    frames = _frames(bit_depth)
    encoded = codec.encode(frames, bit_depth, CodecParams(qp=32, gop="lowdelay"))
    assert encoded.extradata == b""  # every header is in band
    ours = codec.decode(encoded)
    assert not np.array_equal(ours, frames)  # lossy: a decoder that echoed the input could not pass below
    path = tmp_path / f"stream.{demuxer}"
    path.write_bytes(_ivf(fourcc, encoded) if fourcc else b"".join(encoded.packets))
    np.testing.assert_array_equal(_ffmpeg_luma(path, demuxer, formats[bit_depth], encoded), ours)
