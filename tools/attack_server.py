"""A bounded, loopback-only attack on `fcm serve` (issue 22, rows 1 and 2), before and after the hardening.

For each mode it starts its own server process on 127.0.0.1 (``efficientnet_lite0:stage4``, a bearer token), then:

1. **Connection exhaustion** — holds ``--connections`` idle sockets, half as many slow-header ones (one header
   byte every 2 s) and ``--pipelined`` sockets that pipeline thousands of ``GET /metrics`` and never read an answer,
   reconnecting whenever the server closes one, for ``--seconds``; meanwhile two valid clients post real streams
   (each on a fresh connection) and ``/healthz`` is polled. The guarded server holds at most
   ``--max-connections`` (default 250, fewer than the attacker's sockets, so eviction is exercised). Reported:
   success rate and p50/p99 latency of the valid requests and health checks, and how the server refused them.
2. **Work amplification** — posts the audit's stream (7 KB claiming an 80×640×640 tensor) and the largest stream
   the default budget admits, timing each answer and reading the server's peak RSS during it (``VmHWM``, reset
   before each stream through ``/proc/PID/clear_refs``).

Modes: ``legacy`` runs the app as it was served before (uvicorn's ``limit_concurrency=64``, no header deadline,
``max_samples`` 2^25 and no work budget); ``guarded`` runs it as ``fcm serve`` does now. Every wait is bounded
(client timeouts, ``--seconds``); the server is killed at the end. Prints one JSON object.

    python tools/attack_server.py --connections 200 --seconds 20 > runs/attack_server.json
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

SERVER = r"""
import sys, uvicorn
from fcm.serve.app import ModelCache, ServeConfig, ServedModel, create_app, uvicorn_settings
mode, port, token_file, max_connections = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
from fcm.serve.auth import load_token
legacy = dict(max_samples=1 << 25, max_back_gmacs=1e12, max_requests=1 << 20)
config = ServeConfig((ServedModel("efficientnet_lite0", "stage4"),), token=load_token(token_file),
                     **(legacy if mode == "legacy" else dict(max_connections=max_connections)))
cache = ModelCache(config.models)
cache.load()
app = create_app(config, cache)
settings = {"limit_concurrency": 64} if mode == "legacy" else uvicorn_settings(config, app)
uvicorn.run(app, host="127.0.0.1", port=port, log_level="critical", **settings)
"""

TOKEN = "attack-script-token-0123456789abcdef"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _reset_peak_rss(pid: int) -> None:
    Path(f"/proc/{pid}/clear_refs").write_text("5")  # VmHWM := VmRSS (Linux 4.0+)


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


class _Attacker(threading.Thread):
    """Keeps ``idle`` silent sockets, ``slow`` slow-header sockets and ``pipelined`` sockets that send requests
    without reading the answers open, reconnecting as the server closes them."""

    PIPELINE = b"GET /metrics HTTP/1.1\r\nHost: attack\r\n\r\n" * 256

    def __init__(self, port: int, idle: int, slow: int, pipelined: int = 0) -> None:
        super().__init__(daemon=True)
        self.port, self.idle, self.slow, self.pipelined = port, idle, slow, pipelined
        self.stop = threading.Event()
        self.reconnects = 0
        self.refused_connects = 0

    def _open(self, kind: str) -> tuple[socket.socket | None, str]:
        try:
            s = socket.socket()
            if kind == "pipelined":  # a small receive window: the server's answers back up sooner
                s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            s.settimeout(2)
            s.connect(("127.0.0.1", self.port))
            s.setblocking(False)
            if kind == "slow":
                s.send(b"GET /healthz HTTP/1.1\r\nX-Slow: ")
            return s, kind
        except OSError:
            self.refused_connects += 1
            return None, kind

    def run(self) -> None:
        kinds = ["idle"] * self.idle + ["slow"] * self.slow + ["pipelined"] * self.pipelined
        held = [self._open(kind) for kind in kinds]
        last_byte = time.time()
        while not self.stop.is_set():
            trickle = time.time() - last_byte > 2
            for i, (s, kind) in enumerate(held):
                closed = s is None
                if s is not None and kind == "pipelined":  # never reads: only a reset or close tells
                    try:
                        s.send(self.PIPELINE)
                    except BlockingIOError:
                        pass
                    except OSError:
                        closed = True
                elif s is not None:
                    try:
                        closed = s.recv(4096) == b""  # an answer (503) or the server's close
                    except BlockingIOError:
                        closed = False
                    except OSError:
                        closed = True
                    if not closed and kind == "slow" and trickle:
                        try:
                            s.send(b"a")
                        except OSError:
                            closed = True
                if closed:
                    if s is not None:
                        s.close()
                    self.reconnects += 1
                    held[i] = self._open(kind)
            if trickle:
                last_byte = time.time()
            self.stop.wait(0.2)
        for s, _ in held:
            if s is not None:
                s.close()


def _valid_traffic(url: str, stream: bytes, seconds: float) -> dict:
    import httpx

    results: dict[str, list] = {"decode": [], "healthz": []}
    end = time.time() + seconds

    def client(kind: str) -> None:
        while time.time() < end:
            t0 = time.perf_counter()
            try:
                if kind == "decode":
                    r = httpx.post(
                        url + "/v1/decode",
                        content=stream,
                        headers={"authorization": f"Bearer {TOKEN}"},
                        timeout=30,
                    )
                else:
                    r = httpx.get(url + "/healthz", timeout=30)
                status = r.status_code
            except httpx.HTTPError as e:
                status = type(e).__name__
            results[kind].append((status, time.perf_counter() - t0))
            time.sleep(0.1)

    threads = [threading.Thread(target=client, args=(k,)) for k in ("decode", "decode", "healthz")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    summary = {}
    for kind, rows in results.items():
        ok = [s for s, _ in rows if s == 200]
        lat = np.array([t for _, t in rows]) if rows else np.zeros(1)
        statuses: dict[str, int] = {}
        for s, _ in rows:
            statuses[str(s)] = statuses.get(str(s), 0) + 1
        summary[kind] = {
            "requests": len(rows),
            "success_rate": round(len(ok) / max(len(rows), 1), 4),
            "p50_s": round(float(np.percentile(lat, 50)), 4),
            "p99_s": round(float(np.percentile(lat, 99)), 4),
            "statuses": statuses,
        }
    return summary


def _streams() -> dict[str, tuple[bytes, str]]:
    from fcm import pipeline
    from fcm.codecs import CodecParams
    from fcm.images import bundled_photo
    from fcm.models import get_model
    from fcm.pipeline import EdgeFeatures, run_front

    model = get_model("efficientnet_lite0", "stage4")
    chelsea = bundled_photo("chelsea")
    edge = run_front(chelsea, model)

    def tiled(side: int) -> bytes:
        tensors = {k: v.new_zeros(1, v.shape[1], side, side) for k, v in edge.features.tensors.items()}
        big = EdgeFeatures(type(edge.features)(tensors, edge.features.meta), edge.input_size, 0.0)
        return pipeline.encode_features(big, model, "x265", CodecParams(51)).bitstream

    from fcm.serve.limits import measure_back_half

    rate = measure_back_half(model, None)
    budget = 10e9  # ServeConfig.max_back_gmacs's default
    side = int((budget / rate.reference_macs * rate.reference_samples / 80) ** 0.5)
    return {
        "valid": (pipeline.encode(chelsea, model, "x265", CodecParams(32)).bitstream, ""),
        "audit": (tiled(640), "80×640×640"),
        "largest_admitted": (tiled(side), f"80×{side}×{side}"),
    }


def _attack(mode: str, args: argparse.Namespace, streams: dict[str, tuple[bytes, str]], token_file: str) -> dict:
    import httpx

    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    argv = [sys.executable, "-c", SERVER, mode, str(port), token_file, str(args.max_connections)]
    proc = subprocess.Popen(argv, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 120
        while True:
            try:
                if httpx.get(url + "/readyz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.time() > deadline or proc.poll() is not None:
                raise SystemExit(f"the {mode} server did not start")
            time.sleep(0.3)
        valid = streams["valid"][0]
        out: dict = {"mode": mode, "baseline": _valid_traffic(url, valid, 3)}
        attacker = _Attacker(port, args.connections, args.connections // 2, args.pipelined)
        attacker.start()
        time.sleep(2)  # the sockets are all open before the valid clients start
        out["under_attack"] = _valid_traffic(url, valid, args.seconds)
        attacker.stop.set()
        attacker.join(10)
        out["attacker"] = {
            "idle": args.connections,
            "slow_header": args.connections // 2,
            "pipelined_non_reading": args.pipelined,
            "server_max_connections": args.max_connections if mode == "guarded" else None,
            "reconnects_after_server_close": attacker.reconnects,
            "connects_refused": attacker.refused_connects,
        }
        work = {}
        for name, (data, tensor) in streams.items():
            if name == "valid":
                continue
            _reset_peak_rss(proc.pid)
            rss0 = _rss_mb(proc.pid)
            t0 = time.perf_counter()
            try:
                r = httpx.post(
                    url + "/v1/decode",
                    content=data,
                    headers={"authorization": f"Bearer {TOKEN}"},
                    timeout=args.work_timeout,
                )
                status: int | str = r.status_code
                message = r.json().get("error", "")[:160] if r.status_code != 200 else ""
            except httpx.HTTPError as e:
                status, message = type(e).__name__, f"no answer within {args.work_timeout:g} s"
            work[name] = {
                "tensor": tensor,
                "bytes": len(data),
                "status": status,
                "seconds": round(time.perf_counter() - t0, 3),
                "rss_before_mb": round(rss0, 1),
                "peak_rss_mb": round(_peak_rss_mb(proc.pid), 1),
                "message": message,
            }
        out["work_amplification"] = work
        try:
            metrics = httpx.get(url + "/metrics", timeout=10).text
            out["refusals_counted"] = {
                line.split('reason="')[1].split('"')[0]: float(line.split()[-1])
                for line in metrics.splitlines()
                if line.startswith("fcm_decode_errors_total{")
            }
        except httpx.HTTPError as e:
            out["refusals_counted"] = f"/metrics unanswered: {type(e).__name__}"
        return out
    finally:
        proc.kill()
        proc.wait(10)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--connections", type=int, default=200, help="idle sockets held (plus half as many slow)")
    parser.add_argument("--seconds", type=float, default=20.0, help="length of the connection attack")
    parser.add_argument("--pipelined", type=int, default=20, help="sockets pipelining requests, never reading")
    parser.add_argument("--max-connections", type=int, default=250, help="the guarded server's connection cap")
    parser.add_argument("--work-timeout", type=float, default=60.0, help="client timeout of the costly streams")
    parser.add_argument("--modes", nargs="+", default=["legacy", "guarded"], choices=["legacy", "guarded"])
    args = parser.parse_args(argv)
    if not 1 <= args.connections <= 2000 or not 0 < args.seconds <= 300 or not 0 <= args.pipelined <= 200:
        raise SystemExit("--connections must be in [1, 2000], --pipelined in [0, 200] and --seconds in (0, 300]")
    if args.max_connections < 2:
        raise SystemExit("--max-connections must be at least 2")
    streams = _streams()
    with tempfile.TemporaryDirectory() as tmp:
        token_file = os.path.join(tmp, "token")
        Path(token_file).write_text(TOKEN + "\n")
        report = {
            "machine": {"cpus": os.cpu_count()},
            "results": [_attack(mode, args, streams, token_file) for mode in args.modes],
        }
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
