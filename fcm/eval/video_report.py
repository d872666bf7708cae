"""The report of a video sweep: points per (pipeline, codec, QP) over all sequences, BD-rate on kbps of each
``feature/<codec>`` curve against ``remote/<codec>``, a CSV, a JSON and a rate–fidelity plot.

A point's rate is the total bits of its sequences over their total duration (kbps); its metric the frame-weighted
mean of the sequences' metrics; ``kl_db`` (classifiers) is −10·log10 of the frame-weighted mean KL, floored at
150 dB. BD-rate uses each curve's Pareto front (:func:`fcm.eval.bd.compare`, PCHIP). With a handful of sequences the
frames are not independent samples, so no interval is given: the per-sequence points are in the CSV.
"""

from __future__ import annotations

import csv
import json
import math
from collections import defaultdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fcm.eval.bd import compare, pareto_front
from fcm.eval.points import MIN_DB_MEAN

if TYPE_CHECKING:
    from fcm.eval.video_sweep import VideoSweepConfig

REPORT_JSON = "report.json"
REPORT_CSV = "points.csv"
PLOT = "rd_kbps.png"


def aggregate(records: list[dict[str, Any]], sequences: tuple[str, ...]) -> list[dict[str, Any]]:
    """One point per (pipeline, codec, QP) over the records of ``sequences`` (points missing a sequence are left
    out: a partial point would not be comparable)."""
    groups: dict[tuple[str, str, int], list[dict[str, Any]]] = defaultdict(list)
    for r in records:
        if r["sequence"] in sequences:
            groups[(r["pipeline"], r["codec"], int(r["qp"]))].append(r)
    points = []
    for (pipeline, codec, qp), rs in sorted(groups.items()):
        if {r["sequence"] for r in rs} != set(sequences):
            continue
        frames = sum(r["frames"] for r in rs)
        duration = sum(r["frames"] / r["fps"] for r in rs)
        names = sorted({k for r in rs for k in r["metrics"]})
        metrics = {
            k: float(sum(r["metrics"][k] * r["frames"] for r in rs) / frames)
            for k in names
            if all(k in r["metrics"] and _finite(r["metrics"][k]) for r in rs)
        }
        point: dict[str, Any] = {
            "curve": f"{pipeline}/{codec}",
            "pipeline": pipeline,
            "codec": codec,
            "qp": qp,
            "sequences": len(rs),
            "frames": frames,
            "bytes": sum(r["bytes"] for r in rs),
            "kbps": 8 * sum(r["bytes"] for r in rs) / 1000 / duration,
            "metrics": metrics,
            "encode_fps": _rate(frames, [r["frames"] / r["encode_fps"] for r in rs if r.get("encode_fps")]),
            "roundtrip_fps": _rate(frames, [r["frames"] / r["roundtrip_fps"] for r in rs if r.get("roundtrip_fps")]),
            "decode_fps": _rate(frames, [r["frames"] / r["decode_fps"] for r in rs if r.get("decode_fps")]),
        }
        if all("mean_kl" in r for r in rs):
            mean_kl = sum(r["mean_kl"] * r["frames"] for r in rs) / frames
            point["mean_kl"] = mean_kl
            point["kl_db"] = -10 * math.log10(max(mean_kl, MIN_DB_MEAN))
        points.append(point)
    return points


def _finite(v: Any) -> bool:
    return isinstance(v, (int, float)) and math.isfinite(v)


def _rate(frames: int, seconds: list[float]) -> float | None:
    return frames / sum(seconds) if seconds and sum(seconds) > 0 else None


def bd_table(points: list[dict[str, Any]], measure: str) -> list[dict[str, Any]]:
    """BD-rate (kbps) and BD-measure of every ``feature/<codec>`` curve against ``remote/<codec>`` (the same codec
    coding the video itself), on ``measure`` (a metric name or ``kl_db``)."""

    def value(p: dict[str, Any]) -> float | None:
        v = p.get(measure, p["metrics"].get(measure))
        return float(v) if _finite(v) else None

    curves: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for p in points:
        v = value(p)
        if v is not None:
            curves[p["curve"]].append((p["kbps"], v))
    rows = []
    for name, pts in curves.items():
        pipeline, _, codec = name.partition("/")
        anchor = f"remote/{codec}"  # the same codec coding the video itself: the comparison the sweep is for
        if pipeline == "remote" or anchor not in curves:
            continue
        r = compare(anchor, pareto_front(curves[anchor]), name, pareto_front(pts))
        rows.append(
            {
                "anchor": anchor,
                "test": name,
                "measure": measure,
                "bd_rate_percent": r.bd_rate,
                "bd_measure": r.bd_accuracy,
                "note": r.note,
            }
        )
    return rows


def write_report(cfg: VideoSweepConfig, records: list[dict[str, Any]]) -> dict[str, Any]:
    """Write ``report.json``, ``points.csv`` and the plot into the sweep's folder; returns the report."""
    from fcm.eval.evaluators import EVALUATORS

    points = aggregate(records, cfg.sequences)
    primary = _primary(cfg, points)
    measures = [primary] + (["kl_db"] if any("kl_db" in p for p in points) else [])
    report = {
        "name": cfg.name,
        "model": cfg.model,
        "split": cfg.split,
        "sequences": list(cfg.sequences),
        "gop": cfg.gop,
        "intra_period": cfg.intra_period,
        "primary_metric": primary,
        "evaluator": EVALUATORS.get(cfg.evaluator).description if cfg.evaluator in EVALUATORS else cfg.evaluator,
        "points": points,
        "bd": [row for m in measures for row in bd_table(points, m)],
    }
    out = cfg.output
    (out / REPORT_JSON).write_text(json.dumps(report, indent=2) + "\n")
    _write_csv(out / REPORT_CSV, records, points)
    if points:
        # against the model's own detections, uncompressed inference scores 100 by definition
        refs = {"mAP": 100.0} if cfg.evaluator == "detection_fidelity" else None
        plot_kbps(out / PLOT, points, measures, cfg.name, refs)
    return report


def _primary(cfg: VideoSweepConfig, points: list[dict[str, Any]]) -> str:
    """The sweep's evaluator's primary metric (as a folder's points hold it), else the first one they hold."""
    from fcm.errors import FcmError
    from fcm.eval.evaluators import evaluator_class
    from fcm.models import MODELS

    try:
        primary = evaluator_class(cfg.evaluator, MODELS.get(cfg.model).task).primary
    except FcmError:  # a model or evaluator no longer registered: read the folder as it is
        primary = ""
    if primary and any(primary in p["metrics"] for p in points):
        return primary
    for name in ("top1_agreement", "mAP"):
        if any(name in p["metrics"] for p in points):
            return name
    return next(iter(points[0]["metrics"]), "") if points else ""


def _write_csv(path: Path, records: list[dict[str, Any]], points: list[dict[str, Any]]) -> None:
    metric_names = sorted({k for p in points for k in p["metrics"]} | {k for r in records for k in r["metrics"]})
    columns = [
        "level",
        "sequence",
        "curve",
        "qp",
        "frames",
        "bytes",
        "kbps",
        *metric_names,
        "mean_kl",
        "encode_fps",
        "decode_fps",
    ]
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(columns)
        for p in points:
            w.writerow(
                [
                    "all",
                    "",
                    p["curve"],
                    p["qp"],
                    p["frames"],
                    p["bytes"],
                    f"{p['kbps']:.3f}",
                    *(_cell(p["metrics"].get(m)) for m in metric_names),
                    _cell(p.get("mean_kl")),
                    _cell(p["encode_fps"]),
                    _cell(p["decode_fps"]),
                ]
            )
        for r in sorted(records, key=lambda r: (r["sequence"], r["pipeline"], r["codec"], r["qp"])):
            w.writerow(
                [
                    "sequence",
                    r["sequence"],
                    f"{r['pipeline']}/{r['codec']}",
                    r["qp"],
                    r["frames"],
                    r["bytes"],
                    f"{r['kbps']:.3f}",
                    *(_cell(r["metrics"].get(m)) for m in metric_names),
                    _cell(r.get("mean_kl")),
                    _cell(r.get("encode_fps")),
                    _cell(r.get("decode_fps")),
                ]
            )


def _cell(v: Any) -> str:
    return "" if v is None else f"{v:.6g}" if isinstance(v, float) else str(v)


#: axis label and uncompressed reference value of each measure a video sweep plots (None: no fixed reference)
_MEASURE_AXES: dict[str, tuple[str, float | None]] = {
    "top1_agreement": ("top-1 agreement with uncompressed inference (%)", 100.0),
    "top5_agreement": ("top-5 agreement with uncompressed inference (%)", 100.0),
    "kl_db": ("KL to uncompressed (dB: −10·log10 mean KL)", None),
    "mAP": ("mAP@[.5:.95] (%)", None),
    "MOTA": ("MOTA (%)", None),
}


def plot_kbps(
    path: Path,
    points: list[dict[str, Any]],
    measures: list[str],
    title: str,
    references: dict[str, float] | None = None,
) -> None:
    """One panel per measure: the measure against kbps (log axis), one line per curve, QP labels, and the
    uncompressed reference as a dashed line where there is one (``references`` by measure, else the measure's
    own: fidelity to uncompressed inference is 100 % there by definition)."""
    from matplotlib.figure import Figure

    from fcm.eval.plots import curve_styles

    fig = Figure(figsize=(6.0 * len(measures), 4.8), dpi=150)
    curves = sorted({p["curve"] for p in points}, key=lambda c: (not c.startswith("remote/"), c))
    styles = curve_styles(curves)
    for k, measure in enumerate(measures):
        ax = fig.add_subplot(1, len(measures), k + 1)
        for curve in curves:
            ps = sorted((p for p in points if p["curve"] == curve), key=lambda p: p["kbps"])
            ps = [p for p in ps if _finite(p.get(measure, p["metrics"].get(measure)))]
            if not ps:
                continue
            xs = [p["kbps"] for p in ps]
            ys = [p.get(measure, p["metrics"].get(measure)) for p in ps]
            ax.plot(xs, ys, label=curve, **styles[curve])
            for p, x, y in zip(ps, xs, ys, strict=True):
                ax.annotate(str(p["qp"]), (x, y), textcoords="offset points", xytext=(3, 3), fontsize=7)
        label, default_ref = _MEASURE_AXES.get(measure, (measure, None))
        ref = (references or {}).get(measure, default_ref)
        if ref is not None:
            ax.axhline(ref, color="0.25", linestyle="--", linewidth=1.2, label=f"uncompressed ({ref:g})")
        ax.set_xscale("log")
        ax.set_xlabel("rate (kbit/s, every byte of the stream; log scale)")
        ax.set_ylabel(label)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
        ax.set_title(f"{title}: {measure} vs kbit/s")
    fig.text(0.995, 0.005, "point labels: QP", ha="right", va="bottom", fontsize=7, color="0.45")
    fig.tight_layout()
    fig.savefig(path)


def table(report: dict[str, Any]) -> str:
    """A plain-text summary: points and BD rows."""
    primary = report["primary_metric"]
    lines = [f"{'curve':<16} {'qp':>3} {'kbps':>10} {primary:>16} {'kl_db':>7} {'enc fps':>8} {'dec fps':>8}"]
    for p in report["points"]:
        kl = p.get("kl_db")
        # remote: encode, decode and the whole model run in lockstep (one figure, in the encode column)
        enc, dec = p["encode_fps"] or p.get("roundtrip_fps"), p["decode_fps"]
        lines.append(
            f"{p['curve']:<16} {p['qp']:>3} {p['kbps']:>10.2f} {p['metrics'].get(primary, float('nan')):>16.2f} "
            f"{'' if kl is None else f'{kl:.2f}':>7} {'' if enc is None else f'{enc:.1f}':>8} "
            f"{'' if dec is None else f'{dec:.1f}':>8}"
        )
    for row in report["bd"]:
        value = "n/a" if row["bd_rate_percent"] is None else f"{row['bd_rate_percent']:+.1f} %"
        lines.append(
            f"BD-rate on kbps ({row['measure']}), {row['test']} vs {row['anchor']}: {value}"
            + (f"  ({row['note']})" if row["note"] else "")
        )
    return "\n".join(lines)


__all__ = ["aggregate", "bd_table", "plot_kbps", "table", "write_report"]
