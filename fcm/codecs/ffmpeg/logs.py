"""FFmpeg's log, captured per call (the evidence of damage decoders conceal and of options encoders ignore),
the lazy ``av`` import, and the thread-scheduling guard for codec libraries that change it."""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from fcm.errors import CodecError


def import_av() -> Any:
    try:
        import av
    except ImportError as exc:  # pragma: no cover - av is a hard dependency in practice
        raise CodecError(f"PyAV (the 'av' package) is needed for the in-process codecs: {exc}") from exc
    return av


#: Captures in progress in this process; PyAV's repeated-message suppression is off while any is (see below).
_capture_depth = 0
_capture_lock = threading.Lock()
#: PyAV's skip-repeated setting and log level before the outermost capture began, restored when the last one ends.
_capture_skip_repeated = [True]
_capture_level: list[Any] = [None]


@contextmanager
def thread_scheduling_kept() -> Iterator[None]:
    """Give the calling thread back its scheduling policy and priority if the codec library changed them.

    SVT-AV1 run as root switches the thread that opens an encoder to real-time scheduling (``SCHED_FIFO``, priority
    99), and every process started from it afterwards inherits that: a sweep's workers, a training subprocess, an
    external encoder. A real-time thread that spins (an OpenMP barrier) never yields to its peers on the same core,
    so such a process can run hundreds of times slower. The change is undone as soon as the call returns.
    """
    if not hasattr(os, "sched_getscheduler"):  # not POSIX
        yield
        return
    try:
        policy, priority = os.sched_getscheduler(0), os.sched_getparam(0).sched_priority
    except OSError:
        yield
        return
    try:
        yield
    finally:
        with contextlib.suppress(OSError):
            if (os.sched_getscheduler(0), os.sched_getparam(0).sched_priority) != (policy, priority):
                os.sched_setscheduler(0, policy, os.sched_param(priority))


@contextmanager
def captured_ffmpeg_log(warnings: bool = False) -> Iterator[list[tuple[int, str, str]]]:
    """Collect FFmpeg's log messages (WARNING or worse) emitted by this thread while the block runs; callers that
    judge damage keep the ERROR ones (:func:`ffmpeg_errors`). ``warnings`` states that the caller reads warnings too.

    PyAV discards FFmpeg's log by default; decoders report some damage (FFV1 slice CRC mismatches, a damaged H.264
    SPS, unknown AV1 OBUs) and encoder wrappers report rejected ``*-params`` entries only there, so we install PyAV's
    callback for the duration and restore the previous level afterwards. Messages are captured, not printed.

    PyAV drops a message identical to the previous one it saw, even one seen in an earlier, unrelated decode, so a
    damaged stream whose only error is one line was rejected the first time and accepted the second. Suppression is
    therefore off while any capture runs: what is captured depends on the bytes decoded, not on process history.
    """
    global _capture_depth
    av = import_av()
    with _capture_lock:
        if _capture_depth == 0:
            # the level is process-wide: set once for all concurrent captures (threads of a server) and restored
            # when the last one ends, so one thread's capture never turns another's off
            _capture_skip_repeated[0] = av.logging.get_skip_repeated()
            _capture_level[0] = av.logging.get_level()
            av.logging.set_skip_repeated(False)
            if _capture_level[0] is None or _capture_level[0] < av.logging.WARNING:
                av.logging.set_level(av.logging.WARNING)
        _capture_depth += 1
    try:
        with av.logging.Capture(local=True) as logs:
            yield logs
    finally:
        with _capture_lock:
            _capture_depth -= 1
            if _capture_depth == 0:
                av.logging.set_skip_repeated(_capture_skip_repeated[0])
                if av.logging.get_level() != _capture_level[0]:
                    av.logging.set_level(_capture_level[0])


def ffmpeg_errors(logs: Sequence[tuple[int, str, str]]) -> list[str]:
    av = import_av()
    return [
        f"{name}: {message.strip()}" if name else message.strip()
        for level, name, message in logs
        if level <= av.logging.ERROR
    ]


def with_log(message: str, logs: Sequence[tuple[int, str, str]]) -> str:
    errors = ffmpeg_errors(logs)
    return f"{message} (FFmpeg: {'; '.join(errors[-3:])})" if errors else message
