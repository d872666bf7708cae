"""Wrapper-aware RDO (fcm.rdo): the weights, the maps, the two delivery routes, the policies and their checks."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
import zlib

import numpy as np
import pytest
import torch

from fcm import bitstream, pipeline
from fcm.codecs import CodecParams, get_codec
from fcm.errors import BitstreamError, CodecError, ConfigError, ShapeError
from fcm.packing import Packer
from fcm.rdo import (
    Preconditioning,
    RdoSettings,
    block_means,
    build_allocation,
    precondition,
    qp_offsets,
    scale_frames,
    unscale_frames,
)
from fcm.rdo.allocation import GopAllocation, PrecomputedAllocation
from fcm.rdo.fixed_map import FixedMap, make_fixed_map
from fcm.rdo.sensitivity import exact_diagonal, fisher_mixer, frame_sensitivity, probe_diagonal

# ---------- weights


def _small_net() -> torch.nn.Module:
    torch.manual_seed(3)
    return torch.nn.Sequential(torch.nn.Flatten(0), torch.nn.Linear(60, 16), torch.nn.Tanh(), torch.nn.Linear(16, 7))


def _jacobian(fn, x: torch.Tensor) -> torch.Tensor:
    return torch.autograd.functional.jacobian(fn, x).reshape(-1, x.numel())


def test_exact_diagonal_is_diag_of_jt_m_j():
    net = _small_net()
    x = torch.randn(3, 4, 5, dtype=torch.float64)
    net = net.double()
    j = _jacobian(net, x)
    np.testing.assert_allclose(exact_diagonal(net, x).flatten(), (j**2).sum(0), rtol=1e-10)
    # Fisher metric of the softmax: diag(Jᵀ(diag p − ppᵀ)J)
    p = torch.softmax(net(x).detach(), -1)
    fisher = torch.diag(p) - torch.outer(p, p)
    expected = torch.diagonal(j.T @ fisher @ j)
    np.testing.assert_allclose(exact_diagonal(net, x, fisher_mixer).flatten(), expected, rtol=1e-8, atol=1e-14)


@pytest.mark.parametrize("metric", ["identity", "fisher"])
def test_probe_estimator_matches_the_exact_diagonal(metric):
    """Tolerance: with m probes the relative error of each element is O(1/√m); at m = 4096 the mean relative error
    is under 3 % and the worst under 12 % (measured ~1 % and ~5 %), and the estimate is unbiased in aggregate."""
    net = _small_net().double()
    x = torch.randn(3, 4, 5, dtype=torch.float64)
    kwargs = {"mixer": fisher_mixer} if metric == "fisher" else {}
    exact = exact_diagonal(net, x, **kwargs)
    est = probe_diagonal(net, x, 4096, torch.Generator().manual_seed(0), **kwargs)
    rel = ((est - exact).abs() / exact).flatten()
    assert float(rel.mean()) < 0.03, float(rel.mean())
    assert float(rel.max()) < 0.12, float(rel.max())
    assert abs(float(est.sum() / exact.sum()) - 1) < 0.02
    # deterministic: same seed, same estimate
    again = probe_diagonal(net, x, 4096, torch.Generator().manual_seed(0), **kwargs)
    assert torch.equal(est, again)


def test_chain_rule_includes_unpacking_and_denormalisation(lite0, chelsea):
    """With target ``features`` and no wrapper, g is de-normalisation only: every used sample's weight is exactly
    ((hi − lo)/peak)² and the padding's is 0."""
    edge = pipeline.run_front(chelsea, lite0)
    packed = Packer(10).pack(edge.features.tensors)
    w = frame_sensitivity(packed, lite0, edge.features.meta, None, "features", probes=0)
    r = packed.ranges[0][0]
    scale = ((r.hi - r.lo) / 1023) ** 2
    p = packed.layout.placements[0]
    used = np.zeros(packed.frames.shape[1:], bool)
    for c in range(p.channels):
        row, col = divmod(c, p.cols)
        used[p.top + row * p.height : p.top + (row + 1) * p.height, col * p.width : (col + 1) * p.width] = True
    np.testing.assert_allclose(w[0][used], scale, rtol=1e-5)
    assert (w[0][~used] == 0).all() and (~used).any()
    # probes agree exactly here (J is diagonal: every probe gives the same squares)
    np.testing.assert_allclose(frame_sensitivity(packed, lite0, edge.features.meta, None, "features", 2), w, rtol=1e-5)


def test_kl_weights_through_the_back_half(lite0, chelsea):
    edge = pipeline.run_front(chelsea, lite0)
    packed = Packer(10).pack(edge.features.tensors)
    w = frame_sensitivity(packed, lite0, edge.features.meta, None, "kl", probes=8, seed=0)
    assert w.shape == packed.frames.shape and np.isfinite(w).all() and (w >= 0).all()
    spread = block_means(precondition(w), 16)
    assert spread.std() > 0.1  # not uniform: some blocks matter more
    # the block maps of two probe seeds agree closely (8 probes)
    other = frame_sensitivity(packed, lite0, edge.features.meta, None, "kl", probes=8, seed=1)
    assert (
        np.corrcoef(block_means(precondition(w), 16).ravel(), block_means(precondition(other), 16).ravel())[0, 1] > 0.95
    )


# ---------- maps


def test_precondition_clip_normalise_shrink():
    rng = np.random.default_rng(0)
    w = rng.exponential(size=(2, 20, 30))
    w[0, 0, 0] = 1e6  # an outlier
    w[1] = 0  # a frame where nothing matters
    out = precondition(w, Preconditioning(clip_percentile=99.0))
    np.testing.assert_allclose(out[0].mean(), 1.0)
    assert out[0].max() < 10  # the outlier is clipped
    assert (out[1] == 1).all()
    shrunk = precondition(w, Preconditioning(clip_percentile=99.0, tau=3.0))
    np.testing.assert_allclose(shrunk, (out + 3.0) / 4.0)
    smooth = precondition(w, Preconditioning(clip_percentile=100.0, smooth=2))
    assert smooth[0].std() < precondition(w, Preconditioning(clip_percentile=100.0))[0].std()
    with pytest.raises(ConfigError, match="clip_percentile"):
        Preconditioning(clip_percentile=20)
    with pytest.raises(ShapeError, match="finite"):
        precondition(np.full((1, 2, 2), np.nan))


def test_block_means_and_qp_offsets():
    w = np.ones((1, 20, 36))
    w[0, :16, :16] = 2.0  # a full block
    w[0, 16:, 32:] = 0.0  # the corner edge block holds 4×4 samples, all zero
    means = block_means(w, 16)
    assert means.shape == (1, 2, 3)
    assert means[0, 0, 0] == 2.0 and means[0, 1, 2] == 0.0 and means[0, 0, 1] == 1.0
    offsets = qp_offsets(means, max_offset=6)
    assert offsets.dtype == np.int32
    assert offsets[0, 0, 0] == -3 and offsets[0, 0, 1] == 0 and offsets[0, 1, 2] == 6
    np.testing.assert_array_equal(qp_offsets(np.array([[[0.5, 1 / 1024, 1024.0]]]), 4), [[[3, 4, -4]]])


@pytest.mark.parametrize("block", [16, 8])
def test_map_has_the_encoders_grid_and_range(lite0, chelsea, block):
    edge = pipeline.run_front(chelsea, lite0)
    packed = Packer(10).pack(edge.features.tensors)
    settings = RdoSettings(mode="wa-frame", block=block, max_offset=5)
    offsets = build_allocation(settings).offsets(packed, lite0, edge.features.meta, None)
    n, h, w = packed.frames.shape
    assert offsets.shape == (n, -(-h // block), -(-w // block))
    assert offsets.min() >= -5 and offsets.max() <= 5 and len(np.unique(offsets)) > 3
    # the codec takes exactly this grid
    x265 = get_codec("x265")
    x265.encode(packed.frames, 10, CodecParams(30, rate_control="crf"), offsets)


# ---------- the codec applies it


def test_x265_applies_8x8_maps():
    from tests.test_codecs import natural_frames, psnr

    frames = natural_frames(10, n=1)
    codec = get_codec("x265")
    params = CodecParams(30, rate_control="crf")
    n, h, w = frames.shape
    results = {}
    for value in (-6, 0, 6):
        offsets = np.zeros((n, h // 8, w // 8), np.int32)
        offsets[:, :, : offsets.shape[2] // 2] = value
        encoded = codec.encode(frames, 10, params, offsets)
        decoded = codec.decode(encoded)
        results[value] = (encoded.num_bytes, psnr(decoded[:, :, : w // 2], frames[:, :, : w // 2], 10))
    assert results[-6][0] > results[0][0] > results[6][0], results
    assert results[-6][1] > results[0][1] + 1.0 > results[6][1] + 2.0, results


def test_direct_roi_delivery_matches_the_filter_route(monkeypatch):
    from fcm.codecs import roi
    from tests.test_codecs import natural_frames

    assert roi.delivery_route() == "direct"  # the manylinux PyAV wheel this project pins
    frames = natural_frames(10, n=2)
    rng = np.random.default_rng(1)
    offsets = rng.integers(-6, 7, size=(2, frames.shape[1] // 16, frames.shape[2] // 16)).astype(np.int32)
    params = CodecParams(30, rate_control="crf")
    fast = {name: get_codec(name).encode(frames, 10, params, offsets) for name in ("x265", "x264")}
    # a frame whose size is not a multiple of 16: addroi clips edge regions, the direct route keeps whole blocks
    odd = natural_frames(10, n=1, height=100, width=150)
    odd_offsets = rng.integers(-6, 7, size=(1, 7, 10)).astype(np.int32)
    fast_odd = {name: get_codec(name).encode(odd, 10, params, odd_offsets) for name in ("x265", "x264")}
    monkeypatch.setattr(roi, "_direct", False)
    assert roi.delivery_route() == "addroi"
    for name, encoded in fast.items():
        assert get_codec(name).encode(frames, 10, params, offsets) == encoded
        assert get_codec(name).encode(odd, 10, params, odd_offsets) == fast_odd[name]


def test_block_regions_cover_runs():
    from fcm.codecs.roi import block_regions

    offsets = np.array([[0, 2, 2, -1], [3, 3, 3, 3]])
    regions = block_regions(offsets, 16, 63)
    # (self_size, top, bottom, left, right, num, den)
    assert regions.tolist() == [
        [28, 0, 16, 16, 48, 2, 63],
        [28, 0, 16, 48, 64, -1, 63],
        [28, 16, 32, 0, 64, 3, 63],
    ]


# ---------- sample-scaling route


def test_scaling_round_trip_and_headroom():
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 1024, size=(2, 40, 50)).astype(np.uint16)
    frames[1] = 500 + (frames[1] % 20)  # a flat frame: room to scale up
    offsets = rng.integers(-6, 13, size=(2, 3, 4)).astype(np.int32)
    scaled, scales = scale_frames(frames, offsets, 10, 16)
    assert scaled.dtype == np.uint16 and scaled.max() <= 1023
    steps = scales.step_map()
    assert (steps >= offsets).all()  # raised only where headroom requires
    assert (steps[1] == offsets[1]).all()  # the flat frame fits every scale-up
    back = unscale_frames(scaled, scales, 10)
    # the error of the round trip is the rounding of the scaled samples, magnified by 1/s
    gain = np.repeat(np.repeat(2.0 ** (steps / 6.0), 16, axis=1), 16, axis=2)[:, :40, :50]
    assert (np.abs(back.astype(float) - frames) <= gain / 2 + 0.5 + 1e-9).all()
    # the raise is minimal: one step less and some sample of the block would leave the range
    x = frames[0].astype(float)
    c = scales.centres[0]
    for by in range(3):
        for bx in range(4):
            k = int(steps[0, by, bx])
            if k > offsets[0, by, bx]:
                block = x[by * 16 : (by + 1) * 16, bx * 16 : (bx + 1) * 16]
                wider = c + 2.0 ** (-(k - 1) / 6.0) * (block - c)
                assert wider.max() > 1023 + 0.5 or wider.min() < -0.5
    # a zero map is the identity
    same, zero = scale_frames(frames[1:], np.zeros((1, 3, 4), np.int32), 10, 16)
    assert np.array_equal(same, frames[1:]) and np.array_equal(unscale_frames(same, zero, 10), frames[1:])


def test_scale_route_end_to_end_any_codec(lite0, chelsea):
    settings = RdoSettings(mode="wa-frame", route="scale", block=14, probes=4)
    plain = pipeline.encode(chelsea, lite0, "svtav1", CodecParams(40))
    enc = pipeline.encode(chelsea, lite0, "svtav1", CodecParams(40), allocation=build_allocation(settings))
    assert enc.header.version == 3 and enc.header.block_scales is not None and enc.rdo_s > 0
    header, _ = bitstream.read(enc.bitstream)
    assert header == enc.header
    dec = pipeline.decode(enc.bitstream, lite0)  # the decoder needs nothing but the stream
    ref = pipeline.decode(plain.bitstream, lite0)
    assert int(dec.output.argmax()) == int(ref.output.argmax())


def test_block_scales_in_the_bitstream_are_checked():
    from fcm.rdo.scaling import BlockScales
    from tests.test_bitstream import _header, _payload, _recrc

    h = _header(frames=2)
    bh, bw = -(-h.layout.frame_height // 16), -(-h.layout.frame_width // 16)
    scales = BlockScales.of(16, (512, 500), np.arange(2 * bh * bw).reshape(2, bh, bw) % 9 - 4)
    h3 = dataclasses.replace(h, block_scales=scales)
    data = bitstream.write(h3, _payload(h3))
    assert data[4] == 3
    assert bitstream.read(data)[0] == h3
    # wrong grid for the frames
    bad = dataclasses.replace(h, block_scales=BlockScales.of(8, (512, 500), np.zeros((2, bh, bw))))
    with pytest.raises(BitstreamError, match="invalid block scales"):
        bitstream.write(bad, _payload(bad))
    # steps that inflate to the wrong size, or not at all
    packed = zlib.compress(scales.steps, 9)
    i = data.index(packed)
    short = zlib.compress(scales.steps[:-1], 9)
    tampered = data[: i - 1] + bytes([len(short)]) + short + data[i + len(packed) :]
    body_len = len(tampered) - 9 - 4
    tampered = tampered[:5] + body_len.to_bytes(4, "little") + tampered[9:]
    with pytest.raises(BitstreamError, match="block scale steps"):
        bitstream.read(_recrc(tampered))
    garbage = data[:i] + b"\x00" * len(packed) + data[i + len(packed) :]
    with pytest.raises(BitstreamError, match="block scale steps"):
        bitstream.read(_recrc(garbage))
    # bytes after the zlib stream: one header, one encoding
    trailing = packed + b"JUNK"
    extra = data[: i - 1] + bytes([len(trailing)]) + trailing + data[i + len(packed) :]
    extra = extra[:5] + (len(extra) - 13).to_bytes(4, "little") + extra[9:]
    with pytest.raises(BitstreamError, match="not one zlib stream"):
        bitstream.read(_recrc(extra))
    # a block size below 4 is refused before anything is inflated (a tiny stream cannot ask for a huge map)
    j = data.index(bytes([16, 0x80, 0x04]))  # block 16, then centre 512 as LEB128
    tiny = data[:j] + bytes([2]) + data[j + 1 :]
    with pytest.raises(BitstreamError, match="scale block size 2 is below 4"):
        bitstream.read(_recrc(tiny))


# ---------- policies


def test_gop_policy_reuses_the_key_frame_map(lite0):
    from fcm.data import build_dataset

    images = [s.image() for s in build_dataset({"kind": "embedded", "photos": ["rocket"], "variants": 3})]
    packed = [Packer(10).pack(pipeline.run_front(im, lite0).features.tensors) for im in images]
    settings = RdoSettings(mode="wa-gop", gop=2, probes=2)
    gop = GopAllocation(settings)
    maps = [gop.offsets(p, lite0, {}, None) for p in packed]
    per_frame = [
        build_allocation(dataclasses.replace(settings, mode="wa-frame")).offsets(p, lite0, {}, None) for p in packed
    ]
    assert np.array_equal(maps[0], per_frame[0]) and np.array_equal(maps[1], per_frame[0])  # reused
    assert np.array_equal(maps[2], per_frame[2])  # the next GOP's key frame
    assert not np.array_equal(per_frame[0], per_frame[1])


def test_fixed_map_refuses_what_it_was_not_made_for(lite0, chelsea, tmp_path):
    from fcm.models import get_model

    settings = RdoSettings(mode="wa-frame", probes=2)
    fixed = make_fixed_map(lite0, [chelsea, chelsea[::-1]], settings, 10)
    assert fixed.identity["frames"] == 2 and abs(fixed.weights.mean() - 1) < 1e-9
    path = fixed.save(tmp_path / "map.npz")
    loaded = FixedMap.load(path)
    assert np.allclose(loaded.weights, fixed.weights, rtol=1e-6)
    allocation = build_allocation(RdoSettings(mode="wa-fixed", map_path=str(path)))
    packed = Packer(10).pack(pipeline.run_front(chelsea, lite0).features.tensors)
    offsets = allocation.offsets(packed, lite0, {}, None)
    assert offsets.shape == (1, 9, 7)
    with pytest.raises(ConfigError, match="made for split 'stage4', but this stream has 'stage3'"):
        stage3 = get_model("efficientnet_lite0", "stage3")
        allocation.offsets(Packer(10).pack(pipeline.run_front(chelsea, stage3).features.tensors), stage3, {}, None)
    other_layout = Packer(10).pack(pipeline.run_front(chelsea, lite0).features.tensors)
    other_layout = dataclasses.replace(
        other_layout,
        layout=dataclasses.replace(other_layout.layout, frame_height=other_layout.layout.frame_height + 8),
        frames=np.zeros((1, 152, 112), np.uint16),
    )
    with pytest.raises(ConfigError, match="made for layout"):
        allocation.offsets(other_layout, lite0, {}, None)
    tensor_ranges = Packer(10, "tensor").pack(pipeline.run_front(chelsea, lite0).features.tensors)
    with pytest.raises(ConfigError, match="made for range_mode 'frame', but this stream has 'tensor'"):
        allocation.offsets(tensor_ranges, lite0, {}, None)
    with pytest.raises(ConfigError, match="made for model_weights"):
        FixedMap(fixed.weights, {**fixed.identity, "model_weights": "0" * 16}).check(lite0, None, packed.layout)
    (tmp_path / "bad.npz").write_bytes(b"not a zip")
    with pytest.raises(ConfigError, match="not a fixed rdo map"):
        FixedMap.load(tmp_path / "bad.npz")
    with pytest.raises(ConfigError, match="does not exist"):
        FixedMap.load(tmp_path / "missing.npz")


def test_precomputed_allocation_checks_the_layout(lite0, chelsea):
    packed = Packer(10).pack(pipeline.run_front(chelsea, lite0).features.tensors)
    allocation = PrecomputedAllocation(RdoSettings(mode="wa-gop"), np.zeros((1, 9, 7), np.int32), packed.layout)
    assert allocation.offsets(packed, lite0, {}, None).shape == (1, 9, 7)
    wider = dataclasses.replace(
        packed, layout=dataclasses.replace(packed.layout, frame_width=120), frames=np.zeros((1, 144, 120), np.uint16)
    )
    with pytest.raises(ConfigError, match="another packing layout"):
        allocation.offsets(wider, lite0, {}, None)


def test_encode_refuses_what_the_codec_cannot_carry(lite0, chelsea):
    wa = build_allocation(RdoSettings(mode="wa-frame", probes=1))
    with pytest.raises(CodecError, match="only with rate_control='crf'"):
        pipeline.encode(chelsea, lite0, "x265", CodecParams(30), allocation=wa)
    with pytest.raises(CodecError, match="use rdo route 'scale'"):
        pipeline.encode(chelsea, lite0, "svtav1", CodecParams(30, rate_control="crf"), allocation=wa)
    wa8 = build_allocation(RdoSettings(mode="wa-frame", block=8, probes=1))
    with pytest.raises(CodecError, match="not 8"):
        pipeline.encode(chelsea, lite0, "x264", CodecParams(30, rate_control="crf"), allocation=wa8)
    with pytest.raises(ConfigError, match="needs map"):
        RdoSettings(mode="wa-fixed")
    with pytest.raises(ConfigError, match="unknown rdo mode"):
        RdoSettings(mode="wa-everything")  # type: ignore[arg-type]


def test_wa_frame_encode_decodes_without_the_map(lite0, chelsea):
    params = CodecParams(34, rate_control="crf")
    sse = pipeline.encode(chelsea, lite0, "x265", params)
    wa = pipeline.encode(chelsea, lite0, "x265", params, allocation=build_allocation(RdoSettings("wa-frame")))
    assert wa.header.version == 1 and wa.bitstream != sse.bitstream  # same header, other bits
    assert pipeline.decode(wa.bitstream, lite0).output.shape == (1, 1000)


# ---------- sweeps and configs


def _sweep_cfg(tmp_path, pipelines, **extra):
    from fcm.eval.config import SweepConfig

    raw = {
        "dataset": {"kind": "embedded", "photos": ["rocket"], "variants": 3},
        "model": "efficientnet_lite0",
        "codecs": ["x265"],
        "rate_control": "crf",
        "pipelines": pipelines,
        "output": str(tmp_path / "out"),
        "bootstrap": 0,
        **extra,
    }
    return SweepConfig.from_config(raw)


def test_rdo_pipeline_labels_and_checks(tmp_path):
    cfg = _sweep_cfg(tmp_path, {"feature": {"qps": [30]}, "feature[wa-frame]": {"qps": [30]}})
    assert cfg.pipelines[1].rdo.mode == "wa-frame"
    assert "wrapper-aware bit allocation `wa-frame`" in cfg.pipelines[1].describe()
    with pytest.raises(ConfigError, match="the label says rdo 'wa-gop', its rdo mode is 'wa-frame'"):
        _sweep_cfg(tmp_path, {"feature[wa-gop]": {"qps": [30], "rdo": "wa-frame"}})
    with pytest.raises(ConfigError, match="a feature pipeline's variant is its rdo mode"):
        _sweep_cfg(tmp_path, {"feature[fast]": {"qps": [30]}})
    named = _sweep_cfg(tmp_path, {"feature[b8]": {"qps": [30], "rdo": {"mode": "wa-frame", "block": 8}}})
    assert named.pipelines[0].rdo.block == 8
    with pytest.raises(ConfigError, match="rate_control: crf"):
        _sweep_cfg(tmp_path, {"feature[wa-frame]": {"qps": [30]}}, rate_control="cqp")
    with pytest.raises(ConfigError, match="takes no per-block QP offsets; use rdo route: scale"):
        _sweep_cfg(tmp_path, {"feature[wa-frame]": {"qps": [30]}}, codecs=["svtav1"])
    scale = _sweep_cfg(
        tmp_path,
        {"feature[s]": {"qps": [30], "rdo": {"mode": "wa-frame", "route": "scale"}}},
        codecs=["svtav1"],
        rate_control="cqp",
    )
    assert scale.pipelines[0].rdo.route == "scale"
    with pytest.raises(ConfigError, match="unknown settings"):
        _sweep_cfg(tmp_path, {"feature[wa-frame]": {"qps": [30], "rdo": {"probez": 3}}})
    with pytest.raises(ConfigError, match="tau must be a finite number"):
        _sweep_cfg(tmp_path, {"feature[wa-frame]": {"qps": [30], "rdo": {"tau": "1e-3"}}})
    with pytest.raises(ConfigError, match="clip_percentile must be a number"):
        _sweep_cfg(tmp_path, {"feature[wa-frame]": {"qps": [30], "rdo": {"clip_percentile": None}}})
    with pytest.raises(ConfigError, match="map must be the path"):
        _sweep_cfg(tmp_path, {"feature[wa-fixed]": {"qps": [30], "rdo": {"map": 5}}})
    with pytest.raises(ConfigError, match="route 'scale' takes blocks of 4–256"):
        _sweep_cfg(tmp_path, {"feature[s]": {"qps": [30], "rdo": {"mode": "wa-frame", "route": "scale", "block": 300}}})
    # a wrapped label naming an rdo mode sets it, and must agree with the section
    from fcm.eval.pipelines import WrappedPipeline

    rdo = WrappedPipeline._rdo_from("wrapped[scaled+wa-gop]", {}, variant_sets_mode=False)
    assert rdo.mode == "wa-gop"
    with pytest.raises(ConfigError, match="the label says rdo 'wa-gop', its rdo mode is 'wa-frame'"):
        WrappedPipeline._rdo_from("wrapped[scaled+wa-gop]", {"rdo": "wa-frame"}, variant_sets_mode=False)
    with pytest.raises(ConfigError, match="does not exist"):
        cfg = _sweep_cfg(tmp_path, {"feature[wa-fixed]": {"qps": [30], "rdo": {"map": str(tmp_path / "none.npz")}}})
        cfg.pipelines[0].setup(None)


def test_identity_follows_the_maps_content_not_its_path(tmp_path, lite0, chelsea):
    import shutil

    fixed = make_fixed_map(lite0, [chelsea], RdoSettings(mode="wa-frame", probes=1), 10)
    first = fixed.save(tmp_path / "a" / "map.npz")
    second = tmp_path / "b" / "moved.npz"
    second.parent.mkdir()
    shutil.copy(first, second)

    def identity(path, **rdo):
        cfg = _sweep_cfg(tmp_path, {"feature[wa-fixed]": {"qps": [30], "rdo": {"map": str(path), **rdo}}})
        return cfg.pipeline_identity()

    assert identity(first) == identity(second)
    assert identity(first) != identity(first, max_offset=4)
    # settings a mode ignores do not change its identity
    frame = _sweep_cfg(tmp_path, {"feature[wa-frame]": {"qps": [30]}}).pipeline_identity()
    assert frame == _sweep_cfg(tmp_path, {"feature[wa-frame]": {"qps": [30], "rdo": {"gop": 3}}}).pipeline_identity()


def test_sweep_wa_gop_uses_the_key_inputs_map(tmp_path):
    from fcm.data import build_dataset
    from fcm.eval.sweep import read_records, run_sweep

    cfg = _sweep_cfg(
        tmp_path,
        {
            "feature[wa-frame]": {"qps": [34], "rdo": {"probes": 2}},
            "feature[wa-gop]": {"qps": [34], "rdo": {"probes": 2, "gop": 2}},
        },
    )
    run_sweep(cfg, jobs=1, progress=False)
    records = {(r["pipeline"], r["input"]): r for r in read_records(cfg.output / "results.jsonl") if "bits" in r}
    # input 0 is its GOP's key: same map as per frame; the GOP's other input reuses it (other bits than its own map)
    key, follower, next_key = [s.id for s in build_dataset(cfg.dataset)]
    assert records[("feature[wa-gop]", key)]["bits"] == records[("feature[wa-frame]", key)]["bits"]
    assert records[("feature[wa-gop]", next_key)]["bits"] == records[("feature[wa-frame]", next_key)]["bits"]
    assert records[("feature[wa-gop]", follower)]["bits"] != records[("feature[wa-frame]", follower)]["bits"]
    # charged 1/gop of the key map's weights time: the key and its follower report the same measurement (jobs=1), up
    # to the microseconds of handing the map over
    gop_time = records[("feature[wa-gop]", follower)]["times"]["rdo"]
    assert gop_time > 0 and gop_time == pytest.approx(records[("feature[wa-gop]", key)]["times"]["rdo"], abs=1e-3)


def test_external_codec_writes_the_qp_map(tmp_path):
    from fcm.codecs.external import ExternalCodec, read_qp_map

    dest = tmp_path / "seen.txt"
    script = "import shutil, sys; shutil.copy(sys.argv[1], sys.argv[2]); open(sys.argv[3], 'wb').write(b'x')"
    codec = ExternalCodec("mapper", f'{sys.executable} -c "{script}" {{qp_map}} {dest} {{output}}', pyav_decoder="hevc")
    assert codec.supports_block_qp_offsets and codec.qp_block_sizes == (16,)
    frames = np.zeros((2, 40, 70), np.uint16)
    offsets = np.arange(2 * 3 * 5, dtype=np.int32).reshape(2, 3, 5) - 12
    codec.encode(frames, 10, CodecParams(30), offsets)
    np.testing.assert_array_equal(read_qp_map(dest), offsets)
    codec.encode(frames, 10, CodecParams(30))  # no map: zeros
    assert not read_qp_map(dest).any()
    with pytest.raises(ShapeError, match="must have shape"):
        codec.encode(frames, 10, CodecParams(30), offsets[:, :2])
    plain = ExternalCodec("plain", f"{sys.executable} -c pass {{output}}", pyav_decoder="hevc")
    with pytest.raises(CodecError, match="no \\{qp_map\\} placeholder"):
        plain.encode(frames, 10, CodecParams(30), offsets)


def test_cli_rdo_weights_and_encode(tmp_path):
    config = tmp_path / "rdo.yaml"
    config.write_text(
        "model: efficientnet_lite0\nsplit: stage4\nprobes: 2\ndataset: {kind: training, crops_per_image: 1}\n"
    )
    out = tmp_path / "map.npz"
    run = [sys.executable, "-m", "fcm.cli"]
    made = subprocess.run(
        run + ["rdo-weights", str(config), "-o", str(out), "--limit", "2", "--no-progress"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert made.returncode == 0, made.stderr
    assert '"frames": 2' in made.stdout and out.is_file()
    enc = subprocess.run(
        run
        + [
            "encode",
            "skimage:rocket",
            "-o",
            str(tmp_path / "r.fcm"),
            "--rate-control",
            "crf",
            "--rdo",
            "wa-fixed",
            "--rdo-map",
            str(out),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert enc.returncode == 0, enc.stderr
    wrong = subprocess.run(
        run
        + [
            "encode",
            "skimage:rocket",
            "-o",
            str(tmp_path / "r.fcm"),
            "--split",
            "stage3",
            "--rate-control",
            "crf",
            "--rdo",
            "wa-fixed",
            "--rdo-map",
            str(out),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert wrong.returncode == 2 and "made for split 'stage4'" in wrong.stderr
    again = subprocess.run(  # a remake never replaces a map unless told: refused before any work
        run + ["rdo-weights", str(config), "-o", str(out)], capture_output=True, text=True, check=False
    )
    assert again.returncode == 2 and "exists: pass --overwrite" in again.stderr
    config.write_text("model: efficientnet_lite0\nprobes: -1\n")
    bad = subprocess.run(
        run + ["rdo-weights", str(config), "-o", str(tmp_path / "other.npz")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert bad.returncode == 2 and "probes" in bad.stderr


def test_rdo_settings_round_trip_through_config():
    settings = RdoSettings.from_config({"mode": "wa-gop", "gop": 4, "tau": 0.5, "smooth": 1, "block": 8})
    assert settings.precondition == Preconditioning(99.5, 1, 0.5)
    assert RdoSettings.from_config(settings.to_config()) == settings


def test_coded_channel_weights_are_the_channel_means_of_the_exact_diagonal(lite0, chelsea):
    """Through a wrapper's post and the back half: the probe estimate over many probes matches the mean per channel
    of diag(JᵀMJ) formed exactly, and channels the decoder ignores weigh nothing."""
    from collections import OrderedDict

    from fcm.models.base import Features
    from fcm.rdo.sensitivity import coded_channel_weights
    from fcm.wrappers import build_wrapper

    # a 2×2 window of chelsea's stage4 map (the back half pools globally), so the exact diagonal stays cheap
    features = OrderedDict(
        (k, v[:, :, 6:8, 6:8]) for k, v in pipeline.run_front(chelsea, lite0).features.tensors.items()
    )
    torch.manual_seed(0)
    wrapper = build_wrapper("channel_reduction", lite0.spec, channels=6, hidden=0).eval()
    wrapper.init_from_features(features)
    with torch.no_grad():  # coded channel 5 never reaches the decoder's output
        wrapper.post[lite0.spec.names[0]][-1].weight[:, 5] = 0
    (name,) = wrapper.coded_spec.names
    coded = wrapper.encode(features)[name]

    def back(z: torch.Tensor) -> torch.Tensor:
        return lite0.back(Features(wrapper.decode(OrderedDict([(name, z)])), {}))

    # J by forward mode (24 coded samples, 1000 logits), then diag(JᵀMJ) with M = diag(p) − ppᵀ
    jac = torch.autograd.functional.jacobian(back, coded, vectorize=True, strategy="forward-mode")
    j = jac.reshape(1000, -1).double()
    p = torch.softmax(back(coded).double(), dim=-1).reshape(1000, 1)
    exact = ((p * j.square()).sum(0) - (p * j).sum(0).square()).reshape(coded.shape).mean(dim=(0, 2, 3)).detach()
    estimate = coded_channel_weights(lite0, wrapper, features, "kl", probes=512, seed=0)[name]
    assert estimate.shape == (6,) and exact[5] == 0 and estimate[5] == 0
    np.testing.assert_allclose(estimate[:5].numpy(), exact[:5].numpy(), rtol=0.25)
    assert torch.equal(estimate, coded_channel_weights(lite0, wrapper, features, "kl", probes=512, seed=0)[name])
    with pytest.raises(ConfigError, match="need the back half"):
        coded_channel_weights(lite0, wrapper, features, "features")
