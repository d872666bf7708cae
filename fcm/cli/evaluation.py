"""Rate–accuracy sweeps and their reports: ``fcm sweep`` and ``report``."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from fcm.cli.args import add_threads_arg, positive


def cmd_sweep(args: argparse.Namespace) -> dict[str, Any]:
    from fcm.eval.config import SweepConfig
    from fcm.eval.run import run_and_report

    overrides = {"output": args.output} if args.output else {}
    if args.limit is not None:
        overrides["limit"] = args.limit
    if args.torch_threads is not None:
        overrides["torch_threads"] = args.torch_threads
    cfg = SweepConfig.from_yaml(args.config, overrides)
    return run_and_report(cfg, jobs=args.jobs, progress=not args.no_progress, ray_address=args.ray, merge=args.merge)


def cmd_report(args: argparse.Namespace) -> dict[str, Any]:
    from fcm.eval.run import report_folder

    return report_folder(Path(args.results), anchor=args.anchor)


def register(sub: Any) -> None:
    """Add ``sweep``, ``report`` to the ``fcm`` subcommands."""
    p = sub.add_parser("sweep", help="run (or resume) a rate–accuracy sweep from a YAML config, then report")
    p.add_argument("config", help="sweep YAML (e.g. configs/quickstart.yaml)")
    p.add_argument("--jobs", type=positive, default=1, help="worker processes (inputs run in parallel)")
    p.add_argument("--output", default=None, help="override the config's output folder")
    p.add_argument("--limit", type=positive, default=None, help="use only the first N inputs")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument(
        "--merge",
        action="store_true",
        help="add this sweep's points to a folder made by another sweep (same settings; its report is rewritten)",
    )
    p.add_argument(
        "--ray",
        default=None,
        metavar="ADDRESS",
        help="run the inputs on a Ray cluster: auto, ray://HOST:PORT, or local (--jobs CPUs here); fcm[ray]",
    )
    add_threads_arg(p, from_config=True)
    p.set_defaults(func=cmd_sweep, resumable=True, config_threads=True)

    p = sub.add_parser("report", help="(re)write summary.csv, report.json, report.md and RD plots of a results folder")
    p.add_argument("results", help="a sweep's output folder")
    p.add_argument("--anchor", default=None, help="BD-rate anchor curve, pipeline/codec (default: from the sweep)")
    p.set_defaults(func=cmd_report)
