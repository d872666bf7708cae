"""The MPEG reference encoders (VTM, VVenC, HM) through fcm's external-codec templates, run for real.

They run when the codec file named by ``$FCM_CODECS`` declares them under the names ``vtm``, ``vvenc`` and ``hm``
(``python tools/build_codecs.py --vtm SRC --vvenc SRC --hm SRC`` builds them and writes such a file); otherwise each
test is skipped with the reason. Frames are small: VTM codes a 112×144 frame in about 4 s.
"""

from __future__ import annotations

import os
from dataclasses import replace

import numpy as np
import pytest

from fcm.codecs import Codec, CodecParams, get_codec
from fcm.errors import CodecError

REFERENCE_CODECS = ("vtm", "vvenc", "hm")


def _declared(name: str) -> Codec | None:
    from fcm.codecs import codec_names

    if not os.environ.get("FCM_CODECS"):
        return None
    return get_codec(name) if name in codec_names() else None


@pytest.fixture(params=REFERENCE_CODECS)
def codec(request) -> Codec:
    found = _declared(request.param)
    if found is None:
        where = os.environ.get("FCM_CODECS")
        reason = f"{where} declares no codec {request.param!r}" if where else "FCM_CODECS is not set"
        pytest.skip(f"{reason}: build it with tools/build_codecs.py and set FCM_CODECS to the file it writes")
    return found


def _frames(n: int, height: int, width: int, bit_depth: int, seed: int = 0) -> np.ndarray:
    """Smooth feature-like frames (a few blobs plus noise), so that rate depends on QP as on real content."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    peak = (1 << bit_depth) - 1
    out = []
    for i in range(n):
        img = np.zeros((height, width))
        for _ in range(6):
            cy, cx, r = rng.uniform(0, height), rng.uniform(0, width), rng.uniform(4, 16)
            img += rng.uniform(0.2, 1.0) * np.exp(-((y - cy) ** 2 + (x - cx - 2 * i) ** 2) / (2 * r * r))
        img = img / img.max() * 0.8 * peak + rng.normal(0, 0.01 * peak, img.shape)
        out.append(np.clip(np.rint(img), 0, peak))
    return np.stack(out).astype(np.uint16)


def _psnr(a: np.ndarray, b: np.ndarray, bit_depth: int) -> float:
    mse = float(np.mean((a.astype(np.float64) - b) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(((1 << bit_depth) - 1) ** 2 / mse)


@pytest.mark.parametrize("bit_depth", [10, 8])
def test_round_trip_shape_depth_and_quality(codec, bit_depth):
    frames = _frames(2, 48, 80, bit_depth)
    encoded = codec.encode(frames, bit_depth, CodecParams(22))
    decoded = codec.decode(encoded)
    assert decoded.shape == frames.shape and decoded.dtype == np.uint16
    assert int(decoded.max()) < (1 << bit_depth)
    assert _psnr(decoded, frames, bit_depth) > 35, _psnr(decoded, frames, bit_depth)
    assert (encoded.codec, encoded.num_frames, encoded.bit_depth) == (codec.name, 2, bit_depth)


def test_gop_structures(codec):
    frames = _frames(4, 48, 80, 10)
    for gop in ("intra", "lowdelay"):
        params = CodecParams(30, gop=gop)
        if gop not in codec.gop_structures:  # type: ignore[attr-defined]
            with pytest.raises(CodecError, match=f"cannot code gop='{gop}'"):
                codec.encode(frames, 10, params)
            continue
        decoded = codec.decode(codec.encode(frames, 10, params))
        assert decoded.shape == frames.shape and _psnr(decoded, frames, 10) > 30


def test_rate_is_monotone_in_qp(codec):
    frames = _frames(2, 48, 80, 10, seed=1)
    sizes = [codec.encode(frames, 10, CodecParams(qp)).num_bytes for qp in (22, 32, 42)]
    assert sizes[0] > sizes[1] > sizes[2], sizes


def test_damaged_payload_is_rejected(codec):
    frames = _frames(3, 48, 80, 10, seed=2)
    encoded = codec.encode(frames, 10, CodecParams(27))
    stream = encoded.packets[0]
    for damaged in (stream[: len(stream) // 3], b"\x00\x00\x01" + bytes(64)):
        with pytest.raises(CodecError):
            codec.decode(replace(encoded, packets=(damaged,)))


def test_frames_smaller_than_a_coding_unit(codec):
    frames = _frames(1, 12, 20, 10, seed=3)
    decoded = codec.decode(codec.encode(frames, 10, CodecParams(22)))
    assert decoded.shape == frames.shape and _psnr(decoded, frames, 10) > 30


def test_a_slow_encoder_is_stopped(codec):
    impatient = codec
    impatient.timeout_s = 0.001  # type: ignore[attr-defined]
    with pytest.raises(CodecError, match="timed out after"):
        impatient.encode(_frames(2, 48, 80, 10), 10, CodecParams(22))


def test_no_files_left_in_the_working_directory(codec, tmp_path, monkeypatch):
    """The CTC configurations ask for a reconstruction file: it must land nowhere the caller can see."""
    monkeypatch.chdir(tmp_path)
    codec.encode(_frames(1, 48, 80, 10), 10, CodecParams(32))
    assert list(tmp_path.iterdir()) == []
