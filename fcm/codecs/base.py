"""The inner-codec interface: monochrome frames in, bytes out, and back.

A codec is a small object with a name; it encodes a stack of monochrome frames (``uint16`` samples of a given bit
depth, shape ``(N, H, W)``) at a QP and returns an :class:`EncodedFrames` value holding exactly the bytes the real
encoder produced (codec extradata and one byte string per packet). ``decode`` gives the frames back. Nothing here
knows about features, models or the fcm container: :mod:`fcm.bitstream` stores an :class:`EncodedFrames` verbatim.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from fcm.codecs.color import DEFAULT_FORMAT, PictureFormat

RateControl = Literal["cqp", "crf"]
GopStructure = Literal["intra", "lowdelay"]
RATE_CONTROLS: tuple[RateControl, ...] = ("cqp", "crf")
GOP_STRUCTURES: tuple[GopStructure, ...] = ("intra", "lowdelay")


def as_rate_control(value: str) -> RateControl:
    """``value`` (e.g. a config string) as a :data:`RateControl`; ``ValueError`` naming it when it is not one."""
    for rate_control in RATE_CONTROLS:
        if value == rate_control:
            return rate_control
    raise ValueError(f"rate_control must be 'cqp' or 'crf', not {value!r}")


def as_gop_structure(value: str) -> GopStructure:
    """``value`` (e.g. a config string) as a :data:`GopStructure`; ``ValueError`` naming it when it is not one."""
    for gop in GOP_STRUCTURES:
        if value == gop:
            return gop
    raise ValueError(f"gop must be 'intra' or 'lowdelay', not {value!r}")


@dataclass(frozen=True)
class CodecParams:
    """How to run an encoder.

    Attributes:
        qp: the codec's own quantizer value (x264/x265: 0–51; SVT-AV1 and VP9: 0–63). With ``rate_control="crf"``
            it is the CRF value instead.
        rate_control: ``"cqp"`` (constant QP, adaptive quantization off: the default, what FCM anchors use) or
            ``"crf"`` (constant rate factor with adaptive quantization on; per-block QP offsets only take effect
            there).
        gop: ``"intra"`` (every frame an intra frame) or ``"lowdelay"`` (one intra frame, then P frames, no B).
        preset: encoder speed preset (``None``: the codec's default).
        options: extra encoder options as ``(key, value)`` pairs, passed through verbatim.
    """

    qp: int
    rate_control: RateControl = "cqp"
    gop: GopStructure = "intra"
    preset: str | None = None
    options: tuple[tuple[str, str], ...] = ()

    def __post_init__(self) -> None:
        # the types are not enforced at run time: check what callers (CLI, configs, user code) actually passed
        as_rate_control(self.rate_control)
        as_gop_structure(self.gop)


@dataclass(frozen=True)
class EncodedFrames:
    """The real output of an encoder: what travels in the fcm bitstream's payload.

    Attributes:
        codec: name of the codec that made it (a key of the codec registry).
        width, height, bit_depth, num_frames: the frames it decodes to.
        extradata: codec global header bytes (may be empty).
        packets: one byte string per encoded packet, in decode order.
    """

    codec: str
    width: int
    height: int
    bit_depth: int
    num_frames: int
    extradata: bytes = b""
    packets: tuple[bytes, ...] = field(default_factory=tuple)

    @property
    def num_bytes(self) -> int:
        """Bytes of codec output (extradata + packets), without any container overhead."""
        return len(self.extradata) + sum(len(p) for p in self.packets)


class Codec(ABC):
    """An inner codec for monochrome frames.

    Subclasses state what they support through the class attributes below and implement ``encode``/``decode``.
    ``decode(encode(frames, ...))`` must return an array of the same shape and dtype as ``frames``; a lossless
    codec returns it bit-exactly.
    """

    #: registry name, e.g. ``"x265"``
    name: str = ""
    #: bit depths this codec accepts for monochrome frames
    bit_depths: tuple[int, ...] = (8,)
    #: inclusive range of valid ``CodecParams.qp`` values
    qp_range: tuple[int, int] = (0, 51)
    #: whether ``encode`` honours ``block_qp_offsets``
    supports_block_qp_offsets: bool = False
    #: block sides a ``block_qp_offsets`` map may use (its shape selects one); the first is the default
    qp_block_sizes: tuple[int, ...] = (16,)
    #: the rate-control modes in which ``block_qp_offsets`` take effect
    qp_offset_rate_controls: tuple[RateControl, ...] = ("crf",)
    #: presets in which the encoder ignores ``block_qp_offsets`` (libx264/libx265 with adaptive quantization off)
    qp_offset_ignoring_presets: tuple[str, ...] = ()

    @property
    def qp_block_size(self) -> int:
        return self.qp_block_sizes[0]

    #: True when decode(encode(x)) == x exactly
    lossless: bool = False
    #: encoder threads (``None``: the codec's default); see :func:`fcm.codecs.set_codec_threads`
    threads: int | None = None

    @property
    def default_bit_depth(self) -> int:
        return max(self.bit_depths)

    def identity(self) -> dict[str, object]:
        """What, besides its name and fcm's version, decides this codec's output (a results folder's identity):
        nothing for the built-in codecs; an external codec's command lines and settings."""
        return {}

    @abstractmethod
    def encode(
        self,
        frames: np.ndarray,
        bit_depth: int,
        params: CodecParams,
        block_qp_offsets: np.ndarray | None = None,
    ) -> EncodedFrames:
        """Encode ``frames`` (``uint16``, shape ``(N, H, W)``, values < 2**bit_depth).

        ``block_qp_offsets``, when given, is an ``(N, ceil(H/B), ceil(W/B))`` integer array of per-block QP offsets
        (B is the codec's block size); codecs that do not support it raise :class:`fcm.errors.CodecError`.
        """

    @abstractmethod
    def decode(self, encoded: EncodedFrames) -> np.ndarray:
        """Decode to ``uint16`` frames of shape ``(num_frames, height, width)``.

        Raises :class:`fcm.errors.CodecError` when the payload cannot be decoded or decodes to something other
        than the declared frames.
        """

    #: whether :meth:`open_encoder` / :meth:`open_decoder` run frame by frame (the in-process codecs)
    supports_streaming: bool = False
    #: the speed presets the encoder knows (``None``: not checked here, e.g. an external binary's own names)
    presets: tuple[str, ...] | None = None

    def open_encoder(
        self,
        width: int,
        height: int,
        bit_depth: int,
        params: CodecParams,
        intra_period: int = 0,
        qp_block: int | None = None,
    ) -> Any:
        """A streaming encoder session (push a frame, get packets; flush at the end) for ``width`` x ``height``
        frames; ``intra_period``: frames between key frames with ``gop="lowdelay"`` (0: only the first)."""
        from fcm.errors import CodecError

        raise CodecError(f"codec {self.name!r} cannot code frame by frame (it codes whole sequences)")

    def open_decoder(self, width: int, height: int, bit_depth: int, extradata: bytes = b"") -> Any:
        """A streaming decoder session for what :meth:`open_encoder` made (push a packet, get frames)."""
        from fcm.errors import CodecError

        raise CodecError(f"codec {self.name!r} cannot decode frame by frame")

    def open_picture_encoder(
        self, width: int, height: int, params: CodecParams, fmt: PictureFormat = DEFAULT_FORMAT, intra_period: int = 0
    ) -> Any:
        """A streaming encoder of RGB pictures in ``fmt`` (a video coded as video: the remote anchor)."""
        from fcm.errors import CodecError

        raise CodecError(f"codec {self.name!r} cannot code pictures frame by frame")

    def open_picture_decoder(self, width: int, height: int, fmt: PictureFormat, extradata: bytes = b"") -> Any:
        """A streaming decoder for what :meth:`open_picture_encoder` made: RGB pictures."""
        from fcm.errors import CodecError

        raise CodecError(f"codec {self.name!r} cannot decode pictures frame by frame")

    #: whether :meth:`encode_image` can code an RGB picture (for the remote-inference anchor)
    codes_images: bool = False

    def check_image_format(self, fmt: PictureFormat) -> None:
        """Raise :class:`fcm.errors.CodecError` unless :meth:`encode_image` can code pictures in ``fmt``."""
        from fcm.errors import CodecError

        raise CodecError(f"codec {self.name!r} cannot code RGB images for the remote pipeline")

    def encode_image(
        self, image: np.ndarray, params: CodecParams, fmt: PictureFormat = DEFAULT_FORMAT
    ) -> EncodedFrames:
        """Code an ``H×W×3`` ``uint8`` RGB image as one picture in ``fmt`` (the remote-inference anchor; the
        conversion is :mod:`fcm.codecs.color`'s)."""
        self.check_image_format(fmt)
        raise NotImplementedError  # pragma: no cover - codecs that code images override this

    def decode_image(self, encoded: EncodedFrames, fmt: PictureFormat | None = None) -> np.ndarray:
        """Inverse of :meth:`encode_image`: an ``H×W×3`` ``uint8`` RGB image (``fmt``: what the caller coded with)."""
        from fcm.errors import CodecError

        raise CodecError(f"codec {self.name!r} cannot code RGB images for the remote pipeline")

    def check_params(self, bit_depth: int, params: CodecParams) -> None:
        """Raise :class:`fcm.errors.CodecError` naming the problem if this codec cannot run with these values."""
        from fcm.errors import CodecError

        if bit_depth not in self.bit_depths:
            raise CodecError(
                f"codec {self.name!r} does not support {bit_depth}-bit frames; supported: "
                f"{', '.join(map(str, self.bit_depths))}"
            )
        lo, hi = self.qp_range
        if not lo <= params.qp <= hi:
            raise CodecError(f"codec {self.name!r} takes QP in [{lo}, {hi}], got {params.qp}")
        if params.preset is not None and self.presets is not None and params.preset not in self.presets:
            import difflib

            close = difflib.get_close_matches(params.preset, self.presets, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise CodecError(
                f"codec {self.name!r} has no preset {params.preset!r}{hint} (its presets: {', '.join(self.presets)})"
            )
