"""Tests of fcm.eval.bd, cross-checked against the independent ``bjontegaard`` package (FAU, BSD-3)."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest

from fcm.errors import FcmError
from fcm.eval.bd import BDError, BDResult, bd_accuracy, bd_rate, compare

bjontegaard = pytest.importorskip("bjontegaard")

# (anchor_rate, anchor_acc, test_rate, test_acc). Points are in increasing rate, except "psnr_readme" (decreasing, as in
# the bjontegaard README) — the reference only flips reversed input, while fcm sorts by rate.
CURVES: dict[str, tuple[list[float], list[float], list[float], list[float]]] = {
    # Object detection mAP (%) vs bpp: VTM-like anchor vs a feature codec that is better at low rate and saturates.
    "map_vs_bpp": (
        [0.021, 0.043, 0.089, 0.176, 0.342, 0.651],
        [38.9, 52.4, 61.8, 67.3, 70.1, 71.4],
        [0.012, 0.026, 0.055, 0.118, 0.240, 0.497],
        [41.2, 55.0, 63.1, 67.9, 70.0, 70.9],
    ),
    # Instance segmentation mAP vs bpp, 4 points each, test worse (positive BD-rate).
    "seg_map_vs_bpp_worse": (
        [0.05, 0.11, 0.24, 0.52],
        [28.3, 34.9, 38.6, 40.2],
        [0.07, 0.15, 0.31, 0.66],
        [29.0, 35.1, 38.5, 40.0],
    ),
    # ImageNet top-1 (%) vs bpp: steep knee at low rate; test has a different (later, sharper) knee.
    "top1_vs_bpp": (
        [0.08, 0.15, 0.29, 0.55, 1.02, 1.95],
        [22.5, 48.7, 64.2, 71.3, 74.6, 75.9],
        [0.06, 0.11, 0.20, 0.38, 0.74, 1.41],
        [15.3, 45.1, 66.0, 72.4, 74.9, 75.7],
    ),
    # Top-1 as a fraction (0..1) vs kbps with an unequal number of points (5 vs 7).
    "top1_fraction_vs_kbps": (
        [120.0, 260.0, 540.0, 1100.0, 2300.0],
        [0.512, 0.634, 0.701, 0.738, 0.752],
        [90.0, 150.0, 240.0, 400.0, 700.0, 1200.0, 2100.0],
        [0.47, 0.575, 0.648, 0.699, 0.731, 0.746, 0.754],
    ),
    # Tracking MOTA vs kbps, partially overlapping: test lives mostly at higher rate / accuracy.
    "partial_overlap": (
        [50.0, 100.0, 200.0, 400.0, 800.0],
        [40.0, 50.0, 58.0, 63.0, 66.0],
        [300.0, 600.0, 1200.0, 2400.0, 4800.0],
        [59.0, 64.0, 67.5, 69.5, 70.5],
    ),
    # The classic PSNR example of the bjontegaard package README (sanity: the package's home ground).
    "psnr_readme": (
        [9487.76, 4593.60, 2486.44, 1358.24],
        [40.037, 38.615, 36.845, 34.851],
        [9787.80, 4469.00, 2451.52, 1356.24],
        [40.121, 38.651, 36.970, 34.987],
    ),
}


def _reference(fn_name: str, ar, aa, tr, ta, method: str) -> float:
    fn = getattr(bjontegaard, fn_name)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a NaN-with-warning from the reference must not pass silently
        return float(fn(ar, aa, tr, ta, method=method, require_matching_points=False, min_overlap=0))


@pytest.mark.parametrize("method", ["pchip", "cubic"])
@pytest.mark.parametrize("name", sorted(CURVES))
def test_bd_rate_matches_bjontegaard(name: str, method: str) -> None:
    ar, aa, tr, ta = CURVES[name]
    ref = _reference("bd_rate", ar, aa, tr, ta, method)
    assert math.isfinite(ref)
    assert bd_rate(ar, aa, tr, ta, method=method) == pytest.approx(ref, abs=0.1)


@pytest.mark.parametrize("method", ["pchip", "cubic"])
@pytest.mark.parametrize("name", sorted(CURVES))
def test_bd_accuracy_matches_bjontegaard(name: str, method: str) -> None:
    ar, aa, tr, ta = CURVES[name]
    ref = _reference("bd_psnr", ar, aa, tr, ta, method)
    assert math.isfinite(ref)
    assert bd_accuracy(ar, aa, tr, ta, method=method) == pytest.approx(ref, abs=0.01)


def test_signs_on_realistic_curves() -> None:
    ar, aa, tr, ta = CURVES["map_vs_bpp"]
    assert bd_rate(ar, aa, tr, ta) < 0  # test saves bits
    assert bd_accuracy(ar, aa, tr, ta) > 0  # and is more accurate at equal rate
    ar, aa, tr, ta = CURVES["seg_map_vs_bpp_worse"]
    assert bd_rate(ar, aa, tr, ta) > 0
    assert bd_accuracy(ar, aa, tr, ta) < 0
    # swapping anchor and test: (1 + r1/100) * (1 + r2/100) == 1 exactly for the same integration range
    r1 = bd_rate(ar, aa, tr, ta)
    r2 = bd_rate(tr, ta, ar, aa)
    assert (1 + r1 / 100) * (1 + r2 / 100) == pytest.approx(1.0, abs=1e-12)
    assert bd_accuracy(ar, aa, tr, ta) == pytest.approx(-bd_accuracy(tr, ta, ar, aa), abs=1e-12)


@pytest.mark.parametrize("method", ["pchip", "cubic"])
@pytest.mark.parametrize("scale", [0.8, 0.5, 1.25])
def test_pure_rate_scaling_is_exact(method: str, scale: float) -> None:
    ar, aa, _, _ = CURVES["map_vs_bpp"]
    tr = [r * scale for r in ar]
    expected = (scale - 1.0) * 100.0  # 0.8 -> exactly -20 %
    got = bd_rate(ar, aa, tr, aa, method=method)
    assert got == pytest.approx(expected, abs=1e-9)
    assert _reference("bd_rate", ar, aa, tr, aa, method) == pytest.approx(expected, abs=1e-9)


def test_rate_scaling_0_8_gives_minus_20_percent() -> None:
    ar, aa, _, _ = CURVES["top1_vs_bpp"]
    assert bd_rate(ar, aa, [0.8 * r for r in ar], aa) == pytest.approx(-20.0, abs=1e-9)


@pytest.mark.parametrize("method", ["pchip", "cubic"])
def test_pure_accuracy_shift_is_exact(method: str) -> None:
    ar, aa, _, _ = CURVES["top1_vs_bpp"]
    shifted = [a + 1.5 for a in aa]
    assert bd_accuracy(ar, aa, ar, shifted, method=method) == pytest.approx(1.5, abs=1e-9)
    assert bd_accuracy(ar, aa, ar, aa, method=method) == pytest.approx(0.0, abs=1e-12)
    assert bd_rate(ar, aa, ar, aa, method=method) == pytest.approx(0.0, abs=1e-12)


def test_point_order_does_not_matter() -> None:
    ar, aa, tr, ta = CURVES["top1_vs_bpp"]
    rng = np.random.default_rng(0)
    pa, pt = rng.permutation(len(ar)), rng.permutation(len(tr))
    ar2, aa2 = np.asarray(ar)[pa], np.asarray(aa)[pa]
    tr2, ta2 = np.asarray(tr)[pt], np.asarray(ta)[pt]
    assert bd_rate(ar2, aa2, tr2, ta2) == pytest.approx(bd_rate(ar, aa, tr, ta), abs=1e-12)
    assert bd_accuracy(ar2, aa2, tr2, ta2) == pytest.approx(bd_accuracy(ar, aa, tr, ta), abs=1e-12)


@pytest.mark.parametrize("seed", range(20))
def test_random_monotone_curves_match_bjontegaard(seed: int) -> None:
    rng = np.random.default_rng(seed)

    def curve(n: int) -> tuple[np.ndarray, np.ndarray]:
        rates = np.sort(rng.uniform(0.01, 2.0, n))
        while np.any(np.diff(rates) <= 1e-4):
            rates = np.sort(rng.uniform(0.01, 2.0, n))
        top, k = rng.uniform(60, 80), rng.uniform(1.0, 4.0)
        acc = top * (1 - np.exp(-k * rates / rates.mean())) + np.cumsum(rng.uniform(0.05, 0.3, n))
        return rates, acc

    ar, aa = curve(int(rng.integers(4, 8)))
    tr, ta = curve(int(rng.integers(4, 8)))
    for method in ("pchip", "cubic"):  # all 20 seeds give overlapping curves
        ref_rate = _reference("bd_rate", ar, aa, tr, ta, method)
        ref_acc = _reference("bd_psnr", ar, aa, tr, ta, method)
        assert bd_rate(ar, aa, tr, ta, method=method) == pytest.approx(ref_rate, abs=0.1)
        assert bd_accuracy(ar, aa, tr, ta, method=method) == pytest.approx(ref_acc, abs=0.01)


# --------------------------------------------------------------------------------------------------------------- errors

GOOD_R = [0.1, 0.2, 0.4, 0.8]
GOOD_A = [50.0, 60.0, 66.0, 69.0]


def test_bderror_is_fcm_and_value_error() -> None:
    assert issubclass(BDError, FcmError) and issubclass(BDError, ValueError)


@pytest.mark.parametrize("fn", [bd_rate, bd_accuracy])
@pytest.mark.parametrize(
    ("args", "match"),
    [
        ((GOOD_R[:3], GOOD_A[:3], GOOD_R, GOOD_A), r"anchor has 3 points; BD metrics need at least 4"),
        ((GOOD_R, GOOD_A, GOOD_R[:2], GOOD_A[:2]), r"test has 2 points; BD metrics need at least 4"),
        ((GOOD_R, GOOD_A[:3], GOOD_R, GOOD_A), r"anchor has 4 rates but 3 accuracies; lengths must match"),
        ((GOOD_R, GOOD_A, GOOD_R + [1.6], GOOD_A), r"test has 5 rates but 4 accuracies"),
        ((GOOD_R, GOOD_A, [0.0, 0.2, 0.4, 0.8], GOOD_A), r"test rates must be positive"),
        (([-0.1, 0.2, 0.4, 0.8], GOOD_A, GOOD_R, GOOD_A), r"anchor rates must be positive"),
        (([0.1, float("nan"), 0.4, 0.8], GOOD_A, GOOD_R, GOOD_A), r"anchor rates must be finite"),
        ((GOOD_R, GOOD_A, [0.1, 0.2, 0.4, float("inf")], GOOD_A), r"test rates must be finite"),
        ((GOOD_R, [50.0, float("nan"), 66.0, 69.0], GOOD_R, GOOD_A), r"anchor accuracies must be finite"),
        ((GOOD_R, GOOD_A, GOOD_R, [50.0, 60.0, float("-inf"), 69.0]), r"test accuracies must be finite"),
        ((GOOD_R, GOOD_A, [0.1, 0.2, 0.2, 0.8], GOOD_A), r"test has two points at the same rate 0.2"),
        ((GOOD_R, GOOD_A, GOOD_R, [[1, 2], [3, 4]]), r"test accuracies must be one-dimensional"),
        ((GOOD_R, GOOD_A, GOOD_R, ["a", "b", "c", "d"]), r"test accuracies must be a sequence of numbers"),
    ],
)
def test_input_errors(fn, args, match: str) -> None:
    with pytest.raises(BDError, match=match):
        fn(*args)


@pytest.mark.parametrize("fn", [bd_rate, bd_accuracy])
def test_unknown_method(fn) -> None:
    with pytest.raises(BDError, match=r"unknown BD interpolation method 'akima'; known: pchip, cubic"):
        fn(GOOD_R, GOOD_A, GOOD_R, GOOD_A, method="akima")


def test_bd_rate_non_monotone_accuracy() -> None:
    dip = [50.0, 60.0, 58.0, 69.0]
    with pytest.raises(BDError, match=r"test accuracy is not strictly monotone in rate .*\(0\.4, 58\)"):
        bd_rate(GOOD_R, GOOD_A, GOOD_R, dip)
    flat = [50.0, 60.0, 60.0, 69.0]
    with pytest.raises(BDError, match=r"anchor accuracy is not strictly monotone"):
        bd_rate(GOOD_R, flat, GOOD_R, GOOD_A)
    # bd_accuracy interpolates accuracy over rate and accepts the dip
    assert math.isfinite(bd_accuracy(GOOD_R, GOOD_A, GOOD_R, dip))


def test_bd_rate_no_accuracy_overlap_names_ranges() -> None:
    with pytest.raises(BDError, match=r"do not overlap in accuracy: anchor spans \[50, 69\], test spans \[70, 80\]"):
        bd_rate(GOOD_R, GOOD_A, GOOD_R, [70.0, 74.0, 78.0, 80.0])
    # touching at a single value is no overlap either
    with pytest.raises(BDError, match=r"do not overlap in accuracy"):
        bd_rate(GOOD_R, GOOD_A, GOOD_R, [69.0, 74.0, 78.0, 80.0])


def test_bd_accuracy_no_rate_overlap_names_ranges() -> None:
    with pytest.raises(BDError, match=r"do not overlap in rate: anchor spans \[0\.1, 0\.8\], test spans \[1, 8\]"):
        bd_accuracy(GOOD_R, GOOD_A, [1.0, 2.0, 4.0, 8.0], GOOD_A)


# -------------------------------------------------------------------------------------------------------------- compare


def test_compare_ok() -> None:
    ar, aa, tr, ta = CURVES["map_vs_bpp"]
    res = compare("VTM", list(zip(ar, aa)), "ours", list(zip(tr, ta)))
    assert isinstance(res, BDResult)
    assert (res.anchor, res.test, res.note) == ("VTM", "ours", "")
    assert res.bd_rate == pytest.approx(bd_rate(ar, aa, tr, ta), abs=1e-12)
    assert res.bd_accuracy == pytest.approx(bd_accuracy(ar, aa, tr, ta), abs=1e-12)


def test_compare_puts_errors_in_note() -> None:
    anchor = list(zip(GOOD_R, GOOD_A))
    # overlap in rate but not in accuracy: bd_accuracy is computed, bd_rate is None with the reason
    res = compare("a", anchor, "b", list(zip(GOOD_R, [70.0, 74.0, 78.0, 80.0])))
    assert res.bd_rate is None and res.bd_accuracy is not None
    assert res.note.startswith("bd_rate: curves do not overlap in accuracy")
    # no overlap at all: both None, two reasons
    res = compare("a", anchor, "b", list(zip([1.0, 2.0, 4.0, 8.0], [70.0, 74.0, 78.0, 80.0])))
    assert res.bd_rate is None and res.bd_accuracy is None
    assert "bd_rate: curves do not overlap in accuracy" in res.note
    assert "bd_accuracy: curves do not overlap in rate" in res.note
    # the same input error for both metrics is reported once
    res = compare("a", anchor[:3], "b", anchor)
    assert (res.bd_rate, res.bd_accuracy) == (None, None)
    assert res.note == "anchor has 3 points; BD metrics need at least 4 points per curve"
    # malformed points
    res = compare("a", [1, 2, 3, 4], "b", anchor)
    assert res.bd_rate is None and "anchor points must be a sequence of (rate, accuracy) pairs" in res.note
