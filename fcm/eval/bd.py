"""Bjøntegaard-delta (BD) metrics for rate–accuracy curves.

FCM convention: a task accuracy (mAP, top-1, MOTA, …; *higher is better*) plays the role PSNR plays in the classic
VCEG-M33 / JVET practice, and the rate is any positive rate measure (bpp, kbps, bytes). Every curve is a sequence of at
least four operating points ``(rate, accuracy)``; the points may be given in any order and are sorted by rate.

* :func:`bd_rate` — average **percent rate change** of the test relative to the anchor at equal accuracy, over the
  accuracy range both curves cover. ``log10(rate)`` is interpolated as a function of accuracy, each curve is integrated
  over the overlap ``[max(min acc), min(max acc)]``, the mean log-rate difference ``d = mean(test - anchor)`` is turned
  into ``(10**d - 1) * 100``. **Negative = the test needs fewer bits for the same accuracy (better)**; ``-20.0`` means
  20 % fewer bits.
* :func:`bd_accuracy` — average **accuracy difference** ``test - anchor`` at equal rate, over the ``log10(rate)``
  range both curves cover, in the unit of the accuracies given (percentage points if mAP is given in %).
  **Positive = the test is more accurate at the same rate (better)**.

Interpolation methods:

* ``"pchip"`` (default) — piecewise cubic Hermite, monotonicity-preserving (scipy's :class:`PchipInterpolator`), the
  piecewise-cubic practice of the JVET/VCEG-era BD tools and the ``pchip`` method of the ``bjontegaard`` package. It
  never overshoots between points and is integrated exactly.
* ``"cubic"`` — the original Bjøntegaard (VCEG-M33, 2001) least-squares polynomial of degree 3 through all points,
  integrated analytically. Kept for comparison with old tables; it can overshoot on saturating accuracy curves.

Monotonicity: for :func:`bd_rate` the interpolated function is ``log10(rate) = f(accuracy)``, which only exists if the
accuracy is strictly monotone in the rate. Non-monotone curves (e.g. an mAP dip at one rate point, or two points of
equal accuracy) raise :class:`BDError` rather than being silently reordered, because reordering by accuracy would
interpolate a rate curve the codec never produced; drop or fix the offending point instead. :func:`bd_accuracy` only
needs distinct rates (accuracy may be non-monotone in rate). Duplicate rates are rejected by both.

:func:`compare` wraps both metrics for reports: it never raises :class:`BDError`; the reason a metric could not be
computed (e.g. curves that do not overlap) goes into :attr:`BDResult.rate_error` / :attr:`BDResult.accuracy_error`, and
the ranges each metric averages over into :attr:`BDResult.accuracy_overlap` / :attr:`BDResult.rate_overlap`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
from scipy.interpolate import PchipInterpolator

from fcm.errors import FcmError

__all__ = ["METHODS", "MIN_POINTS", "BDError", "BDResult", "Interval", "Overlap", "bd_accuracy", "bd_rate", "compare"]

Method = Literal["pchip", "cubic"]
METHODS: tuple[str, ...] = ("pchip", "cubic")
MIN_POINTS = 4


class BDError(FcmError, ValueError):
    """BD metrics cannot be computed for the given curves; the message names the problem (too few points, length
    mismatch, non-positive or non-finite values, non-monotone accuracy, duplicate rates, no overlap, unknown method)."""


@dataclass(frozen=True)
class Interval:
    """A two-sided confidence interval ``[lo, hi]`` at ``level`` (e.g. 0.95), from ``resamples`` bootstrap values."""

    lo: float
    hi: float
    level: float = 0.95
    resamples: int = 0

    @property
    def crosses_zero(self) -> bool:
        """Whether the interval holds values of both signs (or zero): the sign of the estimate is not established."""
        return self.lo <= 0.0 <= self.hi

    def contains(self, x: float) -> bool:
        return self.lo <= x <= self.hi


@dataclass(frozen=True)
class Overlap:
    """The common range of two curves along one axis (accuracy, or log10 of the rate) that a BD metric averages over.

    ``fraction_of_anchor`` / ``fraction_of_test``: the overlap's length over each curve's own range (0 when the curves
    do not overlap).
    """

    axis: str
    anchor: tuple[float, float]
    test: tuple[float, float]

    @property
    def span(self) -> tuple[float, float]:
        return max(self.anchor[0], self.test[0]), min(self.anchor[1], self.test[1])

    def _fraction(self, own: tuple[float, float]) -> float:
        lo, hi = self.span
        width = own[1] - own[0]
        return max(0.0, hi - lo) / width if width > 0 else 0.0

    @property
    def fraction_of_anchor(self) -> float:
        return self._fraction(self.anchor)

    @property
    def fraction_of_test(self) -> float:
        return self._fraction(self.test)


@dataclass(frozen=True)
class BDResult:
    """BD metrics of one test curve against one anchor curve.

    ``bd_rate`` is in percent (negative = test saves bits), ``bd_accuracy`` in the accuracy's unit (positive = test is
    more accurate); either is ``None`` when it could not be computed, and ``rate_error`` / ``accuracy_error`` then say
    why. ``notes`` are remarks that do not stop a value (Pareto points dropped, a narrow overlap, resamples that gave
    no value). ``rate_ci`` / ``accuracy_ci``: bootstrap intervals, when computed; ``accuracy_overlap`` is the range
    BD-rate averages over, ``rate_overlap`` (log10 rate) the one BD-accuracy averages over.
    """

    bd_rate: float | None
    bd_accuracy: float | None
    anchor: str
    test: str
    rate_error: str = ""
    accuracy_error: str = ""
    notes: tuple[str, ...] = ()
    rate_ci: Interval | None = None
    accuracy_ci: Interval | None = None
    accuracy_overlap: Overlap | None = None
    rate_overlap: Overlap | None = None

    @property
    def note(self) -> str:
        """Every error and remark in one line: ``"bd_rate: …; bd_accuracy: …"`` when the metrics failed differently,
        the bare reason when both failed alike, then the notes."""
        if self.rate_error and self.rate_error == self.accuracy_error:
            parts = [self.rate_error]
        else:
            parts = [f"{k}: {v}" for k, v in (("bd_rate", self.rate_error), ("bd_accuracy", self.accuracy_error)) if v]
        return "; ".join(parts + list(self.notes))


# --------------------------------------------------------------------------------------------------------------------
# validation


def _as_1d(values: Sequence[float] | np.ndarray, what: str) -> np.ndarray:
    try:
        arr = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise BDError(f"{what} must be a sequence of numbers ({exc})") from None
    if arr.ndim != 1:
        raise BDError(f"{what} must be one-dimensional, got shape {arr.shape}")
    return arr


_Values = Sequence[float] | np.ndarray


def _curve(rate: _Values, acc: _Values, name: str) -> tuple[np.ndarray, np.ndarray]:
    """Validate one curve and return ``(rate, accuracy)`` sorted by increasing rate."""
    r = _as_1d(rate, f"{name} rates")
    a = _as_1d(acc, f"{name} accuracies")
    if r.size != a.size:
        raise BDError(f"{name} has {r.size} rates but {a.size} accuracies; lengths must match")
    if r.size < MIN_POINTS:
        raise BDError(f"{name} has {r.size} points; BD metrics need at least {MIN_POINTS} points per curve")
    if not np.all(np.isfinite(r)):
        raise BDError(f"{name} rates must be finite, got {r.tolist()}")
    if np.any(r <= 0):
        raise BDError(f"{name} rates must be positive (the rate is used on a log scale), got {r.tolist()}")
    if not np.all(np.isfinite(a)):
        raise BDError(f"{name} accuracies must be finite, got {a.tolist()}")
    order = np.argsort(r, kind="stable")
    r, a = r[order], a[order]
    dup = np.flatnonzero(np.diff(r) == 0)
    if dup.size:
        raise BDError(f"{name} has two points at the same rate {r[dup[0]]:g}; rates must be distinct")
    return r, a


def _check_monotone(r: np.ndarray, a: np.ndarray, name: str) -> None:
    d = np.diff(a)
    if np.all(d > 0) or np.all(d < 0):
        return
    pairs = ", ".join(f"({x:g}, {y:g})" for x, y in zip(r.tolist(), a.tolist(), strict=True))
    raise BDError(
        f"{name} accuracy is not strictly monotone in rate (points sorted by rate: {pairs}); BD-rate interpolates "
        "rate as a function of accuracy, which needs strictly monotone accuracy — drop or fix the offending point"
    )


def _check_method(method: str) -> None:
    if method not in METHODS:
        raise BDError(f"unknown BD interpolation method {method!r}; known: {', '.join(METHODS)}")


# --------------------------------------------------------------------------------------------------------------------
# core


def _integral(x: np.ndarray, y: np.ndarray, lo: float, hi: float, method: str) -> float:
    """Integral over ``[lo, hi]`` of the interpolant of ``y(x)``; ``x`` strictly increasing."""
    if method == "pchip":
        return float(PchipInterpolator(x, y, extrapolate=False).integrate(lo, hi))
    poly = np.polyint(np.polyfit(x, y, 3))
    return float(np.polyval(poly, hi) - np.polyval(poly, lo))


def _avg_diff(xa: np.ndarray, ya: np.ndarray, xt: np.ndarray, yt: np.ndarray, method: str, axis: str) -> float:
    """Mean of ``f_test - f_anchor`` over the overlap of the x ranges; x arrays strictly monotone."""
    if xa[0] > xa[-1]:
        xa, ya = xa[::-1], ya[::-1]
    if xt[0] > xt[-1]:
        xt, yt = xt[::-1], yt[::-1]
    lo, hi = max(xa[0], xt[0]), min(xa[-1], xt[-1])
    if not lo < hi:
        raise BDError(
            f"curves do not overlap in {axis}: anchor spans [{_fmt(xa[0], axis)}, {_fmt(xa[-1], axis)}], "
            f"test spans [{_fmt(xt[0], axis)}, {_fmt(xt[-1], axis)}]"
        )
    diff = _integral(xt, yt, lo, hi, method) - _integral(xa, ya, lo, hi, method)
    return diff / (hi - lo)


def _fmt(x: float, axis: str) -> str:
    return f"{10.0**x:g}" if axis == "rate" else f"{x:g}"


def bd_rate(
    anchor_rate: Sequence[float] | np.ndarray,
    anchor_acc: Sequence[float] | np.ndarray,
    test_rate: Sequence[float] | np.ndarray,
    test_acc: Sequence[float] | np.ndarray,
    method: Method = "pchip",
) -> float:
    """BD-rate: average percent rate change of *test* vs *anchor* at equal accuracy.

    ``log10(rate)`` is interpolated as a function of accuracy for each curve (``method`` ``"pchip"`` or ``"cubic"``),
    both are integrated over the common accuracy range ``[max(min acc), min(max acc)]``, and the mean log-rate
    difference ``d`` gives ``(10**d - 1) * 100``. **Negative = test saves bits** (``-20.0``: 20 % fewer bits at the same
    accuracy); positive = test needs more bits.

    Each curve needs at least 4 points with positive finite rates, finite accuracies, distinct rates and accuracy
    strictly monotone in rate; otherwise, or when the accuracy ranges do not overlap, :class:`BDError` is raised.
    """
    _check_method(method)
    ra, aa = _curve(anchor_rate, anchor_acc, "anchor")
    rt, at = _curve(test_rate, test_acc, "test")
    _check_monotone(ra, aa, "anchor")
    _check_monotone(rt, at, "test")
    d = _avg_diff(aa, np.log10(ra), at, np.log10(rt), method, "accuracy")
    return float((10.0**d - 1.0) * 100.0)


def bd_accuracy(
    anchor_rate: Sequence[float] | np.ndarray,
    anchor_acc: Sequence[float] | np.ndarray,
    test_rate: Sequence[float] | np.ndarray,
    test_acc: Sequence[float] | np.ndarray,
    method: Method = "pchip",
) -> float:
    """BD-accuracy: average accuracy difference ``test - anchor`` at equal rate.

    Accuracy is interpolated as a function of ``log10(rate)`` for each curve (``method`` ``"pchip"`` or ``"cubic"``)
    and both are integrated over the common log-rate range. The result is in the unit of the accuracies (percentage
    points for mAP in %). **Positive = test is more accurate at the same rate.**

    Each curve needs at least 4 points with positive finite rates, finite accuracies and distinct rates (accuracy need
    not be monotone); otherwise, or when the rate ranges do not overlap, :class:`BDError` is raised.
    """
    _check_method(method)
    ra, aa = _curve(anchor_rate, anchor_acc, "anchor")
    rt, at = _curve(test_rate, test_acc, "test")
    return _avg_diff(np.log10(ra), aa, np.log10(rt), at, method, "rate")


def _split_points(points: Sequence[Sequence[float]] | np.ndarray, name: str) -> tuple[np.ndarray, np.ndarray]:
    try:
        arr = np.asarray(points, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise BDError(f"{name} points must be (rate, accuracy) pairs ({exc})") from None
    if arr.ndim != 2 or arr.shape[1] != 2:
        raise BDError(f"{name} points must be a sequence of (rate, accuracy) pairs, got shape {arr.shape}")
    return arr[:, 0], arr[:, 1]


def compare(
    anchor_name: str,
    anchor_points: Sequence[Sequence[float]] | np.ndarray,
    test_name: str,
    test_points: Sequence[Sequence[float]] | np.ndarray,
    method: Method = "pchip",
) -> BDResult:
    """BD-rate and BD-accuracy of ``test_points`` against ``anchor_points``, never raising :class:`BDError`.

    Points are sequences of ``(rate, accuracy)`` pairs (any order). A metric that cannot be computed is ``None`` and
    its error text goes into :attr:`BDResult.note` (prefixed with the metric's name when only one of the two failed or
    they failed for different reasons), so a report can list every pair of curves.
    """
    errors: dict[str, str] = {}
    values: dict[str, float | None] = {"bd_rate": None, "bd_accuracy": None}
    try:
        ar, aa = _split_points(anchor_points, "anchor")
        tr, ta = _split_points(test_points, "test")
    except BDError as exc:
        return BDResult(None, None, anchor_name, test_name, str(exc), str(exc))
    for key, fn in (("bd_rate", bd_rate), ("bd_accuracy", bd_accuracy)):
        try:
            values[key] = fn(ar, aa, tr, ta, method=method)
        except BDError as exc:
            errors[key] = str(exc)
    accuracy_overlap = rate_overlap = None
    if ar.size and tr.size and np.all(ar > 0) and np.all(tr > 0):
        accuracy_overlap = Overlap("accuracy", (float(aa.min()), float(aa.max())), (float(ta.min()), float(ta.max())))
        rate_overlap = Overlap(
            "log10 rate",
            (float(np.log10(ar.min())), float(np.log10(ar.max()))),
            (float(np.log10(tr.min())), float(np.log10(tr.max()))),
        )
    return BDResult(
        values["bd_rate"],
        values["bd_accuracy"],
        anchor_name,
        test_name,
        errors.get("bd_rate", ""),
        errors.get("bd_accuracy", ""),
        accuracy_overlap=accuracy_overlap,
        rate_overlap=rate_overlap,
    )


def pareto_front(points: Sequence[tuple[float, float]]) -> list[tuple[float, float]]:
    """The operating points no cheaper point matches: sorted by rate, each strictly more accurate than all before.

    A point that costs more bits without gaining accuracy would never be chosen, and it breaks the strict
    monotonicity BD-rate interpolation needs (e.g. a top-1 agreement that saturates at 100 % for several QPs).
    """
    front: list[tuple[float, float]] = []
    for rate, acc in sorted(points, key=lambda p: (p[0], -p[1])):
        if not front or acc > front[-1][1]:
            front.append((rate, acc))
    return front
