#!/usr/bin/env python
"""Load-test ``fcm serve`` on loopback: a real server process, a mix of valid and fuzzed bitstreams.

    python tools/load_test.py [--requests 10000] [--concurrency 8,32] [--fuzzed 0.1] [--port 8765] [--batch N]

Starts ``fcm serve`` (EfficientNet-Lite0 stage4) as a subprocess, codes the embedded set's 30 inputs with x265 at QP
32, and for each concurrency level posts ``--requests`` bitstreams (a fraction ``--fuzzed`` of them mutated by
``tools/fuzz_bitstream.py``'s mutations) through one keep-alive connection per in-flight slot. Prints JSON per level:
throughput, latency percentiles (p50/p95/p99 of the round trip), answers by status (5xx must be 0), and the server's
resident memory at the start and end (its growth). Then the latency the service adds over an in-process
``pipeline.decode`` with a warm model and the server's one torch thread, at concurrency 1 (median of
``--overhead-samples`` each).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def bitstreams(fuzzed: float, count: int, seed: int = 0) -> tuple[list[bytes], list[bool]]:
    """``count`` bodies cycling over the embedded set's streams, a fraction ``fuzzed`` of them mutated."""
    sys.path.insert(0, str(ROOT / "tools"))
    import fuzz_bitstream

    from fcm import pipeline
    from fcm.codecs import CodecParams
    from fcm.data import build_dataset
    from fcm.models import get_model

    model = get_model("efficientnet_lite0", "stage4")
    valid = [
        pipeline.encode(s.image(), model, "x265", CodecParams(32)).bitstream
        for s in build_dataset({"kind": "embedded"})
    ]
    starts = [fuzz_bitstream._payload_start(v) for v in valid]
    rng = np.random.default_rng(seed)
    bodies, is_fuzzed = [], []
    for i in range(count):
        k = i % len(valid)
        if rng.random() < fuzzed:
            kind = fuzz_bitstream.MUTATIONS[int(rng.integers(len(fuzz_bitstream.MUTATIONS)))]
            bodies.append(fuzz_bitstream.mutate(valid[k], kind, rng, starts[k]))
            is_fuzzed.append(True)
        else:
            bodies.append(valid[k])
            is_fuzzed.append(False)
    return bodies, is_fuzzed


async def drive(
    url: str, bodies: list[bytes], concurrency: int, fuzzed: list[bool] | None = None
) -> tuple[list[float], collections.Counter, float]:
    """Post every body; statuses are counted as ``valid:<status>`` / ``fuzzed:<status>``."""
    import httpx

    latencies: list[float] = []
    statuses: collections.Counter = collections.Counter()
    queue: asyncio.Queue[tuple[bytes, bool]] = asyncio.Queue()
    for b, f in zip(bodies, fuzzed or [False] * len(bodies), strict=True):
        queue.put_nowait((b, f))
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)

    async def worker(client: httpx.AsyncClient) -> None:
        while True:
            try:
                body, is_fuzzed = queue.get_nowait()
            except asyncio.QueueEmpty:
                return
            kind = "fuzzed" if is_fuzzed else "valid"
            t0 = time.perf_counter()
            try:
                r = await client.post("/v1/decode", content=body, headers={"content-type": "application/octet-stream"})
                statuses[f"{kind}:{r.status_code}"] += 1
            except httpx.HTTPError as e:
                statuses[f"{kind}:transport:{type(e).__name__}"] += 1
            latencies.append(time.perf_counter() - t0)

    t0 = time.perf_counter()
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=120) as client:
        await asyncio.gather(*(worker(client) for _ in range(concurrency)))
    return latencies, statuses, time.perf_counter() - t0


def batch_size(url: str) -> float | None:
    """Mean streams per back-half call so far (the server's micro-batching histogram; None when off)."""
    import httpx

    text = httpx.get(url + "/metrics").text
    try:
        calls = float(text.split("fcm_back_half_batch_size_count ")[1].split()[0])
        total = float(text.split("fcm_back_half_batch_size_sum ")[1].split()[0])
    except IndexError:
        return None
    return round(total / calls, 2) if calls else None


def overhead(url: str, samples: int) -> dict:
    """Service round trip vs in-process decode with a warm model, one request at a time (medians)."""
    import httpx
    import torch

    from fcm import pipeline
    from fcm.codecs import CodecParams
    from fcm.images import bundled_photo
    from fcm.models import get_model

    torch.set_num_threads(1)  # the server decodes with one torch thread (ServeConfig.torch_threads): compare alike
    model = get_model("efficientnet_lite0", "stage4")
    data = pipeline.encode(bundled_photo("chelsea"), model, "x265", CodecParams(32)).bitstream
    pipeline.decode(data, model)
    local, remote = [], []
    with httpx.Client(base_url=url) as http:
        for _ in range(samples):
            t0 = time.perf_counter()
            pipeline.decode(data, model)
            local.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            http.post("/v1/decode", content=data).raise_for_status()
            remote.append(time.perf_counter() - t0)
    return {
        "in_process_ms": round(1000 * float(np.median(local)), 3),
        "service_ms": round(1000 * float(np.median(remote)), 3),
        "added_ms": round(1000 * (float(np.median(remote)) - float(np.median(local))), 3),
        "samples": samples,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=10000)
    parser.add_argument("--concurrency", default="8,32")
    parser.add_argument("--fuzzed", type=float, default=0.1, help="fraction of mutated bitstreams")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--overhead-samples", type=int, default=200)
    parser.add_argument("--server-concurrency", type=int, default=2, help="decodes the server runs at once")
    parser.add_argument("--batch", type=int, default=1, help="server micro-batching: back-half calls per batch")
    parser.add_argument("--batch-wait-ms", type=float, default=5.0, help="server micro-batching latency cap")
    parser.add_argument("--overhead-only", action="store_true", help="only the added latency at concurrency 1")
    args = parser.parse_args(argv)

    bodies, fuzzed = bitstreams(args.fuzzed, 50 if args.overhead_only else args.requests)
    url = f"http://127.0.0.1:{args.port}"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.pop("FCM_SERVE_TOKEN", None)
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "fcm.cli",
            "serve",
            "--port",
            str(args.port),
            "--model",
            "efficientnet_lite0:stage4",
            "--concurrency",
            str(args.server_concurrency),
            "--batch",
            str(args.batch),
            "--batch-wait-ms",
            str(args.batch_wait_ms),
        ],
        env=env,
        stderr=None,  # the server's own errors stay visible
    )
    try:
        import httpx

        deadline = time.time() + 120
        while True:
            try:
                if httpx.get(url + "/readyz").status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.time() > deadline or server.poll() is not None:
                raise SystemExit("the server did not become ready")
            time.sleep(0.2)
        asyncio.run(drive(url, bodies[:50], 2))  # warm-up: first requests load lazily-initialised kernels
        levels = {}
        for c in [] if args.overhead_only else (int(x) for x in args.concurrency.split(",")):
            before = rss_mib(server.pid)
            latencies, statuses, wall = asyncio.run(drive(url, bodies, c, fuzzed))
            after = rss_mib(server.pid)
            lat = np.array(latencies) * 1000
            levels[str(c)] = {
                "requests": len(bodies),
                "fuzzed": int(sum(fuzzed)),
                "wall_s": round(wall, 2),
                "throughput_rps": round(len(bodies) / wall, 1),
                "latency_ms": {
                    q: round(float(np.percentile(lat, p)), 2) for q, p in (("p50", 50), ("p95", 95), ("p99", 99))
                },
                "statuses": dict(sorted(statuses.items())),
                "server_5xx": sum(v for k, v in statuses.items() if k.split(":")[1].startswith("5")),
                "valid_not_200": sum(v for k, v in statuses.items() if k.startswith("valid:") and k != "valid:200"),
                "mean_batch": batch_size(url),
                "server_rss_mib": {
                    "start": round(before, 1),
                    "end": round(after, 1),
                    "growth": round(after / before - 1, 4),
                },
            }
        report = {"levels": levels, "overhead_at_concurrency_1": overhead(url, args.overhead_samples)}
        report["server_alive_at_end"] = server.poll() is None
        print(json.dumps(report, indent=2))
    finally:
        server.terminate()
        try:
            server.wait(10)
        except subprocess.TimeoutExpired:
            server.kill()
    failed = any(level["server_5xx"] or level["valid_not_200"] for level in levels.values())
    return 1 if failed or not report["server_alive_at_end"] else 0


if __name__ == "__main__":
    sys.exit(main())
