"""Pipelines: the ways a sweep delivers an input to the task at one operating point, as registered objects.

A pipeline is named in a sweep config by its **label**: the registered kind, optionally with a variant in brackets
(``feature``, ``remote``, ``wrapped[scaled]``); curves read ``<label>/<codec>``. Each pipeline validates its own
config section (:meth:`Pipeline.from_config`), states what makes its records what they are (:meth:`Pipeline.identity`,
part of a results folder's identity), checks a codec before any work (:meth:`Pipeline.check_codec`), loads what it
needs once per worker process (:meth:`Pipeline.setup`) and measures one (input, codec, QP) (:meth:`Pipeline.measure`).
Config, worker and report code never name a pipeline.

Registry contract (:data:`PIPELINES`): a :class:`Pipeline` subclass whose ``kind`` equals its registered name, whose
``from_config(label, section)`` raises :class:`~fcm.errors.ConfigError` naming any unknown or bad key, and whose
instances pickle (they travel to worker processes before ``setup``).

Over 500 lines: the pipeline contract and its three registered kinds (remote, feature, wrapped) share the coded
path and the RDO hand-off; what varies by policy lives in :mod:`fcm.rdo.policies`, codecs in :mod:`fcm.codecs`.
"""

from __future__ import annotations

import re
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from fcm.codecs.base import Codec, CodecParams
from fcm.codecs.color import PictureFormat
from fcm.errors import ConfigError, FcmError
from fcm.registry import Registry

if TYPE_CHECKING:
    from fcm.edge import EdgeFeatures
    from fcm.models.base import SplitModel
    from fcm.models.cost import ComputeCost
    from fcm.rdo.allocation import BitAllocation
    from fcm.rdo.policies import KeyMap, RdoPolicy
    from fcm.rdo.settings import RdoSettings
    from fcm.wrappers import WrapperFamily
    from fcm.wrappers.base import WrapperPair

__all__ = ["PIPELINES", "InputContext", "Measurement", "Pipeline", "parse_label"]

_LABEL = re.compile(r"([a-z][a-z0-9_]*)(?:\[([A-Za-z0-9_.+-]+)\])?")


def parse_label(label: str) -> tuple[str, str | None]:
    """``"wrapped[scaled]"`` → ``("wrapped", "scaled")``; ``"feature"`` → ``("feature", None)``."""
    m = _LABEL.fullmatch(label) if isinstance(label, str) else None
    if m is None:
        raise ConfigError(f"pipeline label {label!r} must be a name, optionally with a [variant]: e.g. wrapped[scaled]")
    return m.group(1), m.group(2)


@dataclass(frozen=True)
class Measurement:
    """What one pipeline measured at one operating point on one input."""

    output: Any
    bits: int
    payload_bits: int
    times: dict[str, float]
    edge_macs: int = 0
    edge_params: int = 0
    #: PSNR (dB) of the split tensors the back half received against the uncompressed ones (coded-features pipelines)
    feature_psnr: float | None = None


@dataclass
class InputContext:
    """What every pipeline measuring one input shares: the image, the model and the front's output, run once.

    ``index`` is the input's position in the dataset and ``load_edge(i)`` runs the front on input ``i`` (for policies
    that reuse what was computed on another input, e.g. a GOP's key frame); ``memo`` keeps per-input results that do
    not depend on the operating point (e.g. rdo weights) across QPs and codecs.
    """

    image: np.ndarray
    model: SplitModel
    index: int = 0
    load_edge: Callable[[int], EdgeFeatures] | None = field(default=None, repr=False)
    memo: dict[Any, Any] = field(default_factory=dict, repr=False)
    _edge: EdgeFeatures | None = field(default=None, repr=False)
    _costs: dict[Any, ComputeCost] = field(default_factory=dict, repr=False)

    def edge(self) -> EdgeFeatures:
        """The front half's output on this input (computed on first use, then shared)."""
        if self._edge is None:
            from fcm.edge import run_front

            self._edge = run_front(self.image, self.model, torch_threads=None)
        return self._edge


class Pipeline(ABC):
    """One way of delivering inputs to the task; see the module docstring for the contract."""

    kind: ClassVar[str] = ""
    #: keys a config section may hold besides ``qps``
    options: ClassVar[tuple[str, ...]] = ()

    def __init__(self, label: str, qps: tuple[int, ...]) -> None:
        self.label = label
        self.qps = qps

    @classmethod
    def from_config(cls, label: str, section: dict[str, Any], qps: tuple[int, ...]) -> Pipeline:
        """Build from a config section (``qps`` already resolved); unknown keys are errors."""
        unknown = sorted(set(section) - set(cls.options))
        if unknown:
            known = ", ".join(("qps",) + cls.options)
            raise ConfigError(f"pipeline {label!r}: unknown settings {unknown}; known: {known}")
        return cls._from_section(label, section, qps)

    @classmethod
    def _from_section(cls, label: str, section: dict[str, Any], qps: tuple[int, ...]) -> Pipeline:
        return cls(label, qps)

    def section(self) -> dict[str, Any]:
        """The config section this pipeline came from (with ``qps``), for manifests and resumes."""
        return {"qps": list(self.qps)}

    def identity(self) -> dict[str, Any]:
        """What makes this pipeline's records what they are (QPs excluded: a sweep may add QPs and resume)."""
        return {k: v for k, v in self.section().items() if k != "qps"}

    def check_codec(self, codec: Codec, bit_depth: int, params: CodecParams) -> None:
        """Raise :class:`~fcm.errors.FcmError` if ``codec`` cannot run this pipeline at ``params``."""
        codec.check_params(bit_depth, params)

    def check_split(self, model: str, split: str) -> None:  # noqa: B027 - a hook: most pipelines fit any split
        """Raise :class:`~fcm.errors.ConfigError` if this pipeline cannot serve ``model`` cut at ``split``."""

    def describe(self) -> str:
        """One line for a report: what this pipeline sends."""
        return (self.__doc__ or self.kind).strip().split(".")[0]

    def setup(self, model: SplitModel) -> None:  # noqa: B027 - a hook: most pipelines need nothing loaded
        """Load what measuring needs, once per process (default: nothing)."""

    @abstractmethod
    def measure(self, ctx: InputContext, codec: str, params: CodecParams, bit_depth: int | None) -> Measurement:
        """Code ``ctx``'s input at one operating point and run the task on what the cloud receives."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.label!r}, qps={list(self.qps)})"


PIPELINES: Registry[type[Pipeline]] = Registry("pipeline")


def _front_cost(ctx: InputContext) -> ComputeCost:
    from fcm.models.cost import measure_cost

    key = ("front", ctx.image.shape)
    if key not in ctx._costs:
        ctx._costs[key] = measure_cost(ctx.model.front, ctx.model.prepare(ctx.image))
    return ctx._costs[key]


class CodedPipeline(Pipeline):
    """Base of the pipelines that pack and code split tensors (``feature``, ``wrapped``): they share the ``rdo``
    setting (:class:`fcm.rdo.RdoSettings`: a mode name, or a mapping with ``mode`` and its options), how the block
    map is made and reused, and its checks. The sweep's ``rate_control`` applies to every pipeline alike, so an SSE
    anchor runs in the same mode as its wrapper-aware variants."""

    options: ClassVar[tuple[str, ...]] = ("rdo",)

    def __init__(self, label: str, qps: tuple[int, ...], rdo: RdoSettings | None = None) -> None:
        from fcm.rdo.settings import RdoSettings

        super().__init__(label, qps)
        self.rdo = rdo if rdo is not None else RdoSettings()
        self.map_tag = file_tag(self.rdo.map_path) if self.rdo.map_path else None
        #: the rdo policy, built in the process that measures (it keeps maps: a GOP's key, a fixed map)
        self._policy: RdoPolicy | None = None

    @classmethod
    def _rdo_from(cls, label: str, section: dict[str, Any], variant_sets_mode: bool) -> RdoSettings:
        """The ``rdo`` setting of a section. A label naming an rdo mode must agree with it: ``feature[wa-gop]``
        (the variant sets the mode) or ``wrapped[scaled+wa-gop]`` (a ``+``-part names it)."""
        from pathlib import Path

        from fcm.rdo.policies import rdo_modes
        from fcm.rdo.settings import RdoSettings

        given = section.get("rdo")
        if isinstance(given, str):
            raw: dict[str, Any] = {"mode": given}
        elif given is None or isinstance(given, dict):
            raw = dict(given or {})
        else:
            raise ConfigError(f"pipeline {label!r}: rdo must be a mode name or a mapping, got {given!r}")
        _, variant = parse_label(label)
        modes = rdo_modes()
        named = [part for part in (variant or "").split("+") if part in modes]
        if variant_sets_mode and variant is not None and not named and "mode" not in raw:
            raise ConfigError(
                f"pipeline {label!r}: a feature pipeline's variant is its rdo mode ({', '.join(modes)}), or "
                "any name when its section sets rdo: {mode: ...}"
            )
        if named:
            mode = raw.setdefault("mode", named[-1])
            if mode not in named:
                raise ConfigError(f"pipeline {label!r}: the label says rdo {named[-1]!r}, its rdo mode is {mode!r}")
        if isinstance(raw.get("map"), str):
            raw["map"] = str(Path(raw["map"]).resolve())
        return RdoSettings.from_config(raw, f"pipeline {label!r}: rdo")

    def section(self) -> dict[str, Any]:
        out = super().section()
        if self.rdo.makes_map:
            out["rdo"] = self.rdo.to_config()
        return out

    def identity(self) -> dict[str, Any]:
        out = {k: v for k, v in self.section().items() if k not in ("qps", "rdo")}
        if self.rdo.makes_map:  # what the allocation does, and the map by content wherever the file lies
            out["rdo"] = self.rdo.identity() | ({"map": self.map_tag} if self.map_tag is not None else {})
        return out

    def rdo_description(self) -> str:
        """``""`` for the codec's own RDO, else ``"; wrapper-aware bit allocation …"`` for :meth:`describe`."""
        if not self.rdo.makes_map:
            return ""
        how = "per-block QP offsets" if self.rdo.route == "qp" else "per-block sample scaling (map in the stream)"
        b = self.rdo.block
        return f"; wrapper-aware bit allocation `{self.rdo.mode}` through {how} on {b}×{b} blocks"

    def check_codec(self, codec: Codec, bit_depth: int, params: CodecParams) -> None:
        super().check_codec(codec, bit_depth, params)
        if not self.rdo.makes_map or self.rdo.route != "qp":
            return
        if not codec.supports_block_qp_offsets:
            raise ConfigError(
                f"pipeline {self.label!r}: codec {codec.name!r} takes no per-block QP offsets; use rdo route: scale"
            )
        if params.rate_control not in codec.qp_offset_rate_controls:
            modes = " or ".join(codec.qp_offset_rate_controls)
            raise ConfigError(
                f"pipeline {self.label!r}: codec {codec.name!r} applies per-block QP offsets only with rate_control: "
                f"{modes} (set it for the whole sweep, so the SSE anchor runs in the same mode)"
            )
        if self.rdo.block not in codec.qp_block_sizes:
            raise ConfigError(
                f"pipeline {self.label!r}: codec {codec.name!r} takes QP maps of {list(codec.qp_block_sizes)}-sample "
                f"blocks, not {self.rdo.block}"
            )
        if params.preset in codec.qp_offset_ignoring_presets:
            raise ConfigError(
                f"pipeline {self.label!r}: codec {codec.name!r} ignores per-block QP maps in preset "
                f"{params.preset!r} (its adaptive quantization is off there); use preset veryfast or slower"
            )

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_policy": None}

    def setup(self, model: SplitModel) -> None:
        self._build_policy()

    def _build_policy(self) -> RdoPolicy:
        from fcm.rdo.policies import build_policy

        if self.map_tag is not None and file_tag(self.rdo.map_path) != self.map_tag:
            raise ConfigError(f"{self.rdo.map_path} changed since the sweep started")
        self._policy = build_policy(self.rdo)
        self._policy.prepare()
        return self._policy

    def allocation_for(
        self, ctx: InputContext, wrapper: WrapperPair | None, bit_depth: int
    ) -> tuple[BitAllocation | None, float]:
        """The allocation for ``ctx``'s input and the seconds its map costs per encode, as the rdo policy says
        (:mod:`fcm.rdo.policies`: e.g. ``wa-gop`` charges a GOP's followers ``1/gop`` of their key's map)."""
        policy = self._policy or self._build_policy()
        return policy.sweep_allocation(_PipelineInput(self, ctx, wrapper, bit_depth))


class _PipelineInput:
    """One input of a sweep as an rdo policy sees it (:class:`fcm.rdo.policies.SweepInput`): its own block map,
    computed once per input, bit depth and wrapper across QPs and codecs, and a GOP key's map on request."""

    def __init__(self, pipeline: CodedPipeline, ctx: InputContext, wrapper: WrapperPair | None, bit_depth: int) -> None:
        self.index = ctx.index
        self.variant = (bit_depth, None if wrapper is None else wrapper.weights_tag)
        self._pipeline = pipeline
        self._ctx = ctx
        self._wrapper = wrapper
        self._bit_depth = bit_depth

    def own_map(self) -> KeyMap:
        key = ("rdo", self._pipeline.label, self.index, *self.variant)
        ctx = self._ctx
        if key not in ctx.memo:
            ctx.memo[key] = _key_frame_map(self._pipeline.rdo, ctx.edge(), ctx.model, self._wrapper, self._bit_depth)
        return ctx.memo[key]

    def map_of(self, index: int) -> KeyMap | None:
        ctx = self._ctx
        if ctx.load_edge is None:
            return None
        try:
            edge = ctx.load_edge(index)
        except (OSError, ValueError):  # an unreadable input (skip_unreadable): the caller starts a GOP of its own
            return None
        return _key_frame_map(self._pipeline.rdo, edge, ctx.model, self._wrapper, self._bit_depth)


def _key_frame_map(
    rdo: RdoSettings, edge: EdgeFeatures, model: SplitModel, wrapper: WrapperPair | None, bit_depth: int
) -> KeyMap:
    """The block map of one input's frame (as the edge packs it) and the seconds the weights and map took."""
    import torch

    from fcm.packing import Packer
    from fcm.rdo.allocation import PerFrameAllocation
    from fcm.rdo.policies import KeyMap

    tensors = edge.features.tensors
    if wrapper is not None:
        with torch.no_grad():
            tensors = wrapper.encode(tensors)
    packed = Packer(bit_depth).pack(tensors)
    t0 = time.perf_counter()
    weights = PerFrameAllocation(rdo).weights(packed, model, edge.features.meta, wrapper)
    offsets = rdo.offsets_from_weights(weights)
    return KeyMap(offsets, packed.layout, time.perf_counter() - t0)


def file_tag(path: str | None) -> str | None:
    import hashlib
    from pathlib import Path

    if path is None or not Path(path).is_file():
        return None
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16]


@PIPELINES.register("feature")
class FeaturePipeline(CodedPipeline):
    """fcm: code the split tensors (packed into frames) and run the back half on what the codec returns. The label's
    variant is its rdo mode: ``feature[wa-frame]``, ``feature[wa-gop]``, ``feature[wa-fixed]``."""

    kind = "feature"

    @classmethod
    def _from_section(cls, label: str, section: dict[str, Any], qps: tuple[int, ...]) -> Pipeline:
        return cls(label, qps, cls._rdo_from(label, section, variant_sets_mode=True))

    def describe(self) -> str:
        return (
            "fcm: code the split tensors (packed into frames) and run the back half on what the codec returns"
            + self.rdo_description()
        )

    def measure(self, ctx: InputContext, codec: str, params: CodecParams, bit_depth: int | None) -> Measurement:
        return _code_split_tensors(ctx, codec, params, bit_depth, None, self)


def _code_split_tensors(
    ctx: InputContext,
    codec: str,
    params: CodecParams,
    bit_depth: int | None,
    wrapper: WrapperPair | None,
    pipeline_: CodedPipeline | None = None,
) -> Measurement:
    """fcm's own path, with or without a wrapper: the front's output (through the pre-wrapper) packed, coded, decoded
    and finished by the back half. Edge cost: the front, plus the pre-wrapper when there is one."""
    from fcm import pipeline
    from fcm.codecs import get_codec
    from fcm.models.cost import measure_cost

    edge = ctx.edge()
    coder = get_codec(codec)
    depth = coder.default_bit_depth if bit_depth is None else bit_depth
    allocation, map_s = (None, 0.0) if pipeline_ is None else pipeline_.allocation_for(ctx, wrapper, depth)
    enc = pipeline.encode_features(
        edge, ctx.model, coder, params, depth, wrapper=wrapper, allocation=allocation, torch_threads=None
    )
    dec = pipeline.decode(enc.bitstream, ctx.model, wrapper=wrapper)
    front = _front_cost(ctx)
    macs, parameters = front.macs, front.params
    times = {
        "front": enc.front_s,
        "pack": enc.pack_s,
        "encode": enc.codec_s,
        "decode": dec.codec_s,
        "unpack": dec.unpack_s,
        "back": dec.back_s,
    }
    if allocation is not None:
        times["rdo"] = map_s + enc.rdo_s
    if wrapper is not None:
        key = ("pre", wrapper.weights_tag, ctx.image.shape)
        if key not in ctx._costs:
            ctx._costs[key] = measure_cost(wrapper.encode, edge.features.tensors)
        macs, parameters = macs + ctx._costs[key].macs, parameters + ctx._costs[key].params
        times |= {"wrap": enc.wrap_s, "unwrap": dec.unwrap_s}
    psnr = feature_psnr(edge.features.tensors, dec.features.tensors)
    return Measurement(dec.output, enc.num_bits, 8 * enc.payload_bytes, times, macs, parameters, psnr)


#: PSNR reported for a lossless reconstruction (JSON has no infinity; far above any lossy point)
MAX_FEATURE_PSNR = 150.0


def feature_psnr(reference: Any, decoded: Any) -> float:
    """PSNR (dB) of ``decoded`` split tensors against ``reference`` over all their elements, with the reference's
    range (max − min) as peak; :data:`MAX_FEATURE_PSNR` when they are equal."""
    import torch

    ref = torch.cat([t.detach().flatten().double() for t in reference.values()])
    dec = torch.cat([decoded[k].detach().flatten().double() for k in reference])
    mse = float(torch.mean((ref - dec) ** 2))
    peak = float(ref.max() - ref.min())
    if mse == 0.0 or peak == 0.0:
        return MAX_FEATURE_PSNR if mse == 0.0 else 0.0
    return float(min(MAX_FEATURE_PSNR, 10.0 * np.log10(peak * peak / mse)))


@PIPELINES.register("remote")
class RemotePipeline(Pipeline):
    """Remote inference: code the picture itself in ``format`` / ``range`` (:mod:`fcm.codecs.color`) and run the
    whole model on the decoded picture. The coded stream is all the bits; the edge computes nothing but the encode."""

    kind = "remote"
    options = ("format", "range")

    def __init__(self, label: str, qps: tuple[int, ...], picture: PictureFormat) -> None:
        super().__init__(label, qps)
        self.picture = picture

    @classmethod
    def _from_section(cls, label: str, section: dict[str, Any], qps: tuple[int, ...]) -> Pipeline:
        return cls(label, qps, PictureFormat.parse(section.get("format", "yuv420p10"), section.get("range", "full")))

    def section(self) -> dict[str, Any]:
        return {"qps": list(self.qps), "format": self.picture.name, "range": self.picture.range_name}

    def describe(self) -> str:
        return (
            f"the picture itself, coded as `{self.picture.name}` ({self.picture.range_name} range, BT.601; exact "
            "numpy conversion), then the whole model"
        )

    def check_codec(self, codec: Codec, bit_depth: int, params: CodecParams) -> None:
        if not codec.codes_images:
            raise ConfigError(f"codec {codec.name!r} cannot code pictures for the {self.label!r} pipeline")
        if codec.lossless:  # every QP would give one point, and FFV1 cannot signal the picture's sample range
            raise ConfigError(
                f"codec {codec.name!r} is lossless: the {self.label!r} anchor needs a lossy codec (every QP would give "
                "the same point)"
            )
        try:
            codec.check_params(self.picture.bit_depth, params)
            codec.check_image_format(self.picture)
        except FcmError as e:
            raise ConfigError(
                f"{self.label} pictures in {self.picture.name}: {e}; choose another format or drop the codec"
            ) from e

    def measure(self, ctx: InputContext, codec: str, params: CodecParams, bit_depth: int | None) -> Measurement:
        import torch

        from fcm.codecs import get_codec

        coder = get_codec(codec)
        t0 = time.perf_counter()
        encoded = coder.encode_image(ctx.image, params, self.picture)
        t1 = time.perf_counter()
        decoded = coder.decode_image(encoded, self.picture)
        t2 = time.perf_counter()
        with torch.no_grad():
            output = ctx.model.full(ctx.model.prepare(decoded))
        t3 = time.perf_counter()
        bits = 8 * encoded.num_bytes
        return Measurement(output, bits, bits, {"encode": t1 - t0, "decode": t2 - t1, "infer": t3 - t2})


@PIPELINES.register("wrapped")
class WrappedPipeline(CodedPipeline):
    """fcm with a learned wrapper: the pre-wrapper (edge) reduces the split tensors before packing, the post-wrapper
    (cloud) restores them before the back half. ``checkpoint`` is a wrapper checkpoint (:mod:`fcm.wrappers`) or a
    rate-adaptive wrapper family (:mod:`fcm.wrappers.family`: each QP coded with the variant serving it); the
    label's variant names how it was trained, e.g. ``wrapped[scaled]``. The stream names the wrapper and its weights
    tag (bitstream version 2), and the decoder checks them."""

    kind = "wrapped"
    options = ("checkpoint", "weights_tag", "rdo")

    def __init__(
        self,
        label: str,
        qps: tuple[int, ...],
        checkpoint: str,
        weights_tag: str,
        trained_for: tuple[str, str] | None,
        rdo: RdoSettings | None = None,
    ) -> None:
        super().__init__(label, qps, rdo)
        self.checkpoint = checkpoint
        self.weights_tag = weights_tag
        self.trained_for = trained_for
        self._wrapper: WrapperPair | WrapperFamily | None = None
        #: a wrapper family's variants and bands, in words (None: a single wrapper)
        self.family: str | None = None

    @classmethod
    def _from_section(cls, label: str, section: dict[str, Any], qps: tuple[int, ...]) -> Pipeline:
        """``checkpoint`` (a path) and optionally ``weights_tag``, which pins the weights: a checkpoint holding other
        weights is refused, and with the tag given the file need not exist to report a results folder."""
        from pathlib import Path

        from fcm.wrappers import is_family_file, read_checkpoint
        from fcm.wrappers.family import describe_family, read_family

        rdo = cls._rdo_from(label, section, variant_sets_mode=False)
        path, pinned = section.get("checkpoint"), section.get("weights_tag")
        if not isinstance(path, str) or not path:
            raise ConfigError(f"pipeline {label!r} needs checkpoint: the path of a wrapper checkpoint")
        if pinned is not None and not isinstance(pinned, str):
            raise ConfigError(f"pipeline {label!r}: weights_tag must be a string, got {pinned!r}")
        resolved = str(Path(path).resolve())
        if pinned is not None and not Path(path).exists():
            return cls(label, qps, resolved, pinned, None, rdo)  # enough to report its records; measuring will say
        try:
            family = is_family_file(path)
            data = read_family(path) if family else read_checkpoint(path)
        except FcmError as e:
            raise ConfigError(f"pipeline {label!r}: {e}") from e
        if pinned is not None and pinned != data["weights_tag"]:
            raise ConfigError(
                f"pipeline {label!r}: {path} holds weights {data['weights_tag']}, but the sweep was run with {pinned}"
            )
        made = cls(label, qps, resolved, str(data["weights_tag"]), (str(data["model"]), str(data["split"])), rdo)
        made.family = describe_family(data) if family else None
        return made

    def check_split(self, model: str, split: str) -> None:
        if self.trained_for is not None and self.trained_for != (model, split):
            raise ConfigError(
                f"pipeline {self.label!r}: {self.checkpoint} was trained for {'/'.join(self.trained_for)}, "
                f"not {model}/{split}"
            )

    def section(self) -> dict[str, Any]:
        out = {"qps": list(self.qps), "checkpoint": self.checkpoint, "weights_tag": self.weights_tag}
        return out | ({"rdo": self.rdo.to_config()} if self.rdo.makes_map else {})

    def identity(self) -> dict[str, Any]:
        out: dict[str, Any] = {"checkpoint_weights_tag": self.weights_tag}  # the weights, wherever the file lies
        if self.rdo.makes_map:
            out["rdo"] = super().identity()["rdo"]
        return out

    def describe(self) -> str:
        if self.family is not None:
            what = f"the wrapper family `{self.checkpoint}` (weights {self.weights_tag}; {self.family})"
        else:
            what = f"the wrapper `{self.checkpoint}` (weights {self.weights_tag})"
        return f"the split tensors through {what}, packed, coded" + self.rdo_description()

    def __getstate__(self) -> dict[str, Any]:
        return {**super().__getstate__(), "_wrapper": None}  # workers load the checkpoint themselves

    def setup(self, model: SplitModel) -> None:
        from fcm.wrappers import load_wrapper_or_family

        super().setup(model)

        wrapper = load_wrapper_or_family(self.checkpoint, model)
        if wrapper.weights_tag != self.weights_tag:
            raise ConfigError(f"{self.checkpoint} changed since the sweep started (weights {wrapper.weights_tag})")
        self._wrapper = wrapper

    def measure(self, ctx: InputContext, codec: str, params: CodecParams, bit_depth: int | None) -> Measurement:
        if self._wrapper is None:
            self.setup(ctx.model)
        assert self._wrapper is not None
        from fcm.pipeline import variant_for

        return _code_split_tensors(ctx, codec, params, bit_depth, variant_for(self._wrapper, params), self)
