#!/usr/bin/env python
"""Benchmark video split inference: encode and decode frames per second, stream size and kbps, and the peak memory
of a whole encode + decode, for sequences of several lengths (each in its own process, so peaks do not mix).

    python tools/bench_video.py [--frames 30,300] [--clip astronaut] [--size 320x240] [--codec x265] [--qp 32]
                                [--gop lowdelay] [--intra-period 32] [--preset medium]

Prints one JSON object: per length, frames, bytes, kbps, encode/decode fps and peak RSS (MiB), and the peak ratio
of the longest to the shortest (memory must not grow with the sequence length).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def one(args: argparse.Namespace, frames: int, path: str) -> dict:
    import torch

    torch.set_num_threads(1)
    from fcm.codecs import CodecParams
    from fcm.models import get_model
    from fcm.video.pipeline import decode_video, encode_video
    from fcm.video.sources import open_source

    model = get_model(args.model)
    source = open_source(f"clip:{args.clip}:{frames}:{args.size}")
    params = CodecParams(args.qp, gop=args.gop, preset=args.preset)
    with open(path, "wb") as sink:
        stats = encode_video(
            source.frames(), model, args.codec, params, sink, source.fps, intra_period=args.intra_period
        )
    t0 = time.perf_counter()
    decoded = 0
    with open(path, "rb") as f:
        for _ in decode_video(f, model)[1]:
            decoded += 1
    decode_s = time.perf_counter() - t0
    assert decoded == frames == stats.frames
    return {
        "frames": frames,
        "bytes": stats.bytes,
        "kbps": round(stats.kbps, 2),
        "encode_fps": round(stats.encode_fps, 2),
        "decode_fps": round(decoded / decode_s, 2),
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--frames", default="30,300")
    p.add_argument("--clip", default="astronaut")
    p.add_argument("--size", default="320x240")
    p.add_argument("--model", default="efficientnet_lite0")
    p.add_argument("--codec", default="x265")
    p.add_argument("--qp", type=int, default=32)
    p.add_argument("--gop", default="lowdelay", choices=("intra", "lowdelay"))
    p.add_argument("--intra-period", type=int, default=32)
    p.add_argument("--preset", default=None)
    p.add_argument("--one", type=int, default=None, help=argparse.SUPPRESS)  # the child process
    p.add_argument("--stream", default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.one is not None:
        print(json.dumps(one(args, args.one, args.stream)))
        return 0
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in (int(x) for x in args.frames.split(",")):
            stream = str(Path(tmp) / f"{n}.fcmv")
            child = [
                sys.executable,
                __file__,
                *(argv if argv is not None else sys.argv[1:]),
                "--one",
                str(n),
                "--stream",
                stream,
            ]
            out = subprocess.run(child, capture_output=True, text=True, check=True)
            runs.append(json.loads(out.stdout.strip().splitlines()[-1]))
    report = {
        "settings": {k: v for k, v in vars(args).items() if k not in ("one", "stream")},
        "runs": runs,
        "peak_ratio_longest_to_shortest": round(runs[-1]["peak_rss_mib"] / runs[0]["peak_rss_mib"], 3),
    }
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
