"""Wrapper-aware bit allocation strategies: what the edge driver asks for a per-block QP map.

:class:`fcm.rdo.settings.RdoSettings` is the value a config or the CLI builds once; its policy
(:mod:`fcm.rdo.policies`, :func:`fcm.rdo.build_allocation`) turns it into a strategy with one method,
:meth:`BitAllocation.offsets`, that maps packed frames to an ``N×⌈H/B⌉×⌈W/B⌉`` int32 QP-offset map.
The driver (:func:`fcm.pipeline.encode_features`) hands the map to the codec (``route="qp"``: x264/x265 per-block
quantizer offsets) or turns it into per-block sample scaling (``route="scale"``: any codec, the scale map travels
in the bitstream). The built-in policies:

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

from typing import TYPE_CHECKING, Any

import numpy as np

from fcm.errors import ConfigError

if TYPE_CHECKING:
    from fcm.models.base import SplitModel
    from fcm.packing.packer import PackedFrames
    from fcm.rdo.fixed_map import FixedMap
    from fcm.rdo.settings import RdoSettings, Route
    from fcm.wrappers.base import WrapperPair


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
        from fcm.rdo.targets import as_target

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


def _frame(packed: PackedFrames, i: int) -> PackedFrames:
    from fcm.rdo.sensitivity import _one_frame

    return _one_frame(packed, i)


__all__ = [
    "BitAllocation",
    "FixedAllocation",
    "GopAllocation",
    "PerFrameAllocation",
    "PrecomputedAllocation",
]
