"""What a network half costs to run: multiply–accumulates and parameters, counted by torch itself.

MACs come from :class:`torch.utils.flop_counter.FlopCounterMode`, which counts the FLOPs of every convolution and
matrix product dispatched while the function runs (``2 × MACs`` by its convention; element-wise operations, pooling
and normalisation are not counted, as in the published MAC figures of classification networks). Parameters are the
distinct ``nn.Parameter`` tensors the function actually reads, found by a :class:`torch.overrides.TorchFunctionMode`,
so the count belongs to the half that ran and not to the whole model object.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.overrides import TorchFunctionMode
from torch.utils.flop_counter import FlopCounterMode

__all__ = ["ComputeCost", "measure_cost"]


@dataclass(frozen=True)
class ComputeCost:
    """Multiply–accumulates of one call and the parameters it read."""

    macs: int
    params: int


class _ParameterRecorder(TorchFunctionMode):
    """Records every ``nn.Parameter`` passed to a torch function (convolutions, linear layers, norms …)."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: dict[int, int] = {}

    def __torch_function__(self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        kwargs = kwargs or {}
        for value in (*args, *kwargs.values()):
            for tensor in value if isinstance(value, (list, tuple)) else (value,):
                if isinstance(tensor, nn.Parameter):
                    self.seen[id(tensor)] = tensor.numel()
        return func(*args, **kwargs)


def measure_cost(fn: Callable[..., Any], *args: Any) -> ComputeCost:
    """Run ``fn(*args)`` once under ``torch.no_grad`` and count its MACs and the parameters it used."""
    recorder = _ParameterRecorder()
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter, recorder:
        fn(*args)
    return ComputeCost(macs=int(counter.get_total_flops()) // 2, params=int(sum(recorder.seen.values())))
