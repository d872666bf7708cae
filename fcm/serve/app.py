"""The cloud server: an ASGI app (FastAPI on Starlette, run by uvicorn) that decodes posted fcm bitstreams.

Endpoints:

``POST /v1/decode?top_k=5``
    body: one fcm bitstream (``application/octet-stream``). Answer: the model, split and task, the result
    (top-k classes, or detections with boxes, scores and labels) and the cloud's stage times. A stream that does not
    parse or decode is ``400`` with the :class:`~fcm.errors.BitstreamError` message; one for a model, split or
    wrapper this server does not serve is ``404``; a body over the limit ``413`` (refused from its ``Content-Length``
    before anything is read, or as soon as a chunked body passes the limit).
``GET /v1/models``
    what this server serves: model, split, weights tag, task and wrapper of each entry.
``GET /healthz``, ``GET /readyz``
    liveness; readiness once every served model is loaded.
``GET /metrics``
    Prometheus text: requests by endpoint and status, errors, decode latency histogram, bytes received.

This module imports FastAPI: import it only to serve (``fcm`` itself never does). Models are loaded once at start-up
and kept; decoding runs in worker threads, at most ``concurrency`` at a time, so the event loop keeps answering
health checks and refusing bad requests while models work. With a token configured (:mod:`fcm.serve.auth`), every
``/v1`` endpoint needs ``Authorization: Bearer <token>`` (``401`` otherwise).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect

from fcm.errors import BitstreamError, ConfigError, FcmError
from fcm.serve.auth import authorized

if TYPE_CHECKING:
    from fcm.models.base import SplitModel
    from fcm.wrappers.base import WrapperPair

DEFAULT_MAX_BODY = 16 << 20


@dataclass(frozen=True)
class ServedModel:
    """One model the server decodes for: a registered split model, its weights, and optionally a wrapper
    checkpoint (streams coded through that wrapper)."""

    model: str
    split: str | None = None
    weights: str | None = None
    sha256: str | None = None
    wrapper: str | None = None
    #: extra keyword arguments of the model (e.g. a detector's ``min_size``), as ``(key, value)`` pairs
    options: tuple[tuple[str, Any], ...] = ()

    @classmethod
    def parse(cls, text: str) -> ServedModel:
        """``MODEL[:SPLIT][@WRAPPER_CHECKPOINT]``, e.g. ``efficientnet_lite0:stage4``."""
        spec, _, wrapper = text.partition("@")
        model, _, split = spec.partition(":")
        if not model:
            raise ConfigError(f"cannot read a served model from {text!r}; write MODEL[:SPLIT][@WRAPPER_CHECKPOINT]")
        return cls(model, split or None, wrapper=wrapper or None)


@dataclass(frozen=True)
class ServeConfig:
    """How the server runs (see the module docstring)."""

    models: tuple[ServedModel, ...]
    max_body_bytes: int = DEFAULT_MAX_BODY
    concurrency: int = 2
    torch_threads: int = 1
    token: str | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if not self.models:
            raise ConfigError("the server needs at least one model to serve")
        if self.max_body_bytes < 64:
            raise ConfigError(f"max_body_bytes must be at least 64, got {self.max_body_bytes}")
        if self.concurrency < 1 or self.torch_threads < 1:
            raise ConfigError("concurrency and torch_threads must be positive")


@dataclass
class _Entry:
    model: SplitModel
    wrapper: WrapperPair | None


class ModelCache:
    """The served models, loaded once, keyed by ``(model, split, weights tag, wrapper name, wrapper weights tag)``."""

    def __init__(self, served: tuple[ServedModel, ...]) -> None:
        self.served = served
        self.entries: dict[tuple[str, str, str, str | None, str | None], _Entry] = {}

    def load(self) -> None:
        from fcm.models import get_model

        for s in self.served:
            model = get_model(s.model, s.split, s.weights, s.sha256, **dict(s.options))
            wrapper = None
            if s.wrapper is not None:
                from fcm.wrappers import load_wrapper

                wrapper = load_wrapper(s.wrapper, model)
            names = (None, None) if wrapper is None else (wrapper.name, wrapper.weights_tag)
            self.entries[(model.name, model.split, model.weights_tag, names[0], names[1])] = _Entry(model, wrapper)

    def describe(self) -> list[dict[str, Any]]:
        return [
            {
                "model": e.model.name,
                "split": e.model.split,
                "weights": e.model.weights_tag,
                "task": e.model.task,
                "wrapper": None if e.wrapper is None else {"name": e.wrapper.name, "weights": e.wrapper.weights_tag},
            }
            for e in self.entries.values()
        ]

    def find(self, header: Any) -> _Entry:
        """The entry for a stream's model, split, model weights and wrapper; ``LookupError`` naming what is served."""
        wrapper = header.wrapper
        names = (None, None) if wrapper is None else (wrapper.name, wrapper.weights_tag)
        entry = self.entries.get((header.model, header.split, header.weights_tag, names[0], names[1]))
        if entry is None:
            what = f"{header.model}/{header.split} (weights {header.weights_tag})" + (
                "" if wrapper is None else f" through wrapper {wrapper}"
            )
            served = "; ".join(
                f"{k[0]}/{k[1]} (weights {k[2]})" + ("" if k[3] is None else f" through {k[3]} (weights {k[4]})")
                for k in self.entries
            )
            raise LookupError(f"this server does not serve {what}; it serves {served}")
        return entry


class _Metrics:
    def __init__(self) -> None:
        from prometheus_client import CollectorRegistry, Counter, Histogram

        self.registry = CollectorRegistry()
        reg = self.registry
        self.requests = Counter("fcm_requests", "requests by endpoint and status", ["endpoint", "status"], registry=reg)
        self.errors = Counter("fcm_decode_errors", "decode requests refused, by reason", ["reason"], registry=reg)
        self.latency = Histogram(
            "fcm_decode_seconds",
            "time from a decode request's arrival to its answer",
            buckets=(0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0),
            registry=self.registry,
        )
        self.bytes = Counter("fcm_received_bytes", "bitstream bytes received", registry=self.registry)


def create_app(config: ServeConfig, cache: ModelCache | None = None) -> Any:
    """The ASGI app for ``config`` (models load at start-up unless a loaded ``cache`` is given)."""
    from contextlib import asynccontextmanager

    models = cache or ModelCache(config.models)
    metrics = _Metrics()
    state = {"ready": bool(models.entries)}
    gate = asyncio.Semaphore(config.concurrency)

    @asynccontextmanager
    async def lifespan(app: Any) -> AsyncIterator[None]:
        import torch

        torch.set_num_threads(config.torch_threads)
        if not state["ready"]:
            await run_in_threadpool(models.load)
            state["ready"] = True
        yield

    app = FastAPI(title="fcm cloud", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)

    def answer(endpoint: str, status: int, body: dict[str, Any]) -> JSONResponse:
        metrics.requests.labels(endpoint, str(status)).inc()
        return JSONResponse(body, status_code=status)

    def refused(endpoint: str, status: int, reason: str, message: str) -> JSONResponse:
        metrics.errors.labels(reason).inc()
        return answer(endpoint, status, {"error": message})

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz")
    async def readyz() -> Response:
        return JSONResponse({"ready": state["ready"]}, status_code=200 if state["ready"] else 503)

    @app.get("/metrics")
    async def metrics_text() -> Response:
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        return PlainTextResponse(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @app.get("/v1/models")
    async def list_models(request: Request) -> Response:
        if not authorized(request.headers.get("authorization"), config.token):
            return refused("models", 401, "auth", "missing or wrong bearer token")
        return answer("models", 200, {"models": models.describe()})

    @app.post("/v1/decode")
    async def decode(request: Request, top_k: int = 5) -> Response:
        t0 = time.perf_counter()
        if not authorized(request.headers.get("authorization"), config.token):
            return refused("decode", 401, "auth", "missing or wrong bearer token")
        if not 1 <= top_k <= 100:
            return refused("decode", 422, "bad_request", f"top_k must lie in [1, 100], got {top_k}")
        declared = request.headers.get("content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > config.max_body_bytes):
            return refused(
                "decode", 413, "too_large", f"the body ({declared} bytes) exceeds the limit of {config.max_body_bytes}"
            )
        body = bytearray()
        try:
            async for chunk in request.stream():
                body += chunk
                if len(body) > config.max_body_bytes:
                    return refused("decode", 413, "too_large", f"the body exceeds the limit of {config.max_body_bytes}")
        except ClientDisconnect:
            metrics.errors.labels("disconnect").inc()
            return Response(status_code=499)
        metrics.bytes.inc(len(body))
        if not state["ready"]:
            return refused("decode", 503, "not_ready", "models are still loading")
        async with gate:
            try:
                result = await run_in_threadpool(_decode, models, bytes(body), top_k)
            except (BitstreamError, ValueError) as e:  # ValueError: BitstreamError's base, and dataclass checks
                return refused("decode", 400, "bitstream", f"{type(e).__name__}: {e}")
            except LookupError as e:
                return refused("decode", 404, "not_served", str(e))
            except FcmError as e:
                return refused("decode", 400, "bitstream", f"{type(e).__name__}: {e}")
        result["server_seconds"] = round(time.perf_counter() - t0, 6)
        metrics.latency.observe(time.perf_counter() - t0)
        return answer("decode", 200, result)

    return app


def _decode(models: ModelCache, data: bytes, top_k: int) -> dict[str, Any]:
    """Parse, pick the served model, decode and describe (runs in a worker thread)."""
    import torch

    from fcm import bitstream, pipeline

    header, _ = bitstream.read(data)
    entry = models.find(header)
    with torch.no_grad():
        result = pipeline.decode(data, entry.model, wrapper=entry.wrapper)
    return {
        "model": header.model,
        "split": header.split,
        "task": entry.model.task,
        "result": entry.model.describe(result.output, top_k)[0],
        "seconds": {
            "codec": result.codec_s,
            "unpack": result.unpack_s,
            "unwrap": result.unwrap_s,
            "back": result.back_s,
        },
    }


def serve(config: ServeConfig, host: str = "127.0.0.1", port: int = 8000, **uvicorn_options: Any) -> None:
    """Run the server until interrupted (``uvicorn_options``: e.g. ``ssl_certfile``/``ssl_keyfile`` for TLS)."""
    import uvicorn

    uvicorn.run(create_app(config), host=host, port=port, log_level="warning", **uvicorn_options)
