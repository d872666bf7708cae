"""Coding one image: ``fcm encode``, ``decode``, ``info`` and ``demo``."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from fcm.cli.args import (
    DEFAULT_IMAGE,
    add_codec_args,
    add_model_args,
    add_rdo_args,
    add_threads_arg,
    allocation_from_args,
    codec_params,
    load_model,
    load_wrapper_arg,
    positive,
)


def _read_file(path: str) -> bytes:
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"no such file: {p}")
    return p.read_bytes()


def cmd_encode(args: argparse.Namespace) -> dict[str, Any]:
    from fcm import pipeline
    from fcm.images import load_image

    image = load_image(args.image)
    model = load_model(args)
    wrapper = load_wrapper_arg(args.wrapper, model)
    allocation = allocation_from_args(args)
    result = pipeline.encode(
        image,
        model,
        args.codec,
        codec_params(args),
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


def cmd_decode(args: argparse.Namespace) -> dict[str, Any]:
    from fcm import bitstream, pipeline

    data = _read_file(args.bitstream)
    header, _ = bitstream.read(data)
    model = pipeline.load_model_for(header, args.weights, args.sha256)
    result = pipeline.decode(data, model, wrapper=load_wrapper_arg(args.wrapper, model))
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


def cmd_info(args: argparse.Namespace) -> dict[str, Any]:
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


def cmd_demo(args: argparse.Namespace) -> dict[str, Any]:
    """Encode and decode the bundled photo, and compare with uncompressed inference."""
    import torch

    from fcm import pipeline
    from fcm.images import load_image

    image = load_image(args.image)
    model = load_model(args)
    enc = pipeline.encode(
        image, model, args.codec, codec_params(args), args.bit_depth, args.range_mode, torch_threads=args.torch_threads
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


def register(sub: Any) -> None:
    """Add ``encode``, ``decode``, ``info``, ``demo`` to the ``fcm`` subcommands."""
    p = sub.add_parser("encode", help="run the edge half on an image and write an .fcm bitstream")
    p.add_argument("image", help="image file, or skimage:NAME for a bundled photo (e.g. skimage:chelsea)")
    p.add_argument("-o", "--output", default=None, help="output .fcm file (default: IMAGE_STEM.fcm)")
    p.add_argument(
        "--wrapper",
        default=None,
        metavar="CHECKPOINT",
        help="code through a trained wrapper (fcm train) or a wrapper family (the variant serving --qp)",
    )
    add_model_args(p)
    add_codec_args(p)
    add_rdo_args(p.add_argument_group("wrapper-aware bit allocation (fcm.rdo)"), with_route=True)
    add_threads_arg(p)
    p.set_defaults(func=cmd_encode)

    p = sub.add_parser("decode", help="decode an .fcm bitstream and print the task result as JSON")
    p.add_argument("bitstream", help="an .fcm file (fcm encode)")
    p.add_argument(
        "--wrapper",
        default=None,
        metavar="CHECKPOINT",
        help="the wrapper (or a wrapper family holding it) a wrapped stream was coded with",
    )
    p.add_argument("--top-k", type=positive, default=5, help="classes (or detections) to print")
    add_model_args(p, with_split=False)
    add_threads_arg(p)
    p.set_defaults(func=cmd_decode)

    p = sub.add_parser("info", help="print an .fcm bitstream's header, sizes and bits per pixel")
    p.add_argument("bitstream", help="an .fcm file (fcm encode)")
    p.set_defaults(func=cmd_info)

    p = sub.add_parser("demo", help="encode+decode a bundled photo and compare with uncompressed inference")
    p.add_argument(
        "image", nargs="?", default=DEFAULT_IMAGE, help=f"image file or skimage:NAME (default {DEFAULT_IMAGE})"
    )
    add_model_args(p)
    add_codec_args(p)
    add_threads_arg(p)
    p.set_defaults(func=cmd_demo)
