#!/usr/bin/env python
"""How well each training rate model predicts the real codec's bytes, over inputs × QPs.

    python tools/bench_rate_proxy.py [--split test] [--qps 22,27,32,37,42,47] [--wrapper CKPT ...] [--preset medium]
        [--rate-model log_magnitude --rate-model factorized ...] [--fit-steps 600]

For every input of the photo split (``fcm.data.photos``; default the test split, whole photos and crops) and of the
embedded set, the split tensors (and, per ``--wrapper``, that wrapper's coded tensors) are packed as the packer does,
then at each QP: the bits of each ``--rate-model`` (:mod:`fcm.surrogates.rate_models`; default ``log_magnitude``,
``Σ log2(1 + |q|)`` of the 8×8 block-DCT levels) and the bytes the real codec (x265 by default) writes for the same
frames. A learned model (``factorized``) is first fitted, per source (plain features, each wrapper), by Adam on the
frames of the **train** photos' same views at the same QPs (``--fit-steps``), never on the inputs it is scored on.
Prints JSON per source and rate model: Spearman's rank correlation of model bits with real bytes over all inputs ×
QPs (pooled) and within each QP (across inputs alone, the harder test: QP alone ranks most pooled pairs), the
least-squares slope of log(bytes) on log(model bits), and the median ratio of model bits to real bits (1: a count,
not just a ranking).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

import numpy as np


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--split",
        default="test",
        choices=["validation", "test"],
        help="photo split (choose a rate model on validation)",
    )
    ap.add_argument("--qps", default="22,27,32,37,42,47", help="comma-separated QPs")
    ap.add_argument("--wrapper", action="append", default=[], help="also the coded tensors of this wrapper checkpoint")
    ap.add_argument("--codec", default="x265")
    ap.add_argument("--preset", default="medium")
    ap.add_argument("--no-embedded", action="store_true", help="photos only")
    ap.add_argument(
        "--rate-model",
        action="append",
        default=[],
        help="NAME[,option=value...] or a YAML mapping, e.g. factorized,quantizer=ste (repeatable)",
    )
    ap.add_argument("--fit-steps", type=int, default=600, help="Adam steps fitting a learned rate model")
    ap.add_argument("--fit-lr", type=float, default=1e-2)
    args = ap.parse_args(argv)
    qps = [int(q) for q in args.qps.split(",")]
    names = args.rate_model or ["log_magnitude"]
    specs = {name: _spec(name) for name in names}

    import torch
    from scipy.stats import spearmanr

    from fcm.codecs import CodecParams, get_codec
    from fcm.data.datasets import PHOTO_VIEWS, EmbeddedPhotos, PhotoSplit
    from fcm.data.photos import SHORT_SIDE, load_photo, split_photos
    from fcm.models import get_model
    from fcm.packing.packer import Packer
    from fcm.pipeline import run_front
    from fcm.surrogates.rate_models import build_rate_model
    from fcm.wrappers import load_wrapper

    torch.set_num_threads(1)
    model = get_model("efficientnet_lite0", "stage4")
    codec = get_codec(args.codec)
    depth = codec.default_bit_depth
    packer = Packer(depth, "frame")
    wrappers = {"plain": None} | {path: load_wrapper(path, model) for path in args.wrapper}

    def frames_of(image: np.ndarray) -> dict[str, tuple[np.ndarray, torch.Tensor]]:
        """Per source: the packed frames (for the codec) and the same as float (for the rate models)."""
        edge = run_front(image, model)
        out = {}
        for source, wrapper in wrappers.items():
            tensors = edge.features.tensors
            if wrapper is not None:
                with torch.no_grad():
                    tensors = wrapper.encode(tensors)
            packed = packer.pack(tensors)
            out[source] = (packed.frames, torch.as_tensor(packed.frames.astype(np.float32)))
        return out

    t0 = time.perf_counter()
    models: dict[tuple[str, str], torch.nn.Module] = {}
    fit_report: dict[str, object] = {}
    if any(build_rate_model(specs[n], depth).learned for n in names):
        train_frames = [
            frames_of(load_photo(path, SHORT_SIDE, box)) for _, path in split_photos("train") for _, box in PHOTO_VIEWS
        ]
        print(f"train frames: {len(train_frames)} ({time.perf_counter() - t0:.0f} s)", file=sys.stderr, flush=True)
    for name in names:
        for source in wrappers:
            torch.manual_seed(0)
            rate_model = build_rate_model(specs[name], depth, args.fit_steps)
            if rate_model.learned:
                fit_report[f"{source}/{name}"] = _fit(rate_model, [f[source][1] for f in train_frames], qps, args)
            models[(source, name)] = rate_model.eval()

    inputs = list(PhotoSplit(args.split)) + ([] if args.no_embedded else list(EmbeddedPhotos()))
    rows: list[tuple[str, str, str, int, float, int]] = []  # (source, rate model, input, qp, model bits, real bytes)
    for sample in inputs:
        for source, (frames, as_float) in frames_of(sample.image()).items():
            for qp in qps:
                real = codec.encode(frames, depth, CodecParams(qp, preset=args.preset)).num_bytes
                for name in names:
                    with torch.no_grad():
                        bits = float(models[(source, name)](as_float, qp, args.fit_steps).sum())
                    rows.append((source, name, sample.id, qp, bits, real))
        print(f"{sample.id}: done ({time.perf_counter() - t0:.0f} s)", file=sys.stderr, flush=True)

    def stats(sel: list[tuple[str, str, str, int, float, int]]) -> dict[str, float]:
        p = np.array([r[4] for r in sel])
        b = np.array([r[5] for r in sel], dtype=np.float64)
        ok = p > 0
        slope = float(np.polyfit(np.log(p[ok]), np.log(b[ok]), 1)[0]) if ok.sum() > 2 else float("nan")
        return {
            "n": len(sel),
            "spearman": round(float(spearmanr(p, b).statistic), 4),
            "loglog_slope": round(slope, 3),
            "median_bits_over_real": round(float(np.median(p / (8 * b))), 3),
        }

    out: dict[str, object] = {
        "split": args.split,
        "embedded": not args.no_embedded,
        "codec": args.codec,
        "preset": args.preset,
        "inputs": len(inputs),
        "qps": qps,
        "seconds": round(time.perf_counter() - t0, 1),
        "fit": fit_report,
    }
    for source in wrappers:
        out[source] = {}
        for name in names:
            sel = [r for r in rows if r[0] == source and r[1] == name]
            out[source][name] = {
                "pooled": stats(sel),
                "within_qp": {str(q): stats([r for r in sel if r[3] == q]) for q in qps},
            }
    json.dump(out, sys.stdout, indent=2)
    print()
    return 0


def _spec(text: str) -> dict[str, Any]:
    """``NAME[,option=value...]`` (values read as YAML scalars: numbers, true/false) or a YAML mapping
    ``{name: …, filters: [3, 3]}`` → a rate model spec."""
    import yaml

    if text.lstrip().startswith("{"):
        spec = yaml.safe_load(text)
        if not isinstance(spec, dict) or not isinstance(spec.get("name"), str):
            raise SystemExit(f"--rate-model {text!r}: a mapping needs a name")
        return spec
    name, *options = text.split(",")
    spec: dict[str, Any] = {"name": name}
    for option in options:
        key, sep, value = option.partition("=")
        if not sep:
            raise SystemExit(f"--rate-model {text!r}: options are key=value, got {option!r}")
        spec[key] = yaml.safe_load(value)
    return spec


def _fit(rate_model: Any, frames: list[Any], qps: list[int], args: argparse.Namespace) -> dict[str, float]:
    """Adam on the mean bits per sample of one random train frame at one random QP per step (seeded)."""
    import torch

    rng = np.random.default_rng(0)
    optimizer = torch.optim.Adam(rate_model.parameters(), lr=args.fit_lr)
    losses = []
    for step in range(args.fit_steps):
        frame = frames[int(rng.integers(len(frames)))]
        qp = qps[int(rng.integers(len(qps)))]
        loss = rate_model(frame, qp, step).sum() / frame.numel()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
    tenth = max(1, len(losses) // 10)
    return {
        "first_bits_per_sample": round(float(np.mean(losses[:tenth])), 4),
        "last": round(float(np.mean(losses[-tenth:])), 4),
    }


if __name__ == "__main__":
    raise SystemExit(main())
