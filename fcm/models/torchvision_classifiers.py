"""torchvision classifiers split with :func:`fcm.models.fx_split.split_at`.

Registered names (``resnet18``, ``resnet50``, ``mobilenet_v3_large``) accept the stage names listed in ``SPLITS``
and also any valid graph node name of the model (``fcm models --nodes resnet50`` lists them). Weights come from a
local torchvision checkpoint (its file name's sha256 prefix is checked); without one the network is randomly
initialised.
"""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path
from typing import Any

import torch

from fcm.models.base import Features, SplitSpec, TensorSpec
from fcm.models.classifier import ClassifierSplit, imagenet_categories
from fcm.models.fx_split import split_at
from fcm.models.weights import load_into, load_state_dict

#: named stage outputs offered for each registered architecture
SPLITS: dict[str, tuple[str, ...]] = {
    "resnet18": ("layer1", "layer2", "layer3", "layer4"),
    "resnet50": ("layer1", "layer2", "layer3", "layer4"),
    "mobilenet_v3_large": ("features.3", "features.6", "features.12", "features.16"),
}


def _probe_spec(model_name: str, split: str, net: torch.nn.Module, front: torch.nn.Module) -> SplitSpec:
    size = 224
    with torch.no_grad():
        y = front(torch.zeros(1, 3, size, size))
    return SplitSpec(model_name, split, (TensorSpec(split, int(y.shape[1]), size // int(y.shape[-1])),))


class TorchvisionClassifierSplit(ClassifierSplit):
    """A torchvision ImageNet classifier cut at a graph node."""

    def __init__(self, arch: str, split: str, weights: str | Path | None = None, sha256: str | None = None):
        import torchvision

        self.name = arch
        net = torchvision.models.get_model(arch, weights=None)
        tag = "random"
        if weights is not None:
            state, digest = load_state_dict(weights, sha256)
            load_into(net, state, str(weights))
            tag = digest[:16]
        super().__init__(split, weights_tag=tag)
        self.net = net.eval()
        self.categories = imagenet_categories()
        # the halves share ``net``'s submodules but are no submodules of this model: ``net`` alone owns the
        # parameters (one copy in ``state_dict``); ``train`` below keeps the halves' graphs in step with the mode
        self._split = split_at(self.net, split)
        self._spec = _probe_spec(arch, split, self.net, self._split.front)

    @classmethod
    def split_specs_for(cls, arch: str) -> list[SplitSpec]:
        return [cls(arch, s).spec for s in SPLITS[arch]]

    @property
    def spec(self) -> SplitSpec:
        return self._spec

    def train(self, mode: bool = True) -> TorchvisionClassifierSplit:
        super().train(mode)
        if hasattr(self, "_split"):  # nn.Module.__init__ sets the mode before the split exists
            self._split.train(mode)
        return self

    def front(self, inputs: torch.Tensor) -> Features:
        return Features(OrderedDict([(self.split, self._split.front(inputs))]))

    def back(self, features: Features) -> Any:
        features.check(self.spec)
        return self._split.back(features.tensors[self.split])

    def full(self, inputs: torch.Tensor) -> Any:
        return self.net(inputs)
