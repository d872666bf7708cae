"""The training objective: task loss + λ · rate proxy.

* ``output`` — ``KL(p_teacher ‖ p_student)`` of the classifier's softmax, averaged over the batch (``batchmean``,
  natural log: nats per image), with ``p_teacher`` the uncompressed model's prediction on the same crop (distillation:
  no labels needed) and ``p_student`` the back half's on the restored tensors. Training takes it from the model
  (:meth:`fcm.models.base.SplitModel.distill_loss`), so a detector distils its own outputs (RPN objectness).
* ``features`` — mean squared error of the restored split tensors against the uncompressed ones, averaged over every
  element of every tensor (tensors weighted by their element counts).
* ``mix`` — ``output`` plus the ``features`` error divided by the uncompressed tensors' mean square (a relative
  error, so neither term's units decide the balance): the KL aims the wrapper at the task, the feature term keeps
  it restoring the split tensors themselves where a few training photos cannot say what the task needs.

Rate: ``bits / (N · input_pixels)`` — the rate proxy's bits of the batch per pixel of the model input (bits per
pixel, as fcm reports rates), so λ does not depend on the batch size or on how large the wrapper's frames are.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.nn.functional as F


def feature_error(student: Mapping[str, torch.Tensor], teacher: Mapping[str, torch.Tensor]) -> torch.Tensor:
    """The ``features`` loss (module doc): mean squared error over every element of every split tensor."""
    squared = torch.stack([F.mse_loss(student[k], teacher[k], reduction="sum") for k in teacher]).sum()
    count = sum(t.numel() for t in teacher.values())
    return squared / count


def relative_feature_error(student: Mapping[str, torch.Tensor], teacher: Mapping[str, torch.Tensor]) -> torch.Tensor:
    """The ``features`` loss divided by the teacher tensors' mean square (the ``mix`` loss's feature term)."""
    power = torch.stack([t.detach().square().sum() for t in teacher.values()]).sum()
    count = sum(t.numel() for t in teacher.values())
    return feature_error(student, teacher) / (power / count).clamp_min(1e-12)


def rate_per_pixel(rate_bits: torch.Tensor, input_pixels: int) -> torch.Tensor:
    """Rate proxy bits of a batch (``(N,)``) → bits per input pixel."""
    return rate_bits.sum() / (rate_bits.shape[0] * input_pixels)
