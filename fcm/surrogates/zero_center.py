"""Zero-centre quantization with partial stop-gradient (methods.md §3, after arXiv 2309.17051).

``ŷ = Q(y − μ_in) + μ_out`` with ``μ_in = sg(μ)`` when ``stop_inner`` and ``μ_out = sg(μ)`` when ``stop_outer``
(``μ`` itself otherwise), ``Q`` a quantizer surrogate of :mod:`fcm.surrogates.quantization` chosen by ``mode``.
Every surrogate there has ``∂Q/∂x = I`` except ``"round"`` (zero), so the gradient reaching ``μ`` from ``ŷ`` is

    ∂ŷ/∂μ = −[not stop_inner]·Q' + [not stop_outer]·I,   Q' = I (noise/ste/sua) or 0 (round).

Without stop-gradient (and a straight-through ``Q``) the two branches cancel and ``μ`` learns nothing from the
reconstruction; the default stops the inner branch (``ŷ = Q(y − sg(μ)) + μ``: ``∂ŷ/∂μ = I``), the partial
stop-gradient that lowers the gradient variance reaching the entropy model's mean. ``∂ŷ/∂y = Q'`` in every case.
"""

from __future__ import annotations

import torch
from torch import nn

from fcm.errors import ConfigError
from fcm.surrogates.quantization import QUANTIZER_MODES, QuantizerMode, _check_temperature, quantize_surrogate


class ZeroCenterQuantizer(nn.Module):
    """``ŷ = Q(y − μ_in) + μ_out`` (module doc); ``forward(y, mu)``, ``mu`` broadcastable to ``y``.

    Args:
        mode: ``"noise" | "ste" | "sua" | "round"``, applied in training and eval alike (explicit on purpose:
            switch it for evaluation, e.g. to ``"round"``).
        stop_inner: stop the gradient of μ inside the quantizer (``y − sg(μ)``). Default True.
        stop_outer: stop the gradient of μ added back (``… + sg(μ)``). Default False.
        temperature: SUA's T when ``mode="sua"``.
    """

    def __init__(
        self, mode: QuantizerMode, stop_inner: bool = True, stop_outer: bool = False, temperature: float = 1.0
    ) -> None:
        super().__init__()
        if mode not in QUANTIZER_MODES:
            raise ConfigError(f"quantizer mode must be one of {', '.join(QUANTIZER_MODES)}; got {mode!r}")
        self.mode: QuantizerMode = mode
        self.stop_inner = bool(stop_inner)
        self.stop_outer = bool(stop_outer)
        self.temperature = _check_temperature(temperature)

    def forward(self, y: torch.Tensor, mu: torch.Tensor) -> torch.Tensor:
        mu_inner = mu.detach() if self.stop_inner else mu
        mu_outer = mu.detach() if self.stop_outer else mu
        return quantize_surrogate(y - mu_inner, self.mode, 1.0, self.temperature) + mu_outer

    def extra_repr(self) -> str:
        return f"mode={self.mode!r}, stop_inner={self.stop_inner}, stop_outer={self.stop_outer}"
