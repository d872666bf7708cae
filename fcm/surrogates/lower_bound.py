"""A lower bound for scales (as CompressAI's ``LowerBound``, default bound 0.11 as in CompressAI's Gaussian model).

Forward: ``max(x, bound)``. Backward: the incoming gradient ``g`` passes where ``x ≥ bound`` **or** ``g < 0`` (a
descent step ``x ← x − lr·g`` would raise ``x``), and is zero elsewhere; so a scale stuck under the bound can still
be pushed back up, which a plain ``clamp`` (zero gradient below the bound) would not allow.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from fcm.errors import ConfigError

DEFAULT_SCALE_BOUND = 0.11


class _LowerBoundFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, bound: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(x, bound)
        return torch.max(x, bound)

    @staticmethod
    def backward(ctx: Any, *grad_outputs: torch.Tensor) -> tuple[torch.Tensor, None]:
        (grad,) = grad_outputs
        x, bound = ctx.saved_tensors
        passes = (x >= bound) | (grad < 0)
        return grad * passes.to(grad.dtype), None


def lower_bound(x: torch.Tensor, bound: float | torch.Tensor) -> torch.Tensor:
    """``max(x, bound)`` with the pass-through gradient of the module doc."""
    bound_tensor = torch.as_tensor(bound, dtype=x.dtype, device=x.device)
    out = _LowerBoundFunction.apply(x, bound_tensor)
    assert isinstance(out, torch.Tensor)
    return out


class LowerBound(nn.Module):
    """``max(x, bound)``; gradient passes where ``x ≥ bound`` or the gradient pushes ``x`` up (module doc)."""

    bound: torch.Tensor

    def __init__(self, bound: float = DEFAULT_SCALE_BOUND) -> None:
        super().__init__()
        if not torch.isfinite(torch.tensor(bound)):
            raise ConfigError(f"lower bound must be finite, got {bound}")
        self.register_buffer("bound", torch.tensor(float(bound)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return lower_bound(x, self.bound.to(x.dtype))

    def extra_repr(self) -> str:
        return f"bound={float(self.bound)}"
