"""Choosing a wrapper family's QP bands on validation sweeps (see :mod:`fcm.wrappers.family`).

Input: for each candidate variant (plain coding among them), its validation curve over one QP grid — QP → (bpp,
measure) pooled over every validation input. The variants are given in rate order, from the one meant for the
highest rates (lowest QPs, usually ``plain``) to the one for the lowest. A choice gives each variant a run of
consecutive grid QPs (possibly none, which drops it); the family's validation curve is then each QP's point from its
variant. :func:`choose_bands` tries every choice whose curve reaches plain coding's best measure (within
``tolerance``: BD-rate alone averages over the overlap only, so it would not see a family that cannot serve the
highest rates) and keeps the one with the lowest BD-rate against the plain curve on the measure (ties: the one
giving plain coding more QPs, then fewer variants), so:

* the family is never chosen worse than plain coding on validation (all-plain, BD-rate 0, is always a candidate),
  and it serves the highest rates as well as plain coding does;
* the QPs of a variant's band are those where its validation points beat the alternatives, not a guess.

Bands on the integer QP axis: a variant's band starts at its first grid QP and ends where the next variant's starts
(the first variant's band starts at ``qp_min``, the last ends at ``qp_max``).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from fcm.errors import ConfigError
from fcm.eval.bd import BDError, bd_rate, pareto_front

__all__ = ["BandChoice", "choose_bands", "pooled_curve"]

Curve = Mapping[int, tuple[float, float]]  # QP → (bpp, measure)


@dataclass(frozen=True)
class BandChoice:
    """The chosen bands: ``bands`` (label, qp_min, qp_max) in QP order, the grid QPs each variant got, and the
    family's validation BD-rate against plain coding (percent; 0 for all-plain)."""

    bands: tuple[tuple[str, int, int], ...]
    grid: Mapping[str, tuple[int, ...]]
    bd_rate: float
    candidates: int


def pooled_curve(points: Sequence[Mapping[str, float]]) -> Curve:
    """Pool per-folder operating points of one curve (each ``{"qp", "bits", "pixels", "num_inputs", "mean_kl"}``)
    into QP → (bpp, kl_db): bits over pixels, and −10·log10 of the input-weighted mean KL."""
    sums: dict[int, list[float]] = {}
    for p in points:
        s = sums.setdefault(int(p["qp"]), [0.0, 0.0, 0.0, 0.0])
        s[0] += p["bits"]
        s[1] += p["pixels"]
        s[2] += p["mean_kl"] * p["num_inputs"]
        s[3] += p["num_inputs"]
    return {qp: (b / px, -10 * math.log10(max(kl / n, 1e-12))) for qp, (b, px, kl, n) in sorted(sums.items())}


def _bd(anchor: Curve, test: list[tuple[float, float]]) -> float | None:
    a = pareto_front(list(anchor.values()))
    t = pareto_front(test)
    try:
        return bd_rate([r for r, _ in a], [m for _, m in a], [r for r, _ in t], [m for _, m in t])
    except BDError:
        return None


def choose_bands(
    curves: Mapping[str, Curve],
    order: Sequence[str],
    plain: str,
    qp_min: int = 0,
    qp_max: int = 51,
    tolerance: float = 0.1,
) -> BandChoice:
    """The bands of the variants ``order`` (rate order, module doc) that minimise the family's validation BD-rate
    against ``curves[plain]`` among those reaching its best measure less ``tolerance``; every curve must hold the
    same QP grid."""
    if plain not in order:
        raise ConfigError(f"the plain curve {plain!r} must be one of the variants {list(order)}")
    missing = [name for name in order if name not in curves]
    if missing:
        raise ConfigError(f"no validation curve for {missing}")
    grids = {name: tuple(sorted(curves[name])) for name in order}
    grid = grids[order[0]]
    if any(g != grid for g in grids.values()) or len(grid) < 4:
        raise ConfigError(f"every variant needs the same validation QP grid of at least 4 QPs, got {grids}")
    if not qp_min <= grid[0] or not grid[-1] <= qp_max:
        raise ConfigError(f"validation QPs {grid} lie outside QP {qp_min}–{qp_max}")
    best: tuple[tuple[float, int, int], tuple[int, ...]] | None = None
    count = 0
    ceiling = max(m for _, m in curves[plain].values()) - tolerance
    # cuts[i] = index into grid where variant i + 1 starts (non-decreasing): variant i owns grid[cuts[i-1]:cuts[i]]
    for cuts in itertools.combinations_with_replacement(range(len(grid) + 1), len(order) - 1):
        count += 1
        edges = (0, *cuts, len(grid))
        owner = {grid[j]: order[i] for i in range(len(order)) for j in range(edges[i], edges[i + 1])}
        points = [curves[owner[q]][q] for q in grid]
        if all(owner[q] == plain for q in grid):
            score: float | None = 0.0
        elif max(m for _, m in points) < ceiling:
            continue  # it cannot serve the highest rates as plain coding does
        else:
            score = _bd(curves[plain], points)
        if score is None or not math.isfinite(score):
            continue
        plain_qps = sum(owner[q] == plain for q in grid)
        used = len({owner[q] for q in grid})
        key = (round(score, 6), -plain_qps, used)
        if best is None or key < best[0]:
            best = (key, edges)
    assert best is not None  # all-plain always scores 0
    edges = best[1]
    owned = [(order[i], grid[edges[i] : edges[i + 1]]) for i in range(len(order)) if edges[i + 1] > edges[i]]
    bands = []
    for k, (name, qps) in enumerate(owned):
        lo = qp_min if k == 0 else qps[0]
        hi = qp_max if k == len(owned) - 1 else owned[k + 1][1][0] - 1
        bands.append((name, lo, hi))
    return BandChoice(tuple(bands), dict(owned), best[0][0], count)
