"""Tests of fcm.eval.report: CSV / JSON / markdown / PNG outputs of a rate–accuracy sweep."""

from __future__ import annotations

import csv
import json
import math
import sys
from dataclasses import replace

import numpy as np
import pytest
import torch

from fcm.errors import ConfigError
from fcm.eval.bd import bd_accuracy, bd_rate
from fcm.eval.points import OperatingPoint
from fcm.eval.report import ReportFiles, format_bd_table, load_points, write_report

DATASET = "imagenet-val-500"
METRIC = "top1_agreement"
N = 500
PIXELS = N * 224 * 224
QPS = (22, 27, 32, 37, 42)

# Realistic ImageNet-like curves (bpp falls and top-1 agreement drops as QP grows): coding the split features is
# cheaper than coding the image for the same agreement; x264 is a bit worse than x265.
CURVES: dict[str, tuple[list[float], list[float]]] = {
    "remote/x265": ([2.10, 1.12, 0.56, 0.27, 0.125], [98.8, 97.4, 94.0, 86.6, 71.8]),
    "feature/x265": ([0.92, 0.47, 0.23, 0.11, 0.052], [99.2, 98.1, 95.6, 89.3, 75.2]),
    "feature/x264": ([1.05, 0.55, 0.28, 0.14, 0.068], [99.0, 97.7, 94.8, 87.9, 73.0]),
}
STAGE_TIMES = {
    "remote": {"encode": 0.021, "decode": 0.006, "back": 0.012},
    "feature": {"front": 0.004, "pack": 0.001, "encode": 0.015, "decode": 0.004, "unpack": 0.001, "back": 0.008},
}


def _points(curves=CURVES, dataset=DATASET, metric=METRIC, times=True) -> list[OperatingPoint]:
    out = []
    for name, (bpps, accs) in curves.items():
        pipeline, codec = name.split("/")
        for qp, bpp, acc in zip(QPS, bpps, accs):
            bits = round(bpp * PIXELS)
            stage = {k: v * (1.0 + (42 - qp) / 40) for k, v in STAGE_TIMES[pipeline].items()} if times else {}
            out.append(
                OperatingPoint(
                    dataset=dataset,
                    pipeline=pipeline,
                    codec=codec,
                    qp=qp,
                    num_inputs=N,
                    bits=bits,
                    pixels=PIXELS,
                    metric_name=metric,
                    metric=acc,
                    metrics={metric: acc, "top1": acc * 0.8, "top5_agreement": min(100.0, acc + 1.5)},
                    times=stage,
                )
            )
    return out


def _rd(points, name):
    ps = sorted((p for p in points if p.curve == name), key=lambda p: p.bpp)
    return [p.bpp for p in ps], [p.metric for p in ps]


def _reject_constant(name):
    raise ValueError(f"non-strict JSON constant {name}")


@pytest.fixture
def report(tmp_path):
    pts = _points()
    files = write_report(
        pts,
        tmp_path / "out",
        reference={METRIC: 100.0, "top1": 80.1},
        title="EfficientNet-Lite0 stage4",
        manifest={
            "fcm_version": "0.1.0",
            "git_revision": "7b87501",
            "python": "3.11.9",
            "packages": {"torch": "2.14.1", "numpy": "2.4.6"},
            "cpu": "Test CPU @ 3.0GHz",
            "config": {"name": "x", "version": "not the fcm version"},
        },
    )
    return pts, files


def test_every_file_exists(report):
    _, files = report
    assert isinstance(files, ReportFiles)
    written = (files.summary_csv, files.report_json, files.report_md, files.rd_plot, files.times_plot, files.edge_plot)
    for path in written:
        assert path is not None and path.is_file() and path.stat().st_size > 0, path
    assert files.rd_plot.name == f"rd_{METRIC}.png"
    assert set(files.files) == set(written)
    with pytest.raises(AttributeError):
        files.report_md = files.report_json  # frozen


def test_summary_csv(report):
    pts, files = report
    with files.summary_csv.open(newline="") as f:
        rows = list(csv.DictReader(f))
        f.seek(0)
        header = next(csv.reader(f))
    assert header == [
        "dataset",
        "pipeline",
        "codec",
        "qp",
        "num_inputs",
        "bits",
        "pixels",
        "bpp",
        "kbits",
        METRIC,
        f"{METRIC}_ci_lo",
        f"{METRIC}_ci_hi",
        "top1",
        "top5_agreement",
        "edge_macs",
        "edge_params",
        "edge_time_s",
        "time_front_s",
        "time_pack_s",
        "time_encode_s",
        "time_decode_s",
        "time_unpack_s",
        "time_back_s",
    ]
    assert len(rows) == len(pts) == 15
    # sorted by curve, then rate
    keys = [(f"{r['pipeline']}/{r['codec']}", float(r["bpp"])) for r in rows]
    assert keys == sorted(keys)
    for r in rows:
        assert r["dataset"] == DATASET
        assert float(r["bpp"]) == pytest.approx(int(r["bits"]) / int(r["pixels"]), abs=1e-6)
        assert float(r["kbits"]) == pytest.approx(int(r["bits"]) / 1000, abs=1e-3)
        p = next(p for p in pts if p.curve == f"{r['pipeline']}/{r['codec']}" and p.qp == int(r["qp"]))
        assert float(r[METRIC]) == pytest.approx(p.metric)
        assert float(r["time_encode_s"]) == pytest.approx(p.times["encode"], rel=1e-5)
        assert r[f"{METRIC}_ci_lo"] == r[f"{METRIC}_ci_hi"] == ""  # these points carry no per-input samples
        edge = sum(p.times.get(s, 0.0) for s in ("front", "pack", "encode"))
        assert float(r["edge_time_s"]) == pytest.approx(edge, rel=1e-5)
        if r["pipeline"] == "remote":
            assert r["time_pack_s"] == ""  # stage the remote pipeline has not
            assert float(r["edge_time_s"]) == pytest.approx(p.times["encode"], rel=1e-5)  # the edge only encodes


def test_report_json_strict_and_bd_values(report):
    pts, files = report
    doc = json.loads(files.report_json.read_text(), parse_constant=_reject_constant)
    assert set(doc) == {
        "title",
        "dataset",
        "metric",
        "anchor",
        "reference",
        "bootstrap",
        "points",
        "bd",
        "bd_smooth",
        "skipped",
        "manifest",
    }
    assert doc["bootstrap"]["resamples"] == 0 and "no per-input measurements" in doc["bootstrap"]["note"]
    assert doc["dataset"] == DATASET and doc["metric"] == METRIC
    assert doc["anchor"] == "remote/x265"  # default: the first remote curve
    assert doc["reference"] == {METRIC: 100.0, "top1": 80.1}
    assert doc["manifest"]["git_revision"] == "7b87501"
    assert len(doc["points"]) == 15
    assert {(b["anchor"], b["test"]) for b in doc["bd"]} == {
        ("remote/x265", "feature/x265"),
        ("remote/x265", "feature/x264"),
    }
    ar, aa = _rd(pts, "remote/x265")
    for b in doc["bd"]:
        tr, ta = _rd(pts, b["test"])
        assert b["note"] == ""
        assert b["bd_rate"] == pytest.approx(bd_rate(ar, aa, tr, ta), rel=1e-12)
        assert b["bd_accuracy"] == pytest.approx(bd_accuracy(ar, aa, tr, ta), rel=1e-12)
    by = {b["test"]: b for b in doc["bd"]}
    assert by["feature/x265"]["bd_rate"] < by["feature/x264"]["bd_rate"] < 0  # both save bits, x265 more


def test_report_md(report):
    pts, files = report
    md = files.report_md.read_text()
    ar, aa = _rd(pts, "remote/x265")
    tr, ta = _rd(pts, "feature/x265")
    assert "# EfficientNet-Lite0 stage4" in md
    assert DATASET in md and METRIC in md and "Inputs per operating point: 500" in md
    assert "anchor `remote/x265`" in md
    assert f"| `feature/x265` | {bd_rate(ar, aa, tr, ta):+.2f} | {bd_accuracy(ar, aa, tr, ta):+.2f} |" in md
    assert "BD-rate (%) vs `remote/x265`" in md
    assert f"{METRIC} = 100.00" in md and "top1 = 80.10" in md
    assert f"![{METRIC} vs bpp](rd_{METRIC}.png)" in md and "(times.png)" in md
    for text in (
        "- fcm: `0.1.0`",
        "- git revision: `7b87501`",
        "- python: `3.11.9`",
        "- torch: `2.14.1`",
        "- CPU: `Test CPU @ 3.0GHz`",
    ):
        assert text in md
    assert "not the fcm version" not in md
    assert "| 32 | 0.5600 |" in md  # remote/x265 operating point at QP 32
    # format_bd_table is the same table report.md shows
    table = format_bd_table(pts, "remote/x265")
    assert table in md
    assert table == format_bd_table(pts)  # default anchor


def _png_ok(path, min_bytes=10_000):
    import matplotlib.image as mpimg

    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(data) > min_bytes
    img = mpimg.imread(path)
    assert img.ndim == 3 and img.shape[2] in (3, 4)
    h, w = img.shape[:2]
    assert 400 <= h <= 2000 and 600 <= w <= 2500, img.shape
    assert img[..., :3].std() > 0.01  # not blank
    return img


def test_pngs_valid(report):
    _, files = report
    img = _png_ok(files.rd_plot)
    assert img.shape[:2] == (825, 1200)  # 8 x 5.5 in at 150 dpi
    _png_ok(files.times_plot)


def test_non_overlapping_curve_is_na(tmp_path):
    # A curve far below the anchor's accuracy range and to the left of its rate range: no overlap on either axis.
    curves = dict(CURVES)
    curves["feature/jpeg"] = ([0.004, 0.008, 0.016, 0.032, 0.06], [10.0, 20.0, 30.0, 40.0, 50.0])
    pts = _points(curves)
    files = write_report(pts, tmp_path, anchor="remote/x265")
    doc = json.loads(files.report_json.read_text(), parse_constant=_reject_constant)
    b = next(b for b in doc["bd"] if b["test"] == "feature/jpeg")
    assert b["bd_rate"] is None and b["bd_accuracy"] is None
    assert "do not overlap" in b["note"]
    md = files.report_md.read_text()
    row = next(line for line in md.splitlines() if line.startswith("| `feature/jpeg`"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[1].startswith("n/a — curves do not overlap in accuracy: anchor spans [71.8, 98.8]")
    assert cells[2].startswith("n/a — curves do not overlap in rate")
    # the other curves are still compared
    assert next(b for b in doc["bd"] if b["test"] == "feature/x265")["bd_rate"] is not None


def test_one_metric_na_keeps_the_other(tmp_path):
    # Accuracy overlaps the anchor's but rates do not: BD-rate is computed, BD-accuracy is n/a with its reason.
    curves = {
        "remote/x265": CURVES["remote/x265"],
        "feature/x265": ([3.0, 4.0, 5.0, 6.0, 7.0], [75.0, 88.0, 95.0, 97.0, 98.0]),
    }
    pts = _points(curves)
    table = format_bd_table(pts)
    row = next(line for line in table.splitlines() if line.startswith("| `feature/x265`"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[1].startswith("+") and float(cells[1]) > 0
    assert cells[2].startswith("n/a — curves do not overlap in rate")


def test_same_reason_for_both_metrics_said_once():
    curves = {"remote/x265": CURVES["remote/x265"], "feature/x265": ([0.1, 0.2, 0.4], [80.0, 90.0, 95.0])}
    pts = _points(curves)  # the feature curve has 3 points (QP 22, 27, 32): too few for BD
    assert sum(p.pipeline == "feature" for p in pts) == 3
    row = next(line for line in format_bd_table(pts).splitlines() if line.startswith("| `feature/x265`"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[1].startswith("n/a — test has 3 points") and "at least 4" in cells[1]
    assert cells[2] == "n/a (same reason)"


def test_explicit_anchor_and_unknown_anchor(tmp_path):
    pts = _points()
    files = write_report(pts, tmp_path / "a", anchor="feature/x264")
    doc = json.loads(files.report_json.read_text())
    assert doc["anchor"] == "feature/x264"
    assert {b["test"] for b in doc["bd"]} == {"remote/x265", "feature/x265"}
    with pytest.raises(ConfigError, match="feature/vvc"):
        write_report(pts, tmp_path / "b", anchor="feature/vvc")


def test_default_anchor_without_remote_is_first_curve(tmp_path):
    pts = [p for p in _points() if p.pipeline == "feature"]
    assert "anchor `feature/x265`" in format_bd_table(pts)


def test_single_curve(tmp_path):
    pts = [p for p in _points() if p.curve == "remote/x265"]
    files = write_report(pts, tmp_path)
    assert json.loads(files.report_json.read_text())["bd"] == []
    assert "nothing to compare" in files.report_md.read_text()


def test_mismatched_dataset_or_metric_raise(tmp_path):
    pts = _points()
    other = _points({"feature/x264": CURVES["feature/x264"]}, dataset="coco-val")
    with pytest.raises(ConfigError, match="coco-val"):
        write_report(pts + other, tmp_path)
    other = _points({"feature/x264": CURVES["feature/x264"]}, metric="top1")
    with pytest.raises(ConfigError, match="metric_name"):
        write_report(pts + other, tmp_path)
    with pytest.raises(ConfigError, match="coco-val"):
        format_bd_table(pts + _points(dataset="coco-val"))
    with pytest.raises(ConfigError):
        write_report([], tmp_path)
    assert not (tmp_path / "report.json").exists()


def test_load_points_round_trip(report, tmp_path):
    pts, files = report
    back = load_points(files.report_json)
    assert sorted(back, key=lambda p: (p.curve, p.qp)) == sorted(pts, key=lambda p: (p.curve, p.qp))


def test_non_finite_values_are_null(tmp_path):
    pts = _points(times=False)
    bad = pts[0]
    pts[0] = OperatingPoint(
        **{
            **{k: getattr(bad, k) for k in bad.__dataclass_fields__},
            "metric": float("nan"),
            "metrics": {"top1": float("inf")},
        }
    )
    files = write_report(pts, tmp_path)
    assert files.times_plot is None
    doc = json.loads(files.report_json.read_text(), parse_constant=_reject_constant)
    p0 = next(
        p for p in doc["points"] if p["qp"] == bad.qp and p["codec"] == bad.codec and p["pipeline"] == bad.pipeline
    )
    assert p0["metric"] is None and p0["metrics"]["top1"] is None
    back = load_points(files.report_json)
    q = next(p for p in back if p.curve == bad.curve and p.qp == bad.qp)
    assert math.isnan(q.metric) and math.isnan(q.metrics["top1"])
    _png_ok(files.rd_plot)


def test_linear_axis_for_narrow_rate_range(tmp_path):
    """Rates within a decade keep a linear axis; wider ones get a log axis (what the x label then says)."""
    from matplotlib.figure import Figure

    from fcm.eval.plots import log_x_if_wide

    narrow = [0.3, 0.4, 0.5, 0.6, 0.7]
    ax = Figure().add_subplot()
    assert log_x_if_wide(ax, narrow) == "linear scale"
    assert ax.get_xscale() == "linear"
    ax = Figure().add_subplot()
    assert log_x_if_wide(ax, [0.01, 0.5, 2.0]) == "log scale"
    assert ax.get_xscale() == "log"
    ax = Figure().add_subplot()
    assert log_x_if_wide(ax, [0.0, 0.0]) == "linear scale"  # no positive rate: nothing to take a log of
    assert ax.get_xscale() == "linear"
    files = write_report(_points({"remote/x265": (narrow, [80.0, 85.0, 88.0, 90.0, 91.0])}), tmp_path)
    _png_ok(files.rd_plot)


def test_import_does_not_load_matplotlib():
    import subprocess

    code = "import sys, fcm.eval.report; print('matplotlib' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_smooth_measures_rank_curves_with_intervals():
    """A link turns the per-input mean into the measure (−10·log10 of a mean KL) in the point and in every bootstrap
    draw; measures a curve lacks (no split tensors) leave it out of that measure's table."""
    from fcm.eval.bootstrap import resample_points
    from fcm.eval.curves import analyse_measures
    from fcm.eval.points import InputSamples, OperatingPoint

    rng = np.random.default_rng(0)
    ids = tuple(f"i{k}" for k in range(12))
    points = []
    for curve, factor in (("a", 1.0), ("b", 0.8)):
        for qp in (22, 27, 32, 37, 42):
            bits = rng.integers(900, 1100, 12) * (60 - qp)
            kl = factor * np.exp((qp - 40) / 4.0) * rng.uniform(0.5, 1.5, 12)
            extra = {"kl_db": (kl, "neg_db")}
            samples = InputSamples(ids, bits, np.full(12, 1000), rng.uniform(0, 100, 12), extra=extra)
            metrics = {"top1": 50.0, "kl_db": float(-10 * np.log10(kl.mean()))}
            points.append(
                OperatingPoint(
                    "d", curve, "x265", qp, 12, int(bits.sum()), 12000, "top1", 50.0, metrics, samples=samples
                )
            )
    resampled, _ = resample_points(
        [
            replace(
                p,
                metric_name="kl_db",
                metric=p.metrics["kl_db"],
                samples=replace(p.samples, scores=p.samples.extra["kl_db"][0], link="neg_db"),
            )
            for p in points
        ],
        200,
        0,
    )
    assert resampled is not None
    key = ("a/x265", 22)
    draws = resampled.metric[key]
    assert np.isfinite(draws).all() and draws.min() < points[0].metrics["kl_db"] < draws.max()
    out = analyse_measures(points, "a/x265", ["kl_db", "feature_psnr"], resamples=200, seed=0)
    assert list(out) == ["kl_db"]  # nobody carries feature_psnr
    (r,) = out["kl_db"].results
    assert r.bd_rate is not None and r.bd_rate < 0 and r.rate_ci is not None  # b has 20 % less KL at every rate
    with pytest.raises(ValueError, match="unknown link"):
        InputSamples(ids, np.ones(12), np.ones(12), np.ones(12), link="log")


def test_feature_psnr():
    from fcm.eval.pipelines import MAX_FEATURE_PSNR, feature_psnr

    ref = {"t": torch.linspace(0, 10, 1000).reshape(1, 10, 10, 10)}
    assert feature_psnr(ref, ref) == MAX_FEATURE_PSNR
    noisy = {"t": ref["t"] + 0.1}
    assert feature_psnr(ref, noisy) == pytest.approx(10 * np.log10(100 / 0.01))


def test_curve_colours_follow_the_curve_not_its_order():
    """The same curve has the same colour and marker in every report, whatever the other curves and their order."""
    from fcm.eval.plots import curve_styles

    quickstart = curve_styles(["remote/x265", "feature/x265"])
    wrapped = curve_styles(["wrapped[scaled]/x265", "feature/x265", "remote/x265"])
    reordered = curve_styles(["remote/x265", "wrapped[scaled]/x265", "feature/x265"])
    assert quickstart["feature/x265"] == wrapped["feature/x265"] == reordered["feature/x265"]
    assert quickstart["remote/x265"] == wrapped["remote/x265"] and wrapped == reordered
    many = curve_styles([f"feature[v{i}]/x265" for i in range(6)] + ["feature/x265", "remote/x265", "feature/x264"])
    colours = [s["color"] for n, s in many.items() if n.endswith("/x265")]
    assert len(set(colours)) == len(colours)  # no two curves of one codec share a colour
    assert many["feature/x264"]["marker"] != many["feature/x265"]["marker"]
    # with several codecs, each pipeline keeps its colour (the marker tells the codecs apart)
    codecs = curve_styles(
        [f"{p}/{c}" for p in ("feature", "remote", "wrapped[scaled]") for c in ("x265", "x264", "vp9")]
    )
    for p, style in (("feature", quickstart["feature/x265"]), ("remote", quickstart["remote/x265"])):
        assert {codecs[f"{p}/{c}"]["color"] for c in ("x265", "x264", "vp9")} == {style["color"]}
    assert {codecs[f"wrapped[scaled]/{c}"]["color"] for c in ("x265", "x264", "vp9")} == {
        wrapped["wrapped[scaled]/x265"]["color"]
    }
    assert len({codecs[f"feature/{c}"]["marker"] for c in ("x265", "x264", "vp9")}) == 3
