"""Rerun what the README quotes and rewrite its figures (and the plots in docs/img) from the results.

Every number the README quotes from a sweep stands between two markers, ``<!--fig:SECTION.KEY-->VALUE<!--/fig-->``
(HTML comments: invisible once rendered). This script reruns each section's command into ``runs/readme/SECTION``
(in the repository, wherever it is started from), takes the values from the results it wrote (``report.json``,
``results.jsonl``, ``manifest.json``), stores them in ``docs/figures.json`` with the command and the machine that
measured them, copies the plots to ``docs/img`` and rewrites the marked values in ``README.md``; it prints the
README diff. A figure therefore cannot go stale without this script saying so.

    python tools/readme_figures.py                   # rerun every section (about 10 minutes on 2 cores)
    python tools/readme_figures.py quickstart        # rerun one section
    python tools/readme_figures.py --from-runs       # no rerun: take the values from runs/readme/* as they are
    python tools/readme_figures.py --check           # no rerun: exit 1 if README.md disagrees with docs/figures.json

``--check`` is what the test suite runs (tests/test_readme.py); a slow test reruns the main job and compares its
values with docs/figures.json.
"""

from __future__ import annotations

import argparse
import difflib
import functools
import json
import math
import os
import platform
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
FIGURES = ROOT / "docs" / "figures.json"
#: where the sections' results go, as the README and docs/figures.json name it (relative to the repository)
RUNS = Path("runs") / "readme"
MARKER = re.compile(r"<!--fig:([a-z0-9_]+)\.([a-z0-9_]+)-->(.*?)<!--/fig-->", re.S)
MINUS = "−"  # the README writes negative numbers with a real minus sign


# ---------------------------------------------------------------------------------------------------- formatting


def signed(x: float, digits: int = 1) -> str:
    """``+1.2`` / ``−1.2`` (typographic minus)."""
    text = f"{x:+.{digits}f}"
    return text.replace("-", MINUS)


def plain(x: float, digits: int = 1) -> str:
    return f"{x:.{digits}f}".replace("-", MINUS)


def interval(ci: dict[str, Any] | None, digits: int = 1, unit: str = "") -> str:
    if not ci:
        return "n/a"
    return f"[{signed(ci['lo'], digits)}{unit}, {signed(ci['hi'], digits)}{unit}]"


def share(fraction: float) -> str:
    if not math.isfinite(fraction):
        return "n/a"
    return "all" if fraction >= 0.9995 else f"{100 * fraction:.0f} %"


def span(lo: float, hi: float, digits: int = 1) -> str:
    return f"{plain(lo, digits)}–{plain(hi, digits)}"


# ---------------------------------------------------------------------------------------------------- reading results


def _report(folder: Path) -> dict[str, Any]:
    return json.loads((folder / "report.json").read_text())


def _bd(report: dict[str, Any], test: str, anchor: str | None = None, measure: str | None = None) -> dict[str, Any]:
    rows = report["bd"] if measure is None else report["bd_smooth"][measure]["bd"]
    for row in rows:
        if row["test"] == test and (anchor is None or row["anchor"] == anchor):
            return row
    raise KeyError(f"no BD row for {test} against {anchor or 'the anchor'} ({measure or report['metric']})")


def _points(report: dict[str, Any], pipeline: str, codec: str = "x265") -> dict[int, dict[str, Any]]:
    return {p["qp"]: p for p in report["points"] if (p["pipeline"], p["codec"]) == (pipeline, codec)}


def _kb(p: dict[str, Any]) -> float:
    """Mean kilobytes per input of a point."""
    return p["bits"] / p["num_inputs"] / 8 / 1000


def _digits(x: float) -> int:
    """Decimals worth printing: none for a figure of three digits and more."""
    return 0 if abs(x) >= 100 else 1


def _bd_values(row: dict[str, Any], prefix: str = "") -> dict[str, str]:
    """BD-rate, BD-accuracy and their intervals of one BD row (``n/a`` where not defined)."""
    out = {
        f"{prefix}bd_rate": "n/a" if row["bd_rate"] is None else signed(row["bd_rate"], _digits(row["bd_rate"])) + " %",
        f"{prefix}bd_rate_ci": interval(row["bd_rate_ci"]),
        f"{prefix}bd_accuracy": "n/a" if row["bd_accuracy"] is None else signed(row["bd_accuracy"]),
        f"{prefix}bd_accuracy_ci": interval(row["bd_accuracy_ci"]),
    }
    return out


# ---------------------------------------------------------------------------------------------------- sections


def _num_records(folder: Path) -> int:
    """Records in the folder (every run's, so a resumed sweep counts what it kept)."""
    with open(folder / "results.jsonl", encoding="utf-8") as f:
        return sum(1 for line in f if line.strip())


def quickstart(folder: Path) -> dict[str, str]:
    report = _report(folder)
    manifest = json.loads((folder / "manifest.json").read_text())
    row = _bd(report, "feature/x265", "remote/x265")
    no_overlap = {"overlap": [math.nan, math.nan], "fraction_of_anchor": math.nan, "fraction_of_test": math.nan}
    acc, rate = row.get("accuracy_overlap", no_overlap), row.get("log10_rate_overlap", no_overlap)
    feature, remote = _points(report, "feature"), _points(report, "remote")
    feature_ms = [1000 * p["edge_seconds"] for p in feature.values()]
    remote_ms = [1000 * p["edge_seconds"] for p in remote.values()]
    any_feature = next(iter(feature.values()))
    return {
        "fewer_bits": "n/a" if row["bd_rate"] is None else plain(-row["bd_rate"]) + " %",
        **_bd_values(row),
        "accuracy_span": span(*acc["overlap"]) + " %",
        "anchor_share": share(acc["fraction_of_anchor"]),
        "test_share": share(acc["fraction_of_test"]),
        "bpp_overlap": span(10 ** rate["overlap"][0], 10 ** rate["overlap"][1], 2),
        "remote_best": f"{max(p['metric'] for p in remote.values()):.0f} %",
        "remote_lowest_qp": str(min(remote)),
        "feature_best": f"{max(p['metric'] for p in feature.values()):.1f} %",
        "records": f"{_num_records(folder):,}",
        "wall_s": f"{manifest['wall_seconds_this_run']:.0f} s",
        "edge_macs": f"{any_feature['edge_macs'] / 1e6:.1f} M",
        "edge_params": f"{any_feature['edge_params'] / 1e6:.3f} M",
        "feature_edge_ms": f"{min(feature_ms):.0f}–{max(feature_ms):.0f} ms",
        "remote_encode_ms": f"{min(remote_ms):.0f}–{max(remote_ms):.0f} ms",
        "remote_kb": span(min(map(_kb, remote.values())), max(map(_kb, remote.values()))) + " kB",
        "feature_kb": span(min(map(_kb, feature.values())), max(map(_kb, feature.values()))) + " kB",
    }


def wrapped(folder: Path, label: str = "wrapped[scaled]") -> dict[str, str]:
    report = _report(folder)
    row = _bd(report, f"{label}/x265", "feature/x265")
    remote = (
        _bd(report, f"{label}/x265", "remote/x265") if any(r["anchor"] == "remote/x265" for r in report["bd"]) else None
    )
    wrapped_points = _points(report, label)
    feature_points = _points(report, "feature")
    kl = _bd(report, f"{label}/x265", "feature/x265", "kl_db")
    out = {
        **_bd_values(row),
        "accuracy_span": span(*row["accuracy_overlap"]["overlap"]) + " %" if row.get("accuracy_overlap") else "n/a",
        "wrapped_best": f"{max(p['metric'] for p in wrapped_points.values()):.1f} %",
        "feature_best": f"{max(p['metric'] for p in feature_points.values()):.1f} %",
        **_bd_values(kl, "kl_"),
    }
    if remote is not None:
        out.update(_bd_values(remote, "remote_"))
    return out


def detection(folder: Path) -> dict[str, str]:
    report = _report(folder)
    row = _bd(report, "feature/x265", "remote/x265")
    feature, remote = _points(report, "feature"), _points(report, "remote")
    ref = report["reference"][report["metric"]]
    # the cheapest point within half a point of uncompressed mAP (higher values are noise of 100 images)
    best_remote_qp = max(q for q, p in remote.items() if p["metric"] >= ref - 0.5)
    best_feature_qp = max(q for q, p in feature.items() if p["metric"] >= ref - 0.5)
    manifest = json.loads((folder / "manifest.json").read_text())
    hi_qp = max(set(remote) & set(feature))
    return {
        **_bd_values(row),
        "uncompressed_map": f"{ref:.1f}",
        "remote_best_map": f"{remote[best_remote_qp]['metric']:.1f}",
        "remote_best_qp": str(best_remote_qp),
        "remote_best_bpp": f"{remote[best_remote_qp]['bpp']:.2f}",
        "feature_best_map": f"{feature[best_feature_qp]['metric']:.1f}",
        "feature_best_qp": str(best_feature_qp),
        "feature_best_bpp": f"{feature[best_feature_qp]['bpp']:.1f}",
        "high_qp": str(hi_qp),
        "remote_high_qp_map": f"{remote[hi_qp]['metric']:.1f}",
        "remote_high_qp_bpp": f"{remote[hi_qp]['bpp']:.2f}",
        "feature_high_qp_map": f"{feature[hi_qp]['metric']:.1f}",
        "feature_high_qp_bpp": f"{feature[hi_qp]['bpp']:.2f}",
        "wall_s": f"{manifest['wall_seconds_this_run']:.0f} s",
    }


def detection_wrapped(folder: Path) -> dict[str, str]:
    """The trained fusion wrapper against remote inference and against plain FPN coding."""
    report = _report(folder)
    label = "wrapped[scaled]"
    wrapped = _points(report, label)
    ref = report["reference"][report["metric"]]
    best = max(wrapped.values(), key=lambda p: p["metric"])
    manifest = json.loads((folder / "manifest.json").read_text())
    # the report compares with its anchor (remote); against plain FPN coding: the same records, another anchor
    from fcm.eval.curves import analyse
    from fcm.eval.run import folder_results

    res = folder_results(folder)
    against_feature = analyse(
        res.points, anchor="feature/x265", resamples=res.config.bootstrap, seed=res.config.bootstrap_seed
    )
    result = next(r for r in against_feature.results if r.test == f"{label}/x265")
    feature_row = {
        "bd_rate": result.bd_rate,
        "bd_rate_ci": None if result.rate_ci is None else {"lo": result.rate_ci.lo, "hi": result.rate_ci.hi},
        "bd_accuracy": result.bd_accuracy,
        "bd_accuracy_ci": None
        if result.accuracy_ci is None
        else {"lo": result.accuracy_ci.lo, "hi": result.accuracy_ci.hi},
    }
    return {
        **_bd_values(_bd(report, f"{label}/x265", "remote/x265"), "remote_"),
        **_bd_values(feature_row, "feature_"),
        "uncompressed_map": f"{ref:.1f}",
        "best_map": f"{best['metric']:.1f}",
        "best_qp": str(best["qp"]),
        "best_bpp": f"{best['bpp']:.3f}",
        "wall_s": f"{manifest['wall_seconds_this_run']:.0f} s",
    }


def _video_points(report: dict[str, Any], curve: str) -> dict[int, dict[str, Any]]:
    return {p["qp"]: p for p in report["points"] if p["curve"] == curve}


def _video_bd(report: dict[str, Any], measure: str) -> dict[str, Any] | None:
    return next((r for r in report["bd"] if r["measure"] == measure and r["test"].startswith("feature/")), None)


def _kbps(x: float) -> str:
    return f"{x / 1000:.1f} Mbit/s" if x >= 1000 else f"{x:.3g} kbit/s" if x < 100 else f"{x:.0f} kbit/s"


def video(folder: Path) -> dict[str, str]:
    report = _report(folder)
    out: dict[str, str] = {}
    for curve, name in (("feature/x265", "feature"), ("remote/x265", "remote")):
        points = _video_points(report, curve)
        for qp in (22, 32, 42):
            p = points[qp]
            out[f"{name}_{qp}_kbps"] = f"{p['kbps']:.3g}" if p["kbps"] < 100 else f"{p['kbps']:.0f}"
            out[f"{name}_{qp}_top1"] = f"{p['metrics']['top1_agreement']:.1f} %"
            out[f"{name}_{qp}_kl_db"] = f"{plain(p['kl_db'])} dB"
    bd = _video_bd(report, "kl_db")
    out["bd_rate_kl_db"] = (
        "n/a" if bd is None or bd["bd_rate_percent"] is None else signed(bd["bd_rate_percent"]) + " %"
    )
    return out


def video_detection(folder: Path) -> dict[str, str]:
    report = _report(folder)
    feature, remote = _video_points(report, "feature/x265"), _video_points(report, "remote/x265")
    f_best = max(feature, key=lambda q: (round(feature[q]["metrics"]["mAP"], 1), q))
    r_best = max(remote, key=lambda q: (round(remote[q]["metrics"]["mAP"], 1), q))
    bd = _video_bd(report, "mAP")
    return {
        "feature_best_map": f"{feature[f_best]['metrics']['mAP']:.1f}",
        "feature_best_rate": _kbps(feature[f_best]["kbps"]),
        "remote_best_map": f"{remote[r_best]['metrics']['mAP']:.1f}",
        "remote_best_rate": _kbps(remote[r_best]["kbps"]),
        "bd_rate": "n/a" if bd is None or bd["bd_rate_percent"] is None else signed(bd["bd_rate_percent"], 0) + " %",
    }


def _seconds(x: float) -> str:
    return f"{x:.3f} s" if x < 1 else f"{x:.2f} s"


def _mb(x: float) -> str:
    return f"{x / 1024:.1f} GB" if x >= 1024 else f"{x:.0f} MB"


def _share(stats: dict[str, Any]) -> str:
    return f"{100 * stats['success_rate']:.0f} %"


def attack(folder: Path) -> dict[str, str]:
    """tools/attack_server.py: the server as it was (``legacy``) and as ``fcm serve`` runs it (``guarded``)."""
    modes = {r["mode"]: r for r in json.loads((folder / "output.json").read_text())["results"]}
    legacy, guarded = modes["legacy"], modes["guarded"]
    counted = guarded["refusals_counted"]
    out: dict[str, str] = {
        "idle": str(guarded["attacker"]["idle"]),
        "slow": str(guarded["attacker"]["slow_header"]),
        "pipelined": str(guarded["attacker"]["pipelined_non_reading"]),
        "max_connections": f"{guarded['attacker']['server_max_connections']:,}",
        "closures": f"{guarded['attacker']['reconnects_after_server_close']:,}",
        "timeouts_counted": f"{counted.get('header_timeout', 0):,.0f}",
        "write_timeouts": f"{counted.get('write_timeout', 0):,.0f}",
        "evicted": f"{counted.get('evicted_idle', 0):,.0f}",
        "largest_tensor": guarded["work_amplification"]["largest_admitted"]["tensor"],
    }
    for name, mode in (("legacy", legacy), ("guarded", guarded)):
        attacked, work = mode["under_attack"], mode["work_amplification"]
        audit, largest = work["audit"], work["largest_admitted"]
        answered = isinstance(audit["status"], int)
        statuses = attacked["decode"]["statuses"]
        out |= {
            f"{name}_decodes": str(attacked["decode"]["requests"]),
            f"{name}_decode_share": _share(attacked["decode"]),
            f"{name}_decode_p99": _seconds(attacked["decode"]["p99_s"]),
            f"{name}_decode_statuses": ", ".join(f"{n} × {s}" for s, n in sorted(statuses.items())),
            f"{name}_healthz": str(attacked["healthz"]["requests"]),
            f"{name}_healthz_share": _share(attacked["healthz"]),
            f"{name}_healthz_p99": _seconds(attacked["healthz"]["p99_s"]),
            f"{name}_unloaded_p99": _seconds(mode["baseline"]["decode"]["p99_s"]),
            f"{name}_audit": (
                f"answered {audit['status']} in {_seconds(audit['seconds'])}" if answered else audit["message"]
            ),
            f"{name}_audit_rss": f"{_mb(audit['rss_before_mb'])} → {_mb(audit['peak_rss_mb'])}",
            f"{name}_largest_s": _seconds(largest["seconds"]),
            f"{name}_largest_peak": _mb(largest["peak_rss_mb"]),
        }
    claimed = re.search(r"about ([0-9.]+) GMAC", guarded["work_amplification"]["audit"]["message"])
    out["audit_gmac"] = f"{float(claimed.group(1)):.0f}" if claimed else "n/a"
    return out


@dataclass(frozen=True)
class Section:
    """One command whose results the README quotes: how to rerun it and what to take from its folder."""

    argv: tuple[str, ...]
    extract: Callable[[Path], dict[str, str]]
    #: plots to copy: file in the results folder → path in the repository
    images: dict[str, str] = field(default_factory=dict)
    #: keys whose values are timings (they vary with the machine's load; the slow test does not compare them)
    timed: tuple[str, ...] = ()
    #: ``argv`` is a Python script of the repository (not an ``fcm`` command) printing one JSON object, which is
    #: kept as ``output.json`` in the results folder
    script: bool = False


SECTIONS: dict[str, Section] = {
    "quickstart": Section(
        ("sweep", "configs/quickstart.yaml", "--jobs", "2"),
        quickstart,
        {"rd_top1_agreement.png": "docs/img/quickstart_rd.png", "edge_cost.png": "docs/img/quickstart_edge.png"},
        ("wall_s", "feature_edge_ms", "remote_encode_ms"),
    ),
    "wrapped": Section(("sweep", "configs/wrapped.yaml", "--jobs", "2"), wrapped),
    "wrapped_photos": Section(("sweep", "configs/wrapped_photos_test.yaml", "--jobs", "2"), wrapped),
    "family_photos": Section(
        ("sweep", "configs/family_photos_test.yaml", "--jobs", "2"), functools.partial(wrapped, label="wrapped[family]")
    ),
    "detection": Section(("sweep", "configs/detection_shapes.yaml", "--jobs", "2"), detection, timed=("wall_s",)),
    "detection_wrapped": Section(
        ("sweep", "configs/detection_shapes_wrapped.yaml", "--jobs", "2"), detection_wrapped, timed=("wall_s",)
    ),
    "detection_test": Section(
        ("sweep", "configs/detection_shapes_test.yaml", "--jobs", "2"), detection_wrapped, timed=("wall_s",)
    ),
    "detection_test_512": Section(
        ("sweep", "configs/detection_shapes_test_512.yaml", "--jobs", "2"), detection_wrapped, timed=("wall_s",)
    ),
    "video": Section(
        ("video-sweep", "configs/video_sweep.yaml", "--jobs", "2"), video, {"rd_kbps.png": "docs/img/video_rd.png"}
    ),
    "video_detection": Section(("video-sweep", "configs/video_detection.yaml", "--jobs", "2"), video_detection),
    "attack": Section(
        ("tools/attack_server.py", "--connections", "200", "--seconds", "20"),
        attack,
        {"output.json": "docs/attack_server.json"},
        timed=(
            "legacy_decode_p99",
            "guarded_decode_p99",
            "legacy_healthz_p99",
            "guarded_healthz_p99",
            "legacy_unloaded_p99",
            "guarded_unloaded_p99",
            "legacy_audit",
            "guarded_audit",
            "legacy_audit_rss",
            "guarded_audit_rss",
            "legacy_largest_s",
            "guarded_largest_s",
            "legacy_largest_peak",
            "guarded_largest_peak",
            "legacy_decodes",
            "guarded_decodes",
            "legacy_healthz",
            "guarded_healthz",
            "closures",
            "timeouts_counted",
            "write_timeouts",
            "evicted",
        ),
        script=True,
    ),
}


# ---------------------------------------------------------------------------------------------------- README


def render(text: str, figures: dict[str, Any], strict: bool = True) -> str:
    """``text`` with every marked value replaced by the one ``figures`` holds; a key it does not hold raises
    KeyError, or with ``strict=False`` keeps its value (a partial run: :func:`stale` still reports it)."""

    def value(m: re.Match[str]) -> str:
        section, key = m.group(1), m.group(2)
        try:
            new = figures["sections"][section]["values"][key]
        except KeyError:
            if not strict:
                return m.group(0)
            raise KeyError(f"README quotes {section}.{key}, which docs/figures.json does not hold") from None
        return f"<!--fig:{section}.{key}-->{new}<!--/fig-->"

    return MARKER.sub(value, text)


def stale(text: str, figures: dict[str, Any]) -> list[str]:
    """``SECTION.KEY: README says X, figures say Y`` for every marked value that differs (or is unknown)."""
    out = []
    for m in MARKER.finditer(text):
        section, key, shown = m.group(1), m.group(2), m.group(3)
        held = figures.get("sections", {}).get(section, {}).get("values", {}).get(key)
        if held is None:
            out.append(f"{section}.{key}: quoted in README.md, missing from docs/figures.json")
        elif held != shown:
            out.append(f"{section}.{key}: README.md says {shown!r}, docs/figures.json {held!r}")
    return out


def quoted_keys(text: str) -> set[str]:
    return {f"{m.group(1)}.{m.group(2)}" for m in MARKER.finditer(text)}


# ---------------------------------------------------------------------------------------------------- running


def _machine() -> dict[str, Any]:
    from fcm.numerics import cpu_name, numerics_record, package_versions

    return {
        "cpu": cpu_name(),
        "cores": os.cpu_count(),
        "platform": platform.platform(),
        **numerics_record(None),
        "packages": package_versions(),
    }


def _measured_on(folder: Path) -> dict[str, Any]:
    """The machine and software a results folder was measured with: its manifest's (image sweeps), else this one."""
    path = folder / "manifest.json"
    if not path.is_file():
        return _machine()
    manifest = json.loads(path.read_text())
    return {
        "cpu": manifest.get("cpu"),
        "cores": manifest.get("cpu_count"),
        "platform": manifest.get("platform"),
        "git_revision": manifest.get("git_revision"),
        **(manifest.get("numerics") or {}),
        "packages": manifest.get("packages"),
    }


def _command(section: Section) -> list[str]:
    return ["python" if section.script else "fcm", *section.argv]


def rerun(name: str, section: Section, fresh: bool) -> Path:
    folder = RUNS / name
    if fresh and (ROOT / folder).exists():
        shutil.rmtree(ROOT / folder)
    if section.script:
        (ROOT / folder).mkdir(parents=True, exist_ok=True)
        argv = [sys.executable, *section.argv]
        print(f"[{name}] {' '.join(_command(section))}", file=sys.stderr, flush=True)
    else:
        argv = [sys.executable, "-m", "fcm.cli", *section.argv, "--output", str(folder), "--no-progress"]
        print(f"[{name}] {' '.join([*_command(section), '--output', str(folder)])}", file=sys.stderr, flush=True)
    t0 = time.perf_counter()
    proc = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"[{name}] failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
    if section.script:
        json.loads(proc.stdout)  # one JSON object, or the run failed
        (ROOT / folder / "output.json").write_text(proc.stdout)
    print(f"[{name}] done in {time.perf_counter() - t0:.0f} s", file=sys.stderr, flush=True)
    return folder


def collect(name: str, section: Section, folder: Path) -> dict[str, Any]:
    values = section.extract(ROOT / folder)
    for source, target in section.images.items():
        shutil.copyfile(ROOT / folder / source, ROOT / target)
    return {
        "command": " ".join(_command(section)),
        "results": str(folder),
        "measured": time.strftime("%Y-%m-%d"),
        "timed": list(section.timed),
        "machine": _measured_on(ROOT / folder),
        "values": values,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("sections", nargs="*", help=f"sections to rerun (default all: {', '.join(SECTIONS)})")
    parser.add_argument("--from-runs", action="store_true", help="take the values from runs/readme/* without rerunning")
    parser.add_argument("--check", action="store_true", help="only compare README.md with docs/figures.json")
    parser.add_argument("--resume", action="store_true", help="resume runs/readme/* instead of rerunning from scratch")
    args = parser.parse_args(argv)
    unknown = [s for s in args.sections if s not in SECTIONS]
    if unknown:
        parser.error(f"unknown section(s) {unknown}; known: {', '.join(SECTIONS)}")
    figures = json.loads(FIGURES.read_text()) if FIGURES.is_file() else {"sections": {}}
    text = README.read_text()
    if args.check:
        problems = stale(text, figures)
        for line in problems:
            print(line)
        return 1 if problems else 0
    for name in args.sections or list(SECTIONS):
        section = SECTIONS[name]
        folder = RUNS / name if args.from_runs else rerun(name, section, fresh=not args.resume)
        figures["sections"][name] = collect(name, section, folder)
    figures["machine"] = _machine()
    FIGURES.write_text(json.dumps(figures, indent=2, ensure_ascii=False, sort_keys=True) + "\n", encoding="utf-8")
    new = render(text, figures, strict=False)
    sys.stdout.writelines(difflib.unified_diff(text.splitlines(True), new.splitlines(True), "README.md", "README.md"))
    README.write_text(new)
    missing = sorted(quoted_keys(new) - {f"{s}.{k}" for s, v in figures["sections"].items() for k in v["values"]})
    if missing:
        print(f"README quotes keys no section makes: {missing}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
