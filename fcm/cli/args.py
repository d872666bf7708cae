"""What every ``fcm`` command shares: the one-line argument errors, the model, codec, threads, progress and
RDO options, and turning them into a model, codec parameters or a wrapper."""

from __future__ import annotations

import argparse
from typing import Any, NoReturn

from fcm.errors import FcmError

DEFAULT_IMAGE = "skimage:chelsea"


def codec_params(args: argparse.Namespace) -> Any:
    from fcm.codecs import CodecParams

    return CodecParams(qp=args.qp, rate_control=args.rate_control, gop=args.gop, preset=args.preset)


def add_codec_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--codec", default="x265", help="inner codec (see `fcm codecs`); default x265")
    p.add_argument("--qp", type=int, default=32, help="codec quantizer (x264/x265 0–51); default 32")
    from fcm.codecs.base import GOP_STRUCTURES, RATE_CONTROLS

    p.add_argument("--rate-control", choices=RATE_CONTROLS, default="cqp", help="constant QP (default) or CRF+AQ")
    p.add_argument(
        "--gop",
        choices=GOP_STRUCTURES,
        default="intra",
        help="intra: every frame a key frame; lowdelay: I then P frames (default intra; encode-video: lowdelay)",
    )
    p.add_argument("--preset", default=None, help="encoder speed preset (codec default if omitted)")
    p.add_argument("--bit-depth", type=int, default=None, help="packing bit depth (default: the codec's highest)")
    p.add_argument(
        "--range-mode", choices=("frame", "tensor"), default="frame", help="quantization range per frame/tensor"
    )


def add_model_args(p: argparse.ArgumentParser, with_split: bool = True) -> None:
    if with_split:
        p.add_argument("--model", default="efficientnet_lite0", help="split model (see `fcm models`)")
        p.add_argument("--split", default=None, help="split point (default: the model's default split)")
    p.add_argument("--weights", default=None, help="local weights file (default: bundled weights, else random)")
    p.add_argument("--sha256", default=None, help="expected sha256 (or prefix) of --weights")


def add_threads_arg(p: argparse.ArgumentParser, from_config: bool = False) -> None:
    if from_config:
        text = "torch intra-op threads (default: the config's torch_threads); part of what the results depend on"
    else:
        text = (
            "torch intra-op threads of the model halves (default 1: the same bytes and outputs on any core count; "
            "more is faster but the floats, and so the bytes, then depend on the count)"
        )
    p.add_argument("--torch-threads", type=positive, default=None if from_config else 1, metavar="N", help=text)


def add_progress_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--quiet", dest="no_progress", action="store_true", help=argparse.SUPPRESS)  # its former name


def positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {value}")
    return value


def load_model(args: argparse.Namespace) -> Any:
    from fcm.models import get_model

    if args.sha256 and not args.weights:
        raise FcmError("--sha256 checks a weights file: give --weights too")
    return get_model(args.model, args.split, args.weights, args.sha256)


def load_wrapper_arg(path: str | None, model: Any) -> Any:
    """The wrapper checkpoint or rate-adaptive wrapper family at ``path`` for ``model`` (``None`` without a path);
    the pipeline picks a family's variant (by QP when encoding, by the stream's header when decoding)."""
    if path is None:
        return None
    from fcm.wrappers import load_wrapper_or_family

    return load_wrapper_or_family(path, model)


class Parser(argparse.ArgumentParser):
    """Argument errors as one line (``fcm encode: error: …; see fcm encode --help``), exit code 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message}; see {self.prog} --help\n")


def add_rdo_args(g: Any, with_route: bool) -> None:
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
        "--rdo-block", type=positive, default=d.block, help=f"map block side; default {d.block} (x265 also 8)"
    )
    g.add_argument(
        "--rdo-max-offset", type=int, default=d.max_offset, help=f"QP offset clip ±N; default {d.max_offset}"
    )


def allocation_from_args(args: argparse.Namespace) -> Any:
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
