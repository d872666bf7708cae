"""Rate–accuracy curves of a sweep and their BD comparison, with overlaps and bootstrap intervals.

:func:`analyse` turns the :class:`~fcm.eval.points.OperatingPoint` s of one sweep (one dataset, one primary metric,
any number of ``pipeline/codec`` curves) into an :class:`Analysis`: the curves, the anchor, the BD-rate and
BD-accuracy of every other curve against it and the per-point confidence intervals. Everything a report writes or
plots comes from it.

* Curves are compared on their **Pareto fronts** (:func:`fcm.eval.bd.pareto_front`): a point that costs more bits
  without gaining accuracy is never chosen and breaks BD-rate's monotonicity.
* Each :class:`~fcm.eval.bd.BDResult` states the **overlap** its metrics average over (accuracy range for BD-rate,
  log-rate range for BD-accuracy) and carries a note when that overlap covers less than ``min_overlap`` of either
  curve's own range: a BD value over a sliver of the curves says little.
* **Intervals**: with ``resamples > 0`` and a metric that is a mean over inputs, the inputs are resampled
  (:mod:`fcm.eval.bootstrap`), both fronts rebuilt and BD recomputed for each draw; the 95 % percentile interval
  goes into ``rate_ci`` / ``accuracy_ci``. Draws in which a metric cannot be computed (e.g. the curves stop
  overlapping) are left out and counted in a note; with fewer than half of them usable there is no interval.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace

import numpy as np

from fcm.errors import ConfigError
from fcm.eval.bd import BDResult, Interval, Method, Overlap, compare, pareto_front
from fcm.eval.bootstrap import LEVEL, Resampled, percentile_interval, resample_points
from fcm.eval.pipelines import parse_label
from fcm.eval.points import OperatingPoint

__all__ = ["BD_METHOD", "LEVEL", "Analysis", "analyse", "validate_points"]

BD_METHOD: Method = "pchip"


@dataclass(frozen=True)
class Analysis:
    """What a report shows about one sweep.

    Attributes:
        dataset, metric_name: shared by every point.
        anchor: the curve every other one is compared with.
        curves: points of each curve (anchor first, then in order of first appearance), each sorted by rate.
        results: BD of each non-anchor curve against the anchor, in ``curves`` order.
        point_ci: the metric's interval of each point, keyed by ``(curve, qp)`` (empty without bootstrap).
        ci_note: why there are no intervals (``""`` when there are).
        resamples, seed, min_overlap: the settings used.
    """

    dataset: str
    metric_name: str
    anchor: str
    curves: dict[str, list[OperatingPoint]]
    results: list[BDResult]
    point_ci: dict[tuple[str, int], Interval] = field(default_factory=dict)
    ci_note: str = ""
    resamples: int = 0
    seed: int = 0
    min_overlap: float = 0.5

    @property
    def points(self) -> list[OperatingPoint]:
        return [p for ps in self.curves.values() for p in ps]

    def interval(self, point: OperatingPoint) -> Interval | None:
        return self.point_ci.get((point.curve, point.qp))


def validate_points(points: Sequence[OperatingPoint]) -> tuple[str, str]:
    """Check the points can share one report; return ``(dataset, metric_name)``."""
    points = list(points)
    if not points:
        raise ConfigError("no operating points to report")
    for i, p in enumerate(points):
        if not isinstance(p, OperatingPoint):
            raise ConfigError(f"point {i} is a {type(p).__name__}, not an OperatingPoint")
        if p.pixels <= 0:
            raise ConfigError(f"point {i} ({p.curve} qp={p.qp}) has pixels={p.pixels}; bpp needs a positive count")
    datasets = sorted({p.dataset for p in points})
    if len(datasets) > 1:
        raise ConfigError(
            f"operating points of one report must share one dataset, got {', '.join(map(repr, datasets))}"
        )
    metrics = sorted({p.metric_name for p in points})
    if len(metrics) > 1:
        raise ConfigError(
            f"operating points of one report must share one metric_name, got {', '.join(map(repr, metrics))}"
        )
    return datasets[0], metrics[0]


def _group(points: Sequence[OperatingPoint]) -> dict[str, list[OperatingPoint]]:
    groups: dict[str, list[OperatingPoint]] = {}
    for p in points:
        groups.setdefault(p.curve, []).append(p)
    return {name: sorted(ps, key=lambda p: (p.bpp, p.qp)) for name, ps in groups.items()}


def _resolve_anchor(curves: Mapping[str, Sequence[OperatingPoint]], anchor: str | None) -> str:
    if anchor is None:
        for name, ps in curves.items():
            if parse_label(ps[0].pipeline)[0] == "remote":
                return name
        return next(iter(curves))
    if anchor not in curves:
        raise ConfigError(f"anchor curve {anchor!r} is not among the curves: {', '.join(curves)}")
    return anchor


def _front(ps: Sequence[OperatingPoint]) -> list[tuple[float, float]]:
    return pareto_front([(p.bpp, float(p.metric)) for p in ps])


def _overlap_note(overlap: Overlap | None, metric: str, min_overlap: float) -> str:
    if overlap is None:
        return ""
    fa, ft = overlap.fraction_of_anchor, overlap.fraction_of_test
    if min(fa, ft) >= min_overlap or overlap.span[0] >= overlap.span[1]:
        return ""  # wide enough, or no overlap at all (then the metric's own error says so)
    lo, hi = overlap.span
    unit = f"{metric} [{lo:.2f}, {hi:.2f}]" if overlap.axis == "accuracy" else f"bpp [{10**lo:.4g}, {10**hi:.4g}]"
    what = "BD-rate" if overlap.axis == "accuracy" else f"BD-{metric}"
    return (
        f"narrow overlap: {what} averages over {unit}, {100 * fa:.0f} % of the anchor's range and "
        f"{100 * ft:.0f} % of the test's (warning below {100 * min_overlap:.0f} %)"
    )


def _bootstrap_bd(
    resampled: Resampled,
    curves: Mapping[str, Sequence[OperatingPoint]],
    anchor: str,
    test: str,
    want_rate: bool,
    want_accuracy: bool,
) -> tuple[Interval | None, Interval | None, list[str]]:
    """BD-rate / BD-accuracy intervals of ``test`` against ``anchor`` over the resamples, with notes."""

    def fronts(name: str, k: int) -> list[tuple[float, float]]:
        return pareto_front(
            [(float(resampled.bpp[(name, p.qp)][k]), float(resampled.metric[(name, p.qp)][k])) for p in curves[name]]
        )

    rates, accs = np.full(resampled.resamples, np.nan), np.full(resampled.resamples, np.nan)
    for k in range(resampled.resamples):
        r = compare(anchor, fronts(anchor, k), test, fronts(test, k), method=BD_METHOD)
        rates[k] = np.nan if r.bd_rate is None else r.bd_rate
        accs[k] = np.nan if r.bd_accuracy is None else r.bd_accuracy
    intervals: list[Interval | None] = []
    notes = []
    for label, values, wanted in (("BD-rate", rates, want_rate), ("BD-accuracy", accs, want_accuracy)):
        if not wanted:  # no point estimate, so no interval and nothing to say about one
            intervals.append(None)
            continue
        usable = int(np.isfinite(values).sum())
        if usable * 2 < resampled.resamples:
            intervals.append(None)
            notes.append(f"no {label} interval: only {usable} of {resampled.resamples} resamples gave a value")
            continue
        intervals.append(percentile_interval(values))
        if usable < resampled.resamples:
            notes.append(
                f"{label} interval from the {usable} of {resampled.resamples} resamples that gave a value (draws "
                "whose curves cannot be compared are left out, which can make the interval too narrow)"
            )
    return intervals[0], intervals[1], notes


def analyse(
    points: Sequence[OperatingPoint],
    anchor: str | None = None,
    *,
    resamples: int = 0,
    seed: int = 0,
    min_overlap: float = 0.5,
) -> Analysis:
    """Curves, BD results against ``anchor`` (default: the first ``remote`` curve, else the first curve), overlaps
    and, with ``resamples > 0``, bootstrap intervals. Never raises for curves that cannot be compared: their
    :class:`BDResult` says why.

    Raises:
        ConfigError: no points, points of different datasets or metrics, a point with no pixels, or an unknown anchor.
    """
    dataset, metric_name = validate_points(points)
    grouped = _group(points)
    anchor = _resolve_anchor(grouped, anchor)
    curves = {anchor: grouped[anchor], **{k: v for k, v in grouped.items() if k != anchor}}
    resampled, ci_note = resample_points(list(points), resamples, seed)
    fronts = {name: _front(ps) for name, ps in curves.items()}
    results = []
    for name in list(curves)[1:]:
        r = compare(anchor, fronts[anchor], name, fronts[name], method=BD_METHOD)
        notes = [
            f"{c}: Pareto front of {len(fronts[c])} of {len(curves[c])} points"
            for c in (anchor, name)
            if len(fronts[c]) < len(curves[c])
        ]
        # a remark about a metric's overlap or interval only where that metric has a value
        if r.bd_rate is not None:
            notes.append(_overlap_note(r.accuracy_overlap, metric_name, min_overlap))
        if r.bd_accuracy is not None:
            notes.append(_overlap_note(r.rate_overlap, metric_name, min_overlap))
        rate_ci = acc_ci = None
        if resampled is not None:
            rate_ci, acc_ci, ci_notes = _bootstrap_bd(
                resampled, curves, anchor, name, r.bd_rate is not None, r.bd_accuracy is not None
            )
            notes += ci_notes
        results.append(
            replace(
                r,
                notes=tuple(n for n in notes if n),
                rate_ci=rate_ci,
                accuracy_ci=acc_ci,
            )
        )
    point_ci = {} if resampled is None else {(p.curve, p.qp): resampled.interval(p) for p in points}
    return Analysis(
        dataset,
        metric_name,
        anchor,
        curves,
        results,
        point_ci,
        ci_note,
        resamples if resampled is not None else 0,
        seed,
        min_overlap,
    )


def measure_points(points: Sequence[OperatingPoint], name: str) -> list[OperatingPoint]:
    """The points that carry smooth measure ``name`` (their per-input values in ``samples.extra``), with that measure
    as their metric: what :func:`analyse` ranks curves on instead of the primary metric."""
    out = []
    for p in points:
        if p.samples is None or name not in p.samples.extra or name not in p.metrics:
            continue
        values, link = p.samples.extra[name]
        samples = replace(p.samples, scores=values, link=link, extra={})
        out.append(replace(p, metric_name=name, metric=float(p.metrics[name]), samples=samples))
    return out


def analyse_measures(
    points: Sequence[OperatingPoint],
    anchor: str | None,
    names: Sequence[str],
    *,
    resamples: int = 0,
    seed: int = 0,
    min_overlap: float = 0.5,
) -> dict[str, Analysis]:
    """:func:`analyse` on each smooth measure in ``names`` that at least two curves carry. The anchor is ``anchor``
    when it carries the measure, else the first curve that does (e.g. feature PSNR when the anchor is ``remote``)."""
    out = {}
    for name in names:
        derived = measure_points(points, name)
        curves = _group(derived)
        if len(curves) < 2:
            continue
        chosen = anchor if anchor in curves else next(iter(curves))
        out[name] = analyse(derived, chosen, resamples=resamples, seed=seed, min_overlap=min_overlap)
    return out
