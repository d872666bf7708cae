"""The ``fcm`` command line: the parser (each command module adds its own commands) and ``main``. Library errors
become one-line messages and exit code 2."""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import warnings
from typing import Any

from fcm.cli.args import Parser
from fcm.errors import FcmError

COMMANDS = ("image", "video", "evaluation", "training", "catalog", "service")


def build_parser() -> argparse.ArgumentParser:
    import importlib

    from fcm import __version__

    parser = Parser(prog="fcm", description="Feature coding for machines: split inference over real codecs.")
    parser.add_argument("--version", action="version", version=f"fcm {__version__}")
    parser.add_argument(
        "--codecs",
        metavar="FILE",
        default=None,
        help="YAML file declaring external codecs (VTM, VVenC, HM, …); also $FCM_CODECS",
    )
    sub = parser.add_subparsers(dest="command", required=True, parser_class=Parser)
    for name in COMMANDS:  # each module adds its commands
        importlib.import_module(f"fcm.cli.{name}").register(sub)
    return parser


def _pinned(args: argparse.Namespace) -> contextlib.AbstractContextManager[None]:
    """The whole command with ``--torch-threads`` threads; config-driven commands pin their config's own count."""
    threads = getattr(args, "torch_threads", None)
    if threads is None or getattr(args, "config_threads", False):
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
        resumable = getattr(args, "resumable", False)
        hint = ": what finished is kept; rerun the same command to resume" if resumable else ""
        print(f"fcm {args.command}: interrupted{hint}", file=sys.stderr)
        return 130
    if result is not None:
        print(json.dumps(result, indent=2))
    return 0
