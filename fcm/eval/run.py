"""The sweep command's driver: run or resume a sweep, write the manifest and the report, summarise on the console."""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fcm.eval.config import SweepConfig
from fcm.eval.manifest import MANIFEST_FILE, finish, run_manifest
from fcm.eval.points import OperatingPoint

__all__ = ["MANIFEST_FILE", "FolderResults", "folder_results", "manifest", "report_folder", "run_and_report"]


def manifest(cfg: SweepConfig, jobs: int) -> dict[str, Any]:
    """What a reader needs to trust and repeat a run of ``cfg``."""
    return run_manifest(cfg.resolved(), cfg.torch_threads, jobs, cfg.codec_threads)


def run_and_report(
    cfg: SweepConfig, jobs: int = 1, progress: bool = True, ray_address: str | None = None, merge: bool = False
) -> dict[str, Any]:
    from fcm.eval.report import format_bd_table, write_report
    from fcm.eval.sweep import run_sweep

    man = manifest(cfg, jobs)
    t0 = time.perf_counter()
    # creates the folder once config, model and data are valid
    outcome = run_sweep(cfg, jobs=jobs, progress=progress, ray_address=ray_address, merge=merge)
    finish(man, cfg.output, t0, outcome.new_records, skipped=outcome.skipped)
    files = write_report(
        outcome.points,
        cfg.output,
        anchor=cfg.anchor,
        reference=outcome.reference,
        title=f"fcm sweep: {outcome.name or cfg.name}",
        manifest=man,
        skipped=outcome.skipped,
        **_report_settings(cfg),
    )
    assert files.analysis is not None
    print(format_bd_table(files.analysis), file=sys.stderr)
    return {
        "complete": outcome.complete,
        "records": len(outcome.records),
        "new_records": outcome.new_records,
        "wall_seconds": man["wall_seconds_this_run"],
        "skipped": outcome.skipped,
        "report": files.paths(),
    }


def _report_settings(cfg: SweepConfig, legacy: bool = False) -> dict[str, Any]:
    described = {p.label: p.describe() for p in cfg.pipelines}
    if legacy:  # a folder written before fcm recorded pipeline settings: say so rather than show today's defaults
        for p in cfg.pipelines:
            if p.kind == "remote":
                described[p.label] = (
                    "settings not recorded (written before fcm stated them: its remote anchor then coded 8-bit 4:2:0, "
                    "limited range, through FFmpeg's scaler)"
                )
    from fcm.eval.evaluators import EVALUATORS

    measures = {m.name: m.description for m in EVALUATORS.get(cfg.evaluator).smooth_measures}
    return {
        "bootstrap": cfg.bootstrap,
        "seed": cfg.bootstrap_seed,
        "min_overlap": cfg.min_overlap,
        "pipelines": described,
        "measures": measures,
    }


@dataclass(frozen=True)
class FolderResults:
    """What a results folder holds, summarised: its config, operating points, reference and skipped inputs."""

    config: SweepConfig
    points: list[OperatingPoint]
    reference: dict[str, float]
    skipped: list[dict[str, str]]
    records: int
    #: written before fcm recorded pipeline settings (so they cannot be stated)
    legacy: bool


def folder_results(out: Path) -> FolderResults:
    """Summarise a results folder from its records (no model inference, no coding)."""
    from fcm.eval.sweep import (
        RESULTS_FILE,
        SWEEP_FILE,
        Worker,
        input_ids,
        load_config,
        read_records,
        skipped_list,
        summarize,
    )

    cfg = load_config(out)
    legacy = "pipeline_identity" not in json.loads((out / SWEEP_FILE).read_text())
    worker = Worker(cfg)
    records = read_records(out / RESULTS_FILE)
    ids = input_ids(cfg, worker)
    points, reference = summarize(cfg, worker, records, ids)
    return FolderResults(cfg, points, reference, skipped_list(cfg, records, ids), len(records), legacy)


def report_folder(out: Path, anchor: str | None = None) -> dict[str, Any]:
    """Rebuild the report of a results folder from its records (no model inference, no coding)."""
    from fcm.eval.report import write_report

    res = folder_results(out)
    cfg = res.config
    man_path = out / MANIFEST_FILE
    man = json.loads(man_path.read_text()) if man_path.is_file() else None
    files = write_report(
        res.points,
        out,
        anchor=anchor or cfg.anchor,
        reference=res.reference,
        title=f"fcm sweep: {cfg.name}",
        manifest=man,
        skipped=res.skipped,
        **_report_settings(cfg, res.legacy),
    )
    return {"records": res.records, "skipped": res.skipped, "report": files.paths()}
