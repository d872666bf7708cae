"""Video: streaming codec sessions, the video container, the frame-by-frame pipeline, clips and bounded memory."""

from __future__ import annotations

import hashlib
import io
import json
import subprocess
import sys
import textwrap
from fractions import Fraction
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from fcm.codecs import CodecParams, get_codec
from fcm.errors import BitstreamError, CodecError, ConfigError
from fcm.video.container import VideoReader
from fcm.video.pipeline import decode_video, encode_video
from fcm.video.sources import camera_clip, open_source, write_video


def _frames(n=6, h=40, w=56, seed=0):
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 1024, (h, w + n), dtype=np.uint16)
    return np.stack([base[:, i : i + w] for i in range(n)])  # a panning texture


@pytest.mark.parametrize("codec_name", ["x265", "x264", "vp9", "svtav1", "ffv1"])
@pytest.mark.parametrize("gop", ["intra", "lowdelay"])
def test_streaming_sessions_make_the_one_shot_bytes_and_frames(codec_name, gop):
    """push/flush gives exactly the packets of the one-shot encode of the same frames, and the decoder session the
    same frames as the one-shot decode."""
    codec = get_codec(codec_name)
    depth = codec.default_bit_depth
    frames = _frames() >> (10 - depth)
    params = CodecParams(
        30 if codec_name != "ffv1" else 0, gop=gop, preset="ultrafast" if "x26" in codec_name else None
    )
    one_shot = codec.encode(frames, depth, params)
    session = codec.open_encoder(frames.shape[2], frames.shape[1], depth, params)
    packets = [p for f in frames for p in session.push(f)] + session.flush()
    assert tuple(packets) == one_shot.packets
    decoder = codec.open_decoder(frames.shape[2], frames.shape[1], depth, session.extradata)
    decoded = [f for p in packets for f in decoder.push(p)] + decoder.flush()
    assert np.array_equal(np.stack(decoded), codec.decode(one_shot))
    with pytest.raises(CodecError, match="flushed"):
        session.push(frames[0])


@pytest.mark.parametrize("codec_name", ["x265", "x264", "svtav1", "vp9"])
def test_intra_period_sets_key_frames(codec_name):
    from fcm.codecs import EncodedFrames
    from fcm.codecs.ffmpeg import frame_types

    codec = get_codec(codec_name)
    frames = _frames(9) >> 2
    session = codec.open_encoder(56, 40, 8, CodecParams(32, gop="lowdelay"), intra_period=4)
    packets = [p for f in frames for p in session.push(f)] + session.flush()
    types = frame_types(codec, EncodedFrames(codec_name, 56, 40, 8, 9, session.extradata, tuple(packets)))
    assert types == ("I", "P", "P", "P", "I", "P", "P", "P", "I")
    with pytest.raises(ValueError, match="intra_period"):
        codec.open_encoder(56, 40, 8, CodecParams(32, gop="lowdelay"), intra_period=-1)


@pytest.fixture(scope="module")
def clip():
    return open_source("clip:astronaut:12:96x64")


@pytest.fixture(scope="module")
def lowdelay_stream(lite0, clip):
    sink = io.BytesIO()
    stats = encode_video(
        clip.frames(), lite0, "x265", CodecParams(32, gop="lowdelay", preset="ultrafast"), sink, clip.fps
    )
    return sink.getvalue(), stats


def test_video_round_trip_and_rate_report(lite0, clip, lowdelay_stream, tmp_path):
    """Frames, bytes and kbps in the report are the stream's; each frame decodes to what the back half gives on the
    features the stream carries."""
    data, stats = lowdelay_stream
    assert stats.frames == 12 and stats.bytes == len(data) and stats.fps == Fraction(25)
    assert stats.kbps == pytest.approx(8 * len(data) / 1000 / (12 / 25))
    reader = VideoReader(io.BytesIO(data))
    units = list(reader)
    head = len(data) - sum(stats.unit_bytes) - 12  # header; 12: the end record
    assert [u.index for u in units] == list(range(12)) and head > 0 and reader.bytes == len(data)
    header, results = decode_video(io.BytesIO(data), lite0)
    results = list(results)
    assert (header.model, header.split, header.params.gop) == ("efficientnet_lite0", "stage4", "lowdelay")
    assert [r.index for r in results] == list(range(12))
    for r in results:
        assert r.output.shape == (1, 1000) and bool(np.isfinite(r.output.numpy()).all())
    # the CLI reports the same figures
    from fcm.cli import main

    out = tmp_path / "c.fcmv"
    write_video(clip.frames(), tmp_path / "c.mkv", clip.fps)
    assert main(["encode-video", str(tmp_path / "c.mkv"), "-o", str(out), "--preset", "ultrafast", "--quiet"]) == 0
    lines = tmp_path / "frames.jsonl"
    assert main(["decode-video", str(out), "-o", str(lines), "--quiet", "--top-k", "1"]) == 0
    records = [json.loads(x) for x in lines.read_text().splitlines()]
    assert [r["frame"] for r in records] == list(range(12))
    assert out.read_bytes() == data  # a lossless file of the clip codes to the same stream


def test_a_stream_cut_anywhere_decodes_every_complete_frame_first(lite0, lowdelay_stream):
    data, stats = lowdelay_stream
    ends = []
    pos = len(data) - sum(stats.unit_bytes) - 12
    for size in stats.unit_bytes:
        pos += size
        ends.append(pos)
    rng = np.random.default_rng(5)
    for cut in sorted(set(rng.integers(1, len(data), 25).tolist()) | {ends[3], ends[-1], len(data) - 1}):
        complete = sum(e <= cut for e in ends)
        got = []
        with pytest.raises(BitstreamError, match="truncated") as err:
            _, results = decode_video(io.BytesIO(data[:cut]), lite0)
            for r in results:
                got.append(r.index)
        assert got == list(range(complete)), cut
        if cut >= ends[0] - stats.unit_bytes[0]:  # past the header: the error says how many frames were whole
            assert f"after {complete} complete frame(s)" in str(err.value)


def test_damaged_or_foreign_streams_are_refused_clearly(lite0, lowdelay_stream):
    data, stats = lowdelay_stream
    start = len(data) - sum(stats.unit_bytes) - 12
    third = start + sum(stats.unit_bytes[:2]) + 10
    damaged = bytearray(data)
    damaged[third] ^= 0x40
    got = []
    with pytest.raises(BitstreamError, match="checksum mismatch: frame 2"):
        for r in decode_video(io.BytesIO(bytes(damaged)), lite0)[1]:
            got.append(r.index)
    assert got == [0, 1]
    with pytest.raises(BitstreamError, match="not an fcm video stream"):
        VideoReader(io.BytesIO(b"FCM\x1a" + data[4:]))
    with pytest.raises(BitstreamError, match="bytes after the end"):
        list(VideoReader(io.BytesIO(data + b"\0")))
    from fcm.models import get_model

    with pytest.raises(BitstreamError, match="the model given is efficientnet_lite0/stage3"):
        decode_video(io.BytesIO(data), get_model("efficientnet_lite0", "stage3"))
    # a length field claiming more than a frame can take is refused before reading it
    forged = bytearray(data)
    forged[start : start + 4] = (1 << 31).to_bytes(4, "little")
    with pytest.raises(BitstreamError, match="more than a"):
        list(VideoReader(io.BytesIO(bytes(forged))))


def test_lowdelay_uses_fewer_bits_than_all_intra_on_the_panning_clip(lite0, clip, lowdelay_stream):
    _, lowdelay = lowdelay_stream
    intra = encode_video(
        clip.frames(), lite0, "x265", CodecParams(32, gop="intra", preset="ultrafast"), io.BytesIO(), clip.fps
    )
    assert lowdelay.bytes < 0.8 * intra.bytes, (lowdelay.bytes, intra.bytes)


def test_wa_gop_weights_are_computed_on_each_groups_first_frame(lite0, clip, monkeypatch):
    from fcm.rdo import RdoSettings, build_allocation
    from fcm.rdo.allocation import GopAllocation

    calls = []
    original = GopAllocation.weights

    def counted(self, packed, *args):
        calls.append(packed.frames.shape[0])
        return original(self, packed, *args)

    monkeypatch.setattr(GopAllocation, "weights", counted)
    allocation = build_allocation(RdoSettings(mode="wa-gop", gop=4, probes=1))
    params = CodecParams(30, rate_control="crf", gop="lowdelay", preset="veryfast")  # ultrafast: no AQ, no maps
    sink = io.BytesIO()
    frames = (f for i, f in enumerate(clip.frames()) if i < 9)
    stats = encode_video(frames, lite0, "x265", params, sink, clip.fps, intra_period=4, allocation=allocation)
    assert stats.frames == 9 and calls == [1, 1, 1]  # frames 0, 4 and 8
    assert len(list(decode_video(io.BytesIO(sink.getvalue()), lite0)[1])) == 9
    with pytest.raises(ConfigError, match="route qp"):
        scale = build_allocation(RdoSettings(mode="wa-gop", route="scale"))
        encode_video(clip.frames(), lite0, "x265", params, io.BytesIO(), clip.fps, allocation=scale)


def test_sources_clips_folders_and_files(tmp_path):
    frames = list(camera_clip("astronaut", 4, (48, 64)))
    assert all(f.shape == (48, 64, 3) and f.dtype == np.uint8 for f in frames)
    digest = hashlib.sha256(b"".join(f.tobytes() for f in frames)).hexdigest()
    assert digest == hashlib.sha256(b"".join(f.tobytes() for f in camera_clip("astronaut", 4, (48, 64)))).hexdigest()
    # frame t does not depend on the clip's length
    assert np.array_equal(list(camera_clip("astronaut", 9, (48, 64)))[3], frames[3])
    from PIL import Image

    folder = tmp_path / "seq"
    folder.mkdir()
    for i, f in enumerate(frames):
        Image.fromarray(f).save(folder / f"{i:03d}.png")
    src = open_source(str(folder), fps=12.5)
    assert src.num_frames == 4 and src.fps == Fraction(25, 2)
    assert all(np.array_equal(a, b) for a, b in zip(src.frames(), frames, strict=True))
    write_video(iter(frames), tmp_path / "v.mkv", Fraction(30))
    video = open_source(str(tmp_path / "v.mkv"), max_frames=3)
    assert video.fps == Fraction(30) and len(list(video.frames())) == 3
    assert all(np.array_equal(a, b) for a, b in zip(video.frames(), frames, strict=False))
    with pytest.raises(ConfigError, match="unknown photo"):
        open_source("clip:nothing")
    with pytest.raises(ConfigError, match="no video file"):
        open_source(str(tmp_path / "missing.mp4"))


def test_external_codecs_say_they_cannot_stream(lite0, clip):
    from fcm.codecs.base import Codec

    class Whole(Codec):
        name = "whole"

        def encode(self, frames, bit_depth, params, block_qp_offsets=None):  # pragma: no cover - never called
            raise AssertionError

        def decode(self, encoded):  # pragma: no cover
            raise AssertionError

    with pytest.raises(CodecError, match="cannot code video frame by frame"):
        encode_video(clip.frames(), lite0, Whole(), CodecParams(32), io.BytesIO(), clip.fps)


_RSS_SCRIPT = textwrap.dedent(
    """
    import io, resource, sys  # noqa: E401
    import torch
    torch.set_num_threads(1)
    from fcm.codecs import CodecParams
    from fcm.models import get_model
    from fcm.video.pipeline import decode_video, encode_video
    from fcm.video.sources import open_source

    n = int(sys.argv[1])
    model = get_model("efficientnet_lite0", "stage4")
    src = open_source(f"clip:astronaut:{n}:64x48")

    params = CodecParams(32, gop="lowdelay", preset="ultrafast")
    path = sys.argv[2]
    with open(path, "wb") as f:
        stats = encode_video(src.frames(), model, "x265", params, f, src.fps)
    frames = 0
    resident = []
    with open(path, "rb") as f:
        for r in decode_video(f, model)[1]:
            frames += 1
            if frames in (30, n):  # after warm-up, and at the end
                resident.append(int(open("/proc/self/statm").read().split()[1]) * 4096 // 1024)
    assert frames == n == stats.frames
    print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, resident[-1] - resident[0])
    """
)


def test_peak_memory_does_not_grow_with_sequence_length(tmp_path):
    """Encoding and decoding 300 frames peaks within 1.3x of 30 frames (each in its own process)."""
    peaks = {}
    for n in (30, 300):
        stream = str(tmp_path / f"{n}.fcmv")
        command = [sys.executable, "-c", _RSS_SCRIPT, str(n), stream]
        out = subprocess.run(command, capture_output=True, text=True, check=True)
        peak, growth = (int(v) for v in out.stdout.strip().splitlines()[-1].split())
        peaks[n] = peak
    assert peaks[300] <= 1.3 * peaks[30], peaks
    # and while decoding frames 30 to 300, resident memory stays put (each frame's features, output and packet are
    # ~70 KB: keeping them would add ~19 MB)
    assert growth < 8 * 1024, growth


@pytest.mark.parametrize("codec_name", ["x265", "x264", "svtav1", "vp9"])
def test_picture_sessions_code_rgb_video_like_the_image_anchor(codec_name):
    """One picture through the session is byte for byte encode_image's; a low-delay sequence decodes close to the
    pictures, in the format it was coded in."""
    from fcm.codecs.color import DEFAULT_FORMAT, PictureFormat

    codec = get_codec(codec_name)
    fmt = PictureFormat.parse("yuv420p") if codec_name == "vp9" else DEFAULT_FORMAT  # this libvpx is 8-bit only
    pictures = list(camera_clip("coffee", 5, (38, 50)))  # odd-free sizes are padded to even ones and cropped back
    params = CodecParams(22)
    one = codec.encode_image(pictures[0], params, fmt)
    session = codec.open_picture_encoder(50, 38, params, fmt)
    assert tuple(session.push(pictures[0]) + session.flush()) == one.packets
    session = codec.open_picture_encoder(50, 38, CodecParams(22, gop="lowdelay"), fmt)
    packets = [p for pic in pictures for p in session.push(pic)] + session.flush()
    decoder = codec.open_picture_decoder(50, 38, fmt, session.extradata)
    decoded = [d for p in packets for d in decoder.push(p)] + decoder.flush()
    assert len(decoded) == 5 and all(d.shape == (38, 50, 3) and d.dtype == np.uint8 for d in decoded)
    mse = np.mean([(d.astype(float) - p) ** 2 for d, p in zip(decoded, pictures, strict=True)])
    assert 10 * np.log10(255**2 / mse) > 28


def _video_sweep_config(tmp_path, **overrides):
    from fcm.eval.video_sweep import VideoSweepConfig

    raw = {
        "name": "t",
        "output": str(tmp_path / "vs"),
        "sequences": ["clip:astronaut:8:96x64", "clip:coffee:8:96x64"],
        "codecs": ["x265"],
        "qps": [27, 32, 37, 42],
        "preset": "ultrafast",
        "intra_period": 4,
        **overrides,
    }
    return VideoSweepConfig.from_config(raw)


def test_video_sweep_measures_reports_and_resumes(tmp_path):
    import csv

    from fcm.eval.video_sweep import RESULTS_FILE, read_records, run_video_sweep

    cfg = _video_sweep_config(tmp_path)
    outcome = run_video_sweep(cfg, progress=False)
    assert outcome.new_records == 2 * 2 * 4 and outcome.complete
    records = read_records(cfg.output / RESULTS_FILE)
    for r in records:
        assert r["frames"] == 8 and r["kbps"] == pytest.approx(8 * r["bytes"] / 1000 / (8 / 25))
        assert 0 <= r["metrics"]["top1_agreement"] <= 100 and r["mean_kl"] >= 0
    for pipeline in ("feature", "remote"):  # rates fall as QP rises, on each sequence
        for seq in cfg.sequences:
            kbps = [
                r["kbps"]
                for r in sorted(records, key=lambda r: r["qp"])
                if (r["pipeline"], r["sequence"]) == (pipeline, seq)
            ]
            assert kbps == sorted(kbps, reverse=True) and len(kbps) == 4
    report = outcome.report
    assert [p["curve"] for p in report["points"]].count("feature/x265") == 4
    point = next(p for p in report["points"] if (p["curve"], p["qp"]) == ("feature/x265", 32))
    mine = [r for r in records if (r["pipeline"], r["qp"]) == ("feature", 32)]
    assert point["bytes"] == sum(r["bytes"] for r in mine) and point["frames"] == 16
    assert point["kbps"] == pytest.approx(8 * point["bytes"] / 1000 / (16 / 25))
    assert {row["measure"] for row in report["bd"]} >= {"kl_db"}
    assert (cfg.output / "rd_kbps.png").stat().st_size > 10_000
    rows = list(csv.DictReader((cfg.output / "points.csv").read_text().splitlines()))
    assert len(rows) == 8 + 16
    again = run_video_sweep(cfg, progress=False)
    assert again.new_records == 0
    with pytest.raises(ConfigError, match=r"different video sweep.*gop"):
        run_video_sweep(_video_sweep_config(tmp_path, gop="intra"), progress=False)


def test_video_sweep_in_two_processes_gives_the_same_records_and_refuses_other_sweeps(tmp_path):
    from fcm.eval.video_sweep import RESULTS_FILE, read_records, run_video_sweep

    def canon(records):
        timed = ("encode_fps", "decode_fps", "roundtrip_fps", "times")
        return sorted(json.dumps({k: v for k, v in r.items() if k not in timed}, sort_keys=True) for r in records)

    small = {"qps": [32, 42], "sequences": ["clip:astronaut:4:96x64", "clip:coffee:4:96x64"]}
    one = run_video_sweep(_video_sweep_config(tmp_path / "one", **small), progress=False)
    two_cfg = _video_sweep_config(tmp_path / "two", **small)
    two = run_video_sweep(two_cfg, progress=False, jobs=2)
    assert one.new_records == two.new_records == 2 * 2 * 2
    assert canon(read_records(two_cfg.output / RESULTS_FILE)) == canon(one.records)
    other = _video_sweep_config(tmp_path / "two", name="other", **{**small, "qps": [37]})
    with pytest.raises(ConfigError, match=r"holds the results of video sweep 't', not of this config's sweep 'other'"):
        run_video_sweep(other, progress=False)
    merged = run_video_sweep(other, progress=False, merge=True)
    assert merged.new_records == 2 * 2
    assert json.loads((two_cfg.output / "video_sweep.json").read_text())["name"] == merged.report["name"] == "t"
    manifest = json.loads((two_cfg.output / "manifest.json").read_text())
    assert manifest["numerics"]["torch_threads"] == 1 and manifest["new_records_this_run"] == 2 * 2
    assert manifest["jobs"] == 1 and manifest["packages"]["torch"] and manifest["config"]["qps"] == [37]


def test_video_sweep_configs_are_checked(tmp_path):
    from fcm.eval.video_sweep import VideoSweepConfig, run_video_sweep

    with pytest.raises(ConfigError, match="unknown video sweep key"):
        _video_sweep_config(tmp_path, qp=3)
    with pytest.raises(ConfigError, match="unknown video pipeline"):
        _video_sweep_config(tmp_path, pipelines=["warped"])
    with pytest.raises(ConfigError, match="'wrapped' pipeline needs 'wrapper: CHECKPOINT'"):
        _video_sweep_config(tmp_path, pipelines=["feature", "wrapped"])
    with pytest.raises(ConfigError, match="'wrapper' is read only by the 'wrapped' pipeline"):
        _video_sweep_config(tmp_path, wrapper="checkpoints/efficientnet_lite0_stage4_cr40_scaled.pt")
    with pytest.raises(ConfigError, match="needs 'qps'"):
        VideoSweepConfig.from_config({"sequences": ["clip:coffee"], "codecs": ["x265"]})
    for qp in (27.9, True, "27"):  # a QP is an integer: never truncated or coerced (as the image sweep's config)
        with pytest.raises(ConfigError, match="each of qps must be an integer"):
            _video_sweep_config(tmp_path, qps=[22, qp])
    with pytest.raises(ConfigError, match="cannot code yuv420p10 pictures"):
        run_video_sweep(
            _video_sweep_config(tmp_path, codecs=["vp9"], preset="4"), progress=False
        )  # 10-bit remote on VP9
    shipped = VideoSweepConfig.load("configs/video_sweep.yaml")
    assert shipped.pipelines == ("feature", "remote") and len(shipped.qps) >= 6 and shipped.gop == "lowdelay"


def test_a_video_sweep_codes_through_a_wrapper_or_a_family(tmp_path):
    """The ``wrapped`` pipeline codes each sequence through the wrapper (a family: its variant for the QP, named in
    the stream), decodes it with the same wrapper and reports it as its own curve; the folder remembers the
    wrapper's weights, so another wrapper's sweep cannot add points to it."""
    from fcm.eval.video_sweep import run_video_sweep

    cr40 = "checkpoints/efficientnet_lite0_stage4_cr40_scaled.pt"
    small = {"qps": [27, 42], "sequences": ["clip:astronaut:4:96x64"], "pipelines": ["feature", "wrapped"]}
    outcome = run_video_sweep(_video_sweep_config(tmp_path, wrapper=cr40, **small), progress=False)
    by = {(r["pipeline"], r["qp"]): r for r in outcome.records}
    assert set(by) == {(p, q) for p in ("feature", "wrapped") for q in (27, 42)}
    for qp in (27, 42):  # 40 of 80 channels coded: fewer bytes than the plain features at the same QP
        assert by[("wrapped", qp)]["bytes"] < by[("feature", qp)]["bytes"], qp
        assert by[("wrapped", qp)]["frames"] == 4 and by[("wrapped", qp)]["mean_kl"] >= 0
    assert by[("wrapped", 27)]["bytes"] > by[("wrapped", 42)]["bytes"]
    assert {p["curve"] for p in outcome.report["points"]} == {"feature/x265", "wrapped/x265"}
    family = "checkpoints/efficientnet_lite0_stage4_family.pt"
    with pytest.raises(ConfigError, match="wrapper_tag"):
        run_video_sweep(_video_sweep_config(tmp_path, wrapper=family, **small), progress=False)
    fam = run_video_sweep(_video_sweep_config(tmp_path / "fam", wrapper=family, **small), progress=False)
    by_family = {(r["pipeline"], r["qp"]): r for r in fam.records}
    # the shipped family codes QP 0–24 plainly, QP 25–39 with its Fisher-weighted KLT and 40–51 with its linear-mix one
    assert all(by_family[("wrapped", q)]["bytes"] != by_family[("feature", q)]["bytes"] for q in (27, 42))


def test_mutated_video_streams_raise_only_bitstream_errors(lite0, lowdelay_stream):
    """300 mutations: bit flips, byte runs, cuts, insertions, length fields rewritten, and packet bytes changed with
    the unit's CRC recomputed (so the codec itself meets the damage). Each stream decodes or raises BitstreamError;
    nothing else escapes, nothing hangs."""
    import zlib

    data, stats = lowdelay_stream
    start = len(data) - sum(stats.unit_bytes) - 12
    bounds = np.cumsum([start, *stats.unit_bytes])
    rng = np.random.default_rng(11)
    outcomes = {"decoded": 0, "refused": 0}
    for i in range(300):
        b = bytearray(data)
        kind = i % 6
        pos = int(rng.integers(0, len(b)))
        if kind == 0:
            b[pos] ^= 1 << int(rng.integers(0, 8))
        elif kind == 1:
            b[pos : pos + 8] = rng.integers(0, 256, 8, dtype=np.uint8).tobytes()
        elif kind == 2:
            del b[pos:]
        elif kind == 3:
            b[pos:pos] = rng.integers(0, 256, int(rng.integers(1, 16)), dtype=np.uint8).tobytes()
        elif kind == 4:
            b[pos : pos + 4] = int(rng.integers(0, 1 << 32)).to_bytes(4, "little")
        else:  # inside a unit's packet, CRC recomputed: only the codec can notice
            k = int(rng.integers(0, len(stats.unit_bytes)))
            body_start, body_end = int(bounds[k]) + 4, int(bounds[k + 1]) - 4
            for _ in range(4):
                j = int(rng.integers(body_end - (body_end - body_start) // 2, body_end))
                b[j] = int(rng.integers(0, 256))
            b[body_end : body_end + 4] = zlib.crc32(bytes(b[body_start:body_end])).to_bytes(4, "little")
        try:
            for _ in decode_video(io.BytesIO(bytes(b)), lite0)[1]:
                pass
            outcomes["decoded"] += 1
        except BitstreamError:
            outcomes["refused"] += 1
    assert outcomes["refused"] > 200 and outcomes["decoded"] > 0, outcomes


def test_a_decoder_giving_more_frames_than_packets_is_refused(lite0, lowdelay_stream, monkeypatch):
    """One packet decoding to two pictures (a VP9 superframe does) would pair frames with the wrong ranges."""
    data, _ = lowdelay_stream
    codec = get_codec("x265")
    real = codec.open_decoder

    def doubling(*args, **kwargs):
        session = real(*args, **kwargs)
        push = session.push
        session.push = lambda packet: [f for f in push(packet) for _ in range(2)]
        return session

    monkeypatch.setattr(type(codec), "open_decoder", lambda self, *a, **k: doubling(*a, **k))
    got = []
    with pytest.raises(BitstreamError, match="already had its frame"):
        for r in decode_video(io.BytesIO(data), lite0)[1]:
            got.append(r.index)
    assert got == [0]


def test_video_sweep_survives_a_crash_cut_record(tmp_path):
    from fcm.eval.video_sweep import RESULTS_FILE, read_records, run_video_sweep

    cfg = _video_sweep_config(tmp_path, qps=[32, 37, 42, 47], pipelines=["feature"], sequences=["clip:coffee:4:96x64"])
    run_video_sweep(cfg, progress=False)
    results = cfg.output / RESULTS_FILE
    lines = results.read_text().splitlines()
    results.write_text("\n".join(lines[:2]) + "\n" + lines[2][:30])  # the third record cut mid-write
    again = run_video_sweep(cfg, progress=False)
    assert again.new_records == 2 and len(read_records(results)) == 4
    assert run_video_sweep(cfg, progress=False).new_records == 0  # and the file reads cleanly afterwards


#: sha256 of the pixels of the first 3 frames of shapes:4:3:96
GOLDEN_SHAPES_CLIP = "261aa2bcefbbaba896467d6f66b22fd9e6d88b3abebdc779a3e3131c3ff1c550"


def test_labelled_shapes_clips_and_a_detection_video_sweep(tmp_path):
    """shapes: clips carry per-frame COCO ground truth: deterministic (golden hash), a shorter clip is a prefix of a
    longer one, the ground truth scores 100 against itself and less when frames are misaligned; a video sweep of
    the offline detector scores each frame against it, and coco is refused for unlabelled clips or a classifier
    before anything is written."""
    from fcm.eval.evaluators import CocoMAP
    from fcm.eval.video_sweep import SWEEP_FILE, run_video_sweep

    tiny = open_source("shapes:4:3:96")
    digest = hashlib.sha256(b"".join(f.tobytes() for f in tiny.frames())).hexdigest()
    assert digest == GOLDEN_SHAPES_CLIP
    src = open_source("shapes:3:5:128")
    frames = list(src.frames())
    short = open_source("shapes:3:5:128", max_frames=3)
    assert short.num_frames == 3 and all(np.array_equal(a, b) for a, b in zip(short.frames(), frames, strict=False))
    gt, gt3 = src.ground_truth(), short.ground_truth()
    assert [a for a in gt["annotations"] if a["image_id"] <= 3] == gt3["annotations"]
    assert [im["id"] for im in gt["images"]] == [1, 2, 3, 4, 5] and gt["annotations"]
    path = tmp_path / "gt.json"
    path.write_text(json.dumps(gt))

    def score(shift: int) -> float:
        ev = CocoMAP(path)
        for image in gt["images"]:
            i = (image["id"] - 1 + shift) % 5 + 1  # the ground truth of frame i offered as frame image["id"]'s output
            anns = [a for a in gt["annotations"] if a["image_id"] == i and not a["iscrowd"]]
            boxes = torch.tensor(
                [[a["bbox"][0], a["bbox"][1], a["bbox"][0] + a["bbox"][2], a["bbox"][1] + a["bbox"][3]] for a in anns],
                dtype=torch.float32,
            ).reshape(-1, 4)
            output = [
                {
                    "boxes": boxes,
                    "scores": torch.ones(len(anns)),
                    "labels": torch.tensor([a["category_id"] for a in anns]),
                }
            ]
            ev.process(SimpleNamespace(id=str(image["id"]), image_id=image["id"]), output)
        return ev.evaluate()["mAP"]

    assert score(0) == pytest.approx(100.0) and score(1) < 90
    cfg = _video_sweep_config(
        tmp_path,
        model="faster_rcnn_lite0_fpn",
        split="fpn",
        sequences=["shapes:3:4"],
        evaluator="coco",
        qps=[27, 32, 37, 42],
    )
    outcome = run_video_sweep(cfg, progress=False)
    by = {(r["pipeline"], r["qp"]): r["metrics"]["mAP"] for r in outcome.records}
    assert by[("feature", 27)] >= 60 and by[("remote", 27)] >= 50, by
    assert outcome.report["primary_metric"] == "mAP"
    with pytest.raises(ConfigError, match="needs labelled sequences"):
        run_video_sweep(
            _video_sweep_config(tmp_path / "x", model="faster_rcnn_lite0_fpn", split="fpn", evaluator="coco"),
            progress=False,
        )
    with pytest.raises(ConfigError, match="scores detection models, but the model does classification"):
        run_video_sweep(_video_sweep_config(tmp_path / "y", sequences=["shapes:3:4"], evaluator="coco"), progress=False)
    assert not (tmp_path / "y" / "vs" / SWEEP_FILE).exists() and not (tmp_path / "x" / "vs" / SWEEP_FILE).exists()


def _rdo_sweep(pipelines):
    # x265's ultrafast has no adaptive quantization, so it takes no maps (tests/test_codecs.py)
    return {
        "sequences": ["clip:coffee:8:96x64"],
        "qps": [32],
        "rate_control": "crf",
        "preset": "veryfast",
        "pipelines": pipelines,
    }


def test_a_video_sweep_runs_rdo_policies_as_variants(tmp_path):
    """``feature[MODE]`` codes the stream with that RDO policy's block QP maps (one strategy per stream): the control
    ``wa-uniform`` gives exactly the plain stream's bytes, ``wa-gop`` other bytes; the folder's identity names each
    policy's settings."""
    import json

    from fcm.eval.video_sweep import SWEEP_FILE, check_folder_read_only, run_video_sweep

    pipelines = ["feature", "feature[wa-uniform]", "feature[wa-gop]"]
    cfg = _video_sweep_config(tmp_path, **_rdo_sweep(pipelines), rdo={"probes": 2})
    outcome = run_video_sweep(cfg, progress=False)
    size = {r["pipeline"]: r["bytes"] for r in outcome.records}
    assert set(size) == set(pipelines)
    assert size["feature[wa-uniform]"] == size["feature"] and size["feature[wa-gop]"] != size["feature"]
    identity = json.loads((cfg.output / SWEEP_FILE).read_text())
    assert "rdo" in json.dumps(identity) and cfg.identity()["rdo"]["feature[wa-gop]"]["gop"] == 4  # the intra period
    assert cfg.identity()["rdo"]["feature[wa-gop]"]["probes"] == 2
    assert "rdo" not in _video_sweep_config(tmp_path).identity()  # folders from before keep their identity
    # the pipeline list may grow and shrink; each pipeline's rdo settings must stay what they were
    more = _video_sweep_config(tmp_path, **{**_rdo_sweep(pipelines + ["feature[wa-frame]"]), "rdo": {"probes": 2}})
    check_folder_read_only(more)
    check_folder_read_only(_video_sweep_config(tmp_path, **{**_rdo_sweep(["feature"]), "rdo": None}))
    with pytest.raises(ConfigError, match="differs in rdo of 'feature\\[wa-gop\\]'"):
        check_folder_read_only(_video_sweep_config(tmp_path, **{**_rdo_sweep(pipelines), "rdo": {"probes": 3}}))


def test_video_rdo_variants_are_checked(tmp_path):
    from fcm.eval.video_sweep import run_video_sweep

    with pytest.raises(ConfigError, match="remote takes none"):
        _video_sweep_config(tmp_path, pipelines=["feature", "remote[wa-gop]"])
    with pytest.raises(ConfigError, match="variant is an rdo mode"):
        _video_sweep_config(tmp_path, pipelines=["feature[wa-magic]"])
    with pytest.raises(ConfigError, match=r"\['probes'\] is read by none of this sweep's wrapper-aware pipelines"):
        _video_sweep_config(tmp_path, rdo={"probes": 2})
    with pytest.raises(ConfigError, match="read by none"):  # sse makes no map: its options would be ignored
        _video_sweep_config(tmp_path, pipelines=["feature[sse]"], rdo={"probes": 2})
    with pytest.raises(ConfigError, match="'route' is not an option here"):
        _video_sweep_config(tmp_path, pipelines=["feature[wa-gop]"], rdo={"route": "scale"})
    # each policy takes the options it reads: a map for wa-fixed beside estimator options for wa-gop
    both = _video_sweep_config(
        tmp_path, pipelines=["feature[wa-gop]", "feature[wa-fixed]"], rdo={"map": "m.npz", "probes": 2, "gop": 3}
    )
    gop, fixed = both.rdo_settings("feature[wa-gop]"), both.rdo_settings("feature[wa-fixed]")
    assert (gop.probes, gop.gop, gop.map_path) == (2, 3, None) and fixed.map_path.endswith("m.npz")
    with pytest.raises(ConfigError, match="needs map"):
        _video_sweep_config(tmp_path, pipelines=["feature[wa-fixed]"])
    with pytest.raises(ConfigError, match="per-block QP offsets only with rate_control"):  # x265 maps need crf
        run_video_sweep(_video_sweep_config(tmp_path, pipelines=["feature[wa-gop]"]), progress=False)
    assert not (tmp_path / "vs").exists()


def test_a_video_sweep_refuses_a_fixed_map_changed_under_it(tmp_path, lite0):
    """A wa-fixed video pipeline codes with the map the folder's identity names (by content): a map file rewritten
    after the sweep started is refused at the next point, so a folder's records never mix two maps."""
    from fcm.eval.video_sweep import _PointMeasurer, run_video_sweep
    from fcm.rdo import RdoSettings
    from fcm.rdo.fixed_map import make_fixed_map
    from fcm.video.sources import open_source

    frames = list(open_source("clip:coffee:8:96x64", None, None).frames())
    path = make_fixed_map(lite0, frames[:1], RdoSettings(mode="wa-frame", probes=1), 10).save(tmp_path / "m.npz")
    cfg = _video_sweep_config(tmp_path, **_rdo_sweep(["feature", "feature[wa-fixed]"]), rdo={"map": str(path)})
    outcome = run_video_sweep(cfg, progress=False)
    assert {r["pipeline"] for r in outcome.records} == {"feature", "feature[wa-fixed]"}
    measurer = _PointMeasurer(cfg, lite0)
    make_fixed_map(lite0, frames[4:5], RdoSettings(mode="wa-frame", probes=1, seed=1), 10).save(path)
    with pytest.raises(ConfigError, match="changed since the sweep started"):
        measurer.measure("clip:coffee:8:96x64", "feature[wa-fixed]", "x265", 32)
