"""Curves, BD comparisons with overlaps and bootstrap intervals (fcm.eval.curves, fcm.eval.bootstrap)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from fcm.eval.bd import compare, pareto_front
from fcm.eval.curves import analyse
from fcm.eval.points import InputSamples, OperatingPoint
from fcm.eval.report import format_bd_table, write_report

N = 60
QPS = (22, 27, 32, 37, 42)


def _curve(pipeline: str, rates: list[float], accs: list[float], seed: int, n: int = N) -> list[OperatingPoint]:
    """Points whose per-input bits and 0/100 scores average exactly to the given bpp and (close to) accuracy."""
    rng = np.random.default_rng(seed)
    pixels = np.full(n, 100_000, dtype=np.int64)
    out = []
    for qp, bpp, acc in zip(QPS, rates, accs):
        bits = np.round(bpp * pixels * rng.uniform(0.5, 1.5, n)).astype(np.int64)
        scores = np.where(rng.permutation(n) < round(acc / 100 * n), 100.0, 0.0)
        out.append(
            OperatingPoint(
                dataset="synthetic",
                pipeline=pipeline,
                codec="x265",
                qp=qp,
                num_inputs=n,
                bits=int(bits.sum()),
                pixels=int(pixels.sum()),
                metric_name="top1_agreement",
                metric=float(scores.mean()),
                samples=InputSamples(tuple(f"in{i:03d}" for i in range(n)), bits, pixels, scores),
            )
        )
    return out


def _points(feature_accs=(95, 90, 80, 65, 45), remote_accs=(90, 80, 65, 45, 25)) -> list[OperatingPoint]:
    return _curve("remote", [1.6, 0.8, 0.4, 0.2, 0.1], list(remote_accs), seed=1) + _curve(
        "feature", [0.8, 0.4, 0.2, 0.1, 0.05], list(feature_accs), seed=2
    )


def test_point_estimates_are_the_plain_bd_of_the_fronts():
    pts = _points()
    (r,) = analyse(pts, resamples=200).results
    fronts = {
        c: pareto_front([(p.bpp, p.metric) for p in pts if p.curve == c]) for c in ("remote/x265", "feature/x265")
    }
    plain = compare("remote/x265", fronts["remote/x265"], "feature/x265", fronts["feature/x265"])
    assert (r.bd_rate, r.bd_accuracy) == (plain.bd_rate, plain.bd_accuracy)


def test_intervals_are_seeded_and_contain_the_estimate():
    pts = _points()
    a = analyse(pts, resamples=300, seed=7)
    b = analyse(pts, resamples=300, seed=7)
    c = analyse(pts, resamples=300, seed=8)
    (ra,), (rb,), (rc,) = a.results, b.results, c.results
    assert ra.rate_ci == rb.rate_ci and ra.accuracy_ci == rb.accuracy_ci and a.point_ci == b.point_ci
    assert ra.rate_ci != rc.rate_ci
    assert ra.rate_ci.contains(ra.bd_rate) and ra.accuracy_ci.contains(ra.bd_accuracy)
    assert ra.rate_ci.hi < 0 and not ra.rate_ci.crosses_zero  # feature clearly saves bits here
    # a few draws tie two points' accuracies, leaving a front of < 4 points: those are left out and counted
    assert 270 <= ra.rate_ci.resamples <= 300 and ra.rate_ci.level == 0.95
    assert (ra.rate_ci.resamples < 300) == any("resamples that gave a value" in n for n in ra.notes)
    for p in pts:
        ci = a.interval(p)
        assert ci is not None and ci.lo <= p.metric <= ci.hi
        # a 0/100 score over 60 inputs: the interval is about ±2 standard errors wide
        se = np.sqrt(p.metric * (100 - p.metric) / N)
        assert ci.hi - ci.lo == pytest.approx(4 * se, rel=0.35, abs=2.0)


def test_interval_crossing_zero_is_marked(tmp_path):
    """Two curves measured from the same distribution: BD-accuracy's interval crosses zero and the table says so."""
    same = (90, 80, 65, 45, 25)
    pts = _curve("remote", [1.6, 0.8, 0.4, 0.2, 0.1], list(same), seed=1) + _curve(
        "feature", [1.6, 0.8, 0.4, 0.2, 0.1], list(same), seed=3
    )
    files = write_report(pts, tmp_path, bootstrap=300)
    (r,) = files.analysis.results
    assert r.accuracy_ci.crosses_zero
    row = next(line for line in format_bd_table(files.analysis).splitlines() if line.startswith("| `feature/x265`"))
    assert row.rstrip(" |").endswith("*")
    doc = json.loads((tmp_path / "report.json").read_text())
    assert doc["bd"][0]["bd_accuracy_ci"]["crosses_zero"] is True
    assert "crosses zero" in (tmp_path / "report.md").read_text()


def test_narrow_overlap_warns():
    """Anchor reaches only 10–40 % while the test spans 35–95 %: BD-rate averages over 35–40, a sliver of both."""
    pts = _points(feature_accs=(95, 85, 70, 50, 35), remote_accs=(40, 30, 22, 15, 10))
    a = analyse(pts, resamples=0, min_overlap=0.5)
    (r,) = a.results
    assert r.accuracy_overlap.fraction_of_test < 0.5
    assert any(n.startswith("narrow overlap: BD-rate averages over top1_agreement") for n in r.notes)
    wide = analyse(_points(), resamples=0, min_overlap=0.5).results[0]
    assert not any("narrow overlap" in n for n in wide.notes)
    md = format_bd_table(a)
    assert "narrow overlap" in md and "No confidence intervals: no bootstrap" in md


def test_no_intervals_for_metrics_that_are_not_means():
    pts = _points()
    pts = [
        OperatingPoint(**{**p.__dict__, "samples": InputSamples(p.samples.ids, p.samples.bits, p.samples.pixels)})
        for p in pts
    ]
    a = analyse(pts, resamples=100)
    assert a.point_ci == {} and a.results[0].rate_ci is None
    assert "not a mean over inputs" in a.ci_note


def test_resamples_without_a_value_are_counted():
    """Curves that barely overlap: some resamples lose the overlap, and the note says how many gave a value."""
    pts = _points(feature_accs=(99, 97, 93, 88, 80), remote_accs=(82, 70, 60, 50, 40))
    (r,) = analyse(pts, resamples=300, seed=1).results
    assert r.bd_rate is not None
    if r.rate_ci is None:
        assert any(n.startswith("no BD-rate interval: only") for n in r.notes)
    else:
        assert r.rate_ci.resamples <= 300
        assert (r.rate_ci.resamples < 300) == any("resamples that gave a value" in n for n in r.notes)


def test_points_measured_on_different_inputs_get_no_intervals(tmp_path):
    """After an interrupted sweep one point may lack the last input: its value and an interval over the shared inputs
    would describe different sets, so there are no intervals, and the report says why (and still plots)."""
    pts = _points()
    s = pts[3].samples
    short = InputSamples(s.ids[:-1], s.bits[:-1], s.pixels[:-1], s.scores[:-1])
    pts[3] = OperatingPoint(**{**pts[3].__dict__, "samples": short, "num_inputs": N - 1})
    files = write_report(pts, tmp_path, bootstrap=200)
    assert files.analysis.point_ci == {} and files.analysis.results[0].rate_ci is None
    assert "measured on different inputs" in (tmp_path / "report.md").read_text()


def test_no_interval_notes_for_a_metric_without_a_value():
    """An anchor of 3 points has no BD at all: no overlap or interval remarks are added to the reason."""
    pts = [p for p in _points() if not (p.pipeline == "remote" and p.qp in (22, 27))]
    (r,) = analyse(pts, resamples=100).results
    assert r.bd_rate is None and r.bd_accuracy is None
    assert not any("overlap" in n or "interval" in n for n in r.notes), r.notes
