"""Scalar quantization surrogates for training (methods.md §3, after arXiv 2309.17051).

All work on a quantization step ``step`` (1 for latents; the quantizer step for coefficients): the hard quantizer is
``Q(y) = step·round(y/step)`` (``torch.round``: half to even). Modes, by name (:data:`QuantizerMode`):

* ``"noise"`` — additive uniform noise ``ŷ = y + step·u``, ``u ~ U(−½, ½)``; ``∂ŷ/∂y = I``.
* ``"ste"`` — straight-through rounding ``ŷ = Q(y)`` in value, ``∂ŷ/∂y = I``.
* ``"sua"`` — stochastic uniform annealing at temperature ``T`` (:class:`StochasticUniformAnnealing`).
* ``"round"`` — hard rounding ``ŷ = Q(y)``, zero gradient (evaluation).

**SUA [our choice of formula; the paper's was not available to us]**: with ``u ~ U(−½, ½)``,

    ŷ = (1 − T)·Q(y) + T·(y + step·u)   in value,      ∂ŷ/∂y = I   (straight-through, any T),

i.e. the surrogate's error ``ŷ − y = (1 − T)·(Q(y) − y) + T·step·u`` moves linearly from pure uniform noise (T = 1:
``ŷ = y + step·u`` exactly, so uniform noise in distribution and in value) to the rounding error (T = 0: ``ŷ = Q(y)``
exactly, bit for bit, since ``1·Q(y) + 0·(…) = Q(y)``). Intermediate T trade the train–test mismatch (smaller as
T → 0) against the noise's smoothing of the loss. The value is computed on detached data and the identity gradient
is attached with ``+ (y − sg(y))`` (exactly zero), so the gradient does not vanish as T → 0. In ``eval()`` mode
SUA and noise round (``Q(y)``, zero gradient), as a decoder would.
"""

from __future__ import annotations

from typing import Literal, get_args

import torch
from torch import nn

from fcm.errors import ConfigError

QuantizerMode = Literal["noise", "ste", "sua", "round"]
QUANTIZER_MODES: tuple[str, ...] = get_args(QuantizerMode)


def _check_step(step: float) -> float:
    if not step > 0:
        raise ConfigError(f"quantization step must be > 0, got {step}")
    return float(step)


def _check_temperature(temperature: float) -> float:
    if not 0.0 <= temperature <= 1.0:
        raise ConfigError(f"SUA temperature must lie in [0, 1], got {temperature}")
    return float(temperature)


def hard_quantize(y: torch.Tensor, step: float | torch.Tensor = 1.0) -> torch.Tensor:
    """``Q(y) = step·round(y/step)``; for ``step = 1`` exactly ``torch.round(y)``. Zero gradient."""
    if isinstance(step, float) and step == 1.0:
        return torch.round(y)
    return torch.round(y / step) * step


def uniform_noise_like(y: torch.Tensor) -> torch.Tensor:
    """``u ~ U(−½, ½)`` of ``y``'s shape, dtype and device (from torch's global generator)."""
    return torch.rand_like(y) - 0.5


def quantize_surrogate(
    y: torch.Tensor, mode: QuantizerMode, step: float | torch.Tensor = 1.0, temperature: float = 1.0
) -> torch.Tensor:
    """The surrogate ``mode`` of ``Q(y) = step·round(y/step)`` (module doc); ``temperature`` is SUA's T.

    ``step`` may be a tensor broadcastable to ``y`` (no gradient flows to it).
    """
    if mode == "round":
        return hard_quantize(y, step)
    if isinstance(step, torch.Tensor):
        step = step.detach()
    y_const = y.detach()
    with torch.no_grad():
        if mode == "noise":
            value = y_const + step * uniform_noise_like(y_const)
        elif mode == "ste":
            value = hard_quantize(y_const, step)
        elif mode == "sua":
            t = _check_temperature(temperature)
            rounded = hard_quantize(y_const, step)
            noisy = y_const + step * uniform_noise_like(y_const)
            value = (1.0 - t) * rounded + t * noisy
        else:
            raise ConfigError(f"quantizer mode must be one of {', '.join(QUANTIZER_MODES)}; got {mode!r}")
    return value + (y - y_const)  # identity gradient; the added term is exactly 0


class AdditiveUniformNoise(nn.Module):
    """Training: ``ŷ = y + step·u``, ``u ~ U(−½, ½)``, ``∂ŷ/∂y = I``. Eval: ``ŷ = step·round(y/step)``."""

    def __init__(self, step: float = 1.0) -> None:
        super().__init__()
        self.step = _check_step(step)

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        return quantize_surrogate(y, "noise" if self.training else "round", self.step)


class StochasticUniformAnnealing(nn.Module):
    """SUA: ``ŷ = (1 − T)·Q(y) + T·(y + step·u)``, ``u ~ U(−½, ½)``, gradient ``I`` (module doc).

    T = 1: additive uniform noise, exactly. T = 0: ``Q(y)``, exactly. Set :attr:`temperature` each step (e.g. from
    :class:`fcm.surrogates.TemperatureSchedule`). Eval: ``Q(y)``.
    """

    def __init__(self, temperature: float = 1.0, step: float = 1.0) -> None:
        super().__init__()
        self.step = _check_step(step)
        self._temperature = _check_temperature(temperature)

    @property
    def temperature(self) -> float:
        return self._temperature

    @temperature.setter
    def temperature(self, value: float) -> None:
        self._temperature = _check_temperature(value)

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        if not self.training:
            return hard_quantize(y, self.step)
        return quantize_surrogate(y, "sua", self.step, self._temperature)

    def extra_repr(self) -> str:
        return f"temperature={self._temperature}, step={self.step}"
