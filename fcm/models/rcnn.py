"""torchvision Faster R-CNN and Mask R-CNN (ResNet-50 FPN), split after the FPN.

Split ``fpn``: the edge runs the resize/normalise transform, the ResNet-50 body and the FPN, and sends P2–P5
(256 channels each, strides 4–32). P6 is never coded: the cloud recomputes it from P5 exactly as torchvision's
``LastLevelMaxPool`` does (max-pool, kernel 1, stride 2), then runs the RPN, the RoI heads and the postprocess that
maps boxes (and masks) back to the original image size. The resized and padded sizes travel as ``Features.meta``.

Weights come from a local file (nothing is downloaded): e.g. torchvision's ``fasterrcnn_resnet50_fpn_coco-258fb6c6.pth``
whose name carries its sha256 prefix, checked on load. Without weights the model is randomly initialised, which is
only good for tests and timing.
"""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from fcm.errors import ShapeError, UnknownNameError, WeightsError
from fcm.models.base import Features, SplitModel, SplitSpec, TensorSpec, check_image
from fcm.models.lite0_detector import FPN_CHANNELS, IMAGE_SIZE
from fcm.models.weights import load_into, load_state_dict

FPN_LEVELS = (("p2", "0", 4), ("p3", "1", 8), ("p4", "2", 16), ("p5", "3", 32))
SPLITS = ("fpn",)


def coco_categories() -> tuple[str, ...]:
    from torchvision.models._meta import _COCO_CATEGORIES  # 91 entries, index = COCO category id

    return tuple(_COCO_CATEGORIES)


class _RCNNSplit(SplitModel):
    """Shared implementation; subclasses set ``name``, ``task`` and the torchvision builder (or override
    :meth:`_build_net`, :attr:`fpn_channels` and the default sizes)."""

    builder_name = ""
    back_meta: tuple[str, ...] = ("original_size", "image_size", "batch_size")
    #: channels of each FPN level P2–P5
    fpn_channels = 256
    default_min_size = 800
    default_max_size = 1333

    def __init__(
        self,
        split: str = "fpn",
        weights: str | Path | None = None,
        sha256: str | None = None,
        min_size: int | None = None,
        max_size: int | None = None,
        box_score_thresh: float = 0.05,
    ) -> None:
        if split not in SPLITS:
            raise UnknownNameError(f"unknown split {split!r} of {self.name}; known: {', '.join(SPLITS)}")
        net = self._build_net(
            self.default_min_size if min_size is None else min_size,
            self.default_max_size if max_size is None else max_size,
            box_score_thresh,
        )
        if weights is None:
            weights, default_sha = self._default_weights()
            sha256 = sha256 or default_sha
        tag = "random"
        if weights is not None:
            state, digest = load_state_dict(weights, sha256)
            load_into(net, state, str(weights))
            tag = digest[:16]
        super().__init__(split, weights_tag=tag)
        self.net = net.eval()
        self.categories = self._categories()
        self._spec = SplitSpec(
            self.name,
            split,
            tuple(TensorSpec(name, self.fpn_channels, stride) for name, _, stride in FPN_LEVELS),
            "FPN outputs P2–P5; P6 is recomputed from P5 in the cloud",
        )

    def _build_net(self, min_size: int, max_size: int, box_score_thresh: float) -> Any:
        from torchvision.models import detection

        builder = getattr(detection, self.builder_name)
        return builder(
            weights=None,
            weights_backbone=None,
            num_classes=91,
            min_size=min_size,
            max_size=max_size,
            box_score_thresh=box_score_thresh,
        )

    def _default_weights(self) -> tuple[Path | None, str | None]:
        """Weights used when none are given and their sha256 (``None``: random initialisation)."""
        return None, None

    def _categories(self) -> tuple[str, ...]:
        return coco_categories()

    @classmethod
    def split_specs(cls) -> list[SplitSpec]:
        return [SplitSpec(cls.name, "fpn", tuple(TensorSpec(n, cls.fpn_channels, s) for n, _, s in FPN_LEVELS))]

    @property
    def spec(self) -> SplitSpec:
        return self._spec

    def prepare(self, image: np.ndarray) -> torch.Tensor:
        arr = check_image(image)
        return torch.from_numpy(arr.copy()).permute(2, 0, 1)[None].float() / 255.0

    def front(self, inputs: torch.Tensor) -> Features:
        if inputs.ndim != 4 or inputs.shape[0] != 1:
            raise ShapeError(f"{self.name} front takes one image as a 1×3×H×W tensor, got {tuple(inputs.shape)}")
        original = tuple(int(s) for s in inputs.shape[-2:])
        images, _ = self.net.transform(list(inputs))
        body = self.net.backbone(images.tensors)
        tensors = OrderedDict((name, body[key]) for name, key, _ in FPN_LEVELS)
        meta = {
            "original_size": original,
            "image_size": tuple(int(s) for s in images.image_sizes[0]),
            "batch_size": tuple(int(s) for s in images.tensors.shape[-2:]),
        }
        return Features(tensors, meta)

    def back(self, features: Features) -> Any:
        from torchvision.models.detection.image_list import ImageList

        features.check(self.spec)
        original, image_size, (batch_h, batch_w) = self._check_meta(features)
        fpn = OrderedDict((key, features.tensors[name]) for name, key, _ in FPN_LEVELS)
        fpn["pool"] = F.max_pool2d(fpn["3"], kernel_size=1, stride=2, padding=0)  # P6, as LastLevelMaxPool
        n = next(iter(fpn.values())).shape[0]
        # the RPN's anchor generator only reads the padded batch size: a zero-stride view costs no memory
        images = ImageList(torch.zeros(()).expand(n, 3, batch_h, batch_w), [image_size] * n)
        proposals, _ = self.net.rpn(images, fpn)
        detections, _ = self.net.roi_heads(fpn, proposals, images.image_sizes)
        return self.net.transform.postprocess(detections, images.image_sizes, [original] * n)

    def _check_meta(self, features: Features) -> tuple[tuple[int, int], ...]:
        """The three sizes the cloud half needs, checked against each other and against the P2–P5 shapes."""
        sizes = []
        for key in ("original_size", "image_size", "batch_size"):
            value = tuple(features.meta.get(key, ()))
            if len(value) != 2 or min(value) < 1 or max(value) > 1 << 15:
                raise ShapeError(f"{self.name} needs meta {key} = (height, width) > 0, got {value}")
            sizes.append(value)
        _, image_size, batch = sizes
        if image_size[0] > batch[0] or image_size[1] > batch[1]:
            raise ShapeError(f"{self.name}: image size {image_size} exceeds the padded batch size {batch}")
        for name, _, stride in FPN_LEVELS:
            expected = (-(-batch[0] // stride), -(-batch[1] // stride))
            got = tuple(features.tensors[name].shape[-2:])
            if got != expected:
                raise ShapeError(
                    f"{self.name}: {name} is {got}, but a {batch} batch gives {expected} at stride {stride}"
                )
        return tuple(sizes)

    def full(self, inputs: torch.Tensor) -> Any:
        return self.net(list(inputs))

    def front_batch(self, inputs: torch.Tensor) -> Features:
        """``front`` image by image (the transform resizes each), concatenated: the images must give one size."""
        parts = [self.front(x[None]) for x in inputs]
        sizes = {p.meta["batch_size"] for p in parts}
        if len(sizes) != 1:
            raise ShapeError(f"{self.name}: the batch's images give different padded sizes {sorted(sizes)}")
        tensors = OrderedDict((n, torch.cat([p.tensors[n] for p in parts])) for n in parts[0].tensors)
        return Features(tensors, dict(parts[0].meta))

    def distill_outputs(self, features: Features) -> torch.Tensor:
        """The RPN's objectness logits of every anchor of every level (P2–P6), ``N×A``: where the detector looks.
        Only the P2–P5 tensors are read (P6 is pooled from P5 as the back half does), no side information."""
        fpn = [features.tensors[name] for name, _, _ in FPN_LEVELS]
        fpn.append(F.max_pool2d(fpn[-1], kernel_size=1, stride=2, padding=0))
        objectness, _ = self.net.rpn.head(fpn)
        return torch.cat([o.flatten(1) for o in objectness], dim=1)

    def distill_loss(self, student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
        """Binary KL of the anchors' objectness (teacher ‖ student), averaged over anchors and images (nats per
        anchor: of the order of the ``mix`` loss's relative feature error, so neither term swamps the other)."""
        p = torch.sigmoid(teacher)
        cross = F.binary_cross_entropy_with_logits(student, p)
        entropy = F.binary_cross_entropy_with_logits(teacher, p)
        return cross - entropy

    def describe(self, output: Any, top_k: int = 100) -> list[dict[str, Any]]:
        records = []
        for det in output:
            items = []
            for box, label, score in list(
                zip(det["boxes"].tolist(), det["labels"].tolist(), det["scores"].tolist(), strict=True)
            )[:top_k]:
                label_name = self.categories[label] if label < len(self.categories) else str(label)
                items.append(
                    {
                        "label_id": label,
                        "label": label_name,
                        "score": round(score, 5),
                        "box_xyxy": [round(v, 2) for v in box],
                    }
                )
            records.append({"detections": items})
        return records


class FasterRCNNSplit(_RCNNSplit):
    name = "faster_rcnn_r50_fpn"
    task = "detection"
    builder_name = "fasterrcnn_resnet50_fpn"


class MaskRCNNSplit(_RCNNSplit):
    name = "mask_rcnn_r50_fpn"
    task = "instance_segmentation"
    builder_name = "maskrcnn_resnet50_fpn"


#: the trained weights that ship with fcm (``tools/train_detector.py`` makes them)
SHAPES_DETECTOR_WEIGHTS = Path(__file__).parent / "data" / "faster_rcnn_lite0_fpn_shapes.pth"
#: its sha256, checked on load (a damaged or swapped file is refused)
SHAPES_DETECTOR_SHA256 = "01481c4b0c096aec0a9fd9504cdaace8aeace4041f629757eb803ce0ee9b8738"


class Lite0ShapesDetectorSplit(_RCNNSplit):
    """The offline detector (:mod:`fcm.models.lite0_detector`): EfficientNet-Lite0 + FPN Faster R-CNN trained on the
    generated shapes dataset (:mod:`fcm.data.shapes`), 256-pixel inputs; its shipped weights load by default."""

    name = "faster_rcnn_lite0_fpn"
    task = "detection"
    fpn_channels = FPN_CHANNELS
    default_min_size = default_max_size = IMAGE_SIZE

    def _build_net(self, min_size: int, max_size: int, box_score_thresh: float) -> Any:
        from fcm.data.shapes import CATEGORIES
        from fcm.models.lite0_detector import build_detector

        return build_detector(len(CATEGORIES) + 1, min_size, max_size, box_score_thresh)

    def _default_weights(self) -> tuple[Path | None, str | None]:
        if not SHAPES_DETECTOR_WEIGHTS.is_file():
            raise WeightsError(
                f"the shipped weights of {self.name} are missing ({SHAPES_DETECTOR_WEIGHTS}); reinstall fcm, or make "
                "them with python tools/train_detector.py, or pass weights=PATH"
            )
        return SHAPES_DETECTOR_WEIGHTS, SHAPES_DETECTOR_SHA256

    def _categories(self) -> tuple[str, ...]:
        from fcm.data.shapes import CATEGORIES

        return ("__background__", *CATEGORIES)
