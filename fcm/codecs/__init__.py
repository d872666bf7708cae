"""Inner codecs: monochrome frames in, the real codec's bytes out (see :mod:`fcm.codecs.base`).

Registry of codecs by name (``get_codec("x265")``). Registered here:

* ``x265``, ``x264``, ``svtav1``, ``vp9``, ``ffv1``: in-process FFmpeg encoders via PyAV
  (:mod:`fcm.codecs.ffmpeg`: one module per encoder);
* ``x265-cli``: Debian's ``x265`` binary driven by :class:`fcm.codecs.external.ExternalCodec`; templates for VTM,
  VVenC and HM are built with :func:`fcm.codecs.external.external_codec`, and can be registered with
  :func:`register_codec`.

Registrant contract: a registered object is a zero-argument callable (usually the codec class) returning a fresh
:class:`Codec` whose ``name`` equals the registered name, which is also what its :class:`EncodedFrames` carry in
``codec``. The codec must honour the :class:`Codec` contract: ``decode(encode(x))`` has the shape and dtype of
``x`` (bit-exact when ``lossless``); ``encode`` is deterministic (same input and params, same bytes, on any
machine); both raise :class:`fcm.errors.CodecError` (never another exception type) for unsupported settings and bad
payloads; ``bit_depths``, ``qp_range``, ``supports_block_qp_offsets`` and ``lossless`` state the truth. Importing the
module that defines a codec must stay cheap: import heavy libraries (``av``) inside methods.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from fcm.codecs.base import Codec, CodecParams, EncodedFrames
from fcm.codecs.external import ExternalCodec, external_codec, x265_cli
from fcm.codecs.ffmpeg import X264, X265, Ffv1, SvtAv1, Vp9
from fcm.codecs.registry import CODECS as _CODECS
from fcm.codecs.registry import register_codec

__all__ = [
    "Codec",
    "CodecParams",
    "EncodedFrames",
    "ExternalCodec",
    "codec_names",
    "codec_threads",
    "external_codec",
    "get_codec",
    "register_codec",
    "set_codec_threads",
]

#: encoder threads per codec name in this process (:func:`set_codec_threads`); absent: the codec's own default
_THREADS: dict[str, int] = {}


def set_codec_threads(threads: dict[str, int]) -> None:
    """Run the encoders named in ``threads`` with that many threads in this process (sweeps set them in every
    worker, so parallel workers do not oversubscribe the machine). Codecs whose output does not depend on the count
    (x265's wavefront rows, SVT-AV1) or that are single-threaded anyway (x264, VP9 and FFV1 here, VTM, HM) accept
    any value; for the others (VVenC) the count is part of what a sweep computes."""
    for name, n in threads.items():
        if not isinstance(n, int) or isinstance(n, bool) or n < 1:
            raise ValueError(f"threads of codec {name!r} must be a positive integer, got {n!r}")
    _THREADS.clear()
    _THREADS.update(threads)


@contextmanager
def codec_threads(threads: dict[str, int]) -> Iterator[None]:
    """:func:`set_codec_threads` for the ``with`` block, then the previous setting again."""
    before = dict(_THREADS)
    set_codec_threads(threads)
    try:
        yield
    finally:
        set_codec_threads(before)


def get_codec(name: str) -> Codec:
    """A new instance of the codec registered as ``name`` (with this process's thread setting for it).

    Raises :class:`fcm.errors.UnknownNameError` (listing the known names) for an unknown name. Codecs declared in
    the file named by ``$FCM_CODECS`` (see :mod:`fcm.codecs.user_codecs`) are registered when a name is not found.
    """
    if name not in _CODECS:  # only an unknown name consults $FCM_CODECS, so a bad file cannot break the built-ins
        _load_user_codecs()
        if name not in _CODECS:
            from fcm.codecs.user_codecs import loaded_files
            from fcm.errors import UnknownNameError

            declared = loaded_files()
            where = f" (codec files read: {', '.join(declared)})" if declared else ""
            raise UnknownNameError(
                f"unknown codec {name!r}; known: {', '.join(_CODECS.names())}{where}. External encoders (VTM, VVenC, "
                "HM, …) are declared by a codecs file: fcm --codecs FILE … or FCM_CODECS=FILE "
                "(python tools/build_codecs.py builds them and writes one)"
            )
    codec = _CODECS.get(name)()
    if codec.name != name:  # a broken registrant would otherwise mislabel its payloads
        raise ValueError(f"codec registered as {name!r} calls itself {codec.name!r}")
    if name in _THREADS:
        codec.threads = _THREADS[name]
    return codec


def codec_names() -> list[str]:
    """Sorted names of the registered codecs."""
    _load_user_codecs()
    return _CODECS.names()


def _load_user_codecs() -> None:
    from fcm.codecs.user_codecs import load_from_environment

    load_from_environment()


for _cls in (X265, X264, SvtAv1, Vp9, Ffv1):
    register_codec(_cls.name, _cls)
register_codec("x265-cli", x265_cli)
del _cls
