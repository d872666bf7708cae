"""Straight-through estimators: the forward value of a non-differentiable map, the gradient of the identity.

``ŷ = f(sg(y)) + (y − sg(y))``, sg = stop-gradient (``detach``). This is the textbook ``ŷ = y + sg(f(y) − y)``
written so that the forward value is ``f(y)`` **bit-exactly** (``y + (f(y) − y)`` can differ from ``f(y)`` by a
rounding error in floating point, while ``y − sg(y)`` is exactly zero for finite ``y``). Jacobian: ``∂ŷ/∂y = I``.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

TensorMap = Callable[[torch.Tensor], torch.Tensor]


def straight_through(y: torch.Tensor, f_of_y: torch.Tensor) -> torch.Tensor:
    """``f_of_y + (y − sg(y))``: the value ``f_of_y`` exactly, with an identity gradient to ``y``.

    ``f_of_y`` is ``f(y)`` computed elsewhere (e.g. by a codec on a detached copy); it must have ``y``'s shape.
    Any gradient ``f_of_y`` itself carries is cut.
    """
    if f_of_y.shape != y.shape:
        raise ValueError(f"f(y) has shape {tuple(f_of_y.shape)}, y has {tuple(y.shape)}")
    return f_of_y.detach().to(y.dtype) + (y - y.detach())


class StraightThrough(nn.Module):
    """``ŷ = f(sg(y)) + (y − sg(y))``: forward ``f(y)`` exactly, gradient the identity.

    ``f`` is any function of a detached tensor returning a tensor of the same shape (rounding, a real codec …);
    it is called under ``torch.no_grad()``.
    """

    def __init__(self, f: TensorMap) -> None:
        super().__init__()
        self.f = f

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            f_of_y = self.f(y.detach())
        return straight_through(y, f_of_y)


class RoundSTE(StraightThrough):
    """Straight-through rounding: ``ŷ = round(y)`` in value (round half to even, ``torch.round``), ``∂ŷ/∂y = I``."""

    def __init__(self) -> None:
        super().__init__(torch.round)
