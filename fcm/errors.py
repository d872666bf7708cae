"""Typed exceptions raised by fcm's library code.

Library code raises these; only :mod:`fcm.cli` turns them into exit codes and one-line messages.
"""

from __future__ import annotations

MAX_MESSAGE_CHARS = 2000
"""Longest message an fcm error carries: one that quotes a huge value (a hostile file's) keeps its head and tail."""


class FcmError(Exception):
    """Base class of every error fcm raises on purpose. A message longer than :data:`MAX_MESSAGE_CHARS` is cut in
    the middle, so an error quoting a value from a hostile input stays one readable line."""

    def __init__(self, *args: object) -> None:
        if args and isinstance(args[0], str) and len(args[0]) > MAX_MESSAGE_CHARS:
            text = args[0]
            keep = MAX_MESSAGE_CHARS // 2
            args = (f"{text[:keep]} … [{len(text) - 2 * keep} characters cut] … {text[-keep:]}", *args[1:])
        super().__init__(*args)


class UnknownNameError(FcmError, KeyError):
    """A name (model, split, codec, dataset, …) is not registered; the message lists the known ones."""

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0]) if self.args else ""


class ConfigError(FcmError, ValueError):
    """A configuration value (YAML file, CLI argument, constructor argument) is invalid."""


class ShapeError(FcmError, ValueError):
    """Tensors or frames do not have the shape the layout or split spec says."""


class CodecError(FcmError):
    """An inner codec failed to encode or decode, or does not support what was asked of it."""


class WeightsError(FcmError):
    """Model weights are missing, fail their checksum, or do not fit the architecture."""


class BitstreamError(FcmError, ValueError):
    """An fcm bitstream is truncated, corrupted, of the wrong kind, or of an unsupported version.

    This is the one exception :func:`fcm.bitstream.read` (and therefore every decoder entry point) raises for bad
    input; the message names the problem (e.g. ``"bad magic"``, ``"checksum mismatch"``, ``"truncated"``).
    """


def worker_death_message(what: str) -> str:
    """Why a ``spawn`` worker process may have died, for an error message: besides a crash or running out of memory,
    the commonest cause is a script that starts workers at import time (each spawned worker imports ``__main__``)."""
    import sys

    message = f"a {what} worker process died (crashed or ran out of memory)"
    main = sys.modules.get("__main__")
    script = getattr(main, "__file__", None)
    ours = ("fcm/cli/__main__.py", "fcm/__main__.py", "bin/fcm")  # python -m fcm.cli, python -m fcm, the fcm command
    if script and not str(script).endswith(ours) and "pytest" not in str(script):
        message += (
            f'; if it was started from a script ({script}), put that call under `if __name__ == "__main__":` '
            "(spawned workers import the main module, and must not start work of their own)"
        )
    return message
