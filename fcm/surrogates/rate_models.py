"""Differentiable rate models of packed frames: what the training rate term ``λ · R`` counts.

Contract of :data:`RATE_MODELS` (name → class): a registrant is an :class:`nn.Module` built as
``cls(bit_depth=…, steps=…, **options)`` (``steps``: the training run's length, for annealed surrogates) whose
``forward(y, qp, step) -> bits`` maps sample frames ``y`` (``N×H×W``, float, ``bit_depth``-bit codec units, not
rounded) at an H.264/HEVC ``qp`` and training step ``step`` to a differentiable bit estimate per item (``(N,)``),
finite for finite input. ``learned`` says whether it has parameters; a learned model is fitted by
maximum likelihood on the detached frames (the training loop adds ``forward(y.detach(), …)`` to the loss), so it
tracks the frames the wrapper makes whatever λ is.

Both models work on the coefficients ``c`` of the 8×8 orthonormal block DCT of ``y − 2^(bits−1)``, the transform
and quantizer step ``Δ(QP)`` of :class:`fcm.surrogates.ProxyCodec`:

* ``log_magnitude`` — ``R = Σ log2(1 + |round(c/Δ)|)`` (straight-through), the proxy fcm trained with so far; no
  parameters, a ranking proxy rather than a count.
* ``factorized`` — a learned density per DCT frequency (:class:`fcm.surrogates.entropy_model.FactorizedDensity`,
  over ``c`` in 8-bit units, so one density serves every QP) and ``R = Σ −log2 P(ĉ − Δ/2 ≤ C ≤ ĉ + Δ/2)``: the
  information of the quantizer bin the surrogate puts each coefficient in, i.e. the bits an ideal entropy coder of
  independent coefficients would spend. Bits fall as Δ grows, since bins widen. ``ĉ`` comes from a selectable
  surrogate of :mod:`fcm.surrogates.quantization`: ``quantizer`` ``noise`` (``c + Δu``, CompressAI's training
  surrogate), ``ste`` (``Δ·round(c/Δ)``, identity gradient: the levels the codec codes), ``sua`` (stochastic
  uniform annealing from noise to rounding over the run); ``zero_center: true`` quantizes around a learned offset
  per frequency, ``Q(c − sg(μ)) + μ`` (:class:`fcm.surrogates.ZeroCenterQuantizer`, partial stop-gradient);
  ``likelihood_bound`` caps the bits of one coefficient (the scale lower bound of a factorized model). In eval mode
  (``.eval()``) every quantizer is plain rounding (around the offset, with ``zero_center``): the bits of the levels
  the codec codes, with no noise.
"""

from __future__ import annotations

import torch
from torch import nn

from fcm.errors import ConfigError
from fcm.registry import Registry
from fcm.surrogates.annealing import TemperatureSchedule
from fcm.surrogates.entropy_model import LIKELIHOOD_BOUND, FactorizedDensity
from fcm.surrogates.proxy_codec import ProxyCodec, centred_block_dct, dct_matrix, quantizer_step, sample_planes
from fcm.surrogates.quantization import quantize_surrogate
from fcm.surrogates.zero_center import ZeroCenterQuantizer

RATE_MODELS: Registry[type[RateModel]] = Registry("rate model")
#: quantizer surrogates a factorized rate model may use
RATE_QUANTIZERS: tuple[str, ...] = ("noise", "ste", "sua")
#: SUA temperatures over a run, from start to end (as the ``proxy`` surrogate's)
SUA_TEMPERATURE = (1.0, 1e-3)


class RateModel(nn.Module):
    """Base of :data:`RATE_MODELS` (module doc for the contract)."""

    learned = False

    def forward(self, y: torch.Tensor, qp: float, step: int = 0) -> torch.Tensor:
        raise NotImplementedError


@RATE_MODELS.register("log_magnitude")
class LogMagnitudeRate(RateModel):
    """``Σ log2(1 + |round(c/Δ)|)`` over the block-DCT levels, straight-through (module doc)."""

    def __init__(self, bit_depth: int, steps: int = 1) -> None:
        super().__init__()
        self._proxy = ProxyCodec(bit_depth=bit_depth, mode="ste")

    def forward(self, y: torch.Tensor, qp: float, step: int = 0) -> torch.Tensor:
        return self._proxy(sample_planes(y, "a rate model's input"), qp).rate


@RATE_MODELS.register("factorized")
class FactorizedRate(RateModel):
    """Bits of each block-DCT coefficient's quantizer bin under a learned density per frequency (module doc).

    Args:
        bit_depth: the frames' bit depth.
        steps: the training run's length (the SUA schedule's).
        quantizer: ``noise | ste | sua``.
        zero_center: quantize around a learned offset per frequency.
        block_size: the DCT block size B (B² densities).
        filters, init_scale: of each density (``init_scale`` in 8-bit units).
        likelihood_bound: the least mass of a bin.
    """

    learned = True

    def __init__(
        self,
        bit_depth: int,
        steps: int = 1,
        quantizer: str = "noise",
        zero_center: bool = False,
        block_size: int = 8,
        filters: tuple[int, ...] | list[int] = (3, 3, 3),
        init_scale: float = 64.0,
        likelihood_bound: float = LIKELIHOOD_BOUND,
    ) -> None:
        super().__init__()
        if not isinstance(quantizer, str) or quantizer not in RATE_QUANTIZERS:
            raise ConfigError(f"rate model quantizer must be one of {', '.join(RATE_QUANTIZERS)}; got {quantizer!r}")
        if not isinstance(zero_center, bool):
            raise ConfigError(f"zero_center must be true or false, got {zero_center!r}")
        if isinstance(block_size, bool) or not isinstance(block_size, int) or not 1 <= block_size <= 16:
            raise ConfigError(f"block_size must be an integer in [1, 16], got {block_size!r}")
        if not 1 <= bit_depth <= 16:
            raise ConfigError(f"bit depth must lie in [1, 16], got {bit_depth}")
        self.bit_depth = int(bit_depth)
        self.quantizer = quantizer
        self.block_size = block_size
        self.density = FactorizedDensity(block_size * block_size, filters, init_scale, likelihood_bound)
        self.offset: nn.Parameter | None = None
        self._zero_center: ZeroCenterQuantizer | None = None
        if zero_center:
            self.offset = nn.Parameter(torch.zeros(block_size * block_size, 1))
            self._zero_center = ZeroCenterQuantizer(quantizer)  # type: ignore[arg-type]
        start, end = SUA_TEMPERATURE
        self._schedule = TemperatureSchedule("exponential", start, end, max(1, steps))

    def forward(self, y: torch.Tensor, qp: float, step: int = 0) -> torch.Tensor:
        planes = sample_planes(y, "a rate model's input")
        n = planes.shape[0]
        b = self.block_size
        # coefficients in 8-bit units, one row per frequency: (B², N·blocks)
        unit = 2.0 ** (self.bit_depth - 8)
        c = centred_block_dct(planes, self.bit_depth, dct_matrix(b, dtype=y.dtype, device=y.device)) / unit
        c = c.permute(2, 4, 0, 1, 3).reshape(b * b, -1)
        delta = float(quantizer_step(qp, self.bit_depth)) / unit
        c_hat = self._quantize(c / delta, delta, step) * delta
        bits = self.density.bits(c_hat, delta / 2)
        return bits.reshape(b * b, n, -1).sum(dim=(0, 2))

    def _quantize(self, levels: torch.Tensor, delta: float, step: int) -> torch.Tensor:
        if not self.training:  # evaluation counts the levels a codec would code: rounding, no noise
            mu = torch.zeros(()) if self.offset is None else self.offset.detach() / delta
            return quantize_surrogate(levels - mu, "ste", 1.0) + mu
        temperature = self._schedule(step)
        if self._zero_center is not None and self.offset is not None:
            self._zero_center.temperature = temperature
            return self._zero_center(levels, self.offset / delta)  # the offset is in 8-bit units, as c
        return quantize_surrogate(levels, self.quantizer, 1.0, temperature)  # type: ignore[arg-type]

    def extra_repr(self) -> str:
        return f"quantizer={self.quantizer!r}, zero_center={self.offset is not None}, block_size={self.block_size}"


def build_rate_model(spec: dict[str, object] | None, bit_depth: int, steps: int = 1) -> RateModel:
    """The rate model ``{name, ...options}`` (default ``log_magnitude``); :class:`ConfigError` on bad options."""
    spec = dict(spec or {"name": "log_magnitude"})
    name = spec.pop("name", "log_magnitude")
    if not isinstance(name, str):
        raise ConfigError(f"rate_model name must be a string, got {name!r}")
    cls = RATE_MODELS.get(name)
    try:
        return cls(bit_depth=bit_depth, steps=steps, **spec)
    except TypeError as e:
        raise ConfigError(f"rate_model {name!r}: {e}") from None
