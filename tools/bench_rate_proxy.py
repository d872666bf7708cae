#!/usr/bin/env python
"""How well the training rate proxy predicts the real codec's bytes, over inputs × QPs.

    python tools/bench_rate_proxy.py [--split test] [--qps 22,27,32,37,42,47] [--wrapper CKPT ...] [--preset medium]

For every input of the photo split (``fcm.data.photos``; default the test split, whole photos and crops) and of the
embedded set, the split tensors (and, per ``--wrapper``, that wrapper's coded tensors) are packed as the packer does,
then at each QP: the rate proxy training minimises (``fcm.train.channel``: ``Σ log2(1 + |q|)`` of the 8×8 block-DCT
levels, :class:`fcm.surrogates.ProxyCodec`) and the bytes the real codec (x265 by default) writes for the same frames.
Prints JSON: Spearman's rank correlation of proxy bits with real bytes over all inputs × QPs (pooled) and within each
QP (across inputs alone, the harder test: QP alone ranks most pooled pairs), and the least-squares slope of
log(bytes) on log(proxy bits).
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--split", default="test", choices=["validation", "test"], help="photo split")
    ap.add_argument("--qps", default="22,27,32,37,42,47", help="comma-separated QPs")
    ap.add_argument("--wrapper", action="append", default=[], help="also the coded tensors of this wrapper checkpoint")
    ap.add_argument("--codec", default="x265")
    ap.add_argument("--preset", default="medium")
    ap.add_argument("--no-embedded", action="store_true", help="photos only")
    args = ap.parse_args(argv)
    qps = [int(q) for q in args.qps.split(",")]

    import torch
    from scipy.stats import spearmanr

    from fcm.codecs import CodecParams, get_codec
    from fcm.data.datasets import EmbeddedPhotos, PhotoSplit
    from fcm.models import get_model
    from fcm.packing.packer import Packer
    from fcm.pipeline import run_front
    from fcm.surrogates.proxy_codec import ProxyCodec
    from fcm.wrappers import load_wrapper

    torch.set_num_threads(1)
    model = get_model("efficientnet_lite0", "stage4")
    codec = get_codec(args.codec)
    depth = codec.default_bit_depth
    packer = Packer(depth, "frame")
    proxy = ProxyCodec(bit_depth=depth, mode="ste")
    wrappers = {"plain": None} | {path: load_wrapper(path, model) for path in args.wrapper}
    inputs = list(PhotoSplit(args.split)) + ([] if args.no_embedded else list(EmbeddedPhotos()))
    rows: list[tuple[str, str, int, float, int]] = []  # (source, input, qp, proxy bits, real bytes)
    t0 = time.perf_counter()
    for sample in inputs:
        edge = run_front(sample.image(), model)
        for source, wrapper in wrappers.items():
            tensors = edge.features.tensors
            if wrapper is not None:
                with torch.no_grad():
                    tensors = wrapper.encode(tensors)
            packed = packer.pack(tensors)
            frames = torch.as_tensor(packed.frames.astype(np.float64))
            for qp in qps:
                bits = float(proxy(frames, qp).rate.sum())
                real = codec.encode(packed.frames, depth, CodecParams(qp, preset=args.preset)).num_bytes
                rows.append((source, sample.id, qp, bits, real))
        print(f"{sample.id}: done ({time.perf_counter() - t0:.0f} s)", file=sys.stderr, flush=True)

    def stats(sel: list[tuple[str, str, int, float, int]]) -> dict[str, float]:
        p = np.array([r[3] for r in sel])
        b = np.array([r[4] for r in sel], dtype=np.float64)
        ok = p > 0
        slope = float(np.polyfit(np.log(p[ok]), np.log(b[ok]), 1)[0]) if ok.sum() > 2 else float("nan")
        return {"n": len(sel), "spearman": round(float(spearmanr(p, b).statistic), 4), "loglog_slope": round(slope, 3)}

    out: dict[str, object] = {
        "codec": args.codec,
        "preset": args.preset,
        "inputs": len(inputs),
        "qps": qps,
        "seconds": round(time.perf_counter() - t0, 1),
    }
    for source in wrappers:
        sel = [r for r in rows if r[0] == source]
        out[source] = {
            "pooled": stats(sel),
            "within_qp": {str(q): stats([r for r in sel if r[2] == q]) for q in qps},
        }
    json.dump(out, sys.stdout, indent=2)
    print()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
