"""Wrappers around the inner codec: a pre-wrapper (edge) reduces the split tensors before packing, a post-wrapper
(cloud) restores them after unpacking.

A :class:`WrapperPair` is one trainable ``nn.Module`` holding both halves. It states:

* ``name`` — the registered architecture (``identity``, ``channel_reduction`` …);
* ``input_spec`` — the split tensors it takes (the model's :class:`~fcm.models.SplitSpec`);
* ``coded_spec`` — the tensors the pre-wrapper emits, which are packed and coded;
* ``weights_tag`` — a short checksum of its parameters (16 hex digits of SHA-256 over the state dict in a canonical
  byte order), written into bitstreams so a decoder refuses a stream coded with other weights.

``encode(tensors)`` and ``decode(tensors)`` map ordered ``{name: N×C×H×W}`` mappings; both are differentiable and run
in whatever grad mode the caller chose (inference call sites wrap them in ``torch.no_grad``).
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Mapping
from typing import Any, ClassVar

import torch
from torch import nn

from fcm.errors import ShapeError
from fcm.models.base import SplitSpec, TensorSpec

__all__ = ["WrapperPair", "check_tensors", "state_dict_tag"]

Tensors = Mapping[str, torch.Tensor]


def state_dict_tag(module: nn.Module) -> str:
    """16 hex digits of SHA-256 over every parameter and buffer (name, dtype, shape, little-endian bytes), in name
    order: equal tags mean equal weights, whatever the machine or the order tensors were created in."""
    digest = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        t = tensor.detach().cpu().contiguous()
        digest.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        digest.update(t.numpy().astype(t.numpy().dtype.newbyteorder("<"), copy=False).tobytes())
    return digest.hexdigest()[:16]


def check_tensors(tensors: Tensors, spec: SplitSpec, who: str) -> None:
    if tuple(tensors) != spec.names:
        raise ShapeError(f"{who} expects tensors {list(spec.names)}, got {list(tensors)}")
    for ts in spec.tensors:
        t = tensors[ts.name]
        if t.ndim != 4 or t.shape[1] != ts.channels:
            raise ShapeError(f"{who}: tensor {ts.name!r} must be N×{ts.channels}×H×W, got {tuple(t.shape)}")


class WrapperPair(nn.Module):
    """Pre- and post-wrapper of one split; subclasses build ``pre``/``post`` modules per tensor.

    Subclasses set :attr:`name`, implement :meth:`coded_tensor` (what one input tensor becomes) and :meth:`build`
    (the two halves for one tensor) and may take keyword options (recorded in :attr:`options` and in checkpoints).
    """

    name: ClassVar[str] = ""

    def __init__(self, input_spec: SplitSpec, **options: Any) -> None:
        super().__init__()
        self.input_spec = input_spec
        self.options = dict(options)
        coded = tuple(self.coded_tensor(ts) for ts in input_spec.tensors)
        self.coded_spec = SplitSpec(input_spec.model, input_spec.split, coded, f"{self.name} wrapper output")
        self.pre = nn.ModuleDict()
        self.post = nn.ModuleDict()
        for ts, cs in zip(input_spec.tensors, coded, strict=True):
            self.pre[ts.name], self.post[ts.name] = self.build(ts, cs)

    # -- what subclasses define ---------------------------------------------------------------------------------------

    def coded_tensor(self, ts: TensorSpec) -> TensorSpec:
        """The coded tensor that split tensor ``ts`` becomes (default: unchanged)."""
        return ts

    def build(self, ts: TensorSpec, coded: TensorSpec) -> tuple[nn.Module, nn.Module]:
        """``(pre, post)`` modules mapping ``ts`` to ``coded`` and back."""
        raise NotImplementedError

    def init_from_features(self, tensors: Tensors) -> None:
        """Initialise the weights from example split tensors (``N×C×H×W`` per name) before training."""

    # -- the contract -------------------------------------------------------------------------------------------------

    @property
    def weights_tag(self) -> str:
        return state_dict_tag(self)

    def encode(self, tensors: Tensors) -> OrderedDict[str, torch.Tensor]:
        """Split tensors → coded tensors (the edge half)."""
        check_tensors(tensors, self.input_spec, f"pre-wrapper {self.name!r}")
        out = OrderedDict()
        for ts, cs in zip(self.input_spec.tensors, self.coded_spec.tensors, strict=True):
            out[cs.name] = self.pre[ts.name](tensors[ts.name])
        return out

    def decode(self, tensors: Tensors) -> OrderedDict[str, torch.Tensor]:
        """Coded tensors (decoded) → split tensors for the back half (the cloud half)."""
        check_tensors(tensors, self.coded_spec, f"post-wrapper {self.name!r}")
        out = OrderedDict()
        for ts, cs in zip(self.input_spec.tensors, self.coded_spec.tensors, strict=True):
            out[ts.name] = self.post[ts.name](tensors[cs.name])
        return out

    def forward(self, tensors: Tensors) -> OrderedDict[str, torch.Tensor]:
        """``decode(encode(x))``: the pair without a codec between (training uses its own path with a surrogate)."""
        return self.decode(self.encode(tensors))

    def extra_repr(self) -> str:
        return f"name={self.name!r}, split={self.input_spec.model}/{self.input_spec.split}, options={self.options}"
