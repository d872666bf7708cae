"""Shared pieces of image classifiers: ImageNet-style preprocessing and top-k output."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from fcm.models.base import SplitModel, check_image


def imagenet_categories() -> tuple[str, ...]:
    from torchvision.models._meta import _IMAGENET_CATEGORIES  # shipped with torchvision, no download

    return tuple(_IMAGENET_CATEGORIES)


class ClassifierSplit(SplitModel):
    """Base for classifiers: resize the short side, centre-crop, normalise; outputs are logits ``N×K``."""

    task = "classification"
    back_meta = ()  # the head needs nothing but the tensors
    resize_size: int = 256
    crop_size: int = 224
    mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    std: tuple[float, float, float] = (0.229, 0.224, 0.225)

    def prepare(self, image: np.ndarray) -> torch.Tensor:
        arr = check_image(image)
        x = torch.from_numpy(arr.copy()).permute(2, 0, 1)[None].float() / 255.0
        h, w = x.shape[-2:]
        scale = self.resize_size / min(h, w)
        size = (max(self.crop_size, round(h * scale)), max(self.crop_size, round(w * scale)))
        x = F.interpolate(x, size=size, mode="bicubic", align_corners=False, antialias=True).clamp_(0, 1)
        top = (size[0] - self.crop_size) // 2
        left = (size[1] - self.crop_size) // 2
        x = x[:, :, top : top + self.crop_size, left : left + self.crop_size]
        mean = torch.tensor(self.mean).view(1, 3, 1, 1)
        std = torch.tensor(self.std).view(1, 3, 1, 1)
        return (x - mean) / std

    def describe(self, output: Any, top_k: int = 5) -> list[dict[str, Any]]:
        probs = torch.as_tensor(output).float().softmax(dim=1)
        k = min(top_k, probs.shape[1])
        values, indices = probs.topk(k, dim=1)
        records = []
        for vals, idxs in zip(values.tolist(), indices.tolist(), strict=True):
            records.append(
                {
                    "top": [
                        {
                            "class_id": i,
                            "label": self.categories[i] if i < len(self.categories) else str(i),
                            "probability": round(v, 6),
                        }
                        for v, i in zip(vals, idxs, strict=True)
                    ]
                }
            )
        return records
