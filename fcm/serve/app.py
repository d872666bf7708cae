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

Over 500 lines: the app and the limits that make it safe to expose (body size, buffered bytes, claimed work,
admission, micro-batching) are one request path; batching's queue is :mod:`fcm.serve.batching`, the pre-flight
cost estimate :mod:`fcm.serve.limits`.
"""

from __future__ import annotations

import asyncio
import threading
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
from fcm.serve.limits import REFERENCE_SIDE, BackHalfRate, check_cost

if TYPE_CHECKING:
    from fcm.models.base import Features, SplitModel
    from fcm.pipeline import SplitDecode
    from fcm.wrappers.base import WrapperPair

DEFAULT_MAX_BODY = 16 << 20


class NotServed(FcmError):
    """A stream for a model, split, weights or wrapper this server does not serve."""


@dataclass(frozen=True)
class ServedModel:
    """One model the server decodes for: a registered split model, its weights, and optionally a wrapper
    checkpoint (streams coded through that wrapper) or a wrapper family (streams of any of its variants)."""

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
    #: the most frames and samples a stream may ask to decode: a few bytes of a flat picture can claim a huge frame
    max_frames: int = 1
    max_samples: int = 1 << 23
    #: the most back-half work (post-wrapper included) a stream's header may claim, in 10⁹ multiply–accumulates,
    #: estimated from each entry's cost per coded sample measured at start-up (:mod:`fcm.serve.limits`); the default
    #: is about 2 s on one core here, a 4-megapixel picture for a classifier, about 900x900 for the FPN detector
    max_back_gmacs: float = 10.0
    #: decode requests admitted at once (running or waiting for a decode slot); beyond it a request is answered 503
    max_requests: int = 32
    #: seconds a connection may take to deliver a request's head (an idle or slow-header connection is closed)
    header_timeout_s: float = 10.0
    #: connections held at once; beyond it the longest-held idle connection is closed (:mod:`fcm.serve.protocol`)
    max_connections: int = 1000
    #: seconds a client may take to send its body
    body_timeout_s: float = 30.0
    #: request bodies held at once, over all requests (reading or decoding); beyond it a request is answered 503
    max_buffered_bytes: int = 256 << 20
    #: micro-batching of back-half calls that share a model: at most ``batch_max`` per batch (1: off), and no
    #: request waits more than ``batch_wait_ms`` for others (see :mod:`fcm.serve.batching`)
    batch_max: int = 1
    batch_wait_ms: float = 5.0

    def __post_init__(self) -> None:
        if not self.models:
            raise ConfigError("the server needs at least one model to serve")
        if self.max_body_bytes < 64:
            raise ConfigError(f"max_body_bytes must be at least 64, got {self.max_body_bytes}")
        if self.max_frames < 1 or self.max_samples < 1 or not self.body_timeout_s > 0:
            raise ConfigError("max_frames, max_samples and body_timeout_s must be positive")
        if not self.max_back_gmacs > 0 or self.max_requests < 1 or not self.header_timeout_s > 0:
            raise ConfigError("max_back_gmacs, max_requests and header_timeout_s must be positive")
        if self.max_connections < 2:
            raise ConfigError(f"max_connections must be at least 2, got {self.max_connections}")
        if self.concurrency < 1 or self.torch_threads < 1:
            raise ConfigError("concurrency and torch_threads must be positive")
        if self.max_buffered_bytes < self.max_body_bytes:
            raise ConfigError(
                f"max_buffered_bytes ({self.max_buffered_bytes}) must be at least max_body_bytes "
                f"({self.max_body_bytes})"
            )
        if self.batch_max < 1 or not 0 <= self.batch_wait_ms <= 1000:
            raise ConfigError(
                f"batch_max must be positive and batch_wait_ms in [0, 1000], got {self.batch_max}, {self.batch_wait_ms}"
            )


@dataclass(eq=False)  # hashed by identity: the batcher groups calls by entry
class _Entry:
    model: SplitModel
    wrapper: WrapperPair | None
    #: the back half's measured cost per coded sample (None until measured: a cache built by hand)
    rate: BackHalfRate | None = None


class ModelCache:
    """The served models, loaded once, keyed by ``(model, split, weights tag, wrapper name, wrapper weights tag)``."""

    def __init__(self, served: tuple[ServedModel, ...]) -> None:
        self.served = served
        self.entries: dict[tuple[str, str, str, str | None, str | None], _Entry] = {}

    def load(self) -> None:
        from fcm.models import get_model

        for s in self.served:
            model = get_model(s.model, s.split, s.weights, s.sha256, **dict(s.options))
            wrappers: list[WrapperPair | None] = [None]
            if s.wrapper is not None:
                from fcm.wrappers import WrapperFamily, load_wrapper_or_family

                loaded = load_wrapper_or_family(s.wrapper, model)
                # a rate-adaptive family serves each of its variants' streams (its plain variant: unwrapped ones)
                wrappers = [v.wrapper for v in loaded.variants] if isinstance(loaded, WrapperFamily) else [loaded]
            for wrapper in wrappers:
                self.add(model, wrapper)

    def add(self, model: SplitModel, wrapper: WrapperPair | None = None) -> None:
        """Serve ``model`` (streams coded through ``wrapper``, or unwrapped ones), its back-half cost measured."""
        from fcm.serve.limits import measure_back_half

        names = (None, None) if wrapper is None else (wrapper.name, wrapper.weights_tag)
        key = (model.name, model.split, model.weights_tag, names[0], names[1])
        if key in self.entries:
            raise ConfigError(f"{model.name}/{model.split} is served twice with the same weights and wrapper")
        self.entries[key] = _Entry(model, wrapper, measure_back_half(model, wrapper))

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
        """The entry for a stream's model, split, weights and wrapper; :class:`NotServed` naming what is served."""
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
            raise NotServed(f"this server does not serve {what}; it serves {served}")
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
        self.batch = Histogram(
            "fcm_back_half_batch_size",
            "streams per back-half call (micro-batching)",
            buckets=(1, 2, 4, 8, 16, 32, 64),
            registry=self.registry,
        )


def create_app(config: ServeConfig, cache: ModelCache | None = None) -> Any:
    """The ASGI app for ``config`` (models load at start-up unless a loaded ``cache`` is given)."""
    from contextlib import asynccontextmanager

    models = cache or ModelCache(config.models)
    metrics = _Metrics()
    state = {"ready": bool(models.entries)}
    gate = asyncio.Semaphore(config.concurrency)
    buffered = _Budget(config.max_buffered_bytes)
    batcher = None
    if config.batch_max > 1:
        from fcm.serve.batching import BackHalfBatcher

        # back halves have their own slots: a closed window does not queue behind every stream still decoding
        back_gate = asyncio.Semaphore(config.concurrency)
        in_batching = asyncio.Semaphore(config.concurrency * config.batch_max)

        async def gated(fn: Any) -> Any:
            async with back_gate:
                return await run_in_threadpool(fn)

        batcher = BackHalfBatcher(config.batch_max, config.batch_wait_ms / 1000, _run_batch, gated)
        batcher.on_batch = metrics.batch.observe

    @asynccontextmanager
    async def lifespan(app: Any) -> AsyncIterator[None]:
        import torch

        before = torch.get_num_threads()
        torch.set_num_threads(config.torch_threads)  # process-wide: given back when the server stops
        try:
            if not state["ready"]:
                await run_in_threadpool(models.load)
                state["ready"] = True
            yield
        finally:
            torch.set_num_threads(before)

    app = FastAPI(title="fcm cloud", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    app.add_middleware(_CountResponses, counter=metrics.requests)  # every answer counted: 404, 405, 422 too
    # refusals below HTTP (connections closed for an idle or slow head, evicted for room), counted by the protocol
    app.state.count_refusal = lambda reason: metrics.errors.labels(reason).inc()
    admitted = {"requests": 0}

    def answer(endpoint: str, status: int, body: dict[str, Any]) -> JSONResponse:
        return JSONResponse(body, status_code=status)

    def refused(endpoint: str, status: int, reason: str, message: str) -> JSONResponse:
        metrics.errors.labels(reason).inc()
        response = answer(endpoint, status, {"error": message})
        if status in (401, 408, 413, 503):  # do not read (and discard) the rest of an unwanted body on this connection
            response.headers["connection"] = "close"
        return response

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
    async def decode(request: Request) -> Response:
        if not authorized(request.headers.get("authorization"), config.token):
            return refused("decode", 401, "auth", "missing or wrong bearer token")
        text = request.query_params.get("top_k", "5")  # read after auth: no answer but 401 without the token
        top_k = int(text) if _decimal(text) and len(text) < 4 else 0
        if not 1 <= top_k <= 100:
            return refused("decode", 422, "bad_request", f"top_k must be an integer in [1, 100], got {text[:20]!r}")
        if admitted["requests"] >= config.max_requests:
            return refused(
                "decode", 503, "busy", f"the server has {config.max_requests} decode requests in hand; retry later"
            )
        admitted["requests"] += 1
        try:
            return await admitted_decode(request, top_k)
        finally:
            admitted["requests"] -= 1

    async def admitted_decode(request: Request, top_k: int) -> Response:
        declared = request.headers.get("content-length")
        if declared is not None and (not _decimal(declared) or int(declared) > config.max_body_bytes):
            return refused(
                "decode", 413, "too_large", f"the body ({declared} bytes) exceeds the limit of {config.max_body_bytes}"
            )
        body = bytearray()
        reserved = 0
        control = _Control()

        async def read() -> None:
            nonlocal reserved
            async for chunk in request.stream():  # reserved as bytes arrive: a declared length costs nothing yet
                body.extend(chunk)
                if len(body) > config.max_body_bytes:
                    raise _TooLarge
                reserved += buffered.take(len(body) - reserved)

        try:
            try:
                await asyncio.wait_for(read(), config.body_timeout_s)
            except _Busy:
                return refused(
                    "decode",
                    503,
                    "busy",
                    f"the server holds {config.max_buffered_bytes} bytes of requests; retry later",
                )
            except _TooLarge:
                return refused("decode", 413, "too_large", f"the body exceeds the limit of {config.max_body_bytes}")
            except asyncio.TimeoutError:
                return refused(
                    "decode", 408, "slow_body", f"the body did not arrive within {config.body_timeout_s:g} s"
                )
            except ClientDisconnect:
                metrics.errors.labels("disconnect").inc()
                return Response(status_code=499)
            data = bytes(body)
            body.clear()  # one copy held, the one the budget counts
            return await until_disconnect(request, decode_body(data, top_k, control), control)
        finally:  # every way out, cancellation included, gives the reservation back
            control.stop.set()
            buffered.give(reserved)

    async def until_disconnect(request: Request, work: Any, control: _Control) -> Response:
        """``work``'s answer, unless the client goes away first. Then a request still waiting for a decode slot
        leaves the queue at once; one decoding in a worker thread is told to stop at its next stage and keeps its
        slot until it has (threads cannot be killed: the slot must not be given to another while it runs)."""
        task = asyncio.ensure_future(work)
        watch = asyncio.ensure_future(_disconnected(request))
        try:
            await asyncio.wait({task, watch}, return_when=asyncio.FIRST_COMPLETED)
            if task.done():
                return task.result()
            control.stop.set()
            metrics.errors.labels("disconnect").inc()
            if control.running:
                await asyncio.wait({task})  # the worker stops at its next stage; its result is nobody's
            else:
                task.cancel()
            return Response(status_code=499)
        finally:
            watch.cancel()

    async def in_worker(control: _Control, fn: Any, *args: Any) -> Any:
        if control.stop.is_set():  # the client left while this request waited for its slot
            raise _Stopped
        control.running = True
        try:
            return await run_in_threadpool(fn, *args)
        finally:
            control.running = False

    async def decode_body(data: bytes, top_k: int, control: _Control) -> Response:
        metrics.bytes.inc(len(data))
        if not state["ready"]:
            return refused("decode", 503, "not_ready", "models are still loading")
        t0 = time.perf_counter()  # the cloud's time starts with a whole body: its upload is the network's
        try:
            if batcher is None:
                async with gate:
                    result = await in_worker(control, _decode, models, data, top_k, config, control.stop)
            else:
                # decoded features wait for their batch: at most concurrency x batch_max of them exist at once
                async with in_batching:
                    async with gate:
                        with batcher.arriving():
                            entry, split = await in_worker(control, _decode_split, models, data, config, control.stop)
                    if control.stop.is_set():  # the client left during the decode: nothing goes to a batch
                        raise _Stopped
                    # features in a batch are computed whatever happens: the request keeps its batching slot (a
                    # client leaving now waits for it, see until_disconnect) so departures cannot grow the backlog
                    control.running = True
                    try:
                        t1 = time.perf_counter()
                        output, back_s = await batcher.submit(entry, split.features, entry.model.back_meta)
                        queued_s = time.perf_counter() - t1 - back_s
                        result = await run_in_threadpool(_answer, entry, split, output, top_k, back_s)
                    finally:
                        control.running = False
                    result["seconds"]["batch_wait"] = round(max(queued_s, 0.0), 6)
            result["server_seconds"] = round(time.perf_counter() - t0, 6)
            response = answer("decode", 200, result)  # rendering (strict JSON) inside the guard too
        except NotServed as e:
            return refused("decode", 404, "not_served", str(e))
        except _TooCostly as e:
            return refused("decode", 400, "too_costly", f"BitstreamError: {e}")
        except _Stopped:
            return Response(status_code=499)
        except (FcmError, ValueError) as e:  # BitstreamError (a ValueError), dataclass checks, non-finite output
            return refused("decode", 400, "bitstream", f"{type(e).__name__}: {e}")
        except Exception as e:  # whatever a stream can still trigger deeper down is answered as JSON, and counted
            return refused("decode", 500, "internal", f"decoding failed: {type(e).__name__}: {e}")
        metrics.latency.observe(time.perf_counter() - t0)
        return response

    return app


class _TooLarge(Exception):
    pass


class _TooCostly(BitstreamError):
    """A stream whose header claims more back-half work than the server allows (counted apart from bad streams)."""


class _Stopped(Exception):
    """The client went away: the decode stops between stages."""


@dataclass
class _Control:
    """One decode request's link to its worker: ``stop`` once the client has gone, ``running`` while a worker
    thread holds the request's decode slot (or its features wait in a micro-batch)."""

    stop: threading.Event = field(default_factory=threading.Event)
    running: bool = False


async def _disconnected(request: Request) -> None:
    """Return once the client has closed its connection (the body has been read: only a disconnect can come)."""
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            return


_ENDPOINTS = {
    "/v1/decode": "decode",
    "/v1/models": "models",
    "/healthz": "healthz",
    "/readyz": "readyz",
    "/metrics": "metrics",
}


class _CountResponses:
    """ASGI middleware: counts every HTTP answer by endpoint and status (unknown paths as ``other``)."""

    def __init__(self, app: Any, counter: Any) -> None:
        self.app = app
        self.counter = counter

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        endpoint = _ENDPOINTS.get(scope.get("path", ""), "other")

        started = False

        async def counted(message: Any) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                self.counter.labels(endpoint, str(message["status"])).inc()
            await send(message)

        try:
            await self.app(scope, receive, counted)
        except Exception:  # Starlette's outer error middleware answers it 500: counted here, where it passes
            if not started:
                self.counter.labels(endpoint, "500").inc()
            raise


def _decimal(text: str) -> bool:
    """``text`` is a plain decimal number (``str.isdigit`` also takes ``²`` or ``٣``, which ``int`` refuses)."""
    return text.isascii() and text.isdigit()


class _Busy(Exception):
    pass


class _Budget:
    """Bytes of request bodies held at once, over every request (the event loop is one thread: no lock needed)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.held = 0

    def take(self, n: int) -> int:
        if self.held + n > self.limit:
            raise _Busy
        self.held += n
        return n

    def give(self, n: int) -> None:
        self.held -= n


def _decode_split(
    models: ModelCache, data: bytes, config: ServeConfig, stop: threading.Event | None = None
) -> tuple[_Entry, SplitDecode]:
    """Parse, pick the served model, bound the work and decode up to the split (runs in a worker thread); stops
    with :class:`_Stopped` between stages once ``stop`` is set (the client went away)."""
    from fcm import bitstream, pipeline

    header, _ = bitstream.read(data)
    entry = models.find(header)
    if entry.rate is not None:
        try:
            check_cost(header, entry.rate, config.max_back_gmacs * 1e9)
        except BitstreamError as e:
            raise _TooCostly(str(e)) from None
    samples = header.num_frames * header.layout.frame_height * header.layout.frame_width
    if header.num_frames > config.max_frames or samples > config.max_samples:
        raise BitstreamError(
            f"the stream asks for {header.num_frames} frame(s) of {header.layout.frame_width}x"
            f"{header.layout.frame_height} samples; this server decodes at most {config.max_frames} frame(s) and "
            f"{config.max_samples} samples"
        )
    if stop is not None and stop.is_set():
        raise _Stopped
    split = pipeline.decode_split(data, entry.model, entry.wrapper)
    if stop is not None and stop.is_set():
        raise _Stopped
    return entry, split


def _decode(
    models: ModelCache, data: bytes, top_k: int, config: ServeConfig, stop: threading.Event | None = None
) -> dict[str, Any]:
    """The whole decode of one stream, unbatched (runs in a worker thread)."""
    from fcm import pipeline

    entry, split = _decode_split(models, data, config, stop)
    if stop is not None and stop.is_set():  # the back half is the costly stage: not for a client that has gone
        raise _Stopped
    t0 = time.perf_counter()
    output = pipeline.run_back(split.features, entry.model)
    return _answer(entry, split, output, top_k, time.perf_counter() - t0)


def _run_batch(entry: Any, batch: list[Features]) -> list[Any]:
    """The back half of ``entry``'s model on a batch of features with one signature: per features, its output and
    the batch's compute seconds."""
    from fcm import pipeline
    from fcm.serve.batching import stack, unstack

    t0 = time.perf_counter()
    output = pipeline.run_back(stack(batch), entry.model, check_finite=False)  # each stream's part: in _answer
    seconds = time.perf_counter() - t0
    return [(part, seconds) for part in unstack(output, [next(iter(f.tensors.values())).shape[0] for f in batch])]


def _answer(entry: _Entry, split: SplitDecode, output: Any, top_k: int, back_s: float) -> dict[str, Any]:
    from fcm.pipeline import refuse_non_finite

    refuse_non_finite(output, "the model's output")
    return {
        "model": split.header.model,
        "split": split.header.split,
        "task": entry.model.task,
        "result": entry.model.describe(output, top_k)[0],
        "seconds": {"codec": split.codec_s, "unpack": split.unpack_s, "unwrap": split.unwrap_s, "back": back_s},
    }


def uvicorn_settings(config: ServeConfig, app: Any) -> dict[str, Any]:
    """The ``uvicorn.Config`` options that make ``app`` (from :func:`create_app`) hold up against hostile clients."""
    from fcm.serve.protocol import guarded_protocol

    return {
        # connections are guarded by the protocol (header deadline, idle eviction), work by the app's own request
        # limit: uvicorn's limit_concurrency counts connections, so idle sockets would turn real requests away
        "limit_concurrency": None,
        "timeout_keep_alive": 5,
        "http": guarded_protocol(config.header_timeout_s, connection_cap(config), app.state.count_refusal),
    }


#: file descriptors kept free of connections: the models' files, logs, the codec's pipes, the listening socket
FD_RESERVE = 64


def connection_cap(config: ServeConfig) -> int:
    """The connections the server may hold: ``config.max_connections``, or fewer where the process's open-file limit
    (raised to its hard limit first, where it may be) would run out before it — a server out of descriptors
    can no longer accept, so eviction would never run."""
    import contextlib

    try:
        import resource
    except ImportError:  # not POSIX: no limit to read
        return config.max_connections
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = config.max_connections + FD_RESERVE
    if soft != resource.RLIM_INFINITY and soft < wanted and (hard == resource.RLIM_INFINITY or hard > soft):
        target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
        with contextlib.suppress(ValueError, OSError):  # not allowed here: keep the soft limit
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    if soft == resource.RLIM_INFINITY:
        return config.max_connections
    return max(2, min(config.max_connections, int(soft) - FD_RESERVE))


def serve(
    config: ServeConfig,
    host: str = "127.0.0.1",
    port: int = 8000,
    on_ready: Any = None,
    **uvicorn_options: Any,
) -> None:
    """Load the models, take the port, then run the server until interrupted (``uvicorn_options``: e.g.
    ``ssl_certfile`` / ``ssl_keyfile`` for TLS). Loading and binding first mean a bad model or weights file, or a
    port in use, is an :class:`FcmError` here, before anything is announced. ``on_ready()`` is called once the
    port is held (the command line prints the server's address there)."""
    import errno
    import socket

    import uvicorn

    cache = ModelCache(config.models)
    cache.load()
    for entry in cache.entries.values():
        if entry.rate is not None and entry.rate.reference_macs > config.max_back_gmacs * 1e9:
            raise ConfigError(
                f"{entry.model.name}/{entry.model.split}'s back half costs {entry.rate.reference_macs / 1e9:.1f} "
                f"GMAC on a {REFERENCE_SIDE}-px picture, more than the {config.max_back_gmacs:g} GMAC a request may "
                "claim: raise --max-back-gmacs"
            )
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn does: a restart may reuse the port
    try:
        sock.bind((host, port))
        sock.listen(2048)  # uvicorn's backlog: connections wait from here on, none is refused before the loop runs
    except (OSError, OverflowError) as e:
        sock.close()
        if isinstance(e, OSError) and e.errno == errno.EADDRINUSE:
            raise ConfigError(
                f"port {port} on {host} is in use: stop whatever holds it, or choose another with --port"
            ) from None
        if isinstance(e, socket.gaierror) or (isinstance(e, OSError) and e.errno == errno.EADDRNOTAVAIL):
            raise ConfigError(
                f"host {host!r} is not an address of this machine ({getattr(e, 'strerror', None) or e}): choose "
                "another with --host (127.0.0.1 for this machine only, 0.0.0.0 for every interface)"
            ) from None
        raise ConfigError(f"cannot listen on {host} port {port} ({getattr(e, 'strerror', None) or e})") from None
    app = create_app(config, cache)
    uv_config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level="warning",
        **uvicorn_settings(config, app),
        **uvicorn_options,
    )
    try:
        uv_config.load()  # TLS files and options checked here, before the address is announced
    except Exception as e:
        sock.close()
        raise ConfigError(f"cannot start the server: {e}") from e
    server = uvicorn.Server(uv_config)
    if on_ready is not None:
        on_ready()
    try:
        server.run(sockets=[sock])
    finally:
        sock.close()
