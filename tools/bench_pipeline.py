"""Benchmark the whole edge → cloud path on one real photo; prints JSON (median seconds per stage over runs).

python tools/bench_pipeline.py [--image skimage:chelsea] [--model efficientnet_lite0] [--split stage4]
                               [--codec x265] [--qp 32] [--preset medium] [--runs 10] [--torch-threads 1]

Torch runs with ``--torch-threads`` intra-op threads (fcm's default, 1) for the whole benchmark, and the JSON records
that count with the CPU kernels torch chose (:func:`fcm.numerics.numerics_record`).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time


def main() -> None:
    from fcm.numerics import DEFAULT_TORCH_THREADS, numerics_record, torch_threads

    ap = argparse.ArgumentParser()
    ap.add_argument("--image", default="skimage:chelsea")
    ap.add_argument("--model", default="efficientnet_lite0")
    ap.add_argument("--split", default=None)
    ap.add_argument("--codec", default="x265")
    ap.add_argument("--qp", type=int, nargs="+", default=[22, 32, 42])
    ap.add_argument("--preset", default=None)
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--torch-threads", type=int, default=DEFAULT_TORCH_THREADS)
    args = ap.parse_args()
    with torch_threads(args.torch_threads):
        report = _bench(args)
    report["numerics"] = numerics_record(args.torch_threads)
    print(json.dumps(report, indent=2))


def _bench(args: argparse.Namespace) -> dict:
    from fcm import pipeline
    from fcm.codecs import CodecParams, get_codec
    from fcm.images import load_image
    from fcm.models import get_model

    image = load_image(args.image)
    model = get_model(args.model, args.split)
    codec = get_codec(args.codec)
    preset = args.preset or getattr(codec, "default_preset", None)
    results = []
    for qp in args.qp:
        params = CodecParams(qp, preset=args.preset)
        pipeline.decode(pipeline.encode(image, model, codec, params, torch_threads=None).bitstream, model)  # warm-up
        stages: dict[str, list[float]] = {
            k: [] for k in ("front", "pack", "encode", "decode", "unpack", "back", "edge_total", "cloud_total")
        }
        for _ in range(args.runs):
            t0 = time.perf_counter()
            enc = pipeline.encode(image, model, codec, params, torch_threads=None)
            t1 = time.perf_counter()
            dec = pipeline.decode(enc.bitstream, model)
            t2 = time.perf_counter()
            for k, v in (
                ("front", enc.front_s),
                ("pack", enc.pack_s),
                ("encode", enc.codec_s),
                ("decode", dec.codec_s),
                ("unpack", dec.unpack_s),
                ("back", dec.back_s),
                ("edge_total", t1 - t0),
                ("cloud_total", t2 - t1),
            ):
                stages[k].append(v)
        results.append(
            {
                "qp": qp,
                "bytes": len(enc.bitstream),
                "bpp": round(enc.bpp, 5),
                "median_ms": {k: round(1000 * statistics.median(v), 2) for k, v in stages.items()},
            }
        )
    lay = enc.header.layout
    return {
        "image": args.image,
        "image_size": list(image.shape[:2]),
        "model": f"{model.name}/{model.split}",
        "frame": f"{lay.frame_width}x{lay.frame_height}, {enc.header.bit_depth}-bit monochrome",
        "codec": codec.name,
        "preset": preset,
        "runs": args.runs,
        "torch_threads": args.torch_threads,
        "cpu_count": os.cpu_count(),
        "machine": platform.machine(),
        "results": results,
    }


if __name__ == "__main__":
    main()
