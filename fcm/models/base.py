"""Split models: the contract every registered model meets.

A :class:`SplitModel` is a vision network already cut at one named split point. It publishes what crosses the cut
(:class:`SplitSpec`, in the spirit of detectron2's ``Backbone.output_shape()``) and runs its two halves:

- ``prepare(image)``: an ``H×W×3`` ``uint8`` RGB image → the model's input batch (``1×3×h×w`` float tensor);
- ``front(inputs) -> Features``: the edge half; ``Features.tensors`` is an ordered mapping of named ``N×C×H×W``
  tensors (exactly the tensors of the spec, in spec order) and ``Features.meta`` the small integer side
  information the back half needs (e.g. the resized image size of a detector);
- ``back(features) -> output``: the cloud half, finishing the task (classifier logits ``N×K``; detector: a list of
  torchvision-style dicts with ``boxes``, ``labels``, ``scores`` and, for Mask R-CNN, ``masks``);
- ``full(inputs)``: the unsplit model, for reference; ``back(front(x))`` equals ``full(x)`` to float tolerance;
- ``distill_outputs(features)`` / ``distill_loss(student, teacher)``: what wrapper training distils (no labels): a
  differentiable tensor the back half computes from the split tensors (a classifier's logits; a detector's RPN
  objectness logits of every anchor) and the divergence of a student's from the uncompressed teacher's.

A split model is an :class:`torch.nn.Module` whose network is a submodule, so ``.parameters()``, ``.train()`` /
``.eval()`` and ``.to()`` reach it. It is built in ``eval()`` mode (BatchNorm uses its running statistics), and its
halves are differentiable: ``back(front(x))`` records an autograd graph unless the caller turns gradients off. The
inference drivers (:mod:`fcm.pipeline`, the sweep, the CLI) therefore call them under ``torch.no_grad()`` (not
``torch.inference_mode()``, whose tensors could never enter a later autograd graph, e.g. to train a wrapper on cached
features). The models know nothing of packing or codecs.
"""

from __future__ import annotations

from abc import ABCMeta, abstractmethod
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from fcm.errors import ShapeError


@dataclass(frozen=True)
class TensorSpec:
    """One tensor crossing the split: its name, channel count and stride relative to the model input."""

    name: str
    channels: int
    stride: int

    def shape_for(self, input_height: int, input_width: int) -> tuple[int, int, int]:
        """``(C, H, W)`` of this tensor for a model input of the given size (ceil division, as conv nets do)."""
        return (self.channels, -(-input_height // self.stride), -(-input_width // self.stride))


@dataclass(frozen=True)
class SplitSpec:
    """What a split point publishes: the model, the split's name and the tensors that leave the edge."""

    model: str
    split: str
    tensors: tuple[TensorSpec, ...]
    description: str = ""

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(t.name for t in self.tensors)


@dataclass
class Features:
    """The tensors that cross the split, plus the integer side information the back half needs."""

    tensors: OrderedDict[str, torch.Tensor]
    meta: dict[str, tuple[int, ...]] = field(default_factory=dict)

    def check(self, spec: SplitSpec) -> None:
        """Raise :class:`ShapeError` unless the tensors are exactly the spec's, with the spec's channels."""
        if tuple(self.tensors) != spec.names:
            raise ShapeError(
                f"split {spec.model}/{spec.split} expects tensors {list(spec.names)}, got {list(self.tensors)}"
            )
        for ts in spec.tensors:
            t = self.tensors[ts.name]
            if t.ndim != 4 or t.shape[1] != ts.channels:
                raise ShapeError(
                    f"tensor {ts.name!r} of split {spec.model}/{spec.split} must be N×{ts.channels}×H×W, "
                    f"got {tuple(t.shape)}"
                )


class SplitModel(nn.Module, metaclass=ABCMeta):
    """A model cut at one split point. See the module docstring for the contract.

    Subclasses assign their network(s) as attributes after ``super().__init__`` so they become submodules, in
    ``eval()`` mode like the split model itself.
    """

    #: registry name of the model
    name: str = ""
    #: a task registered in :mod:`fcm.tasks` (what the back half returns, how it is scored)
    task: str = "classification"
    #: class names indexed by label id (ImageNet, COCO, ...), for human-readable output
    categories: tuple[str, ...] = ()
    #: the side-information keys :meth:`back` reads (``None``: any); streams whose features differ only in other
    #: keys (e.g. the ``input_size`` every stream carries for bpp) can share one batched back-half call
    back_meta: tuple[str, ...] | None = None

    def __init__(self, split: str, weights_tag: str) -> None:
        super().__init__()
        self.eval()
        self.split = split
        #: short identifier of the weights in use (sha256 prefix, or "random"); written into bitstreams
        self.weights_tag = weights_tag

    @property
    @abstractmethod
    def spec(self) -> SplitSpec: ...

    @abstractmethod
    def prepare(self, image: np.ndarray) -> torch.Tensor: ...

    @abstractmethod
    def front(self, inputs: torch.Tensor) -> Features: ...

    @abstractmethod
    def back(self, features: Features) -> Any: ...

    @abstractmethod
    def full(self, inputs: torch.Tensor) -> Any: ...

    @abstractmethod
    def describe(self, output: Any, top_k: int = 5) -> list[dict[str, Any]]:
        """Turn the task output into JSON-ready records, one per input (top-k classes, or detections)."""

    def front_batch(self, inputs: torch.Tensor) -> Features:
        """``front`` of an ``N×3×h×w`` batch (a model whose ``front`` takes one image at a time loops)."""
        return self.front(inputs)

    def distill_outputs(self, features: Features) -> torch.Tensor:
        """The back half's differentiable outputs that training distils, ``N×…`` (a classifier's logits)."""
        return torch.as_tensor(self.back(features))

    def distill_loss(self, student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
        """``KL(p_teacher ‖ p_student)`` of the class distributions, averaged over the batch (nats per image)."""
        return nn.functional.kl_div(
            nn.functional.log_softmax(student, dim=1),
            nn.functional.log_softmax(teacher, dim=1),
            reduction="batchmean",
            log_target=True,
        )


def check_image(image: np.ndarray) -> np.ndarray:
    """Validate an RGB ``uint8`` image (grey images are replicated to 3 channels, RGBA loses alpha)."""
    arr = np.asarray(image)
    if arr.ndim == 2:
        arr = np.repeat(arr[:, :, None], 3, axis=2)
    if arr.ndim != 3 or arr.shape[2] not in (3, 4):
        raise ShapeError(f"expected an H×W×3 RGB image, got an array of shape {arr.shape}")
    if arr.dtype != np.uint8:
        raise ShapeError(f"expected a uint8 image, got dtype {arr.dtype}")
    if arr.shape[0] < 8 or arr.shape[1] < 8:
        raise ShapeError(f"image of {arr.shape[1]}×{arr.shape[0]} pixels is too small (min 8×8)")
    return np.ascontiguousarray(arr[:, :, :3])
