#!/usr/bin/env python
"""The cost of coding a large FPN frame: x265 encode seconds, bytes and feature PSNR per preset and thread count.

    python tools/bench_large_frames.py [--model faster_rcnn_r50_fpn] [--size 800] [--qp 32]
        [--presets medium,fast,veryfast,ultrafast] [--threads 1,2]

Runs the model's front on a bundled photo resized so its short side is ``--size`` (the R-CNN transform then gives
the usual 800-px input), packs P2–P5 into one 10-bit frame (4864×4256 for ResNet-50's 256 channels), and codes that
frame with x265 at every preset × WPP thread count (x265's wavefront threads do not change its output, so a thread
count is a pure speed setting). Prints JSON: the frame size, then per setting the encode seconds (best of
``--repeat``), bytes, and the PSNR of the decoded split tensors against the uncompressed ones, so a faster setting's
rate and quality price is visible next to its time.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="faster_rcnn_r50_fpn")
    p.add_argument("--weights", default=None)
    p.add_argument("--size", type=int, default=800)
    p.add_argument("--photo", default="astronaut")
    p.add_argument("--qp", type=int, default=32)
    p.add_argument("--presets", default="medium,fast,veryfast,ultrafast")
    p.add_argument("--threads", default="1,2")
    p.add_argument("--repeat", type=int, default=1)
    args = p.parse_args(argv)

    import torch
    from PIL import Image

    from fcm.codecs import CodecParams, get_codec, set_codec_threads
    from fcm.eval.pipelines import feature_psnr
    from fcm.images import bundled_photo
    from fcm.models import get_model
    from fcm.packing import Packer, unpack
    from fcm.pipeline import run_front

    torch.set_num_threads(2)
    model = get_model(args.model, "fpn", args.weights, min_size=args.size, max_size=int(args.size * 1333 / 800))
    photo = bundled_photo(args.photo)
    h, w = photo.shape[:2]
    scale = args.size / min(h, w)
    image = np.asarray(Image.fromarray(photo).resize((round(w * scale), round(h * scale)), Image.Resampling.BILINEAR))
    edge = run_front(image, model)
    packed = Packer(10).pack(edge.features.tensors)
    frame = packed.frames
    runs = []
    for preset in args.presets.split(","):
        for threads in (int(t) for t in args.threads.split(",")):
            set_codec_threads({"x265": threads})
            codec = get_codec("x265")  # takes the thread count when it is made
            best = float("inf")
            for _ in range(args.repeat):
                t0 = time.perf_counter()
                payload = codec.encode(frame, 10, CodecParams(args.qp, preset=preset))
                best = min(best, time.perf_counter() - t0)
            decoded = codec.decode(payload)
            tensors = unpack(type(packed)(decoded, packed.layout, 10, packed.range_mode, packed.ranges))
            runs.append(
                {
                    "preset": preset,
                    "threads": threads,
                    "encode_s": round(best, 3),
                    "bytes": payload.num_bytes,
                    "feature_psnr_db": round(feature_psnr(edge.features.tensors, tensors), 3),
                }
            )
            print(json.dumps(runs[-1]), file=sys.stderr)
    set_codec_threads({})
    report = {
        "model": model.name,
        "weights": model.weights_tag,
        "input": f"{image.shape[1]}x{image.shape[0]}",
        "frame": f"{frame.shape[2]}x{frame.shape[1]}",
        "tensor_samples": int(sum(t.numel() for t in edge.features.tensors.values())),
        "frame_samples": int(frame.shape[1] * frame.shape[2]),
        "qp": args.qp,
        "runs": runs,
    }
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
