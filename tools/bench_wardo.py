#!/usr/bin/env python
"""Wrapper-aware RDO against SSE-RDO on the same codecs, rate control and QPs; plus what the map costs to deliver.

    python tools/bench_wardo.py [DATASET] [--codecs x265,x264] [--out runs/bench_wardo] [--jobs 2] [--limit N]

DATASET: ``embedded`` (default: the 30 evaluation inputs made from photos scikit-image ships) or a folder of images.
Model: EfficientNet-Lite0 cut at ``stage4`` (80 channels of 14×14: a 112×144 frame), no wrapper, ``fidelity``
evaluator (top-1 agreement with uncompressed inference; mean KL). Every curve runs with ``rate_control: crf`` (x264 and
x265 apply per-block offsets only there, so the SSE anchor runs in that mode too):

* ``feature``                 SSE-RDO: the codec's own allocation (the anchor of each codec)
* ``feature[wa-frame]``       weights of every frame (Rademacher probes through the back half, KL target)
* ``feature[wa-gop]``         weights of the first input of each group of ``--gop`` consecutive inputs, reused
* ``feature[wa-fixed]``       a fixed offline map (``fcm rdo-weights configs/rdo_weights.yaml``: training photos only)
* ``feature[fixed-scale]``    the same map through per-block sample scaling on the 14×14 channel tiles (any codec;
  the scales travel in the stream and their bytes are counted)

and, with the shipped trained wrapper (``checkpoints/efficientnet_lite0_stage4_cr40_scaled.pt``, 80 → 40 channels),
``wrapped[scaled]`` (SSE) against ``wrapped[scaled+wa-frame]`` and ``wrapped[scaled+wa-fixed]`` (a map made through
that wrapper's post-wrapper); ``--no-wrapped`` leaves them out.

Prints JSON: per codec and mode the BD-rate and BD-accuracy against that codec's SSE curve (95 % bootstrap intervals
over inputs), a BD-rate on mean KL (−10·log10 KL as the quality; no interval: a log of a mean is not a per-input
mean), and the encode-time overhead: the mode's ``rdo`` time (weights — amortised over the GOP for ``wa-gop`` — plus
map pooling and scaling) plus the steady-state per-frame delivery of the QP map (regions built and attached as side
data, measured separately: it happens inside the encoder call), relative to SSE-RDO's codec encode time and to its
whole edge time (front + pack + encode), and the ratio of encode times (the encoder's own work with the map). Then
the per-block delivery cost at a classifier frame, a 1920×1088 frame and the Faster R-CNN FPN frame of an 800×1216
input (direct side data vs the ``addroi`` filter chain, and the x265 encode time of that frame), the per-GOP overhead
by probes and GOP length, and the targets of the issue.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
QPS = [22, 25, 28, 31, 34, 37, 40, 43]
#: the wrapper saturates near 77 % agreement: its points are dense at low rates (configs/wrapped.yaml)
WRAPPED_QPS = [22, 28, 34, 36, 37, 38, 39, 40, 41, 42, 43]
WRAPPER = ROOT / "checkpoints" / "efficientnet_lite0_stage4_cr40_scaled.pt"


def sweep_config(
    args: argparse.Namespace, out: Path, map_path: Path, wrapped_map: Path | None, codecs: list[str]
) -> dict:
    dataset = {"kind": "embedded"} if args.dataset == "embedded" else {"kind": "images", "root": args.dataset}
    rdo = {"probes": args.probes}
    wrapped = {}
    if wrapped_map is not None:
        ckpt = {"checkpoint": str(WRAPPER), "qps": WRAPPED_QPS}
        wrapped = {
            "wrapped[scaled]": ckpt,
            "wrapped[scaled+wa-frame]": {**ckpt, "rdo": {"mode": "wa-frame", **rdo}},
            "wrapped[scaled+wa-fixed]": {**ckpt, "rdo": {"mode": "wa-fixed", "map": str(wrapped_map)}},
        }
    return {
        "name": "bench_wardo",
        "dataset": dataset,
        "model": "efficientnet_lite0",
        "split": "stage4",
        "codecs": codecs,
        "rate_control": "crf",
        "preset": args.preset,
        "qps": QPS,
        "pipelines": {
            "feature": {},
            "feature[wa-frame]": {"rdo": rdo},
            "feature[wa-gop]": {"rdo": {**rdo, "gop": args.gop}},
            "feature[wa-fixed]": {"rdo": {"map": str(map_path)}},
            "feature[fixed-scale]": {"rdo": {"mode": "wa-fixed", "map": str(map_path), "route": "scale", "block": 14}},
            **wrapped,
        },
        "evaluator": "fidelity",
        "anchor": f"feature/{codecs[0]}",
        "bootstrap": 1000,
        "output": str(out / "sweep"),
        "limit": args.limit,
    }


def bd_results(points: list, codec: str, anchor: str) -> dict:
    """BD of every WA curve of ``codec`` against that codec's SSE curve ``anchor`` (a pipeline label; the others are
    ``anchor[...]`` or ``anchor+...``): on the primary metric and on mean KL."""
    from fcm.eval.curves import analyse

    family = anchor.split("[", 1)[0]
    mine = [p for p in points if p.codec == codec and (p.pipeline == anchor or _variant(p.pipeline, anchor, family))]
    primary = analyse(mine, f"{anchor}/{codec}", resamples=1000, seed=0)
    kl_points = [
        replace(p, metric_name="kl_db", metric=-10 * float(np.log10(p.metrics["mean_kl"])), samples=None) for p in mine
    ]
    kl = {r.test: r for r in analyse(kl_points, f"{anchor}/{codec}").results}
    out = {}
    for r in primary.results:
        mode = r.test.rsplit("/", 1)[0]
        out[mode] = {
            "bd_rate": r.bd_rate,
            "bd_rate_ci": None if r.rate_ci is None else [r.rate_ci.lo, r.rate_ci.hi],
            "bd_accuracy": r.bd_accuracy,
            "bd_accuracy_ci": None if r.accuracy_ci is None else [r.accuracy_ci.lo, r.accuracy_ci.hi],
            "bd_rate_kl": kl[r.test].bd_rate,
            "notes": list(r.notes) + [e for e in (r.rate_error, kl[r.test].rate_error) if e],
        }
    return out


def _variant(label: str, anchor: str, family: str) -> bool:
    if anchor == family:  # feature → feature[...]
        return label.startswith(family + "[")
    return label.startswith(anchor[:-1] + "+")  # wrapped[scaled] → wrapped[scaled+...]


def overheads(points: list, codec: str, anchor: str, delivery_s: dict[str, float]) -> dict:
    """Per WA curve: mean rdo time per encode (weights — amortised for wa-gop —, map, scaling) plus the steady-state
    per-frame delivery of its QP map (``delivery_s``: ``fresh`` map or ``reused`` map; none for the scale route),
    relative to SSE-RDO's codec time and edge time at matching QPs."""
    family = anchor.split("[", 1)[0]
    sse = {p.qp: p for p in points if p.codec == codec and p.pipeline == anchor}
    out: dict[str, dict] = {}
    for p in points:
        if p.codec != codec or not _variant(p.pipeline, anchor, family) or p.qp not in sse:
            continue
        mode = p.pipeline
        acc = out.setdefault(mode, {"rdo_s": [], "vs_encode": [], "vs_edge": [], "encode_ratio": []})
        base = sse[p.qp]
        scale_route = mode.endswith("fixed-scale]")
        reused = "wa-fixed" in mode or "wa-gop" in mode
        deliver = 0.0 if scale_route else delivery_s["reused" if reused else "fresh"]
        rdo = p.times.get("rdo", 0.0) + deliver
        acc["rdo_s"].append(rdo)
        acc["vs_encode"].append(rdo / base.times["encode"])
        acc["vs_edge"].append(rdo / base.edge_seconds)
        acc["encode_ratio"].append(p.times["encode"] / base.times["encode"])
    return {
        mode: {
            "rdo_plus_delivery_ms_per_encode": round(1000 * float(np.mean(v["rdo_s"])), 4),
            "overhead_vs_sse_codec_encode": round(float(np.mean(v["vs_encode"])), 4),
            "overhead_vs_sse_edge_time": round(float(np.mean(v["vs_edge"])), 4),
            "encode_time_ratio": round(float(np.mean(v["encode_ratio"])), 4),
        }
        for mode, v in out.items()
    }


def fpn_layout():
    from fcm.models import get_model
    from fcm.packing.layout import Layout

    spec = get_model("faster_rcnn_r50_fpn", "fpn").spec
    return Layout.for_shapes([(t.name, *t.shape_for(800, 1216)) for t in spec.tensors])


def delivery(preset: str, skip_fpn_encode: bool) -> dict:
    """Per-block delivery (regions + side data) at realistic frame sizes, and x265's encode time of such a frame."""
    import av

    from fcm.codecs import CodecParams, get_codec, roi

    rng = np.random.default_rng(0)
    roi.delivery_route()  # the one-time self-check of the direct route is not part of any frame's cost
    fpn = fpn_layout()
    sizes = {"classifier 112x144": (144, 112), "1920x1088": (1088, 1920)}
    sizes[f"FPN frame {fpn.frame_width}x{fpn.frame_height} (Faster R-CNN, 800x1216 input)"] = (
        fpn.frame_height,
        fpn.frame_width,
    )
    out = {}
    for name, (h, w) in sizes.items():
        offsets = rng.integers(-6, 7, size=(-(-h // 16), -(-w // 16))).astype(np.int32)
        reps = 200 if h * w < 3_000_000 else 20
        frames = [av.VideoFrame(w, h, "gray10le") for _ in range(reps)]
        t0 = time.perf_counter()
        for frame in frames:  # a fresh map every frame (wa-frame): regions built, then attached
            regions = roi.block_regions(offsets, 16, 63)
            roi.attach_regions(frame, regions)
        direct = (time.perf_counter() - t0) / reps
        frames = [av.VideoFrame(w, h, "gray10le") for _ in range(reps)]
        t0 = time.perf_counter()
        for frame in frames:  # a reused map (wa-gop, wa-fixed): the codec remembers its regions
            roi.attach_regions(frame, roi.cached_block_regions(offsets, 16, 63))
        reused = (time.perf_counter() - t0) / reps
        entry = {
            "blocks": int(offsets.size),
            "regions": len(regions),
            "direct_s": round(direct, 7),
            "direct_reused_map_s": round(reused, 7),
        }
        if h * w <= 2_200_000:  # the filter chain grows with the square of the regions
            t0 = time.perf_counter()
            roi._attach_with_filters(av.VideoFrame(w, h, "gray10le"), regions)
            entry["addroi_s"] = round(time.perf_counter() - t0, 4)
        else:
            entry["addroi_s"] = None
            entry["addroi_note"] = "not run: quadratic in the regions (0.7 s at 7,026, 2.6 s at 14,069 measured)"
        if not (skip_fpn_encode and h * w > 2_200_000):
            frames = (rng.integers(0, 64, size=(1, h, w)) + 480).astype(np.uint16)
            t0 = time.perf_counter()
            get_codec("x265").encode(frames, 10, CodecParams(30, rate_control="crf", preset=preset), offsets[None])
            entry["x265_encode_s"] = round(time.perf_counter() - t0, 3)
            entry["direct_vs_encode"] = round(direct / entry["x265_encode_s"], 6)
        out[name] = entry
    out["route"] = roi.delivery_route()
    return out


def fpn_weights_time(probes: int) -> dict:
    """Weights of the FPN frame (target ``features``: unpack → split tensors; random detector weights suffice)."""
    import torch

    from fcm.packing import Packer
    from fcm.rdo.sensitivity import frame_sensitivity

    fpn = fpn_layout()
    tensors = {p.name: torch.randn(1, p.channels, p.height, p.width) for p in fpn.placements}
    packed = Packer(10, "tensor").pack(tensors)
    t0 = time.perf_counter()
    frame_sensitivity(packed, None, {}, None, "features", probes)
    return {
        "frame": f"{fpn.frame_width}x{fpn.frame_height}",
        "probes": probes,
        "weights_s": round(time.perf_counter() - t0, 3),
    }


def classifier_weights_times(probes: tuple[int, ...] = (1, 2, 4, 8)) -> dict:
    """Seconds of the weights of one Lite0 stage4 frame (KL target, 1 torch thread; best of 3) per probe count."""
    import torch

    from fcm.data import build_dataset
    from fcm.models import get_model
    from fcm.packing import Packer
    from fcm.pipeline import run_front
    from fcm.rdo.sensitivity import frame_sensitivity

    model = get_model("efficientnet_lite0", "stage4")
    edge = run_front(build_dataset({"kind": "embedded"})[0].image(), model)
    packed = Packer(10).pack(edge.features.tensors)
    out = {}
    with torch.inference_mode(False):
        for m in probes:
            times = []
            for seed in range(3):
                t0 = time.perf_counter()
                frame_sensitivity(packed, model, edge.features.meta, None, "kl", m, seed)
                times.append(time.perf_counter() - t0)
            out[m] = min(times)
    return out


def gop_table(points: list, codecs: list[str], weights: dict, fpn: dict, fpn_encode_s: float | None) -> list:
    """Per-GOP overhead (weights / GOP length) against SSE-RDO's mean codec encode time, for GOP lengths and probes."""
    rows = []
    for codec in codecs:
        encode = float(np.mean([p.times["encode"] for p in points if p.codec == codec and p.pipeline == "feature"]))
        for m, w in weights.items():
            for gop in (8, 32, 64):
                rows.append(
                    {
                        "frame": "classifier 112x144",
                        "codec": codec,
                        "probes": m,
                        "gop": gop,
                        "weights_ms": round(1000 * w, 2),
                        "encode_ms": round(1000 * encode, 2),
                        "overhead": round(w / gop / encode, 4),
                    }
                )
    if fpn_encode_s:
        for gop in (1, 8, 32):
            rows.append(
                {
                    "frame": fpn["frame"],
                    "codec": "x265",
                    "probes": fpn["probes"],
                    "gop": gop,
                    "weights_ms": round(1000 * fpn["weights_s"], 1),
                    "encode_ms": round(1000 * fpn_encode_s, 1),
                    "overhead": round(fpn["weights_s"] / gop / fpn_encode_s, 4),
                }
            )
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("dataset", nargs="?", default="embedded", help="'embedded' (default) or a folder of images")
    parser.add_argument("--codecs", default="x265,x264", help="comma-separated codecs (x264/x265)")
    parser.add_argument("--out", default=str(ROOT / "runs" / "bench_wardo"), help="output folder (resumable)")
    parser.add_argument("--jobs", type=int, default=2, help="sweep worker processes")
    parser.add_argument("--limit", type=int, default=None, help="first N inputs only")
    parser.add_argument("--preset", default="medium", help="encoder preset (default medium)")
    parser.add_argument("--probes", type=int, default=8, help="Rademacher probes per frame (wa-frame, wa-gop)")
    parser.add_argument("--gop", type=int, default=8, help="inputs per GOP for wa-gop")
    parser.add_argument("--map", default=None, help="fixed map (default: made from configs/rdo_weights.yaml)")
    parser.add_argument("--skip-fpn-encode", action="store_true", help="do not time x265 on the ~20 Mpixel FPN frame")
    parser.add_argument("--no-wrapped", action="store_true", help="leave out the trained wrapper's curves")
    args = parser.parse_args(argv)

    import torch

    from fcm.eval.config import SweepConfig
    from fcm.eval.run import folder_results, run_and_report
    from fcm.rdo.config import RdoWeightsConfig

    torch.set_num_threads(1)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    map_path = Path(args.map) if args.map else out / "efficientnet_lite0_stage4_kl.rdo.npz"
    map_s = None
    if not map_path.exists():
        t0 = time.perf_counter()
        RdoWeightsConfig.from_yaml(ROOT / "configs" / "rdo_weights.yaml").run(progress=False).save(map_path)
        map_s = round(time.perf_counter() - t0, 1)
    wrapped_map = None
    if not args.no_wrapped:
        wrapped_map = out / "efficientnet_lite0_stage4_cr40_scaled_kl.rdo.npz"
        if not wrapped_map.exists():
            cfg_w = RdoWeightsConfig.from_yaml(ROOT / "configs" / "rdo_weights.yaml")
            replace(cfg_w, wrapper=str(WRAPPER)).run(progress=False).save(wrapped_map)
    codecs = [c.strip() for c in args.codecs.split(",") if c.strip()]
    cfg = SweepConfig.from_config(sweep_config(args, out, map_path, wrapped_map, codecs))
    with contextlib.redirect_stdout(sys.stderr):  # the sweep's own table; stdout is the JSON alone
        swept = run_and_report(cfg, jobs=args.jobs, progress=False)
    points = folder_results(cfg.output).points

    anchors = ["feature"] + ([] if wrapped_map is None else ["wrapped[scaled]"])
    deliver = delivery(args.preset, args.skip_fpn_encode)
    small = deliver["classifier 112x144"]
    delivery_s = {"fresh": small["direct_s"], "reused": small["direct_reused_map_s"]}
    results = {
        codec: {
            "bd": {k: v for a in anchors for k, v in bd_results(points, codec, a).items()},
            "overhead": {k: v for a in anchors for k, v in overheads(points, codec, a, delivery_s).items()},
        }
        for codec in codecs
    }
    fpn = fpn_weights_time(2)
    fpn_encode = next((v.get("x265_encode_s") for k, v in deliver.items() if k.startswith("FPN")), None)
    best = min(
        (m["bd_rate"], f"{c} {mode}")
        for c, r in results.items()
        for mode, m in r["bd"].items()
        if m["bd_rate"] is not None
    )
    gop_overhead = max(r["overhead"]["feature[wa-gop]"]["overhead_vs_sse_codec_encode"] for r in results.values())
    fixed_overhead = max(r["overhead"]["feature[wa-fixed]"]["overhead_vs_sse_codec_encode"] for r in results.values())
    report = {
        "dataset": args.dataset,
        "model": "efficientnet_lite0/stage4",
        "codecs": codecs,
        "rate_control": "crf",
        "preset": args.preset,
        "qps": QPS,
        "probes": args.probes,
        "gop": args.gop,
        "fixed_map": str(map_path),
        "fixed_map_made_s": map_s,
        "sweep": {k: swept[k] for k in ("records", "new_records", "wall_seconds") if k in swept},
        "results": results,
        "delivery": deliver,
        "fpn_weights": fpn,
        "gop_overhead": gop_table(points, codecs, classifier_weights_times(), fpn, fpn_encode),
        "targets": {
            "best_bd_rate": {"value": best[0], "curve": best[1], "target": -10.0, "met": best[0] <= -10.0},
            "gop_overhead_vs_codec_encode": {"value": gop_overhead, "target": 0.10, "met": gop_overhead <= 0.10},
            "fixed_overhead_vs_codec_encode": {"value": fixed_overhead, "target": 0.01, "met": fixed_overhead <= 0.01},
        },
    }
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
