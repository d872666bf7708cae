"""Wrapper-aware bit allocation strategies: what the edge driver asks for a per-block QP map.

:class:`RdoSettings` is the value a config or the CLI builds once; :func:`build_allocation` turns it into a strategy
with one method, :meth:`BitAllocation.offsets`, that maps packed frames to an ``N×⌈H/B⌉×⌈W/B⌉`` int32 QP-offset map.
The driver (:func:`fcm.pipeline.encode_features`) hands the map to the codec (``route="qp"``: x264/x265 per-block
quantizer offsets) or turns it into per-block sample scaling (``route="scale"``: any codec, the scale map travels
in the bitstream). Modes:

``sse``
    no map: the codec's own RDO (the anchor; run it in the same rate-control mode as the others).
``wa-frame``
    weights computed for every frame (:func:`fcm.rdo.sensitivity.frame_sensitivity`).
``wa-gop``
    weights computed on the first frame of each group of ``gop`` frames and reused for the group (the packing layout
    is fixed, so the maps line up).
``wa-fixed``
    a fixed offline map (:class:`fcm.rdo.fixed_map.FixedMap`, made by ``fcm rdo-weights``): no Jacobian work at
    encode time; refused when its identifiers or layout do not match.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from fcm.errors import ConfigError
from fcm.rdo.maps import Preconditioning, block_means, precondition, qp_offsets
from fcm.rdo.sensitivity import TARGETS, as_target

if TYPE_CHECKING:
    from fcm.models.base import SplitModel
    from fcm.packing.packer import PackedFrames
    from fcm.rdo.fixed_map import FixedMap
    from fcm.wrappers.base import WrapperPair

RdoMode = Literal["sse", "wa-frame", "wa-gop", "wa-fixed"]
RDO_MODES: tuple[RdoMode, ...] = ("sse", "wa-frame", "wa-gop", "wa-fixed")
Route = Literal["qp", "scale"]
ROUTES: tuple[Route, ...] = ("qp", "scale")


def as_rdo_mode(value: str) -> RdoMode:
    for mode in RDO_MODES:
        if value == mode:
            return mode
    raise ConfigError(f"unknown rdo mode {value!r}; known: {', '.join(RDO_MODES)}")


def as_route(value: str) -> Route:
    for route in ROUTES:
        if value == route:
            return route
    raise ConfigError(f"unknown rdo route {value!r}; known: {', '.join(ROUTES)}")


@dataclass(frozen=True)
class RdoSettings:
    """How the edge allocates bits across blocks (see the module docstring).

    Attributes:
        mode: ``sse``, ``wa-frame``, ``wa-gop`` or ``wa-fixed``.
        route: ``qp`` (per-block QP offsets: x264/x265, ``rate_control: crf``) or ``scale`` (per-block sample scaling:
            any codec and rate control).
        target: what the weights protect: ``kl`` (classifier output distribution), ``output`` or ``features``
            (see :mod:`fcm.rdo.sensitivity`); ``None``: ``kl`` for classifiers, ``features`` otherwise.
        probes: Rademacher probes per frame (0: exact Jacobian, only for tiny chains).
        seed: probe seed.
        precondition: clipping, smoothing and shrinkage of the weights.
        block: block side of the map (16: the encoders' quantizer groups).
        max_offset: ΔQP clip range ``±max_offset``.
        gop: frames per group for ``wa-gop``.
        map_path: the fixed map file for ``wa-fixed``.
    """

    mode: RdoMode = "sse"
    route: Route = "qp"
    target: str | None = None
    probes: int = 8
    seed: int = 0
    precondition: Preconditioning = field(default_factory=Preconditioning)
    block: int = 16
    max_offset: int = 6
    gop: int = 8
    map_path: str | None = None

    def __post_init__(self) -> None:
        as_rdo_mode(self.mode)
        as_route(self.route)
        if self.target is not None:
            as_target(self.target)
        for name, lo in (("probes", 0), ("seed", 0), ("block", 1), ("gop", 1)):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < lo:
                raise ConfigError(f"rdo {name} must be an integer >= {lo}, got {value!r}")
        qp_offsets(np.ones((1, 1, 1)), self.max_offset)  # validates max_offset
        if self.map_path is not None and not isinstance(self.map_path, str):
            raise ConfigError(f"rdo map must be the path of a .npz file, got {self.map_path!r}")
        if self.mode == "wa-fixed" and not self.map_path:
            raise ConfigError("rdo mode 'wa-fixed' needs map: the file `fcm rdo-weights` wrote")
        if self.mode != "wa-fixed" and self.map_path:
            raise ConfigError(f"rdo map is only used by mode 'wa-fixed', not {self.mode!r}")
        if self.mode == "wa-fixed" and self.target is not None:
            raise ConfigError("rdo mode 'wa-fixed' takes its target from the map; drop target")
        if self.route == "scale":
            from fcm.rdo.scaling import MAX_STEP

            if not 4 <= self.block <= 256:
                raise ConfigError(f"rdo route 'scale' takes blocks of 4–256 samples, got {self.block}")
            if self.max_offset > MAX_STEP:
                raise ConfigError(f"rdo route 'scale' takes max_offset <= {MAX_STEP}, got {self.max_offset}")

    #: config keys :meth:`from_config` accepts
    KEYS = (
        "mode",
        "route",
        "target",
        "probes",
        "seed",
        "clip_percentile",
        "smooth",
        "tau",
        "block",
        "max_offset",
        "gop",
        "map",
    )

    @classmethod
    def from_config(cls, raw: dict[str, Any], where: str = "rdo") -> RdoSettings:
        """From a config mapping with keys :data:`KEYS` (``clip_percentile``, ``smooth``, ``tau`` flattened)."""
        if not isinstance(raw, dict):
            raise ConfigError(f"{where} must be a mapping, got {raw!r}")
        unknown = sorted(set(raw) - set(cls.KEYS))
        if unknown:
            raise ConfigError(f"{where}: unknown settings {unknown}; known: {', '.join(cls.KEYS)}")
        pre = {k: raw[k] for k in ("clip_percentile", "smooth", "tau") if k in raw}
        rest = {k: raw[k] for k in cls.KEYS if k in raw and k not in pre and k != "map"}
        for key in ("mode", "route", "target"):
            if rest.get(key) is not None and not isinstance(rest[key], str):
                raise ConfigError(f"{where}: {key} must be a string, got {rest[key]!r}")
        try:
            return cls(precondition=Preconditioning(**pre), map_path=raw.get("map"), **rest)
        except ConfigError as e:
            raise ConfigError(f"{where}: {e}") from None

    def identity(self) -> dict[str, Any]:
        """The settings that change what this mode codes (for results folders): the estimator's settings only where
        the mode estimates weights, the GOP length only for ``wa-gop``, the map by the caller's content tag."""
        if self.mode == "sse":
            return {"mode": "sse"}
        out: dict[str, Any] = {
            "mode": self.mode,
            "route": self.route,
            "block": self.block,
            "max_offset": self.max_offset,
        }
        out |= asdict(self.precondition)
        if self.mode in ("wa-frame", "wa-gop"):
            out |= {"target": self.target, "probes": self.probes, "seed": self.seed}
        if self.mode == "wa-gop":
            out["gop"] = self.gop
        return out

    def to_config(self) -> dict[str, Any]:
        out = {k: v for k, v in asdict(self).items() if k not in ("precondition", "map_path")}
        out |= asdict(self.precondition)
        if self.map_path is not None:
            out["map"] = self.map_path
        return out

    def target_for(self, model: SplitModel | None) -> str:
        if self.target is not None:
            return self.target
        return "kl" if model is not None and model.task == "classification" else "features"

    def offsets_from_weights(self, weights: np.ndarray) -> np.ndarray:
        """Raw (or normalised) sample weights → the int32 block QP-offset map."""
        return qp_offsets(block_means(precondition(weights, self.precondition), self.block), self.max_offset)


class BitAllocation:
    """A strategy giving each packed stack its block QP-offset map (``None``: the codec's own RDO)."""

    def __init__(self, settings: RdoSettings) -> None:
        self.settings = settings

    @property
    def route(self) -> Route:
        return self.settings.route

    def offsets(
        self,
        packed: PackedFrames,
        model: SplitModel | None,
        meta: dict[str, tuple[int, ...]],
        wrapper: WrapperPair | None,
    ) -> np.ndarray | None:
        return None


class PerFrameAllocation(BitAllocation):
    """``wa-frame``: fresh weights for every frame."""

    def weights(
        self,
        packed: PackedFrames,
        model: SplitModel | None,
        meta: dict[str, tuple[int, ...]],
        wrapper: WrapperPair | None,
    ) -> np.ndarray:
        from fcm.rdo.sensitivity import frame_sensitivity

        s = self.settings
        return frame_sensitivity(packed, model, meta, wrapper, as_target(s.target_for(model)), s.probes, s.seed)

    def offsets(
        self,
        packed: PackedFrames,
        model: SplitModel | None,
        meta: dict[str, tuple[int, ...]],
        wrapper: WrapperPair | None,
    ) -> np.ndarray | None:
        return self.settings.offsets_from_weights(self.weights(packed, model, meta, wrapper))


class GopAllocation(PerFrameAllocation):
    """``wa-gop``: weights of the first frame of each group of ``gop`` frames, reused for the group. Within one stack
    the groups are frame ranges; across calls (a stream coded one frame at a time) the strategy keeps the current
    group's map and counts frames, so use one instance per stream."""

    def __init__(self, settings: RdoSettings) -> None:
        super().__init__(settings)
        self._map: np.ndarray | None = None
        self._layout: Any = None
        self._left = 0

    def offsets(
        self,
        packed: PackedFrames,
        model: SplitModel | None,
        meta: dict[str, tuple[int, ...]],
        wrapper: WrapperPair | None,
    ) -> np.ndarray | None:
        s = self.settings
        maps = []
        for i in range(packed.frames.shape[0]):
            if self._left == 0 or self._map is None or self._layout != packed.layout:  # a new GOP (or a new layout)
                raw = self.weights(_frame(packed, i), model, meta, wrapper)
                self._map, self._layout, self._left = s.offsets_from_weights(raw), packed.layout, s.gop
            maps.append(self._map[0])
            self._left -= 1
        return np.stack(maps)


class PrecomputedAllocation(BitAllocation):
    """A map computed elsewhere (e.g. on a GOP's key frame), reused for every frame of stacks with ``layout``."""

    def __init__(self, settings: RdoSettings, offsets: np.ndarray, layout: Any) -> None:
        super().__init__(settings)
        self.map = np.asarray(offsets, dtype=np.int32)[:1]
        self.layout = layout

    def offsets(
        self,
        packed: PackedFrames,
        model: SplitModel | None,
        meta: dict[str, tuple[int, ...]],
        wrapper: WrapperPair | None,
    ) -> np.ndarray | None:
        if packed.layout != self.layout:
            raise ConfigError("the reused rdo map was computed for another packing layout")
        return np.repeat(self.map, packed.frames.shape[0], axis=0)


class FixedAllocation(BitAllocation):
    """``wa-fixed``: the offline map, checked against the model, wrapper and layout of every stack it codes."""

    def __init__(self, settings: RdoSettings, fixed: FixedMap) -> None:
        super().__init__(settings)
        self.fixed = fixed
        self._cache: tuple[Any, np.ndarray] | None = None

    def offsets(
        self,
        packed: PackedFrames,
        model: SplitModel | None,
        meta: dict[str, tuple[int, ...]],
        wrapper: WrapperPair | None,
    ) -> np.ndarray | None:
        key = (
            packed.layout,
            None if model is None else (model.name, model.split, model.weights_tag),
            None if wrapper is None else (wrapper.name, wrapper.weights_tag),
            packed.range_mode,
        )
        if self._cache is None or self._cache[0] != key:  # checked once per model, wrapper, layout and range mode
            self.fixed.check(model, wrapper, packed.layout, packed.range_mode)
            self._cache = (key, self.settings.offsets_from_weights(self.fixed.weights[None]))
        return np.repeat(self._cache[1], packed.frames.shape[0], axis=0)


def build_allocation(settings: RdoSettings) -> BitAllocation | None:
    """The strategy of ``settings`` (``None`` for ``sse``); ``wa-fixed`` reads its map file now."""
    if settings.mode == "sse":
        return None
    if settings.mode == "wa-frame":
        return PerFrameAllocation(settings)
    if settings.mode == "wa-gop":
        return GopAllocation(settings)
    from fcm.rdo.fixed_map import FixedMap

    assert settings.map_path is not None
    return FixedAllocation(settings, FixedMap.load(settings.map_path))


def _frame(packed: PackedFrames, i: int) -> PackedFrames:
    from fcm.rdo.sensitivity import _one_frame

    return _one_frame(packed, i)


__all__ = [
    "RDO_MODES",
    "ROUTES",
    "TARGETS",
    "BitAllocation",
    "FixedAllocation",
    "GopAllocation",
    "PerFrameAllocation",
    "PrecomputedAllocation",
    "RdoSettings",
    "build_allocation",
]
