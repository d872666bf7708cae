"""End to end: a real photo through EfficientNet-Lite0, packing, a real codec and the fcm bitstream, and back."""

import hashlib
import itertools

import numpy as np
import pytest
import torch

from fcm import bitstream, pipeline
from fcm.codecs import CodecParams
from fcm.errors import BitstreamError


@pytest.fixture(scope="module")
def x265_qp22(lite0, chelsea):
    return pipeline.encode(chelsea, lite0, "x265", CodecParams(qp=22))


def test_qp22_keeps_the_uncompressed_top1(lite0, chelsea, x265_qp22):
    reference = lite0.full(lite0.prepare(chelsea)).argmax(1).item()
    decoded = pipeline.decode(x265_qp22.bitstream)  # the decoder builds the model from the bitstream alone
    assert decoded.output.argmax(1).item() == reference
    assert decoded.header.model == "efficientnet_lite0" and decoded.header.split == "stage4"
    # the features really went through a lossy codec: close to, but not equal to, the originals
    original = lite0.front(lite0.prepare(chelsea)).tensors["stage4"]
    err = (decoded.features.tensors["stage4"] - original).abs()
    span = (original.max() - original.min()).item()
    assert 0 < err.mean().item() < 0.02 * span  # measured: 0.7 % of the range (7 of 1023 levels) at QP 22


def test_bits_are_every_byte(x265_qp22):
    _, payload = bitstream.read(x265_qp22.bitstream)
    assert x265_qp22.num_bits == 8 * len(x265_qp22.bitstream)
    assert len(x265_qp22.bitstream) > payload.num_bytes  # the container is counted on top of the codec bytes
    assert x265_qp22.bpp == pytest.approx(x265_qp22.num_bits / (300 * 451))


def test_lossless_path_reproduces_dequantized_features_exactly(lite0, chelsea):
    from fcm.packing import Packer, unpack

    enc = pipeline.encode(chelsea, lite0, "ffv1", CodecParams(qp=0), bit_depth=10)
    dec = pipeline.decode(enc.bitstream, lite0)
    features = pipeline.run_front(chelsea, lite0).features.tensors
    expected = unpack(Packer(10).pack(features))["stage4"]
    assert torch.equal(dec.features.tensors["stage4"], expected)


def test_rate_falls_as_qp_rises(lite0, chelsea):
    sizes = [len(pipeline.encode(chelsea, lite0, "x265", CodecParams(qp=qp)).bitstream) for qp in (22, 27, 32, 37)]
    assert all(a > b for a, b in itertools.pairwise(sizes)), sizes


@pytest.mark.parametrize("codec", ["ffv1", "x265"])
def test_golden_bitstream_hash(codec):
    """Packing, coding and the container on fixed features give fixed bytes: any change must be deliberate.

    The features are made by numpy (not by a network, whose float kernels differ between CPUs).
    """
    from fcm.bitstream import Header
    from fcm.codecs import get_codec
    from fcm.packing import Packer

    rng = np.random.default_rng(123)
    smooth = np.cumsum(np.cumsum(rng.normal(size=(1, 80, 14, 14)), axis=2), axis=3).astype(np.float32)
    packed = Packer(10).pack({"stage4": torch.from_numpy(smooth)})
    params = CodecParams(qp=32)
    payload = get_codec(codec).encode(packed.frames, 10, params)
    header = Header(
        "efficientnet_lite0",
        "stage4",
        "579344248a93e230",
        {"input_size": (300, 451)},
        packed.layout,
        10,
        "frame",
        packed.ranges,
        codec,
        params,
    )
    digest = hashlib.sha256(bitstream.write(header, payload)).hexdigest()
    assert digest == GOLDEN_BITSTREAM_SHA256[codec], digest


GOLDEN_BITSTREAM_SHA256 = {
    "ffv1": "1e4c3ab5f5e0d4f1f6cfe7ac040b491b0175610314de96d5fba263eb8a1b2af4",
    "x265": "fad13a8700ddae88c1d7027c8769b438ba8e8a6f16e4f0b4067cf8c5eb9c289c",
}


def test_model_mismatch_is_reported(x265_qp22):
    from fcm.models import get_model

    other = get_model("efficientnet_lite0", "stage3")
    with pytest.raises(BitstreamError, match="stage4"):
        pipeline.decode(x265_qp22.bitstream, other)


def test_fuzz_bitstream_flips_and_truncations(lite0, chelsea):
    """≥ 1,000 random corruptions: each ends in BitstreamError or a successful decode, never another exception."""
    data = pipeline.encode(chelsea, lite0, "x265", CodecParams(qp=37)).bitstream
    rng = np.random.default_rng(2026)
    outcomes = {"decoded": 0, "error": 0}
    messages = set()
    for case in range(1200):
        b = bytearray(data)
        kind = case % 4
        if kind == 0:  # truncation
            b = b[: int(rng.integers(0, len(b)))]
        elif kind == 1:  # random byte flips
            for _ in range(int(rng.integers(1, 8))):
                b[int(rng.integers(0, len(b)))] ^= int(rng.integers(1, 256))
        else:  # flips with the checksum recomputed, so the parser and the codec see the damage
            for _ in range(int(rng.integers(1, 4))):
                lo = 9 if kind == 2 else len(b) // 2  # header fields, or the codec payload
                b[int(rng.integers(lo, len(b) - 4))] ^= int(rng.integers(1, 256))
            import struct
            import zlib

            b[-4:] = struct.pack("<I", zlib.crc32(bytes(b[:-4])))
        try:
            features, _, _, _ = pipeline.decode_features(bytes(b))
            assert all(torch.isfinite(t).all() for t in features.tensors.values())
            outcomes["decoded"] += 1
        except BitstreamError as e:
            outcomes["error"] += 1
            messages.add(str(e).split(":")[0])
    assert sum(outcomes.values()) == 1200
    assert outcomes["error"] >= 600
    assert {"truncated", "checksum mismatch"} <= messages


def test_detector_features_through_a_real_codec():
    """Faster R-CNN P2–P5 packed into one 10-bit frame, x265, and back; the cloud half runs on what was decoded."""
    from fcm.models import get_model

    model = get_model("faster_rcnn_r50_fpn", "fpn", min_size=256, max_size=352, box_score_thresh=0.0)
    image = (np.random.default_rng(5).random((240, 320, 3)) * 255).astype(np.uint8)
    enc = pipeline.encode(image, model, "x265", CodecParams(qp=22))
    header, _ = bitstream.read(enc.bitstream)
    assert [p.name for p in header.layout.placements] == ["p2", "p3", "p4", "p5"]
    assert header.meta["original_size"] == (240, 320) and header.meta["image_size"] == (256, 341)
    dec = pipeline.decode(enc.bitstream, model)
    (det,) = dec.output
    assert det["boxes"].shape[1] == 4 and len(det["boxes"]) > 0
    assert float(det["boxes"][:, 2].max()) <= 320 and float(det["boxes"][:, 3].max()) <= 240  # original image size
    original = model.front(model.prepare(image)).tensors
    for name, t in dec.features.tensors.items():
        assert t.shape == original[name].shape


def test_detector_side_information_is_checked():
    """CRC-valid bitstreams whose detector sizes were edited fail with BitstreamError, never a stray error."""
    import dataclasses

    from fcm.models import get_model

    model = get_model("faster_rcnn_r50_fpn", "fpn", min_size=128, max_size=160)
    image = (np.random.default_rng(6).random((96, 128, 3)) * 255).astype(np.uint8)
    enc = pipeline.encode(image, model, "x265", CodecParams(qp=32, preset="ultrafast"))
    header, payload = bitstream.read(enc.bitstream)
    for key, value in [
        ("batch_size", (-8, 128)),
        ("image_size", (1, 2, 3)),
        ("batch_size", (4800, 6400)),
        ("original_size", (-5, 7)),
        ("image_size", (999, 999)),
    ]:
        bad = dataclasses.replace(header, meta={**header.meta, key: value})
        with pytest.raises(BitstreamError, match="does not fit"):
            pipeline.decode(bitstream.write(bad, payload), model)


def test_block_qp_offsets_reach_the_codec(lite0, chelsea):
    """Per-block QP offsets (the hook wrapper-aware RDO will drive) change where x265 spends bits."""
    crf = CodecParams(qp=30, rate_control="crf")
    plain = pipeline.encode(chelsea, lite0, "x265", crf)
    lay = plain.header.layout
    blocks = (1, -(-lay.frame_height // 16), -(-lay.frame_width // 16))
    finer = pipeline.encode(chelsea, lite0, "x265", crf, block_qp_offsets=np.full(blocks, -6, dtype=np.int32))
    coarser = pipeline.encode(chelsea, lite0, "x265", crf, block_qp_offsets=np.full(blocks, 6, dtype=np.int32))
    assert len(finer.bitstream) > len(plain.bitstream) > len(coarser.bitstream)
    assert pipeline.decode(finer.bitstream, lite0).output.shape == (1, 1000)


def test_front_runs_once_for_many_operating_points(lite0, chelsea):
    edge = pipeline.run_front(chelsea, lite0)
    a = pipeline.encode_features(edge, lite0, "x265", CodecParams(qp=32))
    b = pipeline.encode(chelsea, lite0, "x265", CodecParams(qp=32))
    assert a.bitstream == b.bitstream and a.front_s == edge.front_s
