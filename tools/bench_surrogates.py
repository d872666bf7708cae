#!/usr/bin/env python
"""Train the same wrapper with each surrogate for the same number of steps, then sweep them against the anchors.

    python tools/bench_surrogates.py [--steps N] [--surrogates scaled,ste,noise,proxy] [--out runs/bench_surrogates]

Every surrogate trains `configs/train_wrapped.yaml` (EfficientNet-Lite0 `stage4`, `channel_reduction`, x265) with the
same seed, steps and QPs; then one sweep on the embedded evaluation set (no training photo among its inputs) measures
`feature/x265`, `remote/x265` and one `wrapped[<surrogate>]/x265` curve per surrogate. Prints JSON: per surrogate the
training time and the BD-rate / BD-accuracy (with 95 % bootstrap intervals over inputs) of its curve against the
`feature` anchor and against `remote`. Rerunning resumes training and the sweep.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SURROGATES = ("scaled", "ste", "noise", "proxy")
#: the sweep's QPs: the wrapped curves share the feature pipeline's; the remote anchor needs lower ones
FEATURE_QPS = [22, 25, 28, 31, 34, 37, 40, 43]
REMOTE_QPS = [7, 10, 13, 16, 19, 22, 25, 28, 31, 34, 37, 40]
#: a wrapper with fewer channels saturates below the reference: its points are dense at low rates (configs/wrapped.yaml)
WRAPPED_QPS = [22, 28, 34, 36, 37, 38, 39, 40, 41, 42, 43]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=None, help="training steps per surrogate (default: the config's)")
    parser.add_argument("--surrogates", default=",".join(SURROGATES), help="comma-separated surrogates to compare")
    parser.add_argument("--config", default=str(ROOT / "configs" / "train_wrapped.yaml"), help="training config")
    parser.add_argument("--out", default=str(ROOT / "runs" / "bench_surrogates"), help="output folder")
    parser.add_argument("--jobs", type=int, default=2, help="sweep worker processes")
    parser.add_argument("--limit", type=int, default=None, help="evaluate on the first N inputs only")
    args = parser.parse_args(argv)

    from fcm.eval.config import SweepConfig
    from fcm.eval.curves import analyse
    from fcm.eval.run import run_and_report
    from fcm.train.config import TrainConfig
    from fcm.train.loop import train

    out = Path(args.out)
    surrogates = [s.strip() for s in args.surrogates.split(",") if s.strip()]
    unknown = sorted(set(surrogates) - set(SURROGATES))
    if unknown:
        parser.error(f"unknown surrogates {unknown}; known: {', '.join(SURROGATES)}")
    trained = {}
    for surrogate in surrogates:
        overrides = {"surrogate": surrogate, "checkpoint": str(out / f"wrapper_{surrogate}.pt")}
        if args.steps is not None:
            overrides["steps"] = args.steps
        config = TrainConfig.from_yaml(args.config, overrides)
        t0 = time.perf_counter()
        result = train(config, progress=False)
        print(f"trained {surrogate}: {result.steps} steps, {result.wall_seconds:.0f} s", file=sys.stderr)
        trained[surrogate] = {"training": result.summary(), "this_run_s": round(time.perf_counter() - t0, 1)}

    pipelines: dict[str, dict] = {
        "feature": {"qps": FEATURE_QPS},
        "remote": {"qps": REMOTE_QPS, "format": "yuv420p10", "range": "full"},
    }
    for surrogate in surrogates:
        pipelines[f"wrapped[{surrogate}]"] = {
            "qps": WRAPPED_QPS,
            "checkpoint": trained[surrogate]["training"]["checkpoint"],
        }
    sweep = SweepConfig.from_config(
        {
            "name": "bench_surrogates",
            "dataset": {"kind": "embedded"},
            "model": "efficientnet_lite0",
            "split": "stage4",
            "codecs": ["x265"],
            "pipelines": pipelines,
            "preset": "medium",
            "anchor": "feature/x265",
            "output": str(out / "sweep"),
            "limit": args.limit,
        }
    )
    swept = run_and_report(sweep, jobs=args.jobs, progress=False)

    from fcm.eval.run import folder_results

    points = folder_results(sweep.output).points
    results: dict[str, dict] = {}
    for anchor in ("feature/x265", "remote/x265"):
        analysis = analyse(points, anchor, resamples=sweep.bootstrap, seed=sweep.bootstrap_seed)
        for r in analysis.results:
            if not r.test.startswith("wrapped["):
                continue
            surrogate = r.test[len("wrapped[") : r.test.index("]")]
            results.setdefault(surrogate, dict(trained[surrogate]))[f"vs_{anchor.split('/')[0]}"] = {
                "bd_rate": r.bd_rate,
                "bd_rate_ci": None if r.rate_ci is None else [r.rate_ci.lo, r.rate_ci.hi],
                "bd_accuracy": r.bd_accuracy,
                "bd_accuracy_ci": None if r.accuracy_ci is None else [r.accuracy_ci.lo, r.accuracy_ci.hi],
                "notes": list(r.notes) + ([r.rate_error] if r.rate_error else []),
            }
    print(json.dumps({"sweep": swept, "surrogates": results}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
