"""Bootstrap over inputs: how much a sweep's numbers move when the inputs are drawn again.

A sweep measures every operating point on the same inputs, so one resample (inputs drawn with replacement) is applied
to every point at once (a paired bootstrap): each point's bpp becomes ``sum(bits[i]) / sum(pixels[i])`` and its
metric ``mean(score[i])`` over the drawn indices ``i`` (through the samples' link, e.g. ``−10·log10`` of the mean),
or, for a metric that is not a mean over inputs (COCO mAP), the samples' ``statistic`` of the draw (each input
counted as often as it was drawn), and every curve and BD value is rebuilt from those.
Intervals are percentile intervals of the resampled values.
Seeded: the same seed and inputs give the same intervals.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from fcm.eval.bd import Interval
from fcm.eval.points import OperatingPoint, apply_link

__all__ = ["LEVEL", "Resampled", "percentile_interval", "resample_points"]

#: confidence level of every interval in fcm's reports
LEVEL = 0.95

PointKey = tuple[str, int]  # (curve, qp)


def percentile_interval(values: np.ndarray, level: float = LEVEL) -> Interval:
    """The central ``level`` percentile interval of ``values`` (finite values only)."""
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        raise ValueError("no finite values to take an interval of")
    tail = 100.0 * (1.0 - level) / 2.0
    lo, hi = np.percentile(finite, [tail, 100.0 - tail])
    return Interval(float(lo), float(hi), level, int(finite.size))


@dataclass(frozen=True)
class Resampled:
    """Every point's bpp and metric under each of ``resamples`` draws of the inputs (arrays of that length)."""

    ids: tuple[str, ...]
    resamples: int
    seed: int
    bpp: dict[PointKey, np.ndarray]
    metric: dict[PointKey, np.ndarray]

    def interval(self, point: OperatingPoint, level: float = LEVEL) -> Interval:
        return percentile_interval(self.metric[(point.curve, point.qp)], level)


def resample_points(points: Sequence[OperatingPoint], resamples: int, seed: int) -> tuple[Resampled | None, str]:
    """Resample every point's inputs together; ``(None, reason)`` when the points cannot be resampled."""
    if resamples <= 0:
        return None, "no bootstrap (resamples = 0)"
    measured = [p.samples for p in points if p.samples is not None]
    if len(measured) < len(points):
        return None, "no per-input measurements behind the points"
    if any(s.scores is None and s.statistic is None for s in measured):
        return None, f"{points[0].metric_name} is not a mean over inputs, so inputs cannot be resampled for it"
    id_sets = {frozenset(s.ids) for s in measured}
    if len(id_sets) > 1:
        return None, (
            "the points were measured on different inputs (an interrupted sweep?): intervals need every "
            "point measured on every input"
        )
    ids = sorted(next(iter(id_sets)))
    if len(ids) < 2:
        return None, "fewer than two inputs measured at every point"
    rng = np.random.default_rng(seed)
    bpp: dict[PointKey, np.ndarray] = {}
    metric: dict[PointKey, np.ndarray] = {}
    aligned = []
    links = {(p.curve, p.qp): s.link for p, s in zip(points, measured, strict=True)}
    for p, s in zip(points, measured, strict=True):
        where = {k: i for i, k in enumerate(s.ids)}
        order = np.array([where[k] for k in ids])
        aligned.append((p, s, order, s.bits[order].astype(np.float64), s.pixels[order].astype(np.float64)))
        bpp[(p.curve, p.qp)] = np.empty(resamples)
        metric[(p.curve, p.qp)] = np.empty(resamples)
    # A draw is represented by how often it takes each input (a weight vector), in chunks of draws, so memory stays
    # at chunk × inputs however many resamples are asked for.
    n = len(ids)
    chunk = max(1, min(resamples, (1 << 22) // n))
    for start in range(0, resamples, chunk):
        k = min(chunk, resamples - start)
        draws = rng.integers(0, n, size=(k, n))
        weights = np.zeros((k, n))
        np.add.at(weights, (np.repeat(np.arange(k), n), draws.ravel()), 1.0)
        for p, s, order, bits, pixels in aligned:
            bpp[(p.curve, p.qp)][start : start + k] = (weights @ bits) / (weights @ pixels)
            if s.scores is not None:
                value = apply_link(links[(p.curve, p.qp)], (weights @ s.scores[order]) / n)
            else:
                assert s.statistic is not None
                own = np.empty_like(weights)
                own[:, order] = weights  # the draw's weights in the samples' own input order
                value = s.statistic(own)
            metric[(p.curve, p.qp)][start : start + k] = value
    return Resampled(tuple(ids), resamples, seed, bpp, metric), ""
