"""A differentiable stand-in for a block-transform codec (the baseline SCALED is compared against; methods.md §2).

For packed frames ``x`` (``N×H×W`` or ``N×1×H×W`` float samples of ``bits``-bit depth):

1. centre on mid-grey and pad: ``x − 2^(bits−1)``, padded on the bottom/right by edge replication to multiples of
   the block size ``B`` (8 by default; replication adds no artificial edges, so no spurious coefficients);
2. block DCT-II, orthonormal, as a matrix: ``c = D X Dᵀ`` per ``B×B`` block, ``D[k, n] = a_k·cos(π(2n+1)k/(2B))``,
   ``a_0 = sqrt(1/B)``, ``a_k = sqrt(2/B)``; ``D Dᵀ = I``, so the inverse is ``Dᵀ c D`` and an error of variance
   ``s`` on the coefficients is an error of variance ``s`` on the samples;
3. quantization of ``c/Δ`` with a surrogate of :mod:`fcm.surrogates.quantization` (``mode``: ``"noise"``,
   ``"ste"``, ``"sua"`` at ``temperature``, or ``"round"``), ``ĉ = Δ·Q̃(c/Δ)``, with the H.264/HEVC step rule on
   the 8-bit QP scale, scaled to the bit depth (as fcm's x264/x265 take QPs, and as HEVC's QpBdOffset does):

       Δ(QP) = 2^((QP − 4)/6) · 2^(bits − 8)     (codec-sample units; doubles every 6 QP)

4. inverse DCT, crop, add ``2^(bits−1)`` back. No clipping to ``[0, 2^bits − 1]`` (it would cut gradients).

Rate proxy, per batch item, in "bits": ``R = Σ log2(1 + |ĉ|/Δ) = Σ log2(1 + |Q̃(c/Δ)|)`` over all coefficients of
the item — roughly the bits needed for the quantized levels' magnitudes; differentiable through the surrogate
(its gradient at a level of exactly 0 is 0). It decreases as QP grows. It is a proxy for ranking, not a byte count.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from fcm.errors import ConfigError, ShapeError
from fcm.surrogates.quantization import QUANTIZER_MODES, QuantizerMode, _check_temperature, quantize_surrogate


def dct_matrix(size: int, dtype: torch.dtype = torch.float64, device: torch.device | None = None) -> torch.Tensor:
    """The orthonormal DCT-II matrix ``D`` (``size×size``): ``c = D x``; ``D Dᵀ = I``."""
    n = torch.arange(size, dtype=torch.float64)
    k = n[:, None]
    d = torch.cos(math.pi * (2 * n[None, :] + 1) * k / (2 * size)) * math.sqrt(2.0 / size)
    d[0] = math.sqrt(1.0 / size)
    return d.to(dtype=dtype, device=device)


def quantizer_step(qp: float | torch.Tensor, bit_depth: int) -> torch.Tensor | float:
    """``Δ = 2^((QP − 4)/6) · 2^(bits − 8)`` in codec-sample units (the H.264/HEVC rule on the 8-bit QP scale)."""
    if isinstance(qp, torch.Tensor):
        return torch.exp2((qp - 4) / 6 + (bit_depth - 8))
    return 2.0 ** ((qp - 4) / 6 + (bit_depth - 8))


def block_dct(planes: torch.Tensor, matrix: torch.Tensor) -> torch.Tensor:
    """Blockwise ``D X Dᵀ`` of ``N×H×W`` planes (H, W multiples of the block size) → ``N×(H/B)×B×(W/B)×B``."""
    n, h, w = planes.shape
    b = matrix.shape[0]
    blocks = planes.reshape(n, h // b, b, w // b, b)
    return torch.einsum("kp,nipjq,lq->nikjl", matrix, blocks, matrix)


def inverse_block_dct(coefficients: torch.Tensor, matrix: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`block_dct`: ``Dᵀ C D`` per block, back to ``N×H×W``."""
    n, hb, b, wb, _ = coefficients.shape
    blocks = torch.einsum("kp,nikjl,lq->nipjq", matrix, coefficients, matrix)
    return blocks.reshape(n, hb * b, wb * b)


def sample_planes(x: torch.Tensor, what: str) -> torch.Tensor:
    """``N×H×W`` float sample planes of ``N×H×W`` or ``N×1×H×W`` frames; :class:`ShapeError` naming ``what``."""
    if not x.is_floating_point():
        raise ShapeError(f"{what} must be a float tensor, got {x.dtype}")
    planes = x[:, 0] if x.dim() == 4 and x.shape[1] == 1 else x
    if planes.dim() != 3:
        raise ShapeError(f"{what} must be N×H×W or N×1×H×W frames, got shape {tuple(x.shape)}")
    return planes


def centred_block_dct(planes: torch.Tensor, bit_depth: int, matrix: torch.Tensor) -> torch.Tensor:
    """:func:`block_dct` of ``N×H×W`` sample planes centred on mid-grey, padded bottom/right by edge replication to
    multiples of the block size (steps 1–2 of the module doc)."""
    _, h, w = planes.shape
    b = matrix.shape[0]
    mid_grey = float(1 << (bit_depth - 1))
    padded = F.pad((planes - mid_grey)[:, None], (0, -w % b, 0, -h % b), mode="replicate")[:, 0]
    return block_dct(padded, matrix)


class ProxyCoded(NamedTuple):
    """:class:`ProxyCodec`'s output: reconstruction (input's shape) and rate proxy per item (``(N,)``)."""

    frames: torch.Tensor
    rate: torch.Tensor


class ProxyCodec(nn.Module):
    """Block DCT + surrogate-quantized coefficients + inverse DCT, with a rate proxy (module doc for formulas).

    Args:
        qp: default QP (8-bit scale; a call may override it with a number or a per-item tensor).
        bit_depth: sample bit depth (sets mid-grey and the step scale).
        block_size: DCT block size B.
        mode: quantization surrogate: ``"noise" | "ste" | "sua" | "round"`` (explicit; it does not follow
            ``train()``/``eval()``).
        temperature: SUA's T.

    ``forward(x, qp=None) -> ProxyCoded(frames, rate)``; ``frames`` has ``x``'s shape, ``rate`` is ``(N,)``.
    """

    def __init__(
        self,
        qp: float = 32,
        bit_depth: int = 10,
        block_size: int = 8,
        mode: QuantizerMode = "noise",
        temperature: float = 1.0,
    ) -> None:
        super().__init__()
        if mode not in QUANTIZER_MODES:
            raise ConfigError(f"quantizer mode must be one of {', '.join(QUANTIZER_MODES)}; got {mode!r}")
        if block_size < 1:
            raise ConfigError(f"block size must be ≥ 1, got {block_size}")
        if not 1 <= bit_depth <= 16:
            raise ConfigError(f"bit depth must lie in [1, 16], got {bit_depth}")
        self.qp = float(qp)
        self.bit_depth = int(bit_depth)
        self.block_size = int(block_size)
        self.mode: QuantizerMode = mode
        self.temperature = _check_temperature(temperature)

    def forward(self, x: torch.Tensor, qp: float | torch.Tensor | None = None) -> ProxyCoded:
        planes = sample_planes(x, "proxy codec input")
        _, h, w = planes.shape
        b = self.block_size
        mid_grey = float(1 << (self.bit_depth - 1))
        matrix = dct_matrix(b, dtype=x.dtype, device=x.device)
        coefficients = centred_block_dct(planes, self.bit_depth, matrix)

        qp_value: float | torch.Tensor = self.qp if qp is None else qp
        if isinstance(qp_value, torch.Tensor):
            qp_value = qp_value.to(dtype=x.dtype, device=x.device).detach().reshape(-1, 1, 1, 1, 1)
        step = quantizer_step(qp_value, self.bit_depth)
        levels = quantize_surrogate(coefficients / step, self.mode, 1.0, self.temperature)
        rate = torch.log2(1 + levels.abs()).sum(dim=(1, 2, 3, 4))

        reconstructed = inverse_block_dct(levels * step, matrix)[:, :h, :w] + mid_grey
        return ProxyCoded(reconstructed.reshape(x.shape), rate)

    def extra_repr(self) -> str:
        return f"qp={self.qp}, bit_depth={self.bit_depth}, block_size={self.block_size}, mode={self.mode!r}"
