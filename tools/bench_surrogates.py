#!/usr/bin/env python
"""Train the same wrapper with each surrogate and several seeds for the same steps, then sweep them against plain
feature coding on the test photos and on the embedded set.

    python tools/bench_surrogates.py [--config configs/train_photos.yaml] [--surrogates scaled,ste,noise,proxy]
        [--seeds 0,1,2] [--steps N] [--datasets test,embedded] [--out runs/bench_surrogates]

Every surrogate × seed trains ``--config`` with only ``surrogate``, ``seed`` (and ``--steps``) changed; then one
sweep per dataset — ``test``: the test split of fcm.data.photos (a source no training or tuning touched);
``embedded``: the embedded set — measures ``feature/x265`` and one ``wrapped[<surrogate>-s<seed>]/x265`` curve per
trained wrapper. Prints JSON: per surrogate and dataset, each seed's BD-rate against ``feature/x265`` on top-1
agreement and on kl_db (95 % bootstrap intervals over inputs) and the curve's best top-1 agreement, then the mean
and standard deviation over seeds; and each training's wall time. Rerunning resumes training and the sweeps.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))
from wrapper_sweeps import sweep_against_feature  # noqa: E402 - a sibling module of this script

SURROGATES = ("scaled", "ste", "noise", "proxy")
#: every curve on the same grid: a wrapper that saturates shows it, one that does not is measured at high rates too
FEATURE_QPS = [22, 25, 28, 31, 34, 37, 40, 43]
REMOTE_QPS = [7, 10, 13, 16, 19, 22, 25, 28, 31, 34, 37, 40]
WRAPPED_QPS = [22, 25, 28, 31, 34, 37, 40, 43, 46]
#: where the trained wrappers are measured (never the validation split: it is for tuning)
REPORTED = ("test", "embedded")


def _figures(folder: Path, label: str) -> dict[str, Any]:
    """BD-rate on top-1 and kl_db (with intervals) of curve ``label`` against feature/x265, and its best top-1."""
    report = json.loads((folder / "report.json").read_text())
    test = f"{label}/x265"
    out: dict[str, Any] = {}
    for key, rows in (("top1", report["bd"]), ("kl_db", report["bd_smooth"].get("kl_db", {}).get("bd", []))):
        row = next((r for r in rows if r["test"] == test), None)
        ci = None if row is None or not row.get("bd_rate_ci") else row["bd_rate_ci"]
        out[f"bd_rate_{key}"] = None if row is None else row["bd_rate"]
        out[f"bd_rate_{key}_ci"] = None if ci is None else [ci["lo"], ci["hi"]]
    best = [p["metric"] for p in report["points"] if p["pipeline"] == label]
    out["best_top1"] = max(best) if best else None
    return out


def _finished(config: Any) -> dict[str, Any] | None:
    """The summary of a finished training of exactly ``config`` whose checkpoint is in place, else None."""
    from fcm.errors import FcmError
    from fcm.wrappers import read_checkpoint

    if not config.checkpoint.is_file():
        return None
    try:
        data = read_checkpoint(config.checkpoint)
    except FcmError:
        return None
    training = data.get("training") or {}
    if training.get("config_identity") != config.identity():
        return None
    return {
        "checkpoint": str(config.checkpoint),
        "weights_tag": data["weights_tag"],
        "steps": training.get("steps"),
        "finished": True,
        "wall_seconds": training.get("wall_seconds"),
    }


def _vs_remote(folder: Path, test: str) -> list[float | None]:
    """BD-rate on top-1 (with its 95 % interval) of curve ``test`` against ``remote/x265``."""
    from fcm.eval.curves import analyse
    from fcm.eval.run import folder_results

    config = json.loads((folder / "sweep.json").read_text())
    points = folder_results(folder).points
    analysis = analyse(points, "remote/x265", resamples=config["bootstrap"], seed=config["bootstrap_seed"])
    r = next(r for r in analysis.results if r.test == test)
    return [r.bd_rate, *(None, None)] if r.rate_ci is None else [r.bd_rate, r.rate_ci.lo, r.rate_ci.hi]


def _spread(values: list[float | None]) -> dict[str, float | None]:
    xs = [v for v in values if v is not None]
    if not xs:
        return {"mean": None, "sd": None}
    return {"mean": round(statistics.fmean(xs), 2), "sd": round(statistics.stdev(xs), 2) if len(xs) > 1 else 0.0}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=None, help="training steps per run (default: the config's)")
    parser.add_argument("--surrogates", default=",".join(SURROGATES), help="comma-separated surrogates to compare")
    parser.add_argument("--seeds", default="0,1,2", help="comma-separated training seeds")
    parser.add_argument("--config", default=str(ROOT / "configs" / "train_photos.yaml"), help="training config")
    parser.add_argument("--datasets", default="test,embedded", help=f"comma-separated, of {', '.join(REPORTED)}")
    parser.add_argument("--out", default=str(ROOT / "runs" / "bench_surrogates"), help="output folder")
    parser.add_argument("--jobs", type=int, default=2, help="sweep worker processes")
    parser.add_argument("--limit", type=int, default=None, help="evaluate on the first N inputs only")
    parser.add_argument(
        "--wrapped-qps", default=",".join(map(str, WRAPPED_QPS)), help="comma-separated QPs of the wrapped curves"
    )
    parser.add_argument("--remote", action="store_true", help="also sweep remote inference and BD against it")
    args = parser.parse_args(argv)
    wrapped_qps = [int(q) for q in args.wrapped_qps.split(",")]

    from fcm.train.config import TrainConfig
    from fcm.train.loop import train

    out = Path(args.out)
    surrogates = [s.strip() for s in args.surrogates.split(",") if s.strip()]
    seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    datasets = [d.strip() for d in args.datasets.split(",") if d.strip()]
    unknown = sorted(set(surrogates) - set(SURROGATES)) + sorted(set(datasets) - set(REPORTED))
    if unknown:
        parser.error(f"unknown surrogates or datasets {unknown}")
    trained: dict[str, dict[str, Any]] = {}
    for surrogate in surrogates:
        for seed in seeds:
            label = f"wrapped[{surrogate}-s{seed}]"
            overrides: dict[str, Any] = {
                "surrogate": surrogate,
                "seed": seed,
                "checkpoint": str(out / f"wrapper_{surrogate}_s{seed}.pt"),
            }
            if args.steps is not None:
                overrides["steps"] = args.steps
            config = TrainConfig.from_yaml(args.config, overrides)
            done = _finished(config)
            if done is not None:  # trained before (e.g. by a parallel run of this script): no feature cache to rebuild
                trained[label] = {"training": done, "this_run_s": 0.0}
                continue
            t0 = time.perf_counter()
            result = train(config, progress=False)
            print(f"trained {label}: {result.steps} steps, {result.wall_seconds:.0f} s", file=sys.stderr)
            trained[label] = {"training": result.summary(), "this_run_s": round(time.perf_counter() - t0, 1)}

    pipelines: dict[str, dict[str, Any]] = {"feature": {"qps": FEATURE_QPS}}
    if args.remote:
        pipelines["remote"] = {"qps": REMOTE_QPS, "format": "yuv420p10", "range": "full"}
    for label, run in trained.items():
        pipelines[label] = {"qps": wrapped_qps, "checkpoint": run["training"]["checkpoint"]}
    swept = {
        name: sweep_against_feature(
            f"bench_surrogates_{name}", name, pipelines, out / f"sweep_{name}", args.jobs, args.limit
        )
        for name in datasets
    }

    results: dict[str, Any] = {}
    for surrogate in surrogates:
        entry: dict[str, Any] = {}
        for name in datasets:
            per_seed = {seed: _figures(out / f"sweep_{name}", f"wrapped[{surrogate}-s{seed}]") for seed in seeds}
            keys = ("bd_rate_top1", "bd_rate_kl_db", "best_top1")
            entry[name] = {
                "seeds": per_seed,
                **{key: _spread([f[key] for f in per_seed.values()]) for key in keys},
            }
            if args.remote:
                entry[name]["bd_rate_top1_vs_remote"] = {
                    seed: _vs_remote(out / f"sweep_{name}", f"wrapped[{surrogate}-s{seed}]/x265") for seed in seeds
                }
        entry["training_wall_s"] = [trained[f"wrapped[{surrogate}-s{s}]"]["training"]["wall_seconds"] for s in seeds]
        results[surrogate] = entry
    feature_best = {
        name: max(
            p["metric"]
            for p in json.loads((out / f"sweep_{name}" / "report.json").read_text())["points"]
            if p["pipeline"] == "feature"
        )
        for name in datasets
    }
    print(json.dumps({"sweeps": swept, "feature_best_top1": feature_best, "surrogates": results}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
