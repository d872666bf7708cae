"""Rate–accuracy reports of a sweep: CSV summary, strict JSON, a markdown report and RD plots.

:func:`write_report` takes the :class:`~fcm.eval.points.OperatingPoint` s of one sweep (one dataset, one primary
metric, any number of ``pipeline/codec`` curves) and writes into a folder:

* ``summary.csv`` — one row per operating point, sorted by curve name then rate, in the column order of the MPEG-FCM
  CTTC result templates: ``dataset, pipeline, codec, qp, num_inputs, bits, pixels, bpp, kbits, <metric_name>``, then
  the other metrics (union over the points, sorted by name), then the mean per-input stage times ``time_<stage>_s``
  (the usual stages ``front, pack, encode, decode, unpack, back`` in that order, any other stage after them, sorted).
* ``report.json`` — ``{"title", "dataset", "metric", "anchor", "reference", "points", "bd", "manifest"}``; strict JSON
  (non-finite floats are written as ``null``). :func:`load_points` reads its points back.
* ``report.md`` — a human report: dataset, metric, inputs, the BD table of every curve against the anchor
  (:func:`format_bd_table`), the operating points of each curve, the reference line, the plots, the environment.
* ``rd_<metric>.png`` — accuracy vs bpp, one line per curve; ``times.png`` — mean stage times per curve at the middle
  QP, when the points carry times.

The rate of every BD metric and plot is bits per pixel of the original inputs (:attr:`OperatingPoint.bpp`); BD values
come from :func:`fcm.eval.bd.compare` (pchip interpolation), so a pair of curves that cannot be compared (no overlap,
too few points, non-monotone accuracy) is reported as ``n/a — <reason>`` rather than failing the report.

matplotlib is imported only inside the plotting functions (Agg backend), so importing this module stays cheap.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from fcm.errors import ConfigError
from fcm.eval.bd import BDResult, compare, pareto_front
from fcm.eval.points import OperatingPoint

__all__ = [
    "ReportFiles",
    "STAGES",
    "bd_results",
    "format_bd_table",
    "load_points",
    "write_report",
]

#: Pipeline stages in the order they run; times keys outside this list are written after these, sorted.
STAGES: tuple[str, ...] = ("front", "pack", "encode", "decode", "unpack", "back")

_BD_METHOD = "pchip"


@dataclass(frozen=True)
class ReportFiles:
    """Paths :func:`write_report` wrote. ``times_plot`` is ``None`` when no point carries stage times."""

    out_dir: Path
    summary_csv: Path
    report_json: Path
    report_md: Path
    rd_plot: Path
    times_plot: Path | None = None

    @property
    def files(self) -> tuple[Path, ...]:
        """Every file written."""
        out = (self.summary_csv, self.report_json, self.report_md, self.rd_plot)
        return out + ((self.times_plot,) if self.times_plot is not None else ())


# --------------------------------------------------------------------------------------------------------------------
# validation and grouping


def _validate(points: Sequence[OperatingPoint]) -> tuple[str, str]:
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
        raise ConfigError(f"operating points of one report must share one dataset, got {', '.join(map(repr, datasets))}")
    metrics = sorted({p.metric_name for p in points})
    if len(metrics) > 1:
        raise ConfigError(
            f"operating points of one report must share one metric_name, got {', '.join(map(repr, metrics))}"
        )
    return datasets[0], metrics[0]


def _curves(points: Sequence[OperatingPoint]) -> dict[str, list[OperatingPoint]]:
    """Points grouped by curve (in order of first appearance), each curve sorted by rate then QP."""
    groups: dict[str, list[OperatingPoint]] = {}
    for p in points:
        groups.setdefault(p.curve, []).append(p)
    return {name: sorted(ps, key=lambda p: (p.bpp, p.qp)) for name, ps in groups.items()}


def _resolve_anchor(curves: Mapping[str, Sequence[OperatingPoint]], anchor: str | None) -> str:
    if anchor is None:
        for name, ps in curves.items():
            if ps[0].pipeline == "remote":
                return name
        return next(iter(curves))
    if anchor not in curves:
        raise ConfigError(f"anchor curve {anchor!r} is not among the curves: {', '.join(curves)}")
    return anchor


def _ordered(curves: Mapping[str, Sequence[OperatingPoint]], anchor: str) -> list[str]:
    """Curve names, anchor first, then in order of first appearance."""
    return [anchor] + [c for c in curves if c != anchor]


def _rd(ps: Sequence[OperatingPoint]) -> list[tuple[float, float]]:
    return [(p.bpp, float(p.metric)) for p in ps]


def bd_results(points: Sequence[OperatingPoint], anchor: str | None = None) -> list[BDResult]:
    """BD-rate (over bpp) and BD-accuracy of every curve against ``anchor`` (default: as in :func:`write_report`).

    Never raises for curves that cannot be compared: their :attr:`BDResult.note` says why.
    """
    _validate(points)
    curves = _curves(points)
    anchor = _resolve_anchor(curves, anchor)
    return _bd(curves, anchor)


def _bd(curves: Mapping[str, Sequence[OperatingPoint]], anchor: str) -> list[BDResult]:
    """BD of each curve against the anchor, both taken on their Pareto fronts (see :func:`bd.pareto_front`)."""
    fronts = {name: pareto_front(_rd(ps)) for name, ps in curves.items()}
    results = []
    for name in _ordered(curves, anchor)[1:]:
        r = compare(anchor, fronts[anchor], name, fronts[name], method=_BD_METHOD)
        dropped = [f"{c}: {len(fronts[c])} of {len(curves[c])} points" for c in (anchor, name)
                   if len(fronts[c]) < len(curves[c])]
        if dropped:
            note = f"Pareto front used ({'; '.join(dropped)})"
            r = replace(r, note=f"{r.note}; {note}" if r.note else note)
        results.append(r)
    return results


# --------------------------------------------------------------------------------------------------------------------
# formatting helpers


def _finite(x: Any) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x)


def _num(x: float | None, fmt: str) -> str:
    """Format a number; ``nan`` / ``inf`` as text, ``None`` as the empty string."""
    if x is None:
        return ""
    if isinstance(x, float) and not math.isfinite(x):
        return str(x)
    return format(x, fmt)


def _md_cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _metric_unit(metric_name: str) -> str:
    return "pp"  # OperatingPoint metrics are in percent, so differences are percentage points


def _strip_key(note: str, key: str) -> str:
    """The part of a :class:`BDResult` note about ``key``: ``compare`` writes ``"bd_rate: …; bd_accuracy: …"`` when
    the two metrics failed differently, ``"<key>: …"`` when one failed, and the bare reason when both failed alike."""
    head, sep, tail = note.partition("; bd_accuracy: ")
    if key == "bd_rate":
        return head[len("bd_rate: "):] if head.startswith("bd_rate: ") else note
    if sep:
        return tail
    return note[len("bd_accuracy: "):] if note.startswith("bd_accuracy: ") else note


def _bd_cells(r: BDResult) -> tuple[str, str]:
    """Table cells: signed values, or ``n/a — <reason>`` for a metric ``compare`` could not compute."""
    rate_ok, acc_ok = r.bd_rate is not None, r.bd_accuracy is not None
    rate = f"{r.bd_rate:+.2f}" if rate_ok else f"n/a — {_strip_key(r.note, 'bd_rate')}"
    acc = f"{r.bd_accuracy:+.2f}" if acc_ok else f"n/a — {_strip_key(r.note, 'bd_accuracy')}"
    if not rate_ok and not acc_ok and rate == acc:  # one reason for both: say it once
        acc = "n/a (same reason)"
    return rate, acc


def _bd_table(results: Sequence[BDResult], anchor: str, metric_name: str) -> str:
    unit = _metric_unit(metric_name)
    lines = [
        f"BD metrics against the anchor `{anchor}` (rate: bpp; accuracy: {metric_name}; {_BD_METHOD} interpolation)",
        "",
    ]
    if not results:
        lines.append(f"_Only one curve (`{anchor}`): nothing to compare._")
        return "\n".join(lines)
    lines += [
        f"| Test curve | BD-rate (%) vs `{anchor}` | BD-{metric_name} ({unit}) |",
        "|:--|--:|--:|",
    ]
    for r in results:
        rate, acc = _bd_cells(r)
        lines.append(f"| `{r.test}` | {_md_cell(rate)} | {_md_cell(acc)} |")
    notes = [f"- `{r.test}`: {r.note}" for r in results if r.note and r.bd_rate is not None and r.bd_accuracy is not None]
    if notes:
        lines += ["", *notes]
    lines += [
        "",
        f"BD-rate < 0: the test curve needs fewer bits than `{anchor}` for the same {metric_name}. "
        f"BD-{metric_name} > 0: the test curve is more accurate at the same bpp.",
    ]
    return "\n".join(lines)


def format_bd_table(points: Sequence[OperatingPoint], anchor: str | None = None) -> str:
    """Markdown BD table of every curve of ``points`` against ``anchor`` (default: as in :func:`write_report`).

    One row per test curve: BD-rate in percent with its sign (negative = fewer bits) and BD-accuracy in percentage
    points (positive = more accurate); a metric ``compare`` could not compute reads ``n/a — <reason>``. A caption line
    naming the anchor comes first and a line on the sign convention last, so the text also reads well on a console.
    """
    _, metric_name = _validate(points)
    curves = _curves(points)
    anchor = _resolve_anchor(curves, anchor)
    return _bd_table(_bd(curves, anchor), anchor, metric_name)


# --------------------------------------------------------------------------------------------------------------------
# JSON


def _json_safe(obj: Any) -> Any:
    """Replace non-finite floats by ``None`` (recursively) so ``json.dumps(allow_nan=False)`` succeeds."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, Mapping):
        return {str(k): _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_safe(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    if hasattr(obj, "item") and callable(obj.item):  # numpy scalars
        return _json_safe(obj.item())
    return obj


def _float_or_nan(x: Any) -> float:
    return float("nan") if x is None else float(x)


def load_points(path: Path | str) -> list[OperatingPoint]:
    """Operating points of a ``report.json`` written by :func:`write_report` (a bare JSON list of point dicts is also
    accepted). ``null`` metrics or times (non-finite when written) come back as ``nan``; the derived ``bpp`` is
    dropped, since :class:`OperatingPoint` computes it."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read operating points from {path}: {exc}") from None
    raw = data.get("points") if isinstance(data, dict) else data
    if not isinstance(raw, list):
        raise ConfigError(f"{path} has no list of operating points (expected a report.json with a 'points' list)")
    points = []
    for i, d in enumerate(raw):
        try:
            points.append(
                OperatingPoint(
                    dataset=str(d["dataset"]),
                    pipeline=str(d["pipeline"]),
                    codec=str(d["codec"]),
                    qp=int(d["qp"]),
                    num_inputs=int(d["num_inputs"]),
                    bits=int(d["bits"]),
                    pixels=int(d["pixels"]),
                    metric_name=str(d["metric_name"]),
                    metric=_float_or_nan(d["metric"]),
                    metrics={str(k): _float_or_nan(v) for k, v in (d.get("metrics") or {}).items()},
                    times={str(k): _float_or_nan(v) for k, v in (d.get("times") or {}).items()},
                )
            )
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise ConfigError(f"{path}: point {i} is not a valid operating point ({type(exc).__name__}: {exc})") from None
    return points


# --------------------------------------------------------------------------------------------------------------------
# CSV


def _time_keys(points: Sequence[OperatingPoint]) -> list[str]:
    keys = {k for p in points for k in p.times}
    return [s for s in STAGES if s in keys] + sorted(keys - set(STAGES))


def _write_csv(path: Path, curves: Mapping[str, Sequence[OperatingPoint]], metric_name: str) -> None:
    points = [p for name in sorted(curves) for p in curves[name]]
    other = sorted({k for p in points for k in p.metrics} - {metric_name})
    tkeys = _time_keys(points)
    header = ["dataset", "pipeline", "codec", "qp", "num_inputs", "bits", "pixels", "bpp", "kbits", metric_name]
    header += other + [f"time_{k}_s" for k in tkeys]
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(header)
        for p in points:
            row = [p.dataset, p.pipeline, p.codec, p.qp, p.num_inputs, p.bits, p.pixels,
                   _num(p.bpp, ".6f"), _num(p.bits / 1000.0, ".3f"), _num(float(p.metric), ".8g")]
            row += [_num(p.metrics.get(k), ".8g") for k in other]
            row += [_num(p.times.get(k), ".6g") for k in tkeys]
            w.writerow(row)


# --------------------------------------------------------------------------------------------------------------------
# plots


def _style(i: int) -> dict[str, Any]:
    colors = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#7f7f7f",
              "#bcbd22"]
    markers = ["o", "s", "^", "D", "v", "P", "X", "<", ">", "*"]
    return {"color": colors[i % len(colors)], "marker": markers[i % len(markers)]}


def _plot_rd(path: Path, curves: Mapping[str, Sequence[OperatingPoint]], anchor: str, dataset: str,
             metric_name: str, reference: Mapping[str, float] | None, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    fig, ax = plt.subplots(figsize=(8.0, 5.5), dpi=150)
    try:
        rates: list[float] = []
        accs: list[float] = []
        for i, name in enumerate(_ordered(curves, anchor)):
            ps = [p for p in curves[name] if _finite(p.bpp) and _finite(float(p.metric))]
            if not ps:
                continue
            x = [p.bpp for p in ps]
            y = [float(p.metric) for p in ps]
            rates += x
            accs += y
            st = _style(i)
            label = f"{name} (anchor)" if name == anchor else name
            ax.plot(x, y, label=label, color=st["color"], marker=st["marker"], markersize=6, linewidth=1.8,
                    zorder=3)
            # QP labels: the anchor's (usually the lowest curve) below-right, the others' above-left, which keeps
            # them in the empty space on either side of the usual family of concave, rising RD curves
            offset, ha, va = ((5, -4), "left", "top") if name == anchor else ((-5, 4), "right", "bottom")
            for p in ps:
                ax.annotate(f"{p.qp}", (p.bpp, float(p.metric)), textcoords="offset points", xytext=offset,
                            ha=ha, va=va, fontsize=7, color=st["color"], alpha=0.8, zorder=4)
        ref = None if reference is None else reference.get(metric_name)
        if ref is not None and _finite(float(ref)):
            ax.axhline(float(ref), color="0.25", linestyle="--", linewidth=1.2, zorder=2,
                       label=f"uncompressed reference ({float(ref):.2f})")
            accs.append(float(ref))

        positive = [r for r in rates if r > 0]
        if positive and max(positive) / min(positive) > 10.0:
            ax.set_xscale("log")
            ax.xaxis.set_major_locator(LogLocator(base=10.0, subs=(1.0, 2.0, 5.0)))
            ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
            ax.xaxis.set_minor_formatter(NullFormatter())
            scale = "log scale"
        else:
            scale = "linear scale"
        if accs:
            lo, hi = min(accs), max(accs)
            pad = max(0.06 * (hi - lo), 0.5)
            ax.set_ylim(lo - pad, hi + pad)

        ax.set_xlabel(f"rate (bits per input pixel, bpp; {scale})", fontsize=11)
        ax.set_ylabel(f"{metric_name} (%)", fontsize=11)
        head = title or "Rate–accuracy"
        ax.set_title(f"{head}\n{dataset} — {metric_name} vs bpp", fontsize=12)
        ax.grid(True, which="major", alpha=0.35)
        ax.grid(True, which="minor", alpha=0.12)
        ax.tick_params(labelsize=9)
        ax.legend(fontsize=9, loc="best", framealpha=0.9)
        fig.text(0.995, 0.005, "point labels: QP", ha="right", va="bottom", fontsize=7, color="0.45")
        fig.tight_layout()
        fig.savefig(path, dpi=150)
    finally:
        plt.close(fig)


def _middle(ps: Sequence[OperatingPoint]) -> OperatingPoint:
    qps = sorted(ps, key=lambda p: p.qp)
    return qps[(len(qps) - 1) // 2]


def _plot_times(path: Path, curves: Mapping[str, Sequence[OperatingPoint]], anchor: str, dataset: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [n for n in _ordered(curves, anchor) if any(p.times for p in curves[n])]
    mids = {n: _middle([p for p in curves[n] if p.times] or curves[n]) for n in names}
    stages = _time_keys(list(mids.values()))
    fig, ax = plt.subplots(figsize=(8.0, 4.2), dpi=150)
    try:
        n = len(names)
        width = 0.8 / max(n, 1)
        for i, name in enumerate(names):
            p = mids[name]
            ms = [1000.0 * p.times.get(s, float("nan")) for s in stages]
            xs = [j - 0.4 + width * (i + 0.5) for j in range(len(stages))]
            ax.bar(xs, ms, width=width * 0.95, color=_style(_ordered(curves, anchor).index(name))["color"],
                   label=f"{name} (QP {p.qp})", zorder=3)
        ax.set_xticks(range(len(stages)))
        ax.set_xticklabels(stages, fontsize=10)
        ax.set_ylabel("mean time per input (ms)", fontsize=11)
        ax.set_title(f"{dataset} — stage times at the middle QP of each curve", fontsize=12)
        ax.grid(True, axis="y", alpha=0.35, zorder=0)
        ax.tick_params(labelsize=9)
        ax.legend(fontsize=9)
        fig.tight_layout()
        fig.savefig(path, dpi=150)
    finally:
        plt.close(fig)


# --------------------------------------------------------------------------------------------------------------------
# markdown


def _flatten(obj: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(obj, Mapping):
        out: dict[str, Any] = {}
        for k, v in obj.items():
            out.update(_flatten(v, f"{prefix}{k}."))
        return out
    return {prefix[:-1].lower(): obj}


#: Manifest entries shown in report.md: label, then the (flattened, lower-case, dotted) keys tried, first match wins.
_MANIFEST_FIELDS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("fcm", ("fcm_version", "fcm.version", "versions.fcm", "packages.fcm", "fcm", "version")),
    ("git revision", ("git_revision", "git.revision", "git_rev", "git.rev", "git.commit", "git_commit", "commit",
                      "revision", "git")),
    ("git dirty", ("git_dirty", "git.dirty", "dirty")),
    ("python", ("python", "python_version", "versions.python", "packages.python", "python.version")),
    ("torch", ("torch", "torch_version", "versions.torch", "packages.torch", "torch.version")),
    ("libavcodec", ("packages.ffmpeg_libavcodec", "versions.ffmpeg_libavcodec", "ffmpeg_libavcodec", "libavcodec")),
    ("CPU", ("cpu", "cpu_model", "processor", "platform.processor", "machine.cpu", "host.cpu")),
    ("CPU count", ("cpu_count",)),
    ("GPU", ("gpu", "cuda_device", "device")),
    ("platform", ("platform", "platform.system", "os")),
    ("jobs", ("jobs",)),
    ("started", ("started",)),
    ("finished", ("finished",)),
)


def _manifest_lines(manifest: Mapping[str, Any]) -> list[str]:
    flat = _flatten(manifest)
    lines = []
    for label, keys in _MANIFEST_FIELDS:
        for k in keys:
            v = flat.get(k)
            if v is not None and v != "":
                lines.append(f"- {label}: `{v}`")
                break
    return lines


def _inputs_text(points: Sequence[OperatingPoint]) -> str:
    ns = sorted({p.num_inputs for p in points})
    return f"{ns[0]}" if len(ns) == 1 else f"{ns[0]}–{ns[-1]} (varies by point)"


def _write_md(path: Path, *, title: str, dataset: str, metric_name: str, anchor: str,
              curves: Mapping[str, Sequence[OperatingPoint]], results: Sequence[BDResult],
              reference: Mapping[str, float] | None, manifest: Mapping[str, Any] | None,
              files: Mapping[str, Path | None]) -> None:
    points = [p for ps in curves.values() for p in ps]
    lines = [f"# {title or f'Rate–accuracy report: {dataset}'}", ""]
    lines += [
        f"- Dataset: `{dataset}`",
        f"- Metric: `{metric_name}` (%, higher is better)",
        f"- Inputs per operating point: {_inputs_text(points)}",
        "- Rate: bpp = all bits sent / all original input pixels (feature: whole fcm bitstreams, header and side "
        "information included; remote: whole coded image streams)",
        f"- Curves: {', '.join(f'`{c}`' for c in _ordered(curves, anchor))}; anchor: `{anchor}`",
    ]
    if reference:
        refs = ", ".join(f"{k} = {_num(float(v), '.2f')}" for k, v in reference.items())
        lines.append(f"- Reference (uncompressed inference): {refs}")
    lines += ["", "## BD metrics", "", _bd_table(results, anchor, metric_name), ""]

    lines += ["## Rate–accuracy", ""]
    rd = files["rd_plot"]
    lines += [f"![{metric_name} vs bpp]({rd.name})", ""] if rd is not None else []
    if reference and metric_name in reference:
        lines += [f"Dashed line: uncompressed inference, {metric_name} = {_num(float(reference[metric_name]), '.2f')}.",
                  ""]

    lines += ["## Operating points", ""]
    for name in _ordered(curves, anchor):
        ps = curves[name]
        lines += [f"### `{name}`{' (anchor)' if name == anchor else ''}", "",
                  f"| QP | bpp | kbits | {metric_name} |", "|--:|--:|--:|--:|"]
        for p in ps:
            lines.append(f"| {p.qp} | {_num(p.bpp, '.4f')} | {_num(p.bits / 1000.0, '.1f')} | "
                         f"{_num(float(p.metric), '.2f')} |")
        lines.append("")
    lines.append(f"All columns, other metrics and stage times: [{files['summary_csv'].name}]"
                 f"({files['summary_csv'].name}); machine-readable: [{files['report_json'].name}]"
                 f"({files['report_json'].name}).")
    lines.append("")
    times = files.get("times_plot")
    if times is not None:
        lines += ["## Stage times", "", f"![stage times]({times.name})", ""]

    if manifest:
        lines += ["## Environment", ""]
        lines += _manifest_lines(manifest) or ["- (manifest has none of the usual fields)"]
        lines += ["", f"The full manifest is in [{files['report_json'].name}]({files['report_json'].name}).", ""]
    path.write_text("\n".join(lines), encoding="utf-8")


# --------------------------------------------------------------------------------------------------------------------
# entry point


def write_report(
    points: Sequence[OperatingPoint],
    out_dir: Path | str,
    anchor: str | None = None,
    reference: dict[str, float] | None = None,
    title: str = "",
    manifest: dict | None = None,
) -> ReportFiles:
    """Write ``summary.csv``, ``report.json``, ``report.md``, ``rd_<metric>.png`` (and ``times.png`` when the points
    carry stage times) into ``out_dir`` (created if needed); return their paths.

    Args:
        points: the operating points of one sweep; they must share one ``dataset`` and one ``metric_name``.
        out_dir: output folder.
        anchor: curve name ``"pipeline/codec"`` every other curve is compared with (BD table); default: the first
            curve (in order of first appearance) whose pipeline is ``"remote"``, else the first curve.
        reference: metrics of uncompressed inference, e.g. ``{"top1": 80.1}``; the primary metric's value is drawn as a
            dashed line, all of them are listed in ``report.md``.
        title: report title (default: derived from the dataset).
        manifest: run environment (versions, git revision, machine) stored in ``report.json`` and summarised in
            ``report.md``.

    Raises:
        ConfigError: no points, points of different datasets or metrics, a point with no pixels, or an unknown anchor.
    """
    dataset, metric_name = _validate(points)
    curves = _curves(points)
    anchor = _resolve_anchor(curves, anchor)
    results = _bd(curves, anchor)
    if reference is not None and not isinstance(reference, Mapping):
        raise ConfigError(f"reference must be a dict of metric name to value, got {type(reference).__name__}")

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    safe_metric = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in metric_name)
    files: dict[str, Path | None] = {
        "summary_csv": out / "summary.csv",
        "report_json": out / "report.json",
        "report_md": out / "report.md",
        "rd_plot": out / f"rd_{safe_metric}.png",
        "times_plot": out / "times.png" if any(p.times for p in points) else None,
    }

    _write_csv(files["summary_csv"], curves, metric_name)  # type: ignore[arg-type]

    ordered_points = [p for name in _ordered(curves, anchor) for p in curves[name]]
    doc = {
        "title": title,
        "dataset": dataset,
        "metric": metric_name,
        "anchor": anchor,
        "reference": reference,
        "points": [p.to_dict() for p in ordered_points],
        "bd": [{"anchor": r.anchor, "test": r.test, "bd_rate": r.bd_rate, "bd_accuracy": r.bd_accuracy,
                "note": r.note} for r in results],
        "manifest": manifest,
    }
    files["report_json"].write_text(  # type: ignore[union-attr]
        json.dumps(_json_safe(doc), indent=2, allow_nan=False, ensure_ascii=False, default=str) + "\n", encoding="utf-8"
    )

    _plot_rd(files["rd_plot"], curves, anchor, dataset, metric_name, reference, title)  # type: ignore[arg-type]
    if files["times_plot"] is not None:
        _plot_times(files["times_plot"], curves, anchor, dataset)

    _write_md(files["report_md"], title=title, dataset=dataset, metric_name=metric_name,  # type: ignore[arg-type]
              anchor=anchor, curves=curves, results=results, reference=reference, manifest=manifest, files=files)

    return ReportFiles(out_dir=out, **files)  # type: ignore[arg-type]
