#!/usr/bin/env python
"""The rate term at work: train one wrapper config at several λ, sweep them on validation data, plot where they land.

    python tools/lambda_sweep.py [--config CONFIG] [--lams 0,1,4] [--steps N] [--dataset embedded|validation]
        [--rate-model '{name: factorized, quantizer: ste}'] [--seed S] [--out runs/lambda_sweep] [--figure FIGURE]

Each λ trains ``--config`` with only ``lam`` (and ``--steps``, ``--seed``, and ``--rate-model``: a YAML mapping or
name, the config's ``rate_model``) changed, in processes run two at a time (one torch
thread each); one sweep (``feature/x265`` and ``wrapped[lamX]/x265`` on the same QPs) on validation data — the
embedded set or the photos' validation split, never the test split — measures them. The figure draws kl_db against
bpp per λ, each point labelled with its QP; the JSON printed gives, per λ and QP, bpp and kl_db and the bpp relative
to λ = 0's at the same QP (the rate term's effect: points move to fewer bits), and each training's wall time.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))
from wrapper_sweeps import sweep_against_feature  # noqa: E402 - a sibling module of this script

QPS = [22, 27, 32, 37, 42, 47]
#: validation data only: the figure chooses nothing, but λ is tuned by looking at it
TUNING = ("embedded", "validation")


def _train(
    config: str, lam: float, steps: int | None, seed: int | None, rate_model: Any, out: Path
) -> tuple[subprocess.Popen[bytes], Any]:
    overrides: dict[str, Any] = {"lam": lam, "checkpoint": str(out / f"wrapper_lam{lam:g}.pt"), "torch_threads": 1}
    if steps is not None:
        overrides["steps"] = steps
    if seed is not None:
        overrides["seed"] = seed
    if rate_model is not None:
        overrides["rate_model"] = rate_model
    code = (
        "import json, sys; from fcm.train.config import TrainConfig; from fcm.train.loop import train; "
        f"r = train(TrainConfig.from_yaml({config!r}, {overrides!r}), progress=False); "
        "print(json.dumps(r.summary()))"
    )
    log = open(out / f"train_lam{lam:g}.log", "wb")  # noqa: SIM115 - closed by the caller once the process ends
    return subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=log), log


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--config", default=str(ROOT / "configs" / "train_photos.yaml"))
    ap.add_argument("--lams", default="0,1,4", help="comma-separated λ values")
    ap.add_argument("--steps", type=int, default=None)
    ap.add_argument("--seed", type=int, default=None, help="the configs' training seed")
    ap.add_argument("--dataset", default="embedded", choices=TUNING)
    ap.add_argument("--out", default=str(ROOT / "runs" / "lambda_sweep"))
    ap.add_argument("--figure", default=None, help="where to write the figure (default: OUT/lambda_sweep.png)")
    ap.add_argument("--parallel", type=int, default=2, help="trainings at once")
    ap.add_argument("--rate-model", default=None, help="the configs' rate_model (YAML: a name or a mapping)")
    args = ap.parse_args(argv)
    import yaml

    rate_model = None if args.rate_model is None else yaml.safe_load(args.rate_model)
    lams = [float(x) for x in args.lams.split(",")]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    trained: dict[float, dict[str, Any]] = {}
    pending = list(lams)
    running: list[tuple[float, tuple[subprocess.Popen[bytes], Any]]] = []
    while pending or running:
        while pending and len(running) < args.parallel:
            lam = pending.pop(0)
            running.append((lam, _train(args.config, lam, args.steps, args.seed, rate_model, out)))
        lam, (proc, log) = running.pop(0)
        stdout, _ = proc.communicate()
        log.close()
        if proc.returncode != 0:
            raise SystemExit(f"training at λ={lam:g} failed: see {out / f'train_lam{lam:g}.log'}")
        trained[lam] = json.loads(stdout.decode().strip().splitlines()[-1])
        print(f"trained λ={lam:g}: {trained[lam]['wall_seconds']:.0f} s", file=sys.stderr)

    pipelines: dict[str, dict[str, Any]] = {"feature": {"qps": QPS}}
    for lam in lams:
        pipelines[f"wrapped[lam{lam:g}]"] = {"qps": QPS, "checkpoint": trained[lam]["checkpoint"]}
    sweep_against_feature("lambda_sweep", args.dataset, pipelines, out / "sweep", jobs=2)
    points = json.loads((out / "sweep" / "report.json").read_text())["points"]
    curves: dict[str, dict[int, tuple[float, float]]] = {}
    for p in points:
        if p["pipeline"] != "uncompressed":
            curves.setdefault(p["pipeline"], {})[p["qp"]] = (p["bpp"], p["metrics"]["kl_db"])

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for name, curve in curves.items():
        qps = sorted(curve)
        xs, ys = [curve[q][0] for q in qps], [curve[q][1] for q in qps]
        style = {"color": "black", "linestyle": "--"} if name == "feature" else {}
        (line,) = ax.plot(xs, ys, marker="o", label=name, **style)
        for q, x, y in zip(qps, xs, ys, strict=True):
            ax.annotate(str(q), (x, y), textcoords="offset points", xytext=(3, 3), fontsize=7, color=line.get_color())
    ax.set_xscale("log")
    ax.set_xlabel("bpp (log)")
    ax.set_ylabel("kl_db (dB, higher is closer to uncompressed)")
    if isinstance(rate_model, dict):
        options = ", ".join(f"{k}={v}" for k, v in rate_model.items() if k != "name")
        rate_name = f"{rate_model.get('name')}({options})"
    else:
        rate_name = rate_model or "log_magnitude"
    ax.set_title(f"λ moves the wrapper along the rate axis ({args.dataset}; rate: {rate_name}; labels: QP)", fontsize=8)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    figure = Path(args.figure) if args.figure else out / "lambda_sweep.png"
    figure.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(figure, dpi=110)

    base = curves[f"wrapped[lam{lams[0]:g}]"]
    summary = {
        "dataset": args.dataset,
        "rate_model": rate_model,
        "seed": args.seed,
        "figure": str(figure),
        "training_wall_s": {f"{lam:g}": trained[lam]["wall_seconds"] for lam in lams},
        "points": {
            name: {
                str(q): {
                    "bpp": round(b, 5),
                    "kl_db": round(k, 2),
                    **({"bpp_vs_first_lam": round(b / base[q][0], 3)} if name.startswith("wrapped") else {}),
                }
                for q, (b, k) in sorted(curve.items())
            }
            for name, curve in curves.items()
        },
    }
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
