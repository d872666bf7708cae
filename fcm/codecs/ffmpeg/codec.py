"""The in-process codec base (:class:`PyAVCodec`): one encoder context per call, batch encode as a push/flush over
the same encoder the streaming sessions use, and the options shared by the x26x encoders."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace
from typing import Any, ClassVar

import numpy as np

from fcm.codecs.base import Codec, CodecParams, EncodedFrames
from fcm.codecs.color import DEFAULT_FORMAT, PICTURE_FORMATS, PictureFormat
from fcm.codecs.ffmpeg.decode import check_payload_bounds, decode_av_frames, frames_to_array
from fcm.codecs.ffmpeg.frames import (
    PlaneLayout,
    check_frames,
    describer,
    encoder_pixel_formats,
    make_frame,
    pad_edge,
    picture_format_of,
    picture_frame,
    rgb_of,
)
from fcm.codecs.ffmpeg.sessions import (
    AvEncoder,
    DecoderSession,
    EncoderSession,
    PictureDecoderSession,
    PictureEncoderSession,
)
from fcm.codecs.roi import attach_regions, cached_block_regions
from fcm.errors import CodecError, ShapeError


class PyAVCodec(Codec):
    """Base of the in-process codecs: everything but the encoder's option set is shared.

    Subclasses define the class attributes below and :meth:`_layout` / :meth:`_encoder_options`.
    """

    #: FFmpeg encoder and decoder names
    encoder: ClassVar[str] = ""
    decoder: ClassVar[str] = ""
    #: preset used when ``CodecParams.preset`` is None
    default_preset: ClassVar[str | None] = None
    #: whether ``rate_control="crf"`` is available
    supports_crf: ClassVar[bool] = True
    #: smallest width/height the encoder accepts; smaller frames are edge-padded up to it
    min_size: ClassVar[int] = 1
    #: option keys whose values are ``key=value:key=value`` lists, merged rather than replaced by user options
    param_list_keys: ClassVar[tuple[str, ...]] = ()

    # -- hooks --------------------------------------------------------------------------------------------------------

    def plane_layout(self, bit_depth: int) -> PlaneLayout:  # pragma: no cover - abstract in spirit
        raise NotImplementedError

    def encoder_options(self, bit_depth: int, params: CodecParams) -> dict[str, str]:  # pragma: no cover
        raise NotImplementedError

    def gop_size(self, params: CodecParams) -> int:
        """AVCodecContext.gop_size: 1 for all-intra; otherwise large enough that only the first frame is a key."""
        return 1 if params.gop == "intra" else 1 << 30

    def prepare_environment(self) -> None:
        """Process-wide settings an encoder library reads at start (only SVT-AV1 needs one)."""

    # -- helpers ------------------------------------------------------------------------------------------------------

    def coded_size(self, width: int, height: int) -> tuple[int, int]:
        """Size of the frames actually handed to the encoder (and returned by the decoder) for a ``width`` x
        ``height`` input."""
        return max(width, self.min_size), max(height, self.min_size)

    def _preset(self, params: CodecParams) -> str | None:
        return params.preset if params.preset is not None else self.default_preset

    def merged_options(self, base: dict[str, str], extra: Sequence[tuple[str, str]]) -> dict[str, str]:
        """User options override ours; for ``param_list_keys`` their entries are appended (later entries win)."""
        opts = dict(base)
        for key, value in extra:
            if key in self.param_list_keys and opts.get(key):
                opts[key] = f"{opts[key]}:{value}"
            else:
                opts[key] = str(value)
        return opts

    def check_rate_control(self, params: CodecParams) -> None:
        if params.rate_control == "crf" and not self.supports_crf:
            raise CodecError(f"codec {self.name!r} does not support rate_control='crf'")

    def roi_plan(
        self, offsets: np.ndarray | None, shape: tuple[int, int, int], bit_depth: int, params: CodecParams
    ) -> tuple[list[np.ndarray], int] | None:
        """The ROI regions of each frame and the block size the map's shape selects (one of ``qp_block_sizes``)."""
        if offsets is None:
            return None
        if not self.supports_block_qp_offsets:
            raise CodecError(f"per-block QP offsets are not supported yet by codec {self.name!r}")
        if params.rate_control != "crf":
            raise CodecError(
                f"codec {self.name!r} applies per-block QP offsets only with rate_control='crf' "
                "(adaptive quantization is off in 'cqp')"
            )
        n, h, w = shape
        offsets = np.asarray(offsets)
        grids = {b: (n, -(-h // b), -(-w // b)) for b in self.qp_block_sizes}
        matching = [b for b, grid in grids.items() if grid == offsets.shape]
        if not matching:
            expected = " or ".join(f"{grid} (blocks of {b}x{b})" for b, grid in grids.items())
            raise ShapeError(f"block_qp_offsets must have shape {expected}, got {offsets.shape}")
        b = matching[0]
        if not np.issubdtype(offsets.dtype, np.integer):
            raise CodecError(f"block_qp_offsets must be integers, got dtype {offsets.dtype}")
        qp_range = 51 + 6 * (bit_depth - 8)
        if offsets.size and int(np.abs(offsets).max()) > qp_range:
            raise CodecError(f"block_qp_offsets must lie in [-{qp_range}, {qp_range}] at {bit_depth} bits")
        return [cached_block_regions(frame_offsets, b, qp_range) for frame_offsets in offsets], b

    def block_size_options(self, block: int) -> tuple[tuple[str, str], ...]:
        """Encoder options that make the encoder's quantizer groups ``block`` samples wide (default: none)."""
        return ()

    def intra_period_options(self, period: int) -> tuple[tuple[str, str], ...]:
        """Encoder options for a key frame every ``period`` frames in low delay (appended to the user's options;
        the context's ``gop_size`` is set to ``period`` as well)."""
        return ()

    # -- the Codec interface ------------------------------------------------------------------------------------------

    def encode(
        self,
        frames: np.ndarray,
        bit_depth: int,
        params: CodecParams,
        block_qp_offsets: np.ndarray | None = None,
    ) -> EncodedFrames:
        """Encode ``frames`` (see :meth:`Codec.encode`); one packet per frame, bytes exactly as the encoder made them.

        Raises :class:`ShapeError` for a malformed frame array and :class:`CodecError` for unsupported settings or an
        encoder failure.
        """
        self.check_params(bit_depth, params)
        frames = check_frames(frames, bit_depth)
        self.check_rate_control(params)
        plan = self.roi_plan(block_qp_offsets, frames.shape, bit_depth, params)
        rois = None
        if plan is not None:
            rois, block = plan
            params = replace(params, options=self.block_size_options(block) + params.options)
        n, h, w = frames.shape
        coded_w, coded_h = self.coded_size(w, h)
        padded = pad_edge(frames, coded_h, coded_w)
        layout = self.plane_layout(bit_depth)

        def make_frames(av: Any) -> Iterator[Any]:
            for i in range(n):
                frame = make_frame(av, padded[i], layout, bit_depth, pts=i)
                yield frame if rois is None else attach_regions(frame, rois[i])

        extradata, packets = self._run_encoder(make_frames, coded_w, coded_h, layout.pix_fmt, bit_depth, params, n)
        return EncodedFrames(
            codec=self.name,
            width=w,
            height=h,
            bit_depth=bit_depth,
            num_frames=n,
            extradata=extradata,
            packets=tuple(packets),
        )

    def _run_encoder(
        self,
        make_frames: Callable[[Any], Iterator[Any]],
        coded_w: int,
        coded_h: int,
        pix_fmt: str,
        bit_depth: int,
        params: CodecParams,
        n: int,
        configure: Callable[[Any], None] | None = None,
    ) -> tuple[bytes, list[bytes]]:
        """Open the encoder with this codec's options, feed it ``make_frames(av)`` and return (extradata, packets).

        ``configure(ctx)``, when given, sets further context fields (e.g. the colour description) before opening.

        Unknown options, parameters the encoder logs as rejected, failures and a packet count other than ``n`` all
        raise :class:`CodecError`.
        """
        encoder = AvEncoder(self, coded_w, coded_h, pix_fmt, bit_depth, params, self.gop_size(params), configure)
        packets: list[bytes] = []
        for frame in encoder.guarded(lambda: make_frames(encoder.av)):
            packets.extend(encoder.encode(frame))
        packets.extend(encoder.encode(None))
        if len(packets) != n:
            raise CodecError(f"{self.name}: encoder produced {len(packets)} packets for {n} frames")
        return encoder.extradata, packets

    # -- streaming ----------------------------------------------------------------------------------------------------

    supports_streaming = True

    def open_encoder(
        self,
        width: int,
        height: int,
        bit_depth: int,
        params: CodecParams,
        intra_period: int = 0,
        qp_block: int | None = None,
    ) -> EncoderSession:
        """A streaming encoder for ``width`` x ``height`` frames (see :class:`EncoderSession`)."""
        return EncoderSession(self, width, height, bit_depth, params, intra_period, qp_block)

    def open_decoder(self, width: int, height: int, bit_depth: int, extradata: bytes = b"") -> DecoderSession:
        """A streaming decoder for what :meth:`open_encoder` made (see :class:`DecoderSession`)."""
        return DecoderSession(self, width, height, bit_depth, extradata)

    def open_picture_encoder(
        self,
        width: int,
        height: int,
        params: CodecParams,
        fmt: PictureFormat = DEFAULT_FORMAT,
        intra_period: int = 0,
    ) -> PictureEncoderSession:
        """A streaming encoder of RGB pictures in ``fmt`` (a video coded as video: the remote anchor)."""
        return PictureEncoderSession(self, width, height, params, fmt, intra_period)

    def open_picture_decoder(
        self, width: int, height: int, fmt: PictureFormat, extradata: bytes = b""
    ) -> PictureDecoderSession:
        """A streaming decoder for what :meth:`open_picture_encoder` made: RGB pictures."""
        return PictureDecoderSession(self, width, height, fmt, extradata)

    # -- coding the image itself (the remote-inference anchor) ---------------------------------------------------------

    codes_images = True

    def check_image_format(self, fmt: PictureFormat) -> None:
        """Raise :class:`CodecError` if this codec's encoder cannot take pictures in ``fmt``."""
        supported = encoder_pixel_formats(self.encoder)
        if fmt.pix_fmt not in supported:
            known = ", ".join(f for f in PICTURE_FORMATS if PictureFormat.parse(f).pix_fmt in supported)
            raise CodecError(f"codec {self.name!r} cannot code {fmt.name} pictures; it takes: {known or 'none'}")

    def image_coded_size(self, width: int, height: int) -> tuple[int, int]:
        w, h = self.coded_size(width + width % 2, height + height % 2)  # 4:2:0 needs even sizes
        return w + w % 2, h + h % 2

    def encode_image(
        self, image: np.ndarray, params: CodecParams, fmt: PictureFormat = DEFAULT_FORMAT
    ) -> EncodedFrames:
        """Encode one ``H×W×3`` ``uint8`` RGB image as a single picture in ``fmt`` with this codec's settings.

        The conversion is :mod:`fcm.codecs.color`'s exact BT.601 one; the stream signals matrix (BT.601) and range
        (full/limited) in its own headers, so :meth:`decode_image` needs nothing else. Sizes are edge-padded to even
        ones (and to the encoder's minimum). This is what a remote-inference anchor sends.
        """
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ShapeError(f"expected an H×W×3 uint8 RGB image, got {image.shape} {image.dtype}")
        self.check_params(fmt.bit_depth, params)
        self.check_image_format(fmt)
        self.check_rate_control(params)
        h, w = image.shape[:2]
        coded_w, coded_h = self.image_coded_size(w, h)

        def make_frames(av: Any) -> Iterator[Any]:
            yield picture_frame(av, image, coded_w, coded_h, fmt, pts=0)

        intra = CodecParams(params.qp, params.rate_control, "intra", params.preset, params.options)
        extradata, packets = self._run_encoder(
            make_frames, coded_w, coded_h, fmt.pix_fmt, fmt.bit_depth, intra, 1, configure=describer(fmt)
        )
        return EncodedFrames(self.name, w, h, fmt.bit_depth, 1, extradata, tuple(packets))

    def decode_image(self, encoded: EncodedFrames, fmt: PictureFormat | None = None) -> np.ndarray:
        """Decode :meth:`encode_image`'s output to an ``H×W×3`` ``uint8`` RGB image; :class:`CodecError` if damaged.

        Chroma sampling, bit depth and range come from the stream's own headers. ``fmt``, when given, is what the
        caller coded with: a stream holding anything else is refused, and a stream that cannot signal its range
        (FFV1) needs ``fmt``.
        """
        if encoded.codec != self.name or encoded.num_frames != 1 or encoded.bit_depth not in (8, 10):
            raise CodecError(f"{self.name}: not a one-picture 8/10-bit image payload of this codec")
        if len(encoded.packets) != 1:
            raise CodecError(f"{self.name}: an image payload holds one packet, this one {len(encoded.packets)}")
        coded_w, coded_h = self.image_coded_size(encoded.width, encoded.height)
        check_payload_bounds(encoded.packets, encoded.extradata, coded_w, coded_h, encoded.bit_depth, 1, self.name)
        frames = decode_av_frames(
            self.decoder, encoded.packets, encoded.extradata, coded_w, coded_h, parse=False, who=f"{self.name} (image)"
        )
        if len(frames) != 1 or (frames[0].width, frames[0].height) != (coded_w, coded_h):
            raise CodecError(f"{self.name}: image payload did not decode to one {coded_w}x{coded_h} picture")
        frame = frames[0]
        fmt = picture_format_of(frame, fmt, self.name)
        if fmt.bit_depth != encoded.bit_depth:
            raise CodecError(
                f"{self.name}: image decoded at {fmt.bit_depth} bits, payload declares {encoded.bit_depth}"
            )
        return rgb_of(frame, fmt, coded_w, coded_h, encoded.width, encoded.height)

    def thread_count(self) -> int:
        return 1

    def decode_frames(self, encoded: EncodedFrames) -> list[Any]:
        who = f"{self.name}"
        if not isinstance(encoded, EncodedFrames):
            raise CodecError(f"{who}: expected EncodedFrames, got {type(encoded).__name__}")
        if encoded.codec != self.name:
            raise CodecError(f"{who}: payload was made by codec {encoded.codec!r}, not {self.name!r}")
        if encoded.bit_depth not in self.bit_depths:
            raise CodecError(f"{who}: payload declares unsupported bit depth {encoded.bit_depth}")
        check_payload_bounds(
            encoded.packets,
            encoded.extradata,
            encoded.width,
            encoded.height,
            encoded.bit_depth,
            encoded.num_frames,
            who,
        )
        if len(encoded.packets) != encoded.num_frames:
            raise CodecError(f"{who}: payload has {len(encoded.packets)} packets for {encoded.num_frames} frames")
        coded_w, coded_h = self.coded_size(encoded.width, encoded.height)
        return decode_av_frames(
            self.decoder, encoded.packets, encoded.extradata, coded_w, coded_h, parse=False, who=who
        )

    def decode(self, encoded: EncodedFrames) -> np.ndarray:
        """Decode to ``uint16`` luma of shape ``(num_frames, height, width)``; chroma planes, if any, are dropped.

        Raises :class:`CodecError` for any payload problem (see the module docstring).
        """
        frames = self.decode_frames(encoded)
        coded = self.coded_size(encoded.width, encoded.height)
        return frames_to_array(
            frames, encoded.width, encoded.height, encoded.bit_depth, encoded.num_frames, coded, self.name
        )

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


def param_string(params: dict[str, str]) -> str:
    return ":".join(f"{k}={v}" for k, v in params.items())


#: x264's and x265's speed presets, fastest first
X26X_PRESETS = (
    "ultrafast",
    "superfast",
    "veryfast",
    "faster",
    "fast",
    "medium",
    "slow",
    "slower",
    "veryslow",
    "placebo",
)
