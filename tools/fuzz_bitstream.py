#!/usr/bin/env python3
"""Fuzz the whole decoding path (container parser, codec decoders, unpacking) with mutated real fcm bitstreams.

Seed streams are real two-frame fcm bitstreams coded with x265, x264, SVT-AV1, VP9 and FFV1. Each case applies one
mutation kind to one of them and decodes the result with :func:`fcm.pipeline.decode_features`, in a worker process
with a per-case timeout. Outcomes per kind:

* ``rejected``: a :class:`fcm.errors.BitstreamError` (the one documented error for bad input);
* ``decoded``: decoded to finite features (damage a checksum-less codec cannot see, or a harmless edit);
* ``bug``: any other exception, or non-finite features;
* ``hang``: no answer within the timeout (the worker is killed and restarted).

Prints JSON ``{"cases", "seed", "wall_s", "by_kind": {kind: {outcome: count}}, "bugs": [...]}``; exits 1 if any
``bug`` or ``hang`` occurred. Deterministic for a given ``--seed`` and ``--cases``.

Usage::

    python tools/fuzz_bitstream.py --cases 10000 --seed 1
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import struct
import sys
import time
import zlib
from collections import Counter
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

SEED_CODECS = ("x265", "x264", "svtav1", "vp9", "ffv1", "x265+scales")
#: preamble bytes (magic, version, body length) that most field edits keep, to reach the body parser
PREAMBLE_BYTES = 9
MUTATIONS = (
    "bit_flip",
    "byte_insert",
    "byte_delete",
    "truncate",
    "field_edit_recrc",
    "payload_edit_recrc",
    "giant_size_recrc",
)
OUTCOMES = ("rejected", "decoded", "bug", "hang")


def recrc(data: bytes) -> bytes:
    """``data`` with its trailing CRC-32 recomputed, so that an edit reaches the field parser."""
    body = data[:-4]
    return body + struct.pack("<I", zlib.crc32(body))


def seed_stream(seed_name: str) -> bytes:
    """A real two-frame, two-tensor fcm bitstream coded with the codec ``seed_name`` names (deterministic);
    ``<codec>+scales`` codes it through per-block sample scaling (format version 3, field 10a)."""
    import torch

    from fcm import bitstream
    from fcm.codecs import CodecParams, get_codec
    from fcm.packing import Packer
    from fcm.rdo.scaling import scale_frames

    codec_name, _, variant = seed_name.partition("+")
    codec = get_codec(codec_name)
    bit_depth = 10 if 10 in codec.bit_depths else 8
    gen = torch.Generator().manual_seed(0)
    tensors = {"p2": torch.randn(2, 16, 8, 12, generator=gen).relu(), "p3": torch.randn(2, 16, 4, 6, generator=gen)}
    packed = Packer(bit_depth, "tensor").pack(tensors)
    params = CodecParams(qp=0 if codec.lossless else 30, gop="lowdelay")
    frames, scales = packed.frames, None
    if variant == "scales":
        n, h, w = frames.shape
        offsets = np.random.default_rng(0).integers(-6, 7, size=(n, -(-h // 8), -(-w // 8))).astype(np.int32)
        frames, scales = scale_frames(frames, offsets, bit_depth, 8)
    payload = codec.encode(frames, bit_depth, params)
    header = bitstream.Header(
        model="fuzz_model",
        split="fuzz_split",
        weights_tag="random",
        meta={"input_size": (64, 96)},
        layout=packed.layout,
        bit_depth=bit_depth,
        range_mode="tensor",
        ranges=packed.ranges,
        codec=codec_name,
        params=params,
        notes=(("tool", "fuzz"),),
        block_scales=scales,
    )
    return bitstream.write(header, payload)


def mutate(data: bytes, kind: str, rng: np.random.Generator, payload_start: int) -> bytes:
    """Apply one mutation of ``kind`` to ``data``; ``payload_start`` is where the codec payload begins."""
    b = bytearray(data)
    if kind == "bit_flip":
        for pos in rng.integers(0, len(b), size=int(rng.integers(1, 5))):
            b[pos] ^= 1 << int(rng.integers(8))
        return bytes(b)
    if kind == "byte_insert":
        pos = int(rng.integers(0, len(b) + 1))
        return bytes(b[:pos] + rng.integers(0, 256, int(rng.integers(1, 9)), dtype=np.uint8).tobytes() + b[pos:])
    if kind == "byte_delete":
        pos = int(rng.integers(0, len(b)))
        return bytes(b[:pos] + b[pos + int(rng.integers(1, 9)) :])
    if kind == "truncate":
        return bytes(b[: int(rng.integers(0, len(b)))])
    if kind == "field_edit_recrc":  # header fields: anything after the preamble and before the payload
        for pos in rng.integers(PREAMBLE_BYTES, payload_start, size=int(rng.integers(1, 4))):
            b[pos] = int(rng.integers(0, 256))
        return recrc(bytes(b))
    if kind == "payload_edit_recrc":  # inside the codec's packets: what the decoders see
        for pos in rng.integers(payload_start, len(b) - 4, size=int(rng.integers(1, 4))):
            b[pos] ^= int(rng.integers(1, 256))
        return recrc(bytes(b))
    if kind == "giant_size_recrc":  # a varint (length, count or dimension) made enormous
        pos = int(rng.integers(PREAMBLE_BYTES, len(b) - 4))
        giant = bytes([0xFF] * int(rng.integers(1, 10)) + [int(rng.integers(1, 128))])
        return recrc(bytes(b[:pos] + giant + b[pos + 1 :]))
    raise ValueError(f"unknown mutation {kind!r}")


def _payload_start(data: bytes) -> int:
    """Offset of the codec payload (extradata, then the packets) in a valid stream: the tail the writer makes."""
    from fcm import bitstream

    _, payload = bitstream.read(data)
    tail = bitstream.FieldWriter()
    tail.raw(payload.extradata)
    tail.uint(len(payload.packets))
    for packet in payload.packets:
        tail.raw(packet)
    return len(data) - 4 - len(tail.buf)


def classify(data: bytes) -> tuple[str, str]:
    """Decode ``data``; return (outcome, detail)."""
    from fcm.errors import BitstreamError
    from fcm.pipeline import decode_features

    try:
        features, _, _, _ = decode_features(data)
    except BitstreamError as e:
        return "rejected", str(e)[:120]
    except Exception as e:
        return "bug", f"{type(e).__name__}: {e}"[:300]
    if not all(bool(t.isfinite().all()) for t in features.tensors.values()):
        return "bug", "decoded to non-finite features"
    return "decoded", ""


def _worker(conn) -> None:  # pragma: no cover - runs in a child process
    while True:
        data = conn.recv()
        if data is None:
            return
        conn.send(classify(data))


class _Decoder:
    """A worker process that decodes one case at a time; killed and restarted when a case hangs."""

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self.ctx = mp.get_context("spawn")
        self._start()

    def _start(self) -> None:
        self.conn, child = self.ctx.Pipe()
        self.proc = self.ctx.Process(target=_worker, args=(child,), daemon=True)
        self.proc.start()

    def __call__(self, data: bytes) -> tuple[str, str]:
        self.conn.send(data)
        if self.conn.poll(self.timeout):
            try:
                return self.conn.recv()
            except EOFError:
                outcome = ("bug", f"worker died (exit code {self.proc.exitcode})")
        else:
            outcome = ("hang", f"no answer in {self.timeout} s")
        self.proc.kill()
        self.proc.join()
        self._start()
        return outcome

    def close(self) -> None:
        self.conn.send(None)
        self.proc.join(10)


def run(cases: int, seed: int, timeout: float = 30.0) -> dict:
    start = time.perf_counter()
    seeds = {name: seed_stream(name) for name in SEED_CODECS}
    starts = {name: _payload_start(data) for name, data in seeds.items()}
    rng = np.random.default_rng(seed)
    counts: dict[str, Counter] = {kind: Counter() for kind in MUTATIONS}
    bugs = []
    decoder = _Decoder(timeout)
    try:
        for i in range(cases):
            name = SEED_CODECS[i % len(SEED_CODECS)]
            kind = MUTATIONS[int(rng.integers(len(MUTATIONS)))]
            data = mutate(seeds[name], kind, rng, starts[name])
            outcome, detail = decoder(data)
            counts[kind][outcome] += 1
            if outcome in ("bug", "hang"):
                bugs.append({"case": i, "codec": name, "kind": kind, "outcome": outcome, "detail": detail})
    finally:
        decoder.close()
    return {
        "cases": cases,
        "seed": seed,
        "wall_s": round(time.perf_counter() - start, 1),
        "by_kind": {kind: {o: counts[kind][o] for o in OUTCOMES} for kind in MUTATIONS},
        "totals": {o: sum(c[o] for c in counts.values()) for o in OUTCOMES},
        "bugs": bugs[:50],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", type=int, default=1000, help="number of mutated streams (default 1000)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds before a case counts as a hang")
    args = parser.parse_args(argv)
    result = run(args.cases, args.seed, args.timeout)
    print(json.dumps(result, indent=2))
    return 1 if result["totals"]["bug"] or result["totals"]["hang"] else 0


if __name__ == "__main__":
    sys.exit(main())
