"""Edge throughput: images per second through the edge half (front + wrapper + pack + encode), by input size,
encoder preset and wrapper; prints JSON.

    python tools/bench_edge_throughput.py                                   # faster_rcnn_lite0_fpn, 256/512/800 px
    python tools/bench_edge_throughput.py --sizes 256 512 --presets ultrafast --runs 5 \\
        --wrapper checkpoints/faster_rcnn_lite0_fpn_fusion.pt

Each input is a real photo (``--image``, scikit-image's astronaut by default) centre-cropped to a square and resized
to the size; every configuration is warmed up once, then encoded ``--runs`` times one after the other. Reported per
configuration: images/s (runs over their total wall time), the median milliseconds of the front (with the
pre-wrapper), packing and the codec, and the stream's bpp at ``--qp``. Torch runs with ``--torch-threads`` intra-op
threads (default 2: the whole of this 2-core machine; the codec uses its own threads); the JSON records the
numerics settings and the CPU.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from typing import Any

import numpy as np


def square(image: np.ndarray, size: int) -> np.ndarray:
    """``image`` centre-cropped to a square and resized to ``size`` × ``size`` (bicubic)."""
    from PIL import Image

    h, w = image.shape[:2]
    side = min(h, w)
    top, left = (h - side) // 2, (w - side) // 2
    crop = Image.fromarray(image[top : top + side, left : left + side])
    return np.asarray(crop.resize((size, size), Image.Resampling.BICUBIC))


def bench(args: argparse.Namespace) -> list[dict[str, Any]]:
    from tqdm import tqdm

    from fcm import pipeline
    from fcm.codecs import CodecParams
    from fcm.images import load_image
    from fcm.models import get_model
    from fcm.wrappers import load_wrapper_or_family

    photo = load_image(args.image)
    labels = ["none"] + ([args.wrapper] if args.wrapper else [])
    plan = [(s, p, w) for s in args.sizes for p in args.presets for w in labels]
    rows = []
    built: dict[int, tuple[Any, dict[str, Any]]] = {}
    for size, preset, label in tqdm(plan, desc="edge throughput", unit="config", disable=args.no_progress):
        if size not in built:
            # a detector resizes its input to its own min/max size: build it at the size measured, or every size
            # would be measured at the default one
            options = {"min_size": size, "max_size": size} if args.model_resizes else {}
            model = get_model(args.model, args.split, **options)
            wrappers: dict[str, Any] = {"none": None}
            if args.wrapper:
                wrappers[args.wrapper] = load_wrapper_or_family(args.wrapper, model)
            built[size] = (model, wrappers)
        model, wrappers = built[size]
        image = square(photo, size)
        params = CodecParams(args.qp, preset=preset)
        wrapper = wrappers[label]
        pipeline.encode(image, model, args.codec, params, wrapper=wrapper, torch_threads=None)  # warm-up
        stages: dict[str, list[float]] = {"front": [], "pack": [], "codec": []}
        t0 = time.perf_counter()
        for _ in range(args.runs):
            enc = pipeline.encode(image, model, args.codec, params, wrapper=wrapper, torch_threads=None)
            stages["front"].append(enc.front_s)
            stages["pack"].append(enc.pack_s)
            stages["codec"].append(enc.codec_s)
        wall = time.perf_counter() - t0
        rows.append(
            {
                "size": size,
                "preset": preset,
                "wrapper": label,
                "images_per_s": round(args.runs / wall, 3),
                "median_ms": {k: round(1000 * statistics.median(v), 1) for k, v in stages.items()},
                "bpp": round(enc.bpp, 5),
                "bytes": len(enc.bitstream),
            }
        )
    return rows


def main(argv: list[str] | None = None) -> None:
    from fcm.numerics import numerics_record, torch_threads

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="faster_rcnn_lite0_fpn")
    ap.add_argument("--split", default="fpn")
    ap.add_argument("--wrapper", default=None, help="a wrapper checkpoint or family, measured beside no wrapper")
    ap.add_argument("--image", default="skimage:astronaut")
    ap.add_argument("--sizes", type=int, nargs="+", default=[256, 512, 800])
    ap.add_argument(
        "--no-model-resize",
        dest="model_resizes",
        action="store_false",
        help="build the model with its defaults (for a model without min_size/max_size options)",
    )
    ap.add_argument("--presets", nargs="+", default=["ultrafast", "medium"])
    ap.add_argument("--codec", default="x265")
    ap.add_argument("--qp", type=int, default=32)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--torch-threads", type=int, default=2)
    ap.add_argument("--no-progress", action="store_true")
    args = ap.parse_args(argv)
    if args.runs < 1 or min(args.sizes) < 64:
        ap.error("--runs must be >= 1 and every size >= 64")
    with torch_threads(args.torch_threads):
        rows = bench(args)
    report = {
        "model": f"{args.model}/{args.split}",
        "codec": args.codec,
        "qp": args.qp,
        "image": args.image,
        "runs": args.runs,
        "cpu_count": os.cpu_count(),
        "machine": platform.machine(),
        "numerics": numerics_record(args.torch_threads),
        "results": rows,
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
