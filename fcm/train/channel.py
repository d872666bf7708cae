"""The coded path a training step differentiates through: wrapper → packing → codec surrogate → unpacking → wrapper.

Per batch, with ``y`` the packed sample frames (``to_sample_frames``, not rounded; frame ranges from the detached
coded tensors, as the real packer signals them), the surrogate ``ŷ`` is:

* ``scaled`` / ``ste`` — the real codec: ``ŷ = φ(y)`` bit-exactly (:class:`fcm.surrogates.CodecSurrogate` over
  :class:`fcm.surrogates.RealCodec`), with the SCALED or the straight-through gradient; the codec's bytes are logged;
* ``noise`` — ``ŷ = y + Δ(QP)·u``, ``u ~ U(−½, ½)`` per sample, identity gradient, with the codec's quantizer step
  ``Δ(QP) = 2^((QP − 4)/6)·2^(bits − 8)`` (:func:`fcm.surrogates.quantizer_step`). The codec quantizes orthonormal
  transform coefficients with step Δ; uniform noise of width Δ on the samples has the same per-sample variance
  (Δ²/12) as that on the coefficients, since the transform preserves energy;
* ``proxy`` — :class:`fcm.surrogates.ProxyCodec` (8×8 block DCT, quantization at the step's QP) in SUA mode, with
  temperature ``T(k)`` decaying exponentially from 1 (uniform noise) to 10⁻³ (almost hard rounding) over the run
  (:class:`fcm.surrogates.TemperatureSchedule`): training starts smooth and ends close to the quantizer it imitates.

Rate term (the same for every surrogate, so λ means the same whichever is used): the config's rate model
(:mod:`fcm.surrogates.rate_models`) of ``y`` at the step's QP. The default, ``log_magnitude``, is
``R = Σ log2(1 + |q|)`` of the ProxyCodec's levels in ``ste`` mode (``q = round(c/Δ)`` in value, identity gradient:
deterministic, it is the proxy of the frames the codec actually gets, and levels rounded to 0 cost and pull
nothing). A learned model (``factorized``) also returns its fitting term: its bits of the *detached* frames, whose
gradient reaches its density alone, so it tracks the frames the wrapper makes whatever λ is.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Mapping
from typing import NamedTuple

import torch
from torch import nn

from fcm.codecs import CodecParams
from fcm.packing.packer import Packer
from fcm.packing.torch_ops import SampleRanges, from_sample_frames, to_sample_frames
from fcm.surrogates.annealing import TemperatureSchedule
from fcm.surrogates.proxy_codec import ProxyCodec, quantizer_step
from fcm.surrogates.quantization import quantize_surrogate
from fcm.surrogates.rate_models import SUA_TEMPERATURE, RateModel, build_rate_model
from fcm.surrogates.real_codec import CodecSurrogate, RealCodec
from fcm.train.config import TrainConfig
from fcm.wrappers.base import WrapperPair


class ChannelOutput(NamedTuple):
    """What :class:`CodedPath` returns for a batch."""

    restored: OrderedDict[str, torch.Tensor]  # the post-wrapper's split tensors, for the back half
    rate_bits: torch.Tensor  # rate proxy per item, (N,), differentiable
    fit_bits: torch.Tensor | None  # a learned rate model's bits of the detached frames, (N,): its fitting term
    real_bytes: torch.Tensor | None  # the real codec's bytes per item, when it ran
    temperature: float | None  # SUA temperature of the proxy surrogate


class CodecChannel:
    """The surrogate of :class:`TrainConfig` ``surrogate``: ``(y, qp, step) -> (ŷ, real bytes or None, T or None)``."""

    def __init__(self, config: TrainConfig) -> None:
        self.kind = config.surrogate
        self.bit_depth = config.codec_bit_depth
        self._real: CodecSurrogate | None = None
        if self.kind in ("scaled", "ste"):
            codec = RealCodec(
                config.codec,
                config.qps[0],
                self.bit_depth,
                CodecParams(qp=config.qps[0], preset=config.preset),
                workers=config.workers,
            )
            self._real = CodecSurrogate(codec, "scaled" if self.kind == "scaled" else "ste")
        self._proxy = ProxyCodec(bit_depth=self.bit_depth, mode="sua")
        start, end = SUA_TEMPERATURE  # the rate models' SUA schedule too
        self._schedule = TemperatureSchedule("exponential", start, end, max(1, config.steps))

    def __call__(self, y: torch.Tensor, qp: int, step: int) -> tuple[torch.Tensor, torch.Tensor | None, float | None]:
        if self._real is not None:
            decoded, num_bytes = self._real(y, qp)
            return decoded, num_bytes, None
        if self.kind == "noise":
            return quantize_surrogate(y, "noise", float(quantizer_step(qp, self.bit_depth))), None, None
        self._proxy.temperature = self._schedule(step)
        return self._proxy(y, qp).frames, None, self._proxy.temperature

    def close(self) -> None:
        if self._real is not None:
            self._real.codec.close()


class RealChannel:
    """The real codec with no surrogate gradient — what a deployed pair sees (for evaluation); a context manager."""

    def __init__(self, config: TrainConfig) -> None:
        self.bit_depth = config.codec_bit_depth
        params = CodecParams(qp=config.qps[0], preset=config.preset)
        self._codec = RealCodec(config.codec, config.qps[0], self.bit_depth, params, workers=0)

    def __call__(self, y: torch.Tensor, qp: int, step: int) -> tuple[torch.Tensor, torch.Tensor | None, float | None]:
        coded = self._codec.run(y, qp)
        return coded.frames, coded.num_bytes, None

    def __enter__(self) -> RealChannel:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._codec.close()


Channel = Callable[[torch.Tensor, int, int], tuple[torch.Tensor, "torch.Tensor | None", "float | None"]]


class CodedPath(nn.Module):
    """``forward(features, qp, step) -> ChannelOutput``: the wrapper pair around a channel (a surrogate, or the real
    codec for evaluation) for frames of ``bit_depth`` bits, with the rate model of the frames (default
    ``log_magnitude``).

    The wrapper and the rate model are the only submodules (so :class:`~torch.nn.parallel.DistributedDataParallel`
    synchronises exactly their gradients); the channel is a plain attribute.
    """

    def __init__(
        self, wrapper: WrapperPair, channel: Channel, bit_depth: int, rate_model: RateModel | None = None
    ) -> None:
        super().__init__()
        self.wrapper = wrapper
        self.channel = channel
        self.bit_depth = bit_depth
        self._packer = Packer(bit_depth, "frame")
        self.rate_model = rate_model if rate_model is not None else build_rate_model(None, bit_depth)

    def forward(self, features: Mapping[str, torch.Tensor], qp: int, step: int) -> ChannelOutput:
        bits = self.bit_depth
        coded = self.wrapper.encode(features)
        layout = self._packer.layout_for(coded)
        # ranges as functions of the coded tensors: the codec's error in feature units grows with hi − lo, and the
        # wrapper must see that (same values as the packer's, so the forward pass is what is coded)
        ranges = SampleRanges.live(layout, coded, "frame")
        y = to_sample_frames(layout, coded, ranges, bits)
        rate_bits = self.rate_model(y, qp, step)
        fit_bits = self.rate_model(y.detach(), qp, step) if self.rate_model.learned and self.training else None
        y_hat, real_bytes, temperature = self.channel(y, qp, step)
        unpacked = from_sample_frames(layout, y_hat, ranges, bits)
        restored = self.wrapper.decode(OrderedDict((n, unpacked[n]) for n in self.wrapper.coded_spec.names))
        return ChannelOutput(restored, rate_bits, fit_bits, real_bytes, temperature)
