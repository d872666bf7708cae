"""Surrogates for training wrappers end to end through a real codec (methods.md §2–§3).

* :class:`StraightThrough`, :class:`RoundSTE` — forward ``f(y)``, gradient identity
  (:mod:`~fcm.surrogates.straight_through`).
* :class:`Scaled` — SCALED: forward ``φ(y)`` bit-exactly, gradient ``g − v·(εᵀg)/(‖v‖² + Nδ)``
  (:mod:`~fcm.surrogates.scaled`).
* :class:`AdditiveUniformNoise`, :class:`StochasticUniformAnnealing`, :func:`quantize_surrogate` — quantization
  surrogates (:mod:`~fcm.surrogates.quantization`); :class:`TemperatureSchedule` (:mod:`~fcm.surrogates.annealing`).
* :class:`ZeroCenterQuantizer` — ``Q(y − μ) + μ`` with partial stop-gradient (:mod:`~fcm.surrogates.zero_center`);
  :class:`LowerBound` — scale bound with pass-through gradient (:mod:`~fcm.surrogates.lower_bound`).
* :class:`RealCodec` (φ: a real fcm codec in worker processes), :class:`CodecSurrogate` (SCALED/STE through it)
  — :mod:`~fcm.surrogates.real_codec`.
* :class:`ProxyCodec` — differentiable block-DCT codec with a rate proxy (:mod:`~fcm.surrogates.proxy_codec`).

Names are resolved lazily, so that codec worker processes (which import :mod:`fcm.surrogates._codec_worker`) do not
import torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from fcm.surrogates.annealing import TemperatureSchedule
    from fcm.surrogates.lower_bound import LowerBound, lower_bound
    from fcm.surrogates.proxy_codec import ProxyCodec, ProxyCoded, dct_matrix, quantizer_step
    from fcm.surrogates.quantization import AdditiveUniformNoise, StochasticUniformAnnealing, quantize_surrogate
    from fcm.surrogates.real_codec import CodecSurrogate, CodedBatch, RealCodec
    from fcm.surrogates.scaled import Scaled, scaled_estimate
    from fcm.surrogates.straight_through import RoundSTE, StraightThrough, straight_through
    from fcm.surrogates.zero_center import ZeroCenterQuantizer

_WHERE = {
    "TemperatureSchedule": "annealing",
    "LowerBound": "lower_bound",
    "lower_bound": "lower_bound",
    "ProxyCodec": "proxy_codec",
    "ProxyCoded": "proxy_codec",
    "dct_matrix": "proxy_codec",
    "quantizer_step": "proxy_codec",
    "AdditiveUniformNoise": "quantization",
    "StochasticUniformAnnealing": "quantization",
    "quantize_surrogate": "quantization",
    "CodecSurrogate": "real_codec",
    "CodedBatch": "real_codec",
    "RealCodec": "real_codec",
    "Scaled": "scaled",
    "scaled_estimate": "scaled",
    "RoundSTE": "straight_through",
    "StraightThrough": "straight_through",
    "straight_through": "straight_through",
    "ZeroCenterQuantizer": "zero_center",
}

__all__ = [
    "AdditiveUniformNoise",
    "CodecSurrogate",
    "CodedBatch",
    "LowerBound",
    "ProxyCodec",
    "ProxyCoded",
    "RealCodec",
    "RoundSTE",
    "Scaled",
    "StochasticUniformAnnealing",
    "StraightThrough",
    "TemperatureSchedule",
    "ZeroCenterQuantizer",
    "dct_matrix",
    "lower_bound",
    "quantize_surrogate",
    "quantizer_step",
    "scaled_estimate",
    "straight_through",
]


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_WHERE))
