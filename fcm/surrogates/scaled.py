"""SCALED: the surrogate gradient of a real codec that is a projector (methods.md §2).

With ``φ`` the real codec (run without gradient on a detached copy), ``ε = φ(y) − y`` and ``sg`` the stop-gradient,
SCALED is ``ŷ = y + sg(ε)·σ(ε)/sg(σ(ε))`` with ``σ`` the standard deviation of ``ε`` over a reduction set ``R`` (by
default one plane of one sample: the last two dims). The implementation here is

    ŷ = sg(φ(y)) + (y − sg(y)) + (t − sg(t)),   t = sg(ε)·σ_δ(ε_y)/sg(σ_δ(ε_y)),   ε_y = sg(φ(y)) − y,

where both added terms are exactly zero in value, so **the forward value is φ(y) bit-exactly**, and
``σ_δ(e) = sqrt(var_R(e) + δ)`` with ``var_R(e) = (1/N)·Σ_R (e − ē)²`` (population variance, N = |R|).

Jacobian (per reduction set, ``ε`` and ``v = ε − ε̄`` as vectors over R; ``∂ε_y/∂y = −I``, ``∂σ_δ/∂y = −v/(N σ_δ)``):

    J = ∂ŷ/∂y = I − ε vᵀ / (N σ_δ²) = I − ε vᵀ / (‖v‖² + N δ),

so the vector–Jacobian product (what backward computes) is ``∂L/∂y = g − v·(εᵀg)/(‖v‖² + Nδ)``. For ``δ = 0`` this
is methods.md's ``g − v·(εᵀg)/‖v‖²``; since ``vᵀε = ‖v‖²``, ``J² = J`` and ``Jε = 0``: an (oblique) projector,
eigenvalues {0, 1}. The guard ``δ > 0`` keeps it finite on lossless or flat pictures (``‖v‖ → 0``), where
``J → I``: SCALED tends to the straight-through estimator; for ``‖v‖² ≫ Nδ`` it is the projector up to
``O(Nδ/‖v‖²)`` (``Jε = ε·Nδ/(‖v‖² + Nδ)``). δ is in squared codec-sample units. ``δ = 0`` is allowed but gives
NaN where ``ε`` is constant over a reduction set.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn

from fcm.errors import ConfigError

TensorMap = Callable[[torch.Tensor], torch.Tensor]

#: default reduction dims: one plane (H×W) of one sample, for N×H×W and N×C×H×W alike
DEFAULT_DIMS: tuple[int, ...] = (-2, -1)
#: default σ guard δ (squared codec-sample units; a 10-bit codec's error variance is ≳ 0.1 at any lossy QP)
DEFAULT_DELTA = 1e-6


def scaled_estimate(
    y: torch.Tensor, phi_of_y: torch.Tensor, dims: Sequence[int] = DEFAULT_DIMS, delta: float = DEFAULT_DELTA
) -> torch.Tensor:
    """SCALED with a precomputed codec output ``phi_of_y`` (= φ(y), same shape as ``y``; any gradient it carries
    is cut). Value: ``phi_of_y`` exactly. Gradient: ``g − v·(εᵀg)/(‖v‖² + Nδ)`` per reduction set (module doc)."""
    if phi_of_y.shape != y.shape:
        raise ValueError(f"φ(y) has shape {tuple(phi_of_y.shape)}, y has {tuple(y.shape)}")
    dims = tuple(dims)
    phi = phi_of_y.detach().to(y.dtype)
    eps_const = phi - y.detach()
    eps_live = phi - y  # carries ∂ε/∂y = −I into σ
    centred = eps_live - eps_live.mean(dim=dims, keepdim=True)
    sigma = torch.sqrt((centred * centred).mean(dim=dims, keepdim=True) + delta)
    term = eps_const * (sigma / sigma.detach())
    # both corrections are 0 in value (x − x = 0 exactly for finite x), so the sum is φ(y) bit for bit
    return phi + (y - y.detach()) + (term - term.detach())


class Scaled(nn.Module):
    """SCALED surrogate around a non-differentiable map ``phi`` (a real codec, or any function of detached data).

    ``forward(y)`` returns φ(y) exactly in value, with the projector gradient of :func:`scaled_estimate`:
    ``∂L/∂y = g − v·(εᵀg)/(‖v‖² + Nδ)``, ``ε = φ(y) − y``, ``v = ε − ε̄`` over each reduction set.

    Args:
        phi: called once per forward under ``torch.no_grad()`` on ``y.detach()``; returns a tensor of ``y``'s shape.
        dims: the reduction set of σ (default ``(-2, -1)``: per sample and plane).
        delta: σ guard δ ≥ 0 in ``σ_δ = sqrt(var(ε) + δ)``.
    """

    def __init__(self, phi: TensorMap, dims: Sequence[int] = DEFAULT_DIMS, delta: float = DEFAULT_DELTA) -> None:
        super().__init__()
        if not delta >= 0:
            raise ConfigError(f"SCALED's σ guard δ must be ≥ 0, got {delta}")
        if not dims:
            raise ConfigError("SCALED needs at least one reduction dim")
        self.phi = phi
        self.dims = tuple(dims)
        self.delta = float(delta)

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            phi_of_y = self.phi(y.detach())
        return scaled_estimate(y, phi_of_y, self.dims, self.delta)
