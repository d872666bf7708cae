"""Rate–accuracy reports of a sweep: CSV summary, strict JSON, a markdown report and plots.

:func:`write_report` takes the :class:`~fcm.eval.points.OperatingPoint` s of one sweep, analyses them
(:func:`fcm.eval.curves.analyse`: curves on Pareto fronts, BD against the anchor, overlaps, bootstrap intervals) and
writes into a folder:

* ``summary.csv`` — one row per operating point, sorted by curve name then rate, in the column order of the MPEG-FCM
  CTTC result templates: ``dataset, pipeline, codec, qp, num_inputs, bits, pixels, bpp, kbits, <metric_name>``, the
  metric's interval (``<metric>_ci_lo``, ``<metric>_ci_hi``, empty without bootstrap), the other metrics (sorted by
  name), the edge cost (``edge_macs``, ``edge_params``, ``edge_time_s``), then the mean per-input stage times
  ``time_<stage>_s`` (:data:`~fcm.eval.plots.STAGES` order, any other stage after them, sorted).
* ``report.json`` — ``{"title", "dataset", "metric", "anchor", "reference", "bootstrap", "points", "bd", "skipped",
  "manifest"}``; strict JSON (non-finite floats are written as ``null``). :func:`load_points` reads its points back.
* ``report.md`` — a human report: the BD table with intervals, the overlaps, the operating points with intervals, the
  edge cost of every point, the plots, skipped inputs, the environment.
* ``rd_<metric>.png`` (accuracy vs bpp with error bars), ``edge_cost.png`` (accuracy vs edge time) and ``times.png``
  (stage times at the middle QP) — the last two when the points carry times.

BD values come from :func:`fcm.eval.bd.compare` (pchip); a pair of curves that cannot be compared is reported as
``n/a — <reason>`` rather than failing the report. Plots are drawn by :mod:`fcm.eval.plots`, which imports matplotlib
only when called.

Over 500 lines: one report in four forms (CSV, JSON, markdown, plots through :mod:`fcm.eval.plots`) written from
one analysis, so the forms cannot disagree; most of the length is the markdown's tables and their notes.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fcm.errors import ConfigError
from fcm.eval.bd import BDResult, Interval
from fcm.eval.curves import BD_METHOD, Analysis, analyse, analyse_measures
from fcm.eval.plots import STAGES, plot_edge_cost, plot_rd, plot_times, time_keys
from fcm.eval.points import EDGE_STAGES, OperatingPoint

__all__ = [
    "STAGES",
    "ReportFiles",
    "bd_results",
    "format_bd_table",
    "load_points",
    "write_report",
]


@dataclass(frozen=True)
class ReportFiles:
    """Paths :func:`write_report` wrote (``times_plot`` / ``edge_plot`` are ``None`` when no point carries stage
    times) and the analysis they show."""

    out_dir: Path
    summary_csv: Path
    report_json: Path
    report_md: Path
    rd_plot: Path
    times_plot: Path | None = None
    edge_plot: Path | None = None
    analysis: Analysis | None = None

    @property
    def files(self) -> tuple[Path, ...]:
        """Every file written."""
        out = (self.summary_csv, self.report_json, self.report_md, self.rd_plot)
        return out + tuple(p for p in (self.times_plot, self.edge_plot) if p is not None)

    def paths(self) -> dict[str, str]:
        """Name → path of every file written (for a command's JSON answer)."""
        names = ("summary_csv", "report_json", "report_md", "rd_plot", "times_plot", "edge_plot")
        return {n: str(getattr(self, n)) for n in names if getattr(self, n) is not None}


def bd_results(
    points: Sequence[OperatingPoint], anchor: str | None = None, *, bootstrap: int = 1000, seed: int = 0
) -> list[BDResult]:
    """BD-rate (over bpp) and BD-accuracy of every curve against ``anchor`` (default: as in :func:`write_report`),
    with bootstrap intervals when ``bootstrap > 0`` resamples are asked for and possible.

    Never raises for curves that cannot be compared: their :class:`BDResult` says why.
    """
    return analyse(points, anchor, resamples=bootstrap, seed=seed).results


# --------------------------------------------------------------------------------------------------------------------
# formatting helpers


def _num(x: float | None, fmt: str) -> str:
    """Format a number; ``nan`` / ``inf`` as text, ``None`` as the empty string."""
    if x is None:
        return ""
    if isinstance(x, float) and not math.isfinite(x):
        return str(x)
    return format(x, fmt)


def _md_cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _ci_text(ci: Interval | None, fmt: str) -> str:
    return "" if ci is None else f" [{ci.lo:{fmt}}, {ci.hi:{fmt}}]"


def _bd_cells(r: BDResult) -> tuple[str, str]:
    """Table cells: signed values with their interval (``*``: the interval crosses zero), or ``n/a — <reason>``."""

    def cell(value: float | None, ci: Interval | None, error: str) -> str:
        if value is None:
            return f"n/a — {error}"
        flag = " *" if ci is not None and ci.crosses_zero else ""
        return f"{value:+.2f}{_ci_text(ci, '+.2f')}{flag}"

    rate = cell(r.bd_rate, r.rate_ci, r.rate_error)
    acc = cell(r.bd_accuracy, r.accuracy_ci, r.accuracy_error)
    if r.bd_rate is None and r.bd_accuracy is None and r.rate_error == r.accuracy_error:
        acc = "n/a (same reason)"  # one reason for both: say it once
    return rate, acc


def _bd_table(analysis: Analysis, unit: str = "pp") -> str:
    """The BD table of ``analysis``; ``unit`` of the BD-accuracy column (percentage points, or dB for smooth
    measures)."""
    anchor, metric = analysis.anchor, analysis.metric_name
    lines = [f"BD metrics against the anchor `{anchor}` (rate: bpp; accuracy: {metric}; {BD_METHOD} interpolation)", ""]
    if not analysis.results:
        lines.append(f"_Only one curve (`{anchor}`): nothing to compare._")
        return "\n".join(lines)
    ci = analysis.resamples > 0
    interval = " [95 % CI]" if ci else ""
    lines += [f"| Test curve | BD-rate (%) vs `{anchor}`{interval} | BD-{metric} ({unit}){interval} |", "|:--|--:|--:|"]
    for r in analysis.results:
        rate, acc = _bd_cells(r)
        lines.append(f"| `{r.test}` | {_md_cell(rate)} | {_md_cell(acc)} |")
    notes = [f"- `{r.test}`: {n}" for r in analysis.results for n in r.notes]
    if notes:
        lines += ["", *notes]
    lines.append("")
    if ci:
        lines.append(
            f"Intervals: {analysis.resamples} bootstrap resamples of the inputs (seed {analysis.seed}), both "
            "curves rebuilt on each; `*` marks an interval that crosses zero (the sign is not established)."
        )
    else:
        lines.append(f"No confidence intervals: {analysis.ci_note}.")
    lines.append(
        f"BD-rate < 0: the test curve needs fewer bits than `{anchor}` for the same {metric}. "
        f"BD-{metric} > 0: the test curve is more accurate at the same bpp."
    )
    return "\n".join(lines)


def format_bd_table(
    points: Sequence[OperatingPoint] | Analysis, anchor: str | None = None, *, bootstrap: int = 1000, seed: int = 0
) -> str:
    """Markdown BD table of every curve against the anchor (default: as in :func:`write_report`): the one report.md
    shows for the same :class:`Analysis` (given points, it is analysed with :func:`write_report`'s defaults).

    One row per test curve: BD-rate in percent with its sign (negative = fewer bits) and BD-accuracy in percentage
    points (positive = more accurate), each with its interval when there is one; a metric that could not be computed
    reads ``n/a — <reason>``. A caption line naming the anchor comes first and notes on intervals and signs last.
    """
    analysis = points if isinstance(points, Analysis) else analyse(points, anchor, resamples=bootstrap, seed=seed)
    return _bd_table(analysis)


def _overlap_lines(analysis: Analysis) -> list[str]:
    metric = analysis.metric_name
    rows = []
    for r in analysis.results:
        for label, ov in (("BD-rate", r.accuracy_overlap), (f"BD-{metric}", r.rate_overlap)):
            if ov is None:
                continue
            conv = (lambda v: f"{v:.2f}") if ov.axis == "accuracy" else (lambda v: f"{10**v:.4g}")
            lo, hi = ov.span
            span = f"[{conv(lo)}, {conv(hi)}]" if lo < hi else "none"
            axis = metric if ov.axis == "accuracy" else "bpp"
            rows.append(
                f"| `{r.test}` | {label} | {axis} | [{conv(ov.anchor[0])}, {conv(ov.anchor[1])}] | "
                f"[{conv(ov.test[0])}, {conv(ov.test[1])}] | {span} | {100 * ov.fraction_of_anchor:.0f} % / "
                f"{100 * ov.fraction_of_test:.0f} % |"
            )
    if not rows:
        return []
    return [
        "## Overlaps",
        "",
        f"The range each BD metric averages over, on the Pareto fronts; a note above warns when it covers less "
        f"than {100 * analysis.min_overlap:.0f} % of either curve's range.",
        "",
        f"| Test curve | metric | axis | `{analysis.anchor}` range | test range | overlap | of anchor / of test |",
        "|:--|:--|:--|--:|--:|--:|--:|",
        *rows,
        "",
    ]


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
    accepted). ``null`` metrics or times (non-finite when written) come back as ``nan``; derived values (``bpp``,
    ``edge_seconds``, ``metric_ci``) are dropped, and the per-input samples are not in a report, so the points carry
    none."""
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
                    edge_macs=None if d.get("edge_macs") is None else float(d["edge_macs"]),
                    edge_params=None if d.get("edge_params") is None else int(d["edge_params"]),
                )
            )
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise ConfigError(
                f"{path}: point {i} is not a valid operating point ({type(exc).__name__}: {exc})"
            ) from None
    return points


def _ci_dict(ci: Interval | None) -> dict[str, Any] | None:
    return (
        None
        if ci is None
        else {"lo": ci.lo, "hi": ci.hi, "level": ci.level, "resamples": ci.resamples, "crosses_zero": ci.crosses_zero}
    )


def _overlap_dict(r: BDResult) -> dict[str, Any]:
    out = {}
    for key, ov in (("accuracy_overlap", r.accuracy_overlap), ("log10_rate_overlap", r.rate_overlap)):
        if ov is not None:
            out[key] = {
                "anchor": list(ov.anchor),
                "test": list(ov.test),
                "overlap": list(ov.span),
                "fraction_of_anchor": ov.fraction_of_anchor,
                "fraction_of_test": ov.fraction_of_test,
            }
    return out


def _bd_dict(r: BDResult) -> dict[str, Any]:
    return {
        "anchor": r.anchor,
        "test": r.test,
        "bd_rate": r.bd_rate,
        "bd_rate_ci": _ci_dict(r.rate_ci),
        "bd_accuracy": r.bd_accuracy,
        "bd_accuracy_ci": _ci_dict(r.accuracy_ci),
        "rate_error": r.rate_error,
        "accuracy_error": r.accuracy_error,
        "notes": list(r.notes),
        "note": r.note,
        **_overlap_dict(r),
    }


# --------------------------------------------------------------------------------------------------------------------
# CSV


def _write_csv(path: Path, analysis: Analysis) -> None:
    metric = analysis.metric_name
    points = [p for name in sorted(analysis.curves) for p in analysis.curves[name]]
    other = sorted({k for p in points for k in p.metrics} - {metric})
    tkeys = time_keys(points)
    header = [
        "dataset",
        "pipeline",
        "codec",
        "qp",
        "num_inputs",
        "bits",
        "pixels",
        "bpp",
        "kbits",
        metric,
        f"{metric}_ci_lo",
        f"{metric}_ci_hi",
    ]
    header += other + ["edge_macs", "edge_params", "edge_time_s"] + [f"time_{k}_s" for k in tkeys]
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(header)
        for p in points:
            ci = analysis.interval(p)
            row = [
                p.dataset,
                p.pipeline,
                p.codec,
                p.qp,
                p.num_inputs,
                p.bits,
                p.pixels,
                _num(p.bpp, ".6f"),
                _num(p.bits / 1000.0, ".3f"),
                _num(float(p.metric), ".8g"),
                _num(ci.lo if ci else None, ".8g"),
                _num(ci.hi if ci else None, ".8g"),
            ]
            row += [_num(p.metrics.get(k), ".8g") for k in other]
            row += [
                _num(p.edge_macs, ".0f"),
                _num(p.edge_params, "d"),
                _num(p.edge_seconds if p.times else None, ".6g"),
            ]
            row += [_num(p.times.get(k), ".6g") for k in tkeys]
            w.writerow(row)


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
    (
        "git revision",
        ("git_revision", "git.revision", "git_rev", "git.rev", "git.commit", "git_commit", "commit", "revision", "git"),
    ),
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


def _millions(x: float | None, fmt: str) -> str:
    return "not measured" if x is None else f"{x / 1e6:{fmt}} M"


def _inputs_text(points: Sequence[OperatingPoint]) -> str:
    ns = sorted({p.num_inputs for p in points})
    return f"{ns[0]}" if len(ns) == 1 else f"{ns[0]}–{ns[-1]} (varies by point)"


def _edge_lines(analysis: Analysis) -> list[str]:
    points = analysis.points
    if not any(p.times for p in points):
        return []
    metric = analysis.metric_name
    lines = [
        "## Edge cost",
        "",
        f"What the edge pays per input at each operating point: the computation before coding (feature: the front "
        f"half's multiply–accumulates and parameters, counted by torch's FLOP counter; remote: none), the measured "
        f"edge time ({' + '.join(EDGE_STAGES)}; remote: encode alone) and the bytes sent.",
        "",
        f"| curve | QP | bytes/input | edge time (ms) | edge MACs | edge params | {metric} |",
        "|:--|--:|--:|--:|--:|--:|--:|",
    ]
    for name, ps in analysis.curves.items():
        for p in ps:
            lines.append(
                f"| `{name}` | {p.qp} | {p.bytes_per_input:.0f} | {1000 * p.edge_seconds:.1f} | "
                f"{_millions(p.edge_macs, '.1f')} | {_millions(p.edge_params, '.3f')} | {float(p.metric):.2f} |"
            )
    lines.append("")
    return lines


def _write_md(
    path: Path,
    *,
    title: str,
    analysis: Analysis,
    reference: Mapping[str, float] | None,
    manifest: Mapping[str, Any] | None,
    skipped: Sequence[Mapping[str, str]],
    pipelines: Mapping[str, str],
    files: ReportFiles,
    smooth: Mapping[str, tuple[str, Analysis]] | None = None,
) -> None:
    dataset, metric, anchor = analysis.dataset, analysis.metric_name, analysis.anchor
    points = analysis.points
    lines = [f"# {title or f'Rate–accuracy report: {dataset}'}", ""]
    lines += [
        f"- Dataset: `{dataset}`",
        f"- Metric: `{metric}` (%, higher is better)",
        f"- Inputs per operating point: {_inputs_text(points)}",
        "- Rate: bpp = all bits sent / all original input pixels (feature: whole fcm bitstreams, header and side "
        "information included; remote: whole coded image streams)",
        f"- Curves: {', '.join(f'`{c}`' for c in analysis.curves)}; anchor: `{anchor}`",
    ]
    for label, description in pipelines.items():
        lines.append(f"- `{label}`: {description}")
    if reference:
        refs = ", ".join(f"{k} = {_num(float(v), '.2f')}" for k, v in reference.items())
        lines.append(f"- Reference (uncompressed inference): {refs}")
    lines += ["", "## BD metrics", "", _bd_table(analysis), ""]
    lines += _overlap_lines(analysis)
    if smooth:
        lines += [
            "## BD on smooth measures",
            "",
            f"{metric} thresholds every input to right or wrong, so with few inputs it cannot rank close curves; these "
            "measures vary smoothly with the coding error (each curve's Pareto front on the measure):",
            "",
        ]
        for name, (description, a) in smooth.items():
            lines += [f"### `{name}`", "", f"{description}.", "", _bd_table(a, unit="dB"), ""]

    lines += ["## Rate–accuracy", "", f"![{metric} vs bpp]({files.rd_plot.name})", ""]
    if reference and metric in reference:
        lines += [f"Dashed line: uncompressed inference, {metric} = {_num(float(reference[metric]), '.2f')}.", ""]

    lines += ["## Operating points", ""]
    ci_head = " [95 % CI]" if analysis.point_ci else ""
    for name, ps in analysis.curves.items():
        lines += [
            f"### `{name}`{' (anchor)' if name == anchor else ''}",
            "",
            f"| QP | bpp | kbits | {metric}{ci_head} |",
            "|--:|--:|--:|--:|",
        ]
        for p in ps:
            lines.append(
                f"| {p.qp} | {_num(p.bpp, '.4f')} | {_num(p.bits / 1000.0, '.1f')} | "
                f"{_num(float(p.metric), '.2f')}{_ci_text(analysis.interval(p), '.1f')} |"
            )
        lines.append("")
    lines.append(
        f"All columns, other metrics and stage times: [{files.summary_csv.name}]"
        f"({files.summary_csv.name}); machine-readable: [{files.report_json.name}]"
        f"({files.report_json.name})."
    )
    lines.append("")
    lines += _edge_lines(analysis)
    if files.edge_plot is not None:
        lines += [f"![{metric} vs edge time]({files.edge_plot.name})", ""]
    if files.times_plot is not None:
        lines += ["## Stage times", "", f"![stage times]({files.times_plot.name})", ""]
    if skipped:
        lines += ["## Skipped inputs", "", f"{len(skipped)} input(s) could not be read and were left out:", ""]
        lines += [f"- `{s.get('input', '?')}`: {_md_cell(str(s.get('reason', '')))}" for s in skipped] + [""]
    if manifest:
        lines += ["## Environment", ""]
        lines += _manifest_lines(manifest) or ["- (manifest has none of the usual fields)"]
        lines += ["", f"The full manifest is in [{files.report_json.name}]({files.report_json.name}).", ""]
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
    *,
    bootstrap: int = 1000,
    seed: int = 0,
    min_overlap: float = 0.5,
    skipped: Sequence[Mapping[str, str]] = (),
    pipelines: Mapping[str, str] | None = None,
    measures: Mapping[str, str] | None = None,
) -> ReportFiles:
    """Analyse ``points`` and write ``summary.csv``, ``report.json``, ``report.md``, ``rd_<metric>.png`` (and
    ``edge_cost.png`` / ``times.png`` when the points carry stage times) into ``out_dir``; return their paths.

    Args:
        points: the operating points of one sweep; they must share one ``dataset`` and one ``metric_name``.
        out_dir: output folder (created if needed).
        anchor: curve name ``"pipeline/codec"`` every other curve is compared with; default: the first ``remote``
            curve (in order of first appearance), else the first curve.
        reference: metrics of uncompressed inference, e.g. ``{"top1": 80.1}``; the primary metric's value is drawn as a
            dashed line, all of them are listed in ``report.md``.
        title: report title (default: derived from the dataset).
        manifest: run environment (versions, git revision, machine) stored in ``report.json`` and summarised.
        bootstrap, seed: resamples of the inputs for confidence intervals (0: none) and their seed.
        min_overlap: warn when a BD metric's overlap covers less than this fraction of either curve's range.
        skipped: inputs left out of the sweep (``{"input", "reason"}``), listed in the report.
        pipelines: what each pipeline (by label) sends, one line each in the report's header.
        measures: smooth measures (name → description) to rank curves on besides the primary metric, e.g. ``kl_db``
            and ``feature_psnr`` (:class:`fcm.eval.evaluators.SmoothMeasure`): a BD table each, with intervals.

    Raises:
        ConfigError: no points, points of different datasets or metrics, a point with no pixels, or an unknown anchor.
    """
    analysis = analyse(points, anchor, resamples=bootstrap, seed=seed, min_overlap=min_overlap)
    measures = dict(measures or {})
    smooth = analyse_measures(
        points, analysis.anchor, list(measures), resamples=bootstrap, seed=seed, min_overlap=min_overlap
    )
    if reference is not None and not isinstance(reference, Mapping):
        raise ConfigError(f"reference must be a dict of metric name to value, got {type(reference).__name__}")

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    safe_metric = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in analysis.metric_name)
    timed = any(p.times for p in points)
    files = ReportFiles(
        out_dir=out,
        summary_csv=out / "summary.csv",
        report_json=out / "report.json",
        report_md=out / "report.md",
        rd_plot=out / f"rd_{safe_metric}.png",
        times_plot=out / "times.png" if timed else None,
        edge_plot=out / "edge_cost.png" if timed else None,
        analysis=analysis,
    )
    _write_csv(files.summary_csv, analysis)
    doc = {
        "title": title,
        "dataset": analysis.dataset,
        "metric": analysis.metric_name,
        "anchor": analysis.anchor,
        "reference": reference,
        "bootstrap": {"resamples": analysis.resamples, "seed": analysis.seed, "level": 0.95, "note": analysis.ci_note},
        "points": [{**p.to_dict(), "metric_ci": _ci_dict(analysis.interval(p))} for p in analysis.points],
        "bd": [_bd_dict(r) for r in analysis.results],
        "bd_smooth": {
            name: {
                "description": measures[name],
                "anchor": a.anchor,
                "bootstrap_note": a.ci_note,
                "bd": [_bd_dict(r) for r in a.results],
            }
            for name, a in smooth.items()
        },
        "skipped": [dict(s) for s in skipped],
        "manifest": manifest,
    }
    files.report_json.write_text(
        json.dumps(_json_safe(doc), indent=2, allow_nan=False, ensure_ascii=False, default=str) + "\n", encoding="utf-8"
    )
    plot_rd(files.rd_plot, analysis, reference, title)
    if files.times_plot is not None:
        plot_times(files.times_plot, analysis)
    if files.edge_plot is not None:
        plot_edge_cost(files.edge_plot, analysis, reference)
    _write_md(
        files.report_md,
        title=title,
        analysis=analysis,
        reference=reference,
        manifest=manifest,
        skipped=skipped,
        pipelines=pipelines or {},
        files=files,
        smooth={name: (measures[name], a) for name, a in smooth.items()},
    )
    return files
