"""Plots of a sweep's :class:`~fcm.eval.curves.Analysis`: rate–accuracy, stage times, accuracy against edge time.

matplotlib's object API only (``Figure`` saved through its own Agg canvas): nothing here touches pyplot's global
state or the process-wide backend, and matplotlib is imported only when a plot is drawn.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from fcm.eval.curves import Analysis
from fcm.eval.points import EDGE_STAGES, OperatingPoint

__all__ = ["STAGES", "curve_styles", "plot_edge_cost", "plot_rd", "plot_times", "time_keys"]

#: Pipeline stages in the order they run; times keys outside this list come after these, sorted.
STAGES: tuple[str, ...] = ("front", "wrap", "pack", "rdo", "encode", "decode", "unpack", "unwrap", "back")

_COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#7f7f7f", "#bcbd22"]
_MARKERS = ["o", "s", "^", "D", "v", "P", "X", "<", ">", "*"]


#: the colour a pipeline kind's curves take in every report (its variants take the next free ones)
_KIND_COLORS = {"feature": 0, "remote": 1, "wrapped": 2}
#: the marker a codec's curves take in every report
_CODEC_MARKERS = {"x265": 0, "x264": 1, "svtav1": 2, "vp9": 3, "vtm": 4, "vvenc": 5, "hm": 6, "x265-cli": 7}


def curve_styles(names: Iterable[str]) -> dict[str, dict[str, Any]]:
    """Colour and marker of each curve ``kind[variant]/codec``, chosen from the name alone (not from the curves'
    order), so the same curve looks the same in every report: the colour follows the pipeline label — ``feature``
    blue, ``remote`` red, ``wrapped`` green, a variant or another kind a colour drawn from its label's hash (the next
    free one where two labels would share it) — and the marker follows the codec."""
    names = sorted(set(names))
    labels = sorted({n.partition("/")[0] for n in names}, key=lambda label: ("[" in label, label))
    colors: dict[str, int] = {}
    for label in labels:  # plain kinds claim their colour first
        kind = label.split("[", 1)[0]
        if "[" not in label and kind in _KIND_COLORS:
            colors[label] = _KIND_COLORS[kind]
            continue
        color = zlib.crc32(label.encode()) % len(_COLORS)
        for _ in range(len(_COLORS)):
            if color not in colors.values() and color not in _KIND_COLORS.values():
                break
            color = (color + 1) % len(_COLORS)
        colors[label] = color
    styles: dict[str, dict[str, Any]] = {}
    for name in names:
        label, _, codec = name.partition("/")
        marker = _CODEC_MARKERS.get(codec, zlib.crc32(codec.encode()) % len(_MARKERS))
        styles[name] = {"color": _COLORS[colors[label]], "marker": _MARKERS[marker]}
    return styles


def _finite(x: float) -> bool:
    return math.isfinite(x)


def time_keys(points: list[OperatingPoint]) -> list[str]:
    keys = {k for p in points for k in p.times}
    return [s for s in STAGES if s in keys] + sorted(keys - set(STAGES))


def _figure(width: float, height: float) -> Any:
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=150)


def log_x_if_wide(ax: Any, values: list[float]) -> str:
    """A log x axis when the values span more than a decade; returns the scale's name for the label."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    positive = [v for v in values if v > 0]
    if not positive or max(positive) / min(positive) <= 10.0:
        return "linear scale"
    ax.set_xscale("log")
    axis = ax.xaxis
    axis.set_major_locator(LogLocator(base=10.0, subs=(1.0, 2.0, 5.0)))
    axis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    axis.set_minor_formatter(NullFormatter())
    return "log scale"


def plot_rd(path: Path, analysis: Analysis, reference: dict[str, float] | None, title: str) -> None:
    """Accuracy against bpp, one line per curve, QP labels, the bootstrap interval of each point as an error bar and
    the uncompressed reference as a dashed line."""
    fig = _figure(8.0, 5.5)
    ax = fig.add_subplot()
    rates: list[float] = []
    accs: list[float] = []
    metric = analysis.metric_name
    styles = curve_styles(analysis.curves)
    for name, curve in analysis.curves.items():
        ps = [p for p in curve if _finite(p.bpp) and _finite(float(p.metric))]
        if not ps:
            continue
        x = [p.bpp for p in ps]
        y = [float(p.metric) for p in ps]
        rates += x
        accs += y
        st = styles[name]
        label = f"{name} (anchor)" if name == analysis.anchor else name
        cis = [ci for ci in (analysis.interval(p) for p in ps) if ci is not None]
        if len(cis) == len(ps):  # every point has an interval
            # clamped: an estimate outside its own interval (not expected, see fcm.eval.bootstrap) must not break a plot
            below = [max(0.0, v - ci.lo) for v, ci in zip(y, cis, strict=True)]
            above = [max(0.0, ci.hi - v) for v, ci in zip(y, cis, strict=True)]
            err = [below, above]
            ax.errorbar(
                x, y, yerr=err, color=st["color"], linewidth=0, elinewidth=1.0, capsize=2.5, alpha=0.6, zorder=2
            )
            accs += [ci.lo for ci in cis] + [ci.hi for ci in cis]
        ax.plot(x, y, label=label, color=st["color"], marker=st["marker"], markersize=6, linewidth=1.8, zorder=3)
        # QP labels: the anchor's below-right, the others' above-left, in the empty space beside rising RD curves
        offset, ha, va = ((5, -4), "left", "top") if name == analysis.anchor else ((-5, 4), "right", "bottom")
        for p in ps:
            ax.annotate(
                f"{p.qp}",
                (p.bpp, float(p.metric)),
                textcoords="offset points",
                xytext=offset,
                ha=ha,
                va=va,
                fontsize=7,
                color=st["color"],
                alpha=0.8,
                zorder=4,
            )
    ref = None if reference is None else reference.get(metric)
    if ref is not None and _finite(float(ref)):
        ax.axhline(
            float(ref),
            color="0.25",
            linestyle="--",
            linewidth=1.2,
            zorder=1,
            label=f"uncompressed reference ({float(ref):.2f})",
        )
        accs.append(float(ref))
    scale = log_x_if_wide(ax, rates)
    if accs:
        lo, hi = min(accs), max(accs)
        pad = max(0.06 * (hi - lo), 0.5)
        ax.set_ylim(lo - pad, hi + pad)
    ax.set_xlabel(f"rate (bits per input pixel, bpp; {scale})", fontsize=11)
    ax.set_ylabel(f"{metric} (%)", fontsize=11)
    ax.set_title(f"{title or 'Rate–accuracy'}\n{analysis.dataset} — {metric} vs bpp", fontsize=12)
    ax.grid(True, which="major", alpha=0.35)
    ax.grid(True, which="minor", alpha=0.12)
    ax.tick_params(labelsize=9)
    ax.legend(fontsize=9, loc="best", framealpha=0.9)
    bars = f"; error bars: {100 * 0.95:.0f} % bootstrap interval over inputs" if analysis.point_ci else ""
    fig.text(0.995, 0.005, f"point labels: QP{bars}", ha="right", va="bottom", fontsize=7, color="0.45")
    fig.tight_layout()
    fig.savefig(path, dpi=150)


def _middle(ps: list[OperatingPoint]) -> OperatingPoint:
    by_qp = sorted(ps, key=lambda p: p.qp)
    return by_qp[(len(by_qp) - 1) // 2]


def plot_times(path: Path, analysis: Analysis) -> None:
    """Mean stage times per input at the middle QP of each curve, grouped by stage."""
    names = [n for n, ps in analysis.curves.items() if any(p.times for p in ps)]
    styles = curve_styles(analysis.curves)
    mids = {n: _middle([p for p in analysis.curves[n] if p.times]) for n in names}
    stages = time_keys(list(mids.values()))
    fig = _figure(8.0, 4.2)
    ax = fig.add_subplot()
    width = 0.8 / max(len(names), 1)
    for i, name in enumerate(names):
        p = mids[name]
        ms = [1000.0 * p.times.get(s, float("nan")) for s in stages]
        xs = [j - 0.4 + width * (i + 0.5) for j in range(len(stages))]
        ax.bar(xs, ms, width=width * 0.95, color=styles[name]["color"], label=f"{name} (QP {p.qp})", zorder=3)
    ax.set_xticks(range(len(stages)))
    ax.set_xticklabels(stages, fontsize=10)
    ax.set_ylabel("mean time per input (ms)", fontsize=11)
    ax.set_title(f"{analysis.dataset} — stage times at the middle QP of each curve", fontsize=12)
    ax.grid(True, axis="y", alpha=0.35, zorder=0)
    ax.tick_params(labelsize=9)
    ax.legend(fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=150)


def plot_edge_cost(path: Path, analysis: Analysis, reference: dict[str, float] | None) -> None:
    """Accuracy against what the edge spends per input (front + pack + encode time), one line per curve: where a
    curve lies left of another at the same accuracy, its edge is cheaper there."""
    fig = _figure(8.0, 5.0)
    ax = fig.add_subplot()
    times: list[float] = []
    styles = curve_styles(analysis.curves)
    for name, curve in analysis.curves.items():
        ps = [p for p in curve if p.times and _finite(float(p.metric))]  # in rate order, as on the RD plot
        if not ps:
            continue
        x = [1000.0 * p.edge_seconds for p in ps]
        y = [float(p.metric) for p in ps]
        times += x
        st = styles[name]
        macs = ps[0].edge_macs
        if macs is None:
            label = f"{name}: edge computation not measured"
        else:
            label = f"{name}: " + (f"{macs / 1e6:.0f} M MACs/input on the edge" if macs else "encode only")
        ax.plot(x, y, color=st["color"], marker=st["marker"], markersize=5, linewidth=1.4, label=label, zorder=3)
        for p, xv in zip(ps, x, strict=True):
            ax.annotate(
                f"{p.qp}",
                (xv, float(p.metric)),
                textcoords="offset points",
                xytext=(4, 3),
                fontsize=7,
                color=st["color"],
                alpha=0.8,
            )
    ref = None if reference is None else reference.get(analysis.metric_name)
    if ref is not None and _finite(float(ref)):
        ax.axhline(float(ref), color="0.25", linestyle="--", linewidth=1.2, label="uncompressed reference")
    scale = log_x_if_wide(ax, times)
    ax.set_xlabel(f"edge time per input: {' + '.join(EDGE_STAGES)} (ms; {scale})", fontsize=11)
    ax.set_ylabel(f"{analysis.metric_name} (%)", fontsize=11)
    ax.set_title(f"{analysis.dataset} — accuracy against edge time", fontsize=12)
    ax.grid(True, alpha=0.35)
    ax.legend(fontsize=9, loc="best", framealpha=0.9)
    fig.text(0.995, 0.005, "point labels: QP", ha="right", va="bottom", fontsize=7, color="0.45")
    fig.tight_layout()
    fig.savefig(path, dpi=150)
