"""Video streams and sweeps: ``fcm encode-video``, ``decode-video`` and ``video-sweep``."""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from pathlib import Path
from typing import Any

from fcm.cli.args import (
    add_codec_args,
    add_model_args,
    add_progress_arg,
    add_rdo_args,
    add_threads_arg,
    allocation_from_args,
    codec_params,
    load_model,
    load_wrapper_arg,
    positive,
)
from fcm.errors import FcmError


def _video_model(header: Any, args: argparse.Namespace) -> Any:
    from fcm.models import get_model

    if args.sha256 and not args.weights:
        raise FcmError("--sha256 checks a weights file: give --weights too")
    return get_model(header.model, header.split, args.weights, args.sha256)  # decode_video warns on other weights


def cmd_encode_video(args: argparse.Namespace) -> dict[str, Any]:
    from tqdm import tqdm

    from fcm.video.pipeline import encode_video
    from fcm.video.sources import open_source

    source = open_source(args.source, args.frames, args.fps)
    model = load_model(args)
    from fcm.pipeline import variant_for

    wrapper = variant_for(
        load_wrapper_arg(args.wrapper, model), codec_params(args)
    )  # one QP: one variant for the whole video
    allocation = allocation_from_args(args)
    if args.intra_period < 0:
        raise FcmError(f"--intra-period must be >= 0 (0: only the first frame is a key frame), got {args.intra_period}")
    from fcm.codecs import get_codec

    codec = get_codec(args.codec)  # checked before any file is made
    codec.check_params(codec.default_bit_depth if args.bit_depth is None else args.bit_depth, codec_params(args))
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
                codec_params(args),
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


def cmd_decode_video(args: argparse.Namespace) -> dict[str, Any] | None:
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

    wrapper = load_wrapper_arg(args.wrapper, model)
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


def cmd_video_sweep(args: argparse.Namespace) -> None:
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


def register(sub: Any) -> None:
    """Add ``encode-video``, ``decode-video``, ``video-sweep`` to the ``fcm`` subcommands."""
    p = sub.add_parser("encode-video", help="run the edge half on every frame of a video and write an .fcmv stream")
    p.add_argument("source", help="video file, folder of images, or clip:PHOTO[:FRAMES[:WxH]] (generated)")
    p.add_argument("-o", "--output", default=None, help="output .fcmv file (default: SOURCE_NAME.fcmv)")
    p.add_argument("--frames", type=positive, default=None, help="stop after this many frames")
    p.add_argument("--fps", type=float, default=None, help="frame rate (default: the source's; clips/folders 25)")
    p.add_argument("--intra-period", type=int, default=0, help="frames between key frames in lowdelay (0: first only)")
    p.add_argument("--wrapper", default=None, metavar="CHECKPOINT", help="code through a trained wrapper")
    add_progress_arg(p)
    add_model_args(p)
    add_codec_args(p)
    p.set_defaults(gop="lowdelay")
    g = p.add_argument_group("wrapper-aware bit allocation (QP route; wa-gop: per intra period)")
    add_rdo_args(g, with_route=False)
    g.add_argument("--rdo-gop", type=positive, default=None, help="wa-gop group length (default: the intra period)")
    add_threads_arg(p)
    p.set_defaults(func=cmd_encode_video, rdo_route="qp")  # video takes maps through the codec's QP map only

    p = sub.add_parser("decode-video", help="decode an .fcmv stream frame by frame; one JSON line per frame")
    p.add_argument("stream", help="an .fcmv file (fcm encode-video)")
    p.add_argument("-o", "--output", default=None, help="write the JSON lines here (default: stdout)")
    p.add_argument("--wrapper", default=None, metavar="CHECKPOINT", help="the wrapper the stream was coded with")
    p.add_argument("--top-k", type=positive, default=5, help="classes (or detections) per frame")
    add_progress_arg(p)
    add_model_args(p, with_split=False)
    add_threads_arg(p)
    p.set_defaults(func=cmd_decode_video)

    p = sub.add_parser("video-sweep", help="code sequences as video at several QPs; kbps against task fidelity")
    p.add_argument("config", help="video sweep YAML (e.g. configs/video_sweep.yaml)")
    p.add_argument("-o", "--output", default=None, help="results folder (default: the config's output)")
    p.add_argument("--report-only", action="store_true", help="rewrite the report from the records, measure nothing")
    p.add_argument("--jobs", type=positive, default=1, help="worker processes (points run in parallel)")
    p.add_argument("--limit", type=positive, default=None, help="use only the first N sequences")
    p.add_argument(
        "--merge",
        action="store_true",
        help="add this sweep's points to an output folder made by another video sweep (same settings)",
    )
    add_progress_arg(p)
    add_threads_arg(p, from_config=True)
    p.set_defaults(func=cmd_video_sweep, resumable=True, config_threads=True)
