#!/usr/bin/env python3
"""Benchmark the inner codecs on realistic packed-feature frames; prints JSON to stdout.

For each codec, frame size and QP it reports encoded bytes, bits per pixel, encode and decode wall time, and luma
PSNR of the reconstruction, together with the preset used. The frames imitate packed CNN features: tiles of
smooth, sparse (ReLU-like) activation maps, min-max quantized to the bit depth. Codecs without 10-bit support (VP9)
get the same frames reduced to 8 bits, and say so in ``bit_depth``.

Usage::

    python tools/bench_codecs.py                       # all codecs, 448x448 and 1024x768, 10-bit, 1 frame
    python tools/bench_codecs.py --codecs x265 x264 --sizes 448x448 --frames 3 --gop lowdelay --qps 22 32
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from fcm.codecs import CodecParams, codec_names, get_codec

#: Two QPs per codec spanning its useful range (low: high quality; high: strong compression).
DEFAULT_QPS = {
    "x265": (22, 37),
    "x264": (22, 37),
    "x265-cli": (22, 37),
    "svtav1": (30, 55),
    "vp9": (20, 50),
    "ffv1": (0,),
}


@dataclass(frozen=True)
class Result:
    codec: str
    preset: str | None
    width: int
    height: int
    bit_depth: int
    frames: int
    gop: str
    qp: int
    bytes: int
    bits_per_pixel: float
    encode_s: float
    decode_s: float
    psnr_db: float | None  # None: lossless (infinite PSNR)


def packed_features(width: int, height: int, bit_depth: int, frames: int, tile: int = 56, seed: int = 0) -> np.ndarray:
    """``(frames, height, width)`` uint16 frames tiled with synthetic feature maps of ``tile`` x ``tile``.

    Each map is a low-pass Gaussian field through a ReLU with a random per-channel scale, which gives the blocky
    mosaic of smooth, partly zero tiles that packed backbone features show. Successive frames drift slightly.
    """
    rng = np.random.default_rng(seed)
    rows, cols = -(-height // tile), -(-width // tile)
    freqs = np.fft.fftfreq(tile)
    lowpass = np.exp(-(freqs[:, None] ** 2 + freqs[None, :] ** 2) / (2 * 0.06**2))
    base = rng.standard_normal((rows * cols, tile, tile))
    drift = rng.standard_normal((rows * cols, tile, tile))
    scale = rng.gamma(2.0, 0.5, size=(rows * cols, 1, 1))
    out = np.empty((frames, height, width), dtype=np.uint16)
    for f in range(frames):
        fields = np.real(np.fft.ifft2(np.fft.fft2(base + 0.15 * f * drift) * lowpass)) * 8.0
        maps = np.maximum(fields * scale - 0.2, 0.0)
        mosaic = maps.reshape(rows, cols, tile, tile).transpose(0, 2, 1, 3).reshape(rows * tile, cols * tile)
        mosaic = mosaic[:height, :width]
        lo, hi = mosaic.min(), mosaic.max()
        out[f] = np.round((mosaic - lo) / max(hi - lo, 1e-12) * ((1 << bit_depth) - 1))
    return out


def psnr(a: np.ndarray, b: np.ndarray, bit_depth: int) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else float(10 * np.log10(((1 << bit_depth) - 1) ** 2 / mse))


def bench_one(name: str, frames: np.ndarray, bit_depth: int, params: CodecParams) -> Result:
    codec = get_codec(name)
    if bit_depth not in codec.bit_depths:  # e.g. VP9: code the same content at the codec's best depth
        target = codec.default_bit_depth
        frames = (frames.astype(np.int64) >> (bit_depth - target)).astype(np.uint16)
        bit_depth = target
    t0 = time.perf_counter()
    encoded = codec.encode(frames, bit_depth, params)
    t1 = time.perf_counter()
    decoded = codec.decode(encoded)
    t2 = time.perf_counter()
    n, h, w = frames.shape
    preset = params.preset if params.preset is not None else getattr(codec, "default_preset", None)
    return Result(
        codec=name,
        preset=preset,
        width=w,
        height=h,
        bit_depth=bit_depth,
        frames=n,
        gop=params.gop,
        qp=params.qp,
        bytes=encoded.num_bytes,
        bits_per_pixel=round(8 * encoded.num_bytes / (n * h * w), 4),
        encode_s=round(t1 - t0, 4),
        decode_s=round(t2 - t1, 4),
        psnr_db=_finite(psnr(decoded, frames, bit_depth)),
    )


def _finite(value: float) -> float | None:
    return round(value, 3) if np.isfinite(value) else None


def _size(text: str) -> tuple[int, int]:
    w, _, h = text.partition("x")
    return int(w), int(h)


def main(argv: list[str] | None = None) -> int:
    default_codecs = [n for n in codec_names() if n != "x265-cli" or shutil.which("x265")]
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--codecs", nargs="+", default=default_codecs, choices=codec_names())
    parser.add_argument("--sizes", nargs="+", type=_size, default=[(448, 448), (1024, 768)], metavar="WxH")
    parser.add_argument("--bit-depth", type=int, default=10)
    parser.add_argument("--frames", type=int, default=1)
    parser.add_argument("--gop", choices=("intra", "lowdelay"), default="intra")
    parser.add_argument("--qps", nargs="+", type=int, help="QPs for every codec (default: two per codec)")
    parser.add_argument("--preset", help="encoder preset for every codec (default: each codec's own)")
    args = parser.parse_args(argv)

    results = []
    for width, height in args.sizes:
        frames = packed_features(width, height, args.bit_depth, args.frames)
        for name in args.codecs:
            qps = args.qps if args.qps is not None else DEFAULT_QPS.get(name, (22, 37))
            for qp in qps:
                params = CodecParams(qp=qp, gop=args.gop, preset=args.preset)
                results.append(asdict(bench_one(name, frames, args.bit_depth, params)))
    report = {
        "machine": {"python": platform.python_version(), "cpu": platform.processor() or platform.machine()},
        "frames": "packed synthetic features (56x56 tiles, ReLU'd low-pass fields)",
        "results": results,
    }
    json.dump(report, sys.stdout, indent=2)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
