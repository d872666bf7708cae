"""Edge–cloud over HTTP: ``fcm serve`` (the cloud half) and ``send`` (the edge half)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from fcm.cli.args import (
    add_codec_args,
    add_model_args,
    add_threads_arg,
    codec_params,
    load_model,
    load_wrapper_arg,
    positive,
)
from fcm.errors import FcmError


def _model_options(args: argparse.Namespace) -> tuple[tuple[str, Any], ...]:
    """``--model-option KEY=VALUE`` pairs, numbers as numbers."""
    out = []
    for item in args.model_option:
        key, sep, value = item.partition("=")
        if not sep or not key.isidentifier():
            raise FcmError(f"--model-option takes KEY=VALUE, got {item!r}")
        parsed: Any = value
        for kind in (int, float):
            try:
                parsed = kind(value)
                break
            except ValueError:
                continue
        out.append((key, parsed))
    return tuple(out)


def cmd_serve(args: argparse.Namespace) -> None:
    from fcm.serve.app import ServeConfig, ServedModel, serve
    from fcm.serve.auth import load_token

    if (args.ssl_certfile is None) != (args.ssl_keyfile is None):
        raise FcmError("TLS needs both --ssl-certfile and --ssl-keyfile")
    if not 0 < args.max_body_mb <= 4096:
        raise FcmError(f"--max-body-mb must lie in (0, 4096], got {args.max_body_mb}")
    if not 0 < args.max_buffered_mb <= 1 << 20:
        raise FcmError(f"--max-buffered-mb must be positive, got {args.max_buffered_mb}")
    if not 0 <= args.batch_wait_ms <= 1000:
        raise FcmError(f"--batch-wait-ms must lie in [0, 1000], got {args.batch_wait_ms}")
    from dataclasses import replace

    models = tuple(ServedModel.parse(m) for m in (args.model or ["efficientnet_lite0"]))
    if args.weights or args.sha256 or args.model_option:
        if len(models) != 1:
            raise FcmError("--weights, --sha256 and --model-option apply to one served model; serve one per server")
        if args.sha256 and not args.weights:
            raise FcmError("--sha256 checks a weights file: give --weights too")
        models = (replace(models[0], weights=args.weights, sha256=args.sha256, options=_model_options(args)),)
    config = ServeConfig(
        models,
        max_body_bytes=int(args.max_body_mb * (1 << 20)),
        concurrency=args.concurrency,
        token=load_token(args.token_file),
        max_buffered_bytes=max(int(args.max_buffered_mb * (1 << 20)), int(args.max_body_mb * (1 << 20))),
        batch_max=args.batch,
        batch_wait_ms=args.batch_wait_ms,
        torch_threads=args.torch_threads,
        max_back_gmacs=args.max_back_gmacs,
        max_requests=args.max_requests,
        header_timeout_s=args.header_timeout_s,
        max_connections=args.max_connections,
    )
    tls = {"ssl_certfile": args.ssl_certfile, "ssl_keyfile": args.ssl_keyfile} if args.ssl_certfile else {}
    scheme = "https" if tls else "http"
    url = f"{scheme}://{args.host}:{args.port}"
    served = ", ".join(m.model for m in models)
    serve(config, args.host, args.port, on_ready=lambda: print(f"fcm serve: {url} ({served})", file=sys.stderr), **tls)


def cmd_send(args: argparse.Namespace) -> list[dict[str, Any]]:
    from fcm.images import load_image
    from fcm.serve.auth import load_token
    from fcm.serve.client import EdgeClient

    model = load_model(args)
    wrapper = load_wrapper_arg(args.wrapper, model)
    out = []
    with EdgeClient(args.server, load_token(args.token_file)) as client:  # one connection for every image
        for image in args.images:
            sent = client.send(
                load_image(image),
                model,
                args.codec,
                codec_params(args),
                args.bit_depth,
                args.top_k,
                wrapper=wrapper,
                torch_threads=args.torch_threads,
            )
            out.append({"image": image, **sent.to_dict()})
    return out


def register(sub: Any) -> None:
    """Add ``serve``, ``send`` to the ``fcm`` subcommands."""
    p = sub.add_parser("serve", help="run the cloud half as an HTTP service that decodes posted bitstreams")
    p.add_argument(
        "--model",
        action="append",
        default=None,
        metavar="MODEL[:SPLIT][@WRAPPER]",
        help="a model to serve (repeatable); default efficientnet_lite0 at its default split",
    )
    p.add_argument("--weights", default=None, help="local weights file of the (one) served model")
    p.add_argument("--sha256", default=None, help="expected sha256 (or prefix) of --weights")
    p.add_argument(
        "--model-option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="model keyword argument (repeatable; numbers parsed), e.g. min_size=800 for a detector",
    )
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=positive, default=8000, help="port to listen on; default 8000")
    p.add_argument("--max-body-mb", type=float, default=16.0, help="largest bitstream accepted (MiB); default 16")
    p.add_argument("--concurrency", type=positive, default=2, help="decodes running at once; default 2")
    p.add_argument(
        "--max-buffered-mb",
        type=float,
        default=256.0,
        help="request bodies held at once over all requests (MiB); beyond it requests get 503; default 256",
    )
    p.add_argument(
        "--batch",
        type=positive,
        default=1,
        metavar="N",
        help="micro-batch up to N back-half calls that share a model (default 1: off)",
    )
    p.add_argument(
        "--batch-wait-ms",
        type=float,
        default=5.0,
        help="latency cap of micro-batching: the longest a request waits for others (default 5 ms)",
    )
    p.add_argument(
        "--max-back-gmacs",
        type=float,
        default=10.0,
        help="most back-half work a stream's header may claim (10^9 multiply-accumulates, estimated per served "
        "model at start-up); default 10",
    )
    p.add_argument(
        "--max-requests",
        type=positive,
        default=32,
        help="decode requests admitted at once (running or queued); beyond it 503; default 32",
    )
    p.add_argument(
        "--header-timeout-s",
        type=float,
        default=10.0,
        help="seconds a connection may take to send a request's head; idle ones are closed; default 10",
    )
    p.add_argument(
        "--max-connections",
        type=positive,
        default=1000,
        help="connections held at once; a new one beyond closes the oldest idle one (capped below the open-file "
        "limit); default 1000",
    )
    p.add_argument("--token-file", default=None, help="bearer token file (else $FCM_SERVE_TOKEN; neither: no auth)")
    p.add_argument("--ssl-certfile", default=None, help="TLS certificate (PEM); with --ssl-keyfile, serve HTTPS")
    p.add_argument("--ssl-keyfile", default=None, help="TLS private key (PEM)")
    add_threads_arg(p)
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("send", help="run the edge half on images and send the bitstreams to an fcm server")
    p.add_argument("images", nargs="+", help="image files, or skimage:NAME for bundled photos")
    p.add_argument("--server", required=True, help="server URL, e.g. http://127.0.0.1:8000")
    p.add_argument("--token-file", default=None, help="file holding the bearer token (else $FCM_SERVE_TOKEN)")
    p.add_argument("--top-k", type=positive, default=5, help="classes (or detections) the server returns; default 5")
    p.add_argument("--wrapper", default=None, metavar="CHECKPOINT", help="code through a trained wrapper")
    add_model_args(p)
    add_codec_args(p)
    add_threads_arg(p)
    p.set_defaults(func=cmd_send)
