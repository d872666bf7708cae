"""COCO box/mask AP under resampled images: what a bootstrap interval of a detection mAP needs.

COCO mAP is not a mean over images (detections of every image are ranked together), so images cannot be resampled
by averaging per-image scores. Instead the per-image matching (``COCOeval.evaluate``: which detection matches which
ground truth at each IoU threshold) is computed **once**, and a resample that takes image ``i`` ``w_i`` times is
scored by re-accumulating those matches with each image counted ``w_i`` times: every detection of image ``i`` adds
``w_i`` to the running true/false-positive counts, and the image's ground truth adds ``w_i`` per box to the count of
positives. That is exactly pycocotools' ``accumulate`` on a dataset in which image ``i`` appears ``w_i`` times (up
to the order of exactly tied scores), area range ``all``, the largest ``maxDets``, 101 recall points, averaged over
IoU 0.50:0.95 and over the categories that have ground truth in the draw.

:class:`ImageWeightedAP` does this for many draws at once (vectorised over draws, in chunks so memory stays bounded);
with every weight 1 it equals pycocotools' AP (a test checks this to 1e-12).
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["ImageWeightedAP", "evaluate_coco"]

#: draws × IoU thresholds × detections handled at once (≈ 32 MB of float64)
_CHUNK_ELEMENTS = 1 << 22


@dataclass(frozen=True)
class _Category:
    """One category's detections over every image, in pycocotools' rank order (score descending, stable)."""

    image: np.ndarray  # (D,) position of each detection's image in the weight vector
    tp: np.ndarray  # (T, D) counted true positive at each IoU threshold
    fp: np.ndarray  # (T, D) counted false positive
    positives: np.ndarray  # (n,) non-ignored ground-truth boxes of each image


class ImageWeightedAP:
    """COCO AP@[.5:.95] (in %) of an evaluated ``COCOeval`` under image weights (module doc).

    ``image_ids``: the COCO image id of each column of the weight matrices :meth:`value` takes (e.g. the records'
    order); every one must have been evaluated.
    """

    def __init__(self, evaluated: Any, image_ids: Sequence[int]) -> None:
        p = evaluated.params
        evaluated_ids = list(p.imgIds)
        column = {image_id: n for n, image_id in enumerate(image_ids)}
        if len(column) != len(image_ids):
            raise ValueError("image ids repeat: each column of the weights must be one image")
        missing = sorted(set(image_ids) - set(evaluated_ids))
        if missing:
            raise ValueError(f"images {missing[:5]} were not evaluated")
        self.num_images = len(image_ids)
        self.recall_thresholds = np.asarray(p.recThrs, dtype=np.float64)
        area = 0  # "all": the first area range, the one COCOeval's AP@[.5:.95] summary uses
        max_det = p.maxDets[-1]
        n_images, n_areas = len(evaluated_ids), len(p.areaRng)
        self.categories: list[_Category] = []
        for k in range(len(p.catIds) if p.useCats else 1):
            base = k * n_areas * n_images + area * n_images
            entries = [(evaluated.evalImgs[base + i], evaluated_ids[i]) for i in range(n_images)]
            entries = [(e, image_id) for e, image_id in entries if e is not None and image_id in column]
            if not entries:
                continue
            scores = np.concatenate([np.asarray(e["dtScores"][:max_det], dtype=np.float64) for e, _ in entries])
            order = np.argsort(-scores, kind="mergesort")  # pycocotools' order
            matched = np.concatenate([e["dtMatches"][:, :max_det] for e, _ in entries], axis=1)[:, order] != 0
            ignored = np.concatenate([e["dtIgnore"][:, :max_det] for e, _ in entries], axis=1)[:, order] != 0
            image = np.concatenate(
                [np.full(len(e["dtScores"][:max_det]), column[image_id], dtype=np.int64) for e, image_id in entries]
            )[order]
            positives = np.zeros(self.num_images)
            for e, image_id in entries:
                positives[column[image_id]] += np.count_nonzero(np.asarray(e["gtIgnore"]) == 0)
            self.categories.append(_Category(image, matched & ~ignored, ~matched & ~ignored, positives))

    def value(self, weights: np.ndarray) -> np.ndarray:
        """AP (%) under each row of ``weights`` (``draws × images``: how often each image is taken); 0 where no
        category has ground truth in a draw (pycocotools' −1, counted as 0 as fcm's reports do)."""
        weights = np.asarray(weights, dtype=np.float64)
        if weights.ndim != 2 or weights.shape[1] != self.num_images:
            raise ValueError(f"weights must be draws × {self.num_images} images, got shape {weights.shape}")
        draws = weights.shape[0]
        total = np.zeros(draws)
        counted = np.zeros(draws)
        for cat in self.categories:
            positives = weights @ cat.positives  # (draws,)
            has_truth = positives > 0
            size = max(1, cat.tp.shape[0] * max(1, cat.image.size))
            chunk = max(1, _CHUNK_ELEMENTS // size)
            for start in range(0, draws, chunk):
                part = slice(start, min(draws, start + chunk))
                precision = self._precision_sum(weights[part], positives[part], cat)
                total[part] += np.where(has_truth[part], precision, 0.0)
                counted[part] += np.where(has_truth[part], cat.tp.shape[0] * self.recall_thresholds.size, 0)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(counted > 0, 100.0 * total / np.maximum(counted, 1), 0.0)

    def _precision_sum(self, weights: np.ndarray, positives: np.ndarray, cat: _Category) -> np.ndarray:
        """Sum over IoU thresholds and recall points of the interpolated precision, per draw (``(draws,)``)."""
        draws, (thresholds, detections) = weights.shape[0], cat.tp.shape
        if detections == 0:
            return np.zeros(draws)
        w = weights[:, cat.image][:, None, :]  # (draws, 1, D)
        tp = np.cumsum(w * cat.tp[None], axis=2)
        fp = np.cumsum(w * cat.fp[None], axis=2)
        recall = tp / np.maximum(positives, 1e-300)[:, None, None]
        precision = tp / (tp + fp + np.spacing(1))
        # the precision envelope: the best precision at this recall or beyond
        envelope = np.maximum.accumulate(precision[..., ::-1], axis=2)[..., ::-1]
        # the first rank whose recall reaches each recall point, row by row (recall is non-decreasing along a row);
        # compared as pycocotools compares them, float for float: a recall exactly on a recall point must not move
        rows = draws * thresholds
        flat_recall = recall.reshape(rows, detections)
        first = np.stack([np.searchsorted(row, self.recall_thresholds, side="left") for row in flat_recall])
        inside = first < detections
        picked = np.take_along_axis(envelope.reshape(rows, detections), np.minimum(first, detections - 1), axis=1)
        q = np.where(inside, picked, 0.0)
        return q.reshape(draws, thresholds, -1).sum(axis=(1, 2))


def evaluate_coco(gt: dict[str, Any], detections: list[dict[str, Any]], iou_type: str = "bbox") -> Any:
    """A pycocotools ``COCOeval`` of ``detections`` against ``gt`` (a COCO dataset dict), evaluated, accumulated and
    summarised over every image of ``gt`` (sorted ids), its progress output silenced."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints progress
        coco_gt = COCO()
        coco_gt.dataset = gt
        coco_gt.createIndex()
        coco_dt = coco_gt.loadRes(detections)
        ev = COCOeval(coco_gt, coco_dt, iou_type)
        ev.params.imgIds = sorted(im["id"] for im in gt["images"])
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return ev
