"""The edge and cloud drivers: image → bitstream (``encode``) and bitstream → task output (``decode``).

These are the only functions that know the whole chain; each stage they call knows only its own job::

    image → model.front → Features → [wrapper.encode] → Packer.pack → frames → Codec.encode → bitstream.write
    bitstream.read → Codec.decode → frames → unpack → [wrapper.decode] → Features → model.back → task output

A learned wrapper (:mod:`fcm.wrappers`) is optional; a stream coded with one names it and its weights tag (bitstream
version 2), and :func:`decode` refuses to decode it without that wrapper or with other weights.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from fcm import bitstream
from fcm.bitstream import Header, WrapperRef
from fcm.codecs import Codec, CodecParams, EncodedFrames, get_codec
from fcm.edge import EdgeFeatures, run_front
from fcm.errors import BitstreamError, CodecError, ShapeError
from fcm.models import Features, SplitModel, get_model
from fcm.numerics import DEFAULT_TORCH_THREADS
from fcm.numerics import torch_threads as pinned_threads
from fcm.packing import PackedFrames, Packer, RangeMode, unpack
from fcm.rdo.scaling import scale_frames, unscale_frames

if TYPE_CHECKING:
    from fcm.rdo.allocation import BitAllocation
    from fcm.wrappers import WrapperFamily, WrapperPair


@dataclass(frozen=True)
class EncodeResult:
    """An encoded input: the bitstream, its header, and how long each edge stage took (seconds)."""

    bitstream: bytes
    header: Header
    input_pixels: int
    #: bytes of the codec's own output (extradata + packets) inside the bitstream
    payload_bytes: int
    front_s: float
    pack_s: float
    codec_s: float
    #: time of the pre-wrapper (0 without one)
    wrap_s: float = 0.0
    #: time of the bit allocation: weights, block map and (scale route) sample scaling; 0 with the codec's own RDO
    rdo_s: float = 0.0

    @property
    def num_bits(self) -> int:
        """Every bit of the fcm bitstream: preamble, header, side information, codec payload and checksum."""
        return 8 * len(self.bitstream)

    @property
    def bpp(self) -> float:
        return self.num_bits / self.input_pixels


@dataclass(frozen=True)
class DecodeResult:
    """A decoded bitstream: the task output, the reconstructed features, and the cloud stage times (seconds)."""

    output: Any
    features: Features
    header: Header
    codec_s: float
    unpack_s: float
    back_s: float
    #: time of the post-wrapper (0 without one)
    unwrap_s: float = 0.0


def resolve_codec(codec: str | Codec) -> Codec:
    return get_codec(codec) if isinstance(codec, str) else codec


def encode(
    image: np.ndarray,
    model: SplitModel,
    codec: str | Codec,
    params: CodecParams,
    bit_depth: int | None = None,
    range_mode: RangeMode = "frame",
    block_qp_offsets: np.ndarray | None = None,
    wrapper: WrapperPair | WrapperFamily | None = None,
    allocation: BitAllocation | None = None,
    torch_threads: int | None = DEFAULT_TORCH_THREADS,
) -> EncodeResult:
    """Run the edge half on one RGB ``uint8`` image and code its features into an fcm bitstream.

    ``bit_depth`` defaults to the codec's highest supported depth (10 bits for x265). ``block_qp_offsets`` go to
    the codec (see :meth:`fcm.codecs.Codec.encode`). With ``wrapper``, its pre-wrapper reduces the features first
    (a :class:`~fcm.wrappers.WrapperFamily`: the variant serving ``params.qp``).
    ``allocation`` (:mod:`fcm.rdo`) computes a wrapper-aware block map instead of ``block_qp_offsets``.
    The front, wrapper and allocation run with ``torch_threads`` intra-op threads (default 1, so the bytes are the
    same on any core count; ``None`` keeps the caller's setting, see :mod:`fcm.numerics`).
    """
    codec = resolve_codec(codec)
    depth = codec.default_bit_depth if bit_depth is None else bit_depth
    codec.check_params(depth, params)  # before the (possibly slow) front
    check_allocation(allocation, codec, params, block_qp_offsets)
    with pinned_threads(torch_threads):
        edge = run_front(image, model, torch_threads=None)
        return encode_features(
            edge,
            model,
            codec,
            params,
            depth,
            range_mode,
            block_qp_offsets,
            wrapper=wrapper,
            allocation=allocation,
            torch_threads=None,
        )


def check_allocation(
    allocation: BitAllocation | None, codec: Codec, params: CodecParams, block_qp_offsets: np.ndarray | None = None
) -> None:
    """Raise :class:`CodecError` if ``codec`` at ``params`` cannot carry ``allocation``'s maps."""
    if allocation is None:
        return
    if block_qp_offsets is not None:
        raise CodecError("give either block_qp_offsets or a bit allocation, not both")
    if allocation.route == "qp":
        if not codec.supports_block_qp_offsets:
            raise CodecError(
                f"codec {codec.name!r} takes no per-block QP offsets: use rdo route 'scale' (per-block sample "
                "scaling, any codec)"
            )
        if params.rate_control not in codec.qp_offset_rate_controls:
            modes = " or ".join(map(repr, codec.qp_offset_rate_controls))
            raise CodecError(
                f"codec {codec.name!r} applies per-block QP offsets only with rate_control={modes}; "
                "run the SSE anchor in that mode too, so the comparison isolates the weights"
            )
        if allocation.settings.block not in codec.qp_block_sizes:
            raise CodecError(
                f"codec {codec.name!r} takes QP maps of {list(codec.qp_block_sizes)}-sample blocks, not "
                f"{allocation.settings.block}"
            )
        if params.preset in codec.qp_offset_ignoring_presets:
            raise CodecError(
                f"codec {codec.name!r} ignores per-block QP maps in preset {params.preset!r} (its adaptive "
                "quantization is off there); use preset veryfast or slower"
            )


def encode_features(
    edge: EdgeFeatures,
    model: SplitModel,
    codec: str | Codec,
    params: CodecParams,
    bit_depth: int | None = None,
    range_mode: RangeMode = "frame",
    block_qp_offsets: np.ndarray | None = None,
    *,
    wrapper: WrapperPair | WrapperFamily | None = None,
    allocation: BitAllocation | None = None,
    torch_threads: int | None = DEFAULT_TORCH_THREADS,
) -> EncodeResult:
    """Pack and code features the front already produced (so a sweep runs the front once per input).

    With ``wrapper`` (built for this model's split), the pre-wrapper maps the split tensors to its coded tensors
    first, and the header names the wrapper and its weights tag (a family: the variant serving ``params.qp``, so the
    header names that variant). With ``allocation``, its block QP map goes to the
    codec (route ``qp``) or becomes per-block sample scaling signalled in the header (route ``scale``).
    The wrapper and the allocation run with ``torch_threads`` threads, as in :func:`encode`.
    """
    with pinned_threads(torch_threads):
        return _encode_features(
            edge,
            model,
            codec,
            params,
            bit_depth,
            range_mode,
            block_qp_offsets,
            variant_for(wrapper, params),
            allocation,
        )


def variant_for(wrapper: WrapperPair | WrapperFamily | None, params: CodecParams) -> WrapperPair | None:
    """The wrapper to encode with at ``params``: ``wrapper`` itself, or a family's variant for ``params.qp``."""
    from fcm.wrappers.family import WrapperFamily

    return wrapper.select(params.qp) if isinstance(wrapper, WrapperFamily) else wrapper


def _encode_features(
    edge: EdgeFeatures,
    model: SplitModel,
    codec: str | Codec,
    params: CodecParams,
    bit_depth: int | None,
    range_mode: RangeMode,
    block_qp_offsets: np.ndarray | None,
    wrapper: WrapperPair | None,
    allocation: BitAllocation | None,
) -> EncodeResult:
    from fcm import __version__
    from fcm.bitstream import WrapperRef

    codec = resolve_codec(codec)
    depth = codec.default_bit_depth if bit_depth is None else bit_depth
    codec.check_params(depth, params)
    check_allocation(allocation, codec, params, block_qp_offsets)
    features = edge.features
    features.check(model.spec)  # the stored front output must belong to this model and split
    t0 = time.perf_counter()
    tensors = features.tensors
    if wrapper is not None:
        check_wrapper_split(wrapper, model)
        with torch.no_grad():
            tensors = wrapper.encode(tensors)
    t1 = time.perf_counter()
    packed = Packer(depth, range_mode).pack(tensors)
    t2 = time.perf_counter()
    frames, scales = packed.frames, None
    if allocation is not None:
        offsets = allocation.offsets(packed, model, features.meta, wrapper)
        if offsets is not None and allocation.route == "qp":
            block_qp_offsets = offsets
        elif offsets is not None:
            frames, scales = scale_frames(frames, offsets, depth, allocation.settings.block)
    t_rdo = time.perf_counter()
    payload = codec.encode(frames, depth, params, block_qp_offsets)
    t3 = time.perf_counter()
    header = Header(
        model=model.name,
        split=model.split,
        weights_tag=model.weights_tag,
        meta={"input_size": edge.input_size, **features.meta},
        layout=packed.layout,
        bit_depth=depth,
        range_mode=packed.range_mode,
        ranges=packed.ranges,
        codec=codec.name,
        params=params,
        notes=(("fcm", __version__),),
        wrapper=None if wrapper is None else WrapperRef(wrapper.name, wrapper.weights_tag),
        block_scales=scales,
    )
    data = bitstream.write(header, payload)
    pixels = edge.input_size[0] * edge.input_size[1]
    return EncodeResult(
        data, header, pixels, payload.num_bytes, edge.front_s, t2 - t1, t3 - t_rdo, t1 - t0, rdo_s=t_rdo - t2
    )


def check_wrapper_split(wrapper: WrapperPair, model: SplitModel) -> None:
    if wrapper.input_spec != model.spec:
        raise ShapeError(
            f"wrapper {wrapper.name!r} was built for {wrapper.input_spec.model}/{wrapper.input_spec.split}, "
            f"not {model.name}/{model.split}"
        )


def check_wrapper(coded_with: WrapperRef | None, wrapper: WrapperPair | None) -> None:
    """Refuse to decode a stream with a wrapper other than the one it was coded with (``coded_with``, from its
    header), or without the one it needs."""
    if coded_with is None and wrapper is not None:
        raise BitstreamError(f"the stream was coded without a wrapper, but wrapper {wrapper.name!r} was given")
    if coded_with is not None and wrapper is None:
        raise BitstreamError(
            f"the stream was coded with wrapper {coded_with}; decoding needs that wrapper's checkpoint"
        )
    if (
        coded_with is not None
        and wrapper is not None
        and (wrapper.name, wrapper.weights_tag) != (coded_with.name, coded_with.weights_tag)
    ):
        raise BitstreamError(
            f"the stream was coded with wrapper {coded_with}, but the one given is {wrapper.name} "
            f"(weights {wrapper.weights_tag})"
        )


def load_model_for(
    header: Header, weights: str | Path | None = None, sha256: str | None = None, **options: Any
) -> SplitModel:
    """Build the model a bitstream names, warning when its weights differ from the encoder's."""
    model = get_model(header.model, header.split, weights, sha256, **options)
    _warn_on_weights_mismatch(header, model)
    return model


def _warn_on_weights_mismatch(header: Header, model: SplitModel, stacklevel: int = 3) -> None:
    if model.weights_tag != header.weights_tag:
        warnings.warn(
            f"bitstream was encoded with {header.model} weights {header.weights_tag}, decoding with "
            f"{model.weights_tag}: the result may be meaningless",
            stacklevel=stacklevel,
        )


def decode_features(data: bytes) -> tuple[Features, Header, float, float]:
    """Bitstream → the coded tensors as the codec returns them (no model needed; for a wrapped stream these are the
    wrapper's coded tensors). Returns ``(features, header, codec_s, unpack_s)``.

    Raises :class:`BitstreamError` for any invalid input, including a payload the codec cannot decode.
    """
    header, payload = bitstream.read(data)
    features, codec_s, unpack_s = _reconstruct(header, payload)
    return features, header, codec_s, unpack_s


def _reconstruct(header: Header, payload: EncodedFrames) -> tuple[Features, float, float]:
    try:
        codec = get_codec(header.codec)
    except KeyError as e:
        raise BitstreamError(f"bitstream names codec {header.codec!r}, which this fcm does not have") from e
    t0 = time.perf_counter()
    try:
        frames = codec.decode(payload)
    except CodecError as e:
        raise BitstreamError(f"codec payload does not decode: {e}") from e
    if header.block_scales is not None:
        try:
            frames = unscale_frames(frames, header.block_scales, header.bit_depth)
        except ShapeError as e:
            raise BitstreamError(f"block scales do not fit the decoded frames: {e}") from e
    t1 = time.perf_counter()
    try:
        packed = PackedFrames(frames, header.layout, header.bit_depth, header.range_mode, header.ranges)
    except ShapeError as e:
        raise BitstreamError(f"decoded frames do not match the header: {e}") from e
    tensors = unpack(packed)
    t2 = time.perf_counter()
    return Features(tensors, dict(header.meta)), t1 - t0, t2 - t1


@dataclass(frozen=True)
class SplitDecode:
    """A bitstream decoded up to the split: the features the back half takes, and the cloud stage times so far."""

    features: Features
    header: Header
    codec_s: float
    unpack_s: float
    #: time of the post-wrapper (0 without one)
    unwrap_s: float = 0.0


def decode_split(
    data: bytes, model: SplitModel, wrapper: WrapperPair | WrapperFamily | None = None, *, _stacklevel: int = 3
) -> SplitDecode:
    """Decode an fcm bitstream up to ``model``'s split (codec, unpack, post-wrapper), checked against the model:
    what :func:`decode` does before the back half. A server that batches back-half calls runs this per stream.
    With a :class:`~fcm.wrappers.WrapperFamily`, the variant the stream's header names decodes it (refused with a
    :class:`BitstreamError` when the family lacks it)."""
    from fcm.wrappers.family import WrapperFamily

    header, payload = bitstream.read(data)
    if (model.name, model.split) != (header.model, header.split):
        raise BitstreamError(
            f"bitstream is for {header.model}/{header.split}, but the model given is {model.name}/{model.split}"
        )
    _warn_on_weights_mismatch(header, model, _stacklevel)
    if isinstance(wrapper, WrapperFamily):
        wrapper = wrapper.for_stream(header.wrapper)
    check_wrapper(header.wrapper, wrapper)
    if wrapper is not None:
        check_wrapper_split(wrapper, model)
    coded, codec_s, unpack_s = _reconstruct(header, payload)
    t0 = time.perf_counter()
    try:
        with torch.no_grad():
            features = coded if wrapper is None else Features(wrapper.decode(coded.tensors), coded.meta)
        unwrap_s = time.perf_counter() - t0
        features.check(model.spec)
    except ShapeError as e:
        raise BitstreamError(f"bitstream does not fit split {model.name}/{model.split}: {e}") from e
    refuse_non_finite(features.tensors, "the post-wrapper's features" if wrapper is not None else "the features")
    return SplitDecode(features, header, codec_s, unpack_s, unwrap_s)


def refuse_non_finite(value: Any, what: str) -> None:
    """A :class:`BitstreamError` when any tensor in ``value`` (a tensor, or mappings and sequences of them) holds
    NaN or ±inf: a crafted stream can decode to such values, and a probability of NaN is no answer."""
    if isinstance(value, torch.Tensor):
        if value.is_floating_point() and not bool(torch.isfinite(value).all()):
            raise BitstreamError(f"the stream decodes to non-finite values in {what} (a damaged or crafted stream)")
    elif isinstance(value, Mapping):
        for key, item in value.items():
            refuse_non_finite(item, what if not isinstance(key, str) else f"{what} ({key})")
    elif isinstance(value, (list, tuple)):
        for item in value:
            refuse_non_finite(item, what)


def run_back(features: Features, model: SplitModel, *, check_finite: bool = True) -> Any:
    """The cloud half on decoded features; a :class:`BitstreamError` when they do not fit the split or (unless
    ``check_finite`` is false: a batch of several streams checks each stream's part) the output is not finite."""
    try:
        with torch.no_grad():
            output = model.back(features)  # built-in models also check the side information they receive
    except ShapeError as e:
        raise BitstreamError(f"bitstream does not fit split {model.name}/{model.split}: {e}") from e
    if check_finite:
        refuse_non_finite(output, "the model's output")
    return output


def decode(
    data: bytes,
    model: SplitModel | None = None,
    weights: str | Path | None = None,
    wrapper: WrapperPair | WrapperFamily | None = None,
) -> DecodeResult:
    """Decode an fcm bitstream and run the cloud half. ``model`` defaults to the one the bitstream names.

    A stream coded with a wrapper needs that ``wrapper`` (same name and weights tag), or a wrapper family holding it;
    one coded without refuses a wrapper (a family decodes it when it has a plain variant).
    Both are checked before anything is decoded.
    """
    if model is None:
        header, _ = bitstream.read(data)
        model = get_model(header.model, header.split, weights)  # decode_split warns on other weights
    split = decode_split(data, model, wrapper, _stacklevel=4)  # a weights warning points at decode's caller
    t0 = time.perf_counter()
    output = run_back(split.features, model)
    back_s = time.perf_counter() - t0
    return DecodeResult(output, split.features, split.header, split.codec_s, split.unpack_s, back_s, split.unwrap_s)
