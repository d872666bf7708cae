"""A small Faster R-CNN that works offline: EfficientNet-Lite0 body, a 4-level FPN and torchvision's RPN and RoI
heads, trained on the generated shapes dataset (:mod:`fcm.data.shapes`) by ``tools/train_detector.py``.

The FPN takes the ends of stages 2, 3, 5 and 7 of the Lite0 body (24, 40, 112 and 320 channels at strides 4, 8, 16
and 32) and gives P2–P5 with :data:`FPN_CHANNELS` channels each, plus P6 by max-pooling P5 (torchvision's
``LastLevelMaxPool``), so the ``fpn`` split is the same cut as the ResNet-50 R-CNNs': P2–P5 are sent, P6 is
recomputed in the cloud. Inputs are normalised as the Lite0 weights expect, ``(x·255 − 127) / 128``.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

from fcm.models.efficientnet_lite import EfficientNetLite0

#: channels of every FPN level (kept small: the whole detector is a few MB)
FPN_CHANNELS = 96
#: Lite0 stages whose ends feed the FPN (1-based), giving strides 4, 8, 16, 32
FPN_STAGES = (2, 3, 5, 7)
_STAGE_CHANNELS = {2: 24, 3: 40, 5: 112, 7: 320}
#: the detector's input size: images are resized so the short side is this (and the long side at most this)
IMAGE_SIZE = 256


class Lite0FPN(nn.Module):
    """Lite0 body + FPN: ``forward(images)`` → ``OrderedDict`` of P2–P5 (keys ``"0"``–``"3"``) and P6 (``"pool"``),
    as torchvision's detection heads take them."""

    def __init__(self, out_channels: int = FPN_CHANNELS) -> None:
        super().__init__()
        from torchvision.ops.feature_pyramid_network import FeaturePyramidNetwork, LastLevelMaxPool

        self.body = EfficientNetLite0()
        del self.body._conv_head, self.body._bn1, self.body._fc  # the classifier head is not used
        self.fpn = FeaturePyramidNetwork(
            [_STAGE_CHANNELS[s] for s in FPN_STAGES], out_channels, extra_blocks=LastLevelMaxPool()
        )
        self.out_channels = out_channels

    def forward(self, x: torch.Tensor) -> OrderedDict[str, torch.Tensor]:
        feats: OrderedDict[str, torch.Tensor] = OrderedDict()
        x = self.body.stem(x)
        start = 0
        for stage, end in enumerate(self.body.stage_ends, start=1):
            x = self.body.run_blocks(x, start, end)
            start = end
            if stage in FPN_STAGES:
                feats[str(len(feats))] = x
        return self.fpn(feats)


def build_detector(
    num_classes: int, min_size: int = IMAGE_SIZE, max_size: int = IMAGE_SIZE, box_score_thresh: float = 0.05
) -> nn.Module:
    """The Faster R-CNN (``num_classes`` including the background), randomly initialised."""
    from torchvision.models.detection import FasterRCNN
    from torchvision.models.detection.anchor_utils import AnchorGenerator
    from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead

    backbone = Lite0FPN()
    anchors = AnchorGenerator(sizes=((16,), (32,), (64,), (128,), (256,)), aspect_ratios=((0.5, 1.0, 2.0),) * 5)
    return FasterRCNN(
        backbone,
        min_size=min_size,
        max_size=max_size,
        image_mean=[127 / 255] * 3,
        image_std=[128 / 255] * 3,
        rpn_anchor_generator=anchors,
        box_head=TwoMLPHead(backbone.out_channels * 7 * 7, 256),
        box_predictor=FastRCNNPredictor(256, num_classes),
        box_score_thresh=box_score_thresh,
        box_detections_per_img=100,
        # a 256-pixel image holds a handful of objects: fewer proposals and sampled RoIs than COCO's defaults
        rpn_pre_nms_top_n_train=1000,
        rpn_post_nms_top_n_train=500,
        rpn_pre_nms_top_n_test=500,
        rpn_post_nms_top_n_test=300,
        box_batch_size_per_image=128,
    )
