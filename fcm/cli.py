"""The ``fcm`` command line. Library errors become one-line messages and exit code 2; nothing else lives here."""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import warnings
from pathlib import Path
from typing import Any, NoReturn

from fcm.errors import FcmError

DEFAULT_IMAGE = "skimage:chelsea"


def _params(args: argparse.Namespace) -> Any:
    from fcm.codecs import CodecParams

    return CodecParams(qp=args.qp, rate_control=args.rate_control, gop=args.gop, preset=args.preset)


def _add_codec_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--codec", default="x265", help="inner codec (see `fcm codecs`); default x265")
    p.add_argument("--qp", type=int, default=32, help="codec quantizer (x264/x265 0–51); default 32")
    p.add_argument("--rate-control", choices=("cqp", "crf"), default="cqp", help="constant QP (default) or CRF+AQ")
    p.add_argument(
        "--gop",
        choices=("intra", "lowdelay"),
        default="intra",
        help="intra: every frame a key frame; lowdelay: I then P frames (default intra; encode-video: lowdelay)",
    )
    p.add_argument("--preset", default=None, help="encoder speed preset (codec default if omitted)")
    p.add_argument("--bit-depth", type=int, default=None, help="packing bit depth (default: the codec's highest)")
    p.add_argument(
        "--range-mode", choices=("frame", "tensor"), default="frame", help="quantization range per frame/tensor"
    )


def _add_model_args(p: argparse.ArgumentParser, with_split: bool = True) -> None:
    if with_split:
        p.add_argument("--model", default="efficientnet_lite0", help="split model (see `fcm models`)")
        p.add_argument("--split", default=None, help="split point (default: the model's default split)")
    p.add_argument("--weights", default=None, help="local weights file (default: bundled weights, else random)")
    p.add_argument("--sha256", default=None, help="expected sha256 (or prefix) of --weights")


def _add_threads_arg(p: argparse.ArgumentParser, from_config: bool = False) -> None:
    if from_config:
        text = "torch intra-op threads (default: the config's torch_threads); part of what the results depend on"
    else:
        text = (
            "torch intra-op threads of the model halves (default 1: the same bytes and outputs on any core count; "
            "more is faster but the floats, and so the bytes, then depend on the count)"
        )
    p.add_argument("--torch-threads", type=_positive, default=None if from_config else 1, metavar="N", help=text)


def _add_progress_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--quiet", dest="no_progress", action="store_true", help=argparse.SUPPRESS)  # its former name


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {value}")
    return value


def _model(args: argparse.Namespace) -> Any:
    from fcm.models import get_model

    if args.sha256 and not args.weights:
        raise FcmError("--sha256 checks a weights file: give --weights too")
    return get_model(args.model, args.split, args.weights, args.sha256)


def _encode(args: argparse.Namespace) -> dict[str, Any]:
    from fcm import pipeline
    from fcm.images import load_image

    image = load_image(args.image)
    model = _model(args)
    wrapper = _wrapper(args.wrapper, model)
    allocation = _allocation(args)
    result = pipeline.encode(
        image,
        model,
        args.codec,
        _params(args),
        args.bit_depth,
        args.range_mode,
        wrapper=wrapper,
        allocation=allocation,
        torch_threads=args.torch_threads,
    )
    out = Path(args.output) if args.output else Path(Path(str(args.image).split(":")[-1]).stem + ".fcm")
    out.write_bytes(result.bitstream)
    return {
        "output": str(out),
        "bytes": len(result.bitstream),
        "bits": result.num_bits,
        "bpp": round(result.bpp, 6),
        "frame": f"{result.header.layout.frame_width}x{result.header.layout.frame_height}",
        "encode_seconds": {
            "front": result.front_s,
            "wrap": result.wrap_s,
            "pack": result.pack_s,
            "rdo": result.rdo_s,
            "codec": result.codec_s,
        },
        "torch_threads": args.torch_threads,
        **({"wrapper": str(result.header.wrapper)} if result.header.wrapper else {}),
        **({"rdo": args.rdo} if args.rdo != "sse" else {}),
    }


def _allocation(args: argparse.Namespace) -> Any:
    """The bit allocation of ``--rdo`` and its options (``None`` for ``sse``)."""
    from fcm.rdo import RdoSettings, build_allocation

    gop = getattr(args, "rdo_gop", None) or getattr(args, "intra_period", 0) or 8
    settings = RdoSettings(
        mode=args.rdo,
        route=args.rdo_route,
        target=args.rdo_target,
        probes=args.rdo_probes,
        block=args.rdo_block,
        max_offset=args.rdo_max_offset,
        map_path=args.rdo_map,
        gop=gop,
    )
    return build_allocation(settings)


def _serve(args: argparse.Namespace) -> None:
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


def _send(args: argparse.Namespace) -> list[dict[str, Any]]:
    from fcm.images import load_image
    from fcm.serve.auth import load_token
    from fcm.serve.client import EdgeClient

    model = _model(args)
    wrapper = _wrapper(args.wrapper, model)
    out = []
    with EdgeClient(args.server, load_token(args.token_file)) as client:  # one connection for every image
        for image in args.images:
            sent = client.send(
                load_image(image),
                model,
                args.codec,
                _params(args),
                args.bit_depth,
                args.top_k,
                wrapper=wrapper,
                torch_threads=args.torch_threads,
            )
            out.append({"image": image, **sent.to_dict()})
    return out


def _rdo_weights(args: argparse.Namespace) -> dict[str, Any]:
    import numpy as np

    from fcm.rdo.config import RdoWeightsConfig

    if Path(args.output).exists() and not args.overwrite:  # before any work: a remake never replaces a shipped map
        raise FcmError(f"{args.output} exists: pass --overwrite to replace it, or write elsewhere (e.g. under runs/)")
    cfg = RdoWeightsConfig.from_yaml(args.config)
    from dataclasses import replace

    if args.limit is not None:
        cfg = replace(cfg, limit=args.limit)
    if args.torch_threads is not None:
        cfg = replace(cfg, torch_threads=args.torch_threads)
    fixed = cfg.run(progress=not args.no_progress)
    path = fixed.save(args.output)
    ident = fixed.identity
    return {
        "output": str(path),
        "model": ident["model"],
        "split": ident["split"],
        "wrapper": ident["wrapper"],
        "target": ident["target"],
        "frames": ident["frames"],
        "frame": f"{ident['layout']['frame_width']}x{ident['layout']['frame_height']}",
        "weight_percentiles": {
            str(q): round(float(v), 4)
            for q, v in zip((1, 50, 99), np.percentile(fixed.weights, [1, 50, 99]), strict=True)
        },
    }


def _wrapper(path: str | None, model: Any) -> Any:
    """The wrapper checkpoint or rate-adaptive wrapper family at ``path`` for ``model`` (``None`` without a path);
    the pipeline picks a family's variant (by QP when encoding, by the stream's header when decoding)."""
    if path is None:
        return None
    from fcm.wrappers import load_wrapper_or_family

    return load_wrapper_or_family(path, model)


def _decode(args: argparse.Namespace) -> dict[str, Any]:
    from fcm import bitstream, pipeline

    data = _read_file(args.bitstream)
    header, _ = bitstream.read(data)
    model = pipeline.load_model_for(header, args.weights, args.sha256)
    result = pipeline.decode(data, model, wrapper=_wrapper(args.wrapper, model))
    return {
        "model": header.model,
        "split": header.split,
        "task": model.task,
        "result": model.describe(result.output, args.top_k)[0],
        "decode_seconds": {
            "codec": result.codec_s,
            "unpack": result.unpack_s,
            "unwrap": result.unwrap_s,
            "back": result.back_s,
        },
    }


def _encode_video(args: argparse.Namespace) -> dict[str, Any]:
    from tqdm import tqdm

    from fcm.video.pipeline import encode_video
    from fcm.video.sources import open_source

    source = open_source(args.source, args.frames, args.fps)
    model = _model(args)
    from fcm.pipeline import variant_for

    wrapper = variant_for(_wrapper(args.wrapper, model), _params(args))  # one QP: one variant for the whole video
    allocation = _allocation(args)
    if args.intra_period < 0:
        raise FcmError(f"--intra-period must be >= 0 (0: only the first frame is a key frame), got {args.intra_period}")
    from fcm.codecs import get_codec

    codec = get_codec(args.codec)  # checked before any file is made
    codec.check_params(codec.default_bit_depth if args.bit_depth is None else args.bit_depth, _params(args))
    out = Path(args.output) if args.output else Path(source.name + ".fcmv")
    part = out.with_name(out.name + ".part")  # the output appears only once the whole stream is written
    with (
        open(part, "wb") as sink,
        tqdm(total=source.num_frames, unit="frame", desc="encode", disable=args.no_progress) as bar,
    ):
        try:
            stats = encode_video(
                source.frames(),
                model,
                args.codec,
                _params(args),
                sink,
                source.fps,
                intra_period=args.intra_period,
                bit_depth=args.bit_depth,
                range_mode=args.range_mode,
                wrapper=wrapper,
                allocation=allocation,
                on_frame=lambda i: bar.update(1),
                torch_threads=args.torch_threads,
            )
        except BaseException:
            part.unlink(missing_ok=True)
            raise
    part.replace(out)
    return {
        "output": str(out),
        "frames": stats.frames,
        "fps": float(stats.fps),
        "bytes": stats.bytes,
        "kbps": round(stats.kbps, 3),
        "frame": f"{stats.input_size[1]}x{stats.input_size[0]}",
        "encode_fps": round(stats.encode_fps, 2),
        "torch_threads": args.torch_threads,
        "seconds": {
            "total": round(stats.seconds, 3),
            "front": round(stats.front_s, 3),
            "codec": round(stats.codec_s, 3),
        },
    }


def _decode_video(args: argparse.Namespace) -> dict[str, Any] | None:
    import time

    from tqdm import tqdm

    from fcm.video.container import VideoReader
    from fcm.video.pipeline import decode_video

    path = Path(args.stream)
    if not path.is_file():
        raise FileNotFoundError(f"no such file: {path}")
    with open(path, "rb") as f:
        header = VideoReader(f).header
    model = _video_model(header, args)
    from fcm.wrappers import WrapperFamily

    wrapper = _wrapper(args.wrapper, model)
    if isinstance(wrapper, WrapperFamily):
        wrapper = wrapper.for_stream(header.wrapper)  # the variant the video was coded with
    t0 = time.perf_counter()
    frames = 0
    with contextlib.ExitStack() as stack:
        sink = stack.enter_context(open(args.output, "w", encoding="utf-8")) if args.output else sys.stdout
        f = stack.enter_context(open(path, "rb"))
        bar = stack.enter_context(tqdm(unit="frame", desc="decode", disable=args.no_progress or sink is sys.stdout))
        _, results = decode_video(f, model, wrapper)
        for r in results:
            record = {"frame": r.index, "result": model.describe(r.output, args.top_k)[0]}
            sink.write(json.dumps(record) + "\n")
            frames += 1
            bar.update(1)
    seconds = time.perf_counter() - t0
    size = path.stat().st_size
    summary = {
        "model": header.model,
        "split": header.split,
        "frames": frames,
        "fps": float(header.fps),
        "bytes": size,
        "kbps": round(8 * size / 1000 / (frames / float(header.fps)), 3) if frames else None,
        "decode_fps": round(frames / seconds, 2) if seconds > 0 else None,
    }
    if not args.output:  # stdout holds the frames' lines: the summary goes to stderr
        print(json.dumps(summary), file=sys.stderr)
        return None
    return {**summary, "output": args.output}


def _video_model(header: Any, args: argparse.Namespace) -> Any:
    from fcm.models import get_model

    if args.sha256 and not args.weights:
        raise FcmError("--sha256 checks a weights file: give --weights too")
    return get_model(header.model, header.split, args.weights, args.sha256)  # decode_video warns on other weights


def _video_sweep(args: argparse.Namespace) -> None:
    from dataclasses import replace

    from fcm.eval.video_report import table, write_report
    from fcm.eval.video_sweep import RESULTS_FILE, VideoSweepConfig, read_records, run_video_sweep

    cfg = VideoSweepConfig.load(args.config)
    if args.output:
        cfg = replace(cfg, output=Path(args.output))
    if args.limit is not None:
        cfg = replace(cfg, sequences=cfg.sequences[: args.limit])
    if args.torch_threads is not None:
        cfg = replace(cfg, torch_threads=args.torch_threads)
    if args.report_only:
        from fcm.eval.video_sweep import check_folder_read_only

        records = read_records(cfg.output / RESULTS_FILE)
        if not records:
            raise FcmError(f"{cfg.output} holds no video sweep records")
        # the report names the config's settings: they must be the records'
        cfg = replace(cfg, name=check_folder_read_only(cfg, merge=args.merge))
        report = write_report(cfg, records)
    else:
        outcome = run_video_sweep(cfg, progress=not args.no_progress, jobs=args.jobs, merge=args.merge)
        report = outcome.report
        print(f"{outcome.new_records} new record(s) in {cfg.output / RESULTS_FILE}", file=sys.stderr)
    print(table(report))
    print(f"report: {cfg.output / 'report.json'}, {cfg.output / 'points.csv'}, {cfg.output / 'rd_kbps.png'}")


def _read_file(path: str) -> bytes:
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"no such file: {p}")
    return p.read_bytes()


def _info(args: argparse.Namespace) -> dict[str, Any]:
    from fcm import bitstream

    data = _read_file(args.bitstream)
    header, payload = bitstream.read(data)
    size = header.meta.get("input_size", ())
    h, w = size if len(size) == 2 and min(size) > 0 else (0, 0)
    lay = header.layout
    info: dict[str, Any] = {
        "format_version": data[4],
        "model": header.model,
        "split": header.split,
        "weights": header.weights_tag,
        "wrapper": None
        if header.wrapper is None
        else {"name": header.wrapper.name, "weights": header.wrapper.weights_tag},
        "meta": {k: list(v) for k, v in header.meta.items()},
        "side_info": {k: list(v) for k, v in header.side_info.items()},
        "block_scales": None
        if header.block_scales is None
        else {
            "block": header.block_scales.block,
            "blocks": list(header.block_scales.shape),
            "mean_qp_equivalent": round(float(header.block_scales.step_map().mean()), 3),
        },
        "tensors": [
            {"name": p.name, "shape": [p.channels, p.height, p.width], "grid": [p.rows, p.cols], "top": p.top}
            for p in lay.placements
        ],
        "frames": header.num_frames,
        "frame_size": [lay.frame_height, lay.frame_width],  # H, W like every other size fcm prints
        "bit_depth": header.bit_depth,
        "range_mode": header.range_mode,
        "ranges": [[[r.lo, r.hi] for r in fr] for fr in header.ranges],
        "codec": header.codec,
        "codec_params": {
            "qp": header.params.qp,
            "rate_control": header.params.rate_control,
            "gop": header.params.gop,
            "preset": header.params.preset,
            "options": dict(header.params.options),
        },
        "notes": dict(header.notes),
        "bytes": {"total": len(data), "codec_payload": payload.num_bytes, "container": len(data) - payload.num_bytes},
        "packets": len(payload.packets),
    }
    if h and w:
        info["input_pixels"] = h * w
        info["bpp"] = round(8 * len(data) / (h * w), 6)
    return info


def _models(args: argparse.Namespace) -> dict[str, Any]:
    from fcm.models import MODELS, get_model

    if args.nodes:
        from fcm.models.fx_split import node_names

        entry = MODELS.get(args.nodes)
        if not entry.any_node:
            raise FcmError(f"model {args.nodes!r} has named splits only: {', '.join(entry.splits)}")
        import torch

        net = getattr(get_model(args.nodes), "net", None)
        if not isinstance(net, torch.nn.Module):
            raise FcmError(f"model {args.nodes!r} exposes no torch module whose graph nodes could be listed")
        return {"model": args.nodes, "nodes": node_names(net)}
    out = {}
    for name in MODELS.names():
        entry = MODELS.get(name)
        out[name] = {
            "task": entry.task,
            "description": entry.description,
            "default_split": entry.default_split,
            "splits": {
                s.split: [{"name": t.name, "channels": t.channels, "stride": t.stride} for t in s.tensors]
                for s in entry.split_specs()
            },
            "any_graph_node": entry.any_node,
        }
    return out


def _codecs(args: argparse.Namespace) -> dict[str, Any]:
    from fcm.codecs import codec_names, get_codec

    out = {}
    for name in codec_names():
        c = get_codec(name)
        out[name] = {
            "bit_depths": list(c.bit_depths),
            "qp_range": list(c.qp_range),
            "lossless": c.lossless,
            "block_qp_offsets": c.supports_block_qp_offsets,
        }
    return out


def _demo(args: argparse.Namespace) -> dict[str, Any]:
    """Encode and decode the bundled photo, and compare with uncompressed inference."""
    import torch

    from fcm import pipeline
    from fcm.images import load_image

    image = load_image(args.image)
    model = _model(args)
    enc = pipeline.encode(
        image, model, args.codec, _params(args), args.bit_depth, args.range_mode, torch_threads=args.torch_threads
    )
    dec = pipeline.decode(enc.bitstream, model)
    with torch.no_grad():
        reference = model.full(model.prepare(image))
    return {
        "image": args.image,
        "model": f"{model.name}/{model.split}",
        "codec": f"{args.codec} qp={args.qp}",
        "bytes": len(enc.bitstream),
        "bpp": round(enc.bpp, 5),
        "decoded": model.describe(dec.output, 3)[0],
        "uncompressed": model.describe(reference, 3)[0],
    }


def _sweep(args: argparse.Namespace) -> dict[str, Any]:
    from fcm.eval.config import SweepConfig
    from fcm.eval.run import run_and_report

    overrides = {"output": args.output} if args.output else {}
    if args.limit is not None:
        overrides["limit"] = args.limit
    if args.torch_threads is not None:
        overrides["torch_threads"] = args.torch_threads
    cfg = SweepConfig.from_yaml(args.config, overrides)
    return run_and_report(cfg, jobs=args.jobs, progress=not args.no_progress, ray_address=args.ray, merge=args.merge)


def _report(args: argparse.Namespace) -> dict[str, Any]:
    from fcm.eval.run import report_folder

    return report_folder(Path(args.results), anchor=args.anchor)


def _train(args: argparse.Namespace) -> dict[str, Any]:
    from fcm.train.config import TrainConfig
    from fcm.train.loop import train

    overrides: dict[str, Any] = {"checkpoint": args.output} if args.output else {}
    if args.steps is not None:
        overrides["steps"] = args.steps
    if args.torch_threads is not None:
        overrides["torch_threads"] = args.torch_threads
    cfg = TrainConfig.from_yaml(args.config, overrides)
    return train(cfg, progress=False if args.no_progress else None).summary()


class _Parser(argparse.ArgumentParser):
    """Argument errors as one line (``fcm encode: error: …; see fcm encode --help``), exit code 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message}; see {self.prog} --help\n")


def _add_rdo_args(g: Any, with_route: bool) -> None:
    """The ``--rdo*`` options; choices from the policy registry and the targets, defaults from :class:`RdoSettings`
    (so the CLI and a config mean the same when neither says)."""
    from fcm.rdo.policies import rdo_modes
    from fcm.rdo.settings import ROUTES, RdoSettings
    from fcm.rdo.targets import TARGETS

    d = RdoSettings()
    g.add_argument("--rdo", choices=rdo_modes(), default=d.mode, help=f"default {d.mode}")
    g.add_argument("--rdo-map", default=None, metavar="NPZ", help="fixed map for wa-fixed (fcm rdo-weights)")
    if with_route:
        g.add_argument("--rdo-route", choices=ROUTES, default=d.route, help="QP offsets (crf) or sample scaling")
    g.add_argument("--rdo-target", choices=TARGETS, default=d.target, help="what the weights protect")
    g.add_argument("--rdo-probes", type=int, default=d.probes, help=f"Rademacher probes (0: exact); default {d.probes}")
    g.add_argument(
        "--rdo-block", type=_positive, default=d.block, help=f"map block side; default {d.block} (x265 also 8)"
    )
    g.add_argument(
        "--rdo-max-offset", type=int, default=d.max_offset, help=f"QP offset clip ±N; default {d.max_offset}"
    )


def build_parser() -> argparse.ArgumentParser:
    from fcm import __version__

    parser = _Parser(prog="fcm", description="Feature coding for machines: split inference over real codecs.")
    parser.add_argument("--version", action="version", version=f"fcm {__version__}")
    parser.add_argument(
        "--codecs",
        metavar="FILE",
        default=None,
        help="YAML file declaring external codecs (VTM, VVenC, HM, …); also $FCM_CODECS",
    )
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    p = sub.add_parser("encode", help="run the edge half on an image and write an .fcm bitstream")
    p.add_argument("image", help="image file, or skimage:NAME for a bundled photo (e.g. skimage:chelsea)")
    p.add_argument("-o", "--output", default=None, help="output .fcm file (default: IMAGE_STEM.fcm)")
    p.add_argument(
        "--wrapper",
        default=None,
        metavar="CHECKPOINT",
        help="code through a trained wrapper (fcm train) or a wrapper family (the variant serving --qp)",
    )
    _add_model_args(p)
    _add_codec_args(p)
    _add_rdo_args(p.add_argument_group("wrapper-aware bit allocation (fcm.rdo)"), with_route=True)
    _add_threads_arg(p)
    p.set_defaults(func=_encode)

    p = sub.add_parser("decode", help="decode an .fcm bitstream and print the task result as JSON")
    p.add_argument("bitstream", help="an .fcm file (fcm encode)")
    p.add_argument(
        "--wrapper",
        default=None,
        metavar="CHECKPOINT",
        help="the wrapper (or a wrapper family holding it) a wrapped stream was coded with",
    )
    p.add_argument("--top-k", type=_positive, default=5, help="classes (or detections) to print")
    _add_model_args(p, with_split=False)
    _add_threads_arg(p)
    p.set_defaults(func=_decode)

    p = sub.add_parser("encode-video", help="run the edge half on every frame of a video and write an .fcmv stream")
    p.add_argument("source", help="video file, folder of images, or clip:PHOTO[:FRAMES[:WxH]] (generated)")
    p.add_argument("-o", "--output", default=None, help="output .fcmv file (default: SOURCE_NAME.fcmv)")
    p.add_argument("--frames", type=_positive, default=None, help="stop after this many frames")
    p.add_argument("--fps", type=float, default=None, help="frame rate (default: the source's; clips/folders 25)")
    p.add_argument("--intra-period", type=int, default=0, help="frames between key frames in lowdelay (0: first only)")
    p.add_argument("--wrapper", default=None, metavar="CHECKPOINT", help="code through a trained wrapper")
    _add_progress_arg(p)
    _add_model_args(p)
    _add_codec_args(p)
    p.set_defaults(gop="lowdelay")
    g = p.add_argument_group("wrapper-aware bit allocation (QP route; wa-gop: per intra period)")
    _add_rdo_args(g, with_route=False)
    g.add_argument("--rdo-gop", type=_positive, default=None, help="wa-gop group length (default: the intra period)")
    _add_threads_arg(p)
    p.set_defaults(func=_encode_video, rdo_route="qp")  # video takes maps through the codec's QP map only

    p = sub.add_parser("decode-video", help="decode an .fcmv stream frame by frame; one JSON line per frame")
    p.add_argument("stream", help="an .fcmv file (fcm encode-video)")
    p.add_argument("-o", "--output", default=None, help="write the JSON lines here (default: stdout)")
    p.add_argument("--wrapper", default=None, metavar="CHECKPOINT", help="the wrapper the stream was coded with")
    p.add_argument("--top-k", type=_positive, default=5, help="classes (or detections) per frame")
    _add_progress_arg(p)
    _add_model_args(p, with_split=False)
    _add_threads_arg(p)
    p.set_defaults(func=_decode_video)

    p = sub.add_parser("video-sweep", help="code sequences as video at several QPs; kbps against task fidelity")
    p.add_argument("config", help="video sweep YAML (e.g. configs/video_sweep.yaml)")
    p.add_argument("-o", "--output", default=None, help="results folder (default: the config's output)")
    p.add_argument("--report-only", action="store_true", help="rewrite the report from the records, measure nothing")
    p.add_argument("--jobs", type=_positive, default=1, help="worker processes (points run in parallel)")
    p.add_argument("--limit", type=_positive, default=None, help="use only the first N sequences")
    p.add_argument(
        "--merge",
        action="store_true",
        help="add this sweep's points to an output folder made by another video sweep (same settings)",
    )
    _add_progress_arg(p)
    _add_threads_arg(p, from_config=True)
    p.set_defaults(func=_video_sweep)

    p = sub.add_parser("info", help="print an .fcm bitstream's header, sizes and bits per pixel")
    p.add_argument("bitstream", help="an .fcm file (fcm encode)")
    p.set_defaults(func=_info)

    p = sub.add_parser("models", help="list models and their split points")
    p.add_argument("--nodes", metavar="MODEL", default=None, help="list every graph node of MODEL usable as a split")
    p.set_defaults(func=_models)

    p = sub.add_parser("codecs", help="list inner codecs")
    p.set_defaults(func=_codecs)

    p = sub.add_parser("sweep", help="run (or resume) a rate–accuracy sweep from a YAML config, then report")
    p.add_argument("config", help="sweep YAML (e.g. configs/quickstart.yaml)")
    p.add_argument("--jobs", type=_positive, default=1, help="worker processes (inputs run in parallel)")
    p.add_argument("--output", default=None, help="override the config's output folder")
    p.add_argument("--limit", type=_positive, default=None, help="use only the first N inputs")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument(
        "--merge",
        action="store_true",
        help="add this sweep's points to a folder made by another sweep (same settings; its report is rewritten)",
    )
    p.add_argument(
        "--ray",
        default=None,
        metavar="ADDRESS",
        help="run the inputs on a Ray cluster: auto, ray://HOST:PORT, or local (--jobs CPUs here); fcm[ray]",
    )
    _add_threads_arg(p, from_config=True)
    p.set_defaults(func=_sweep)

    p = sub.add_parser("report", help="(re)write summary.csv, report.json, report.md and RD plots of a results folder")
    p.add_argument("results", help="a sweep's output folder")
    p.add_argument("--anchor", default=None, help="BD-rate anchor curve, pipeline/codec (default: from the sweep)")
    p.set_defaults(func=_report)

    p = sub.add_parser("train", help="train (or resume) a learned wrapper end to end through a codec, from YAML")
    p.add_argument("config", help="training YAML (e.g. configs/train_wrapped.yaml)")
    p.add_argument("--steps", type=_positive, default=None, help="override the config's step count")
    p.add_argument("--output", default=None, help="override the config's checkpoint path")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    _add_threads_arg(p, from_config=True)
    p.set_defaults(func=_train)

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
    p.add_argument("--port", type=_positive, default=8000, help="port to listen on; default 8000")
    p.add_argument("--max-body-mb", type=float, default=16.0, help="largest bitstream accepted (MiB); default 16")
    p.add_argument("--concurrency", type=_positive, default=2, help="decodes running at once; default 2")
    p.add_argument(
        "--max-buffered-mb",
        type=float,
        default=256.0,
        help="request bodies held at once over all requests (MiB); beyond it requests get 503; default 256",
    )
    p.add_argument(
        "--batch",
        type=_positive,
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
        type=_positive,
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
        type=_positive,
        default=1000,
        help="connections held at once; a new one beyond closes the oldest idle one (capped below the open-file "
        "limit); default 1000",
    )
    p.add_argument("--token-file", default=None, help="bearer token file (else $FCM_SERVE_TOKEN; neither: no auth)")
    p.add_argument("--ssl-certfile", default=None, help="TLS certificate (PEM); with --ssl-keyfile, serve HTTPS")
    p.add_argument("--ssl-keyfile", default=None, help="TLS private key (PEM)")
    _add_threads_arg(p)
    p.set_defaults(func=_serve)

    p = sub.add_parser("send", help="run the edge half on images and send the bitstreams to an fcm server")
    p.add_argument("images", nargs="+", help="image files, or skimage:NAME for bundled photos")
    p.add_argument("--server", required=True, help="server URL, e.g. http://127.0.0.1:8000")
    p.add_argument("--token-file", default=None, help="file holding the bearer token (else $FCM_SERVE_TOKEN)")
    p.add_argument("--top-k", type=_positive, default=5, help="classes (or detections) the server returns; default 5")
    p.add_argument("--wrapper", default=None, metavar="CHECKPOINT", help="code through a trained wrapper")
    _add_model_args(p)
    _add_codec_args(p)
    _add_threads_arg(p)
    p.set_defaults(func=_send)

    p = sub.add_parser("rdo-weights", help="average wrapper-aware weights over a dataset into a fixed map (.npz)")
    p.add_argument("config", help="rdo-weights YAML (e.g. configs/rdo_weights.yaml)")
    p.add_argument("-o", "--output", required=True, help="the .npz map to write (e.g. runs/rdo/map.npz)")
    p.add_argument("--overwrite", action="store_true", help="replace --output if it exists")
    p.add_argument("--limit", type=_positive, default=None, help="use only the first N inputs")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    _add_threads_arg(p, from_config=True)
    p.set_defaults(func=_rdo_weights)

    p = sub.add_parser("demo", help="encode+decode a bundled photo and compare with uncompressed inference")
    p.add_argument(
        "image", nargs="?", default=DEFAULT_IMAGE, help=f"image file or skimage:NAME (default {DEFAULT_IMAGE})"
    )
    _add_model_args(p)
    _add_codec_args(p)
    _add_threads_arg(p)
    p.set_defaults(func=_demo)
    return parser


def _pinned(args: argparse.Namespace) -> contextlib.AbstractContextManager[None]:
    """The whole command with ``--torch-threads`` threads; config-driven commands pin their config's own count."""
    threads = getattr(args, "torch_threads", None)
    if threads is None or args.func in (_sweep, _train, _rdo_weights, _video_sweep):
        return contextlib.nullcontext()
    from fcm.numerics import torch_threads

    return torch_threads(threads)


def _warning_printer(command: str) -> Any:
    """Warnings as one line each, ``fcm COMMAND: warning: …`` (not Python's source-path form)."""

    def show(message: Warning | str, category: type[Warning], *_: Any, **__: Any) -> None:
        kind = "" if issubclass(category, UserWarning) else f" ({category.__name__})"
        print(f"fcm {command}: warning{kind}: {_printable(str(message))}", file=sys.stderr)

    return show


def _printable(message: str) -> str:
    """``message`` on one line with no terminal control: non-printable characters (newlines, ESC, …) escaped."""
    return "".join(ch if ch.isprintable() else ascii(ch)[1:-1] for ch in message)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # argparse: --help, --version, or a one-line argument error already printed
        return int(e.code or 0)
    try:
        if args.codecs:
            from fcm.codecs.user_codecs import load_codec_file

            load_codec_file(args.codecs)  # sweep workers load the same files
        with warnings.catch_warnings(), _pinned(args):
            warnings.simplefilter("default")
            warnings.showwarning = _warning_printer(args.command)
            result = args.func(args)
    except (FcmError, OSError) as e:
        print(f"fcm {args.command}: error: {_printable(str(e))}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        resumable = args.func in (_sweep, _train, _video_sweep)
        hint = ": what finished is kept; rerun the same command to resume" if resumable else ""
        print(f"fcm {args.command}: interrupted{hint}", file=sys.stderr)
        return 130
    if result is not None:
        print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
