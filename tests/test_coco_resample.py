"""COCO AP under resampled images (fcm.eval.coco_resample) against pycocotools itself, and mAP bootstrap intervals."""

from __future__ import annotations

import numpy as np
import pytest

from fcm.eval.bootstrap import resample_points
from fcm.eval.coco_resample import ImageWeightedAP, evaluate_coco
from fcm.eval.points import InputSamples, OperatingPoint


def _detection_set(n_images: int, seed: int, noise: float = 2.0) -> tuple[dict, list[dict]]:
    """A COCO ground truth of ``n_images`` with 0–5 boxes of 3 categories each, and detections: jittered copies of
    most boxes (jitter ``noise`` px: matches at some IoU thresholds, not all), some with the wrong category, and
    false positives; continuous scores (no ties)."""
    rng = np.random.default_rng(seed)
    images, annotations, detections = [], [], []
    for i in range(1, n_images + 1):
        images.append({"id": i, "width": 200, "height": 200})
        for _ in range(int(rng.integers(0, 6))):
            x, y = rng.uniform(0, 150, 2)
            w, h = rng.uniform(12, 50, 2)
            c = int(rng.integers(1, 4))
            annotations.append(
                {"id": len(annotations) + 1, "image_id": i, "category_id": c, "bbox": [x, y, w, h], "area": w * h,
                 "iscrowd": 0}
            )  # fmt: skip
            if rng.random() < 0.85:
                jitter = rng.normal(0, noise, 4)
                label = c if rng.random() < 0.9 else int(rng.integers(1, 4))
                box = [x + jitter[0], y + jitter[1], max(2.0, w + jitter[2]), max(2.0, h + jitter[3])]
                detections.append({"image_id": i, "category_id": label, "bbox": box, "score": float(rng.random())})
        for _ in range(int(rng.integers(0, 3))):
            x, y = rng.uniform(0, 150, 2)
            detections.append(
                {"image_id": i, "category_id": int(rng.integers(1, 4)), "bbox": [x, y, 20.0, 20.0],
                 "score": float(rng.random() * 0.7)}
            )  # fmt: skip
    gt = {"images": images, "annotations": annotations, "categories": [{"id": c} for c in (1, 2, 3)]}
    return gt, detections


def _pycocotools_map(gt: dict, detections: list[dict]) -> float:
    return max(float(evaluate_coco(gt, detections).stats[0]), 0.0) * 100.0


def test_all_ones_weights_give_pycocotools_map():
    gt, dets = _detection_set(40, seed=0)
    ev = evaluate_coco(gt, dets)
    ids = [im["id"] for im in gt["images"]][::-1]  # any column order
    ap = ImageWeightedAP(ev, ids)
    (value,) = ap.value(np.ones((1, len(ids))))
    assert 10 < value < 90  # a set on which the value means something
    assert value == pytest.approx(float(ev.stats[0]) * 100.0, abs=1e-10)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_weights_equal_a_dataset_with_images_repeated(seed):
    """Counting image i w[i] times gives pycocotools' mAP of a dataset that holds w[i] copies of it (0: left out)."""
    gt, dets = _detection_set(25, seed=seed)
    ids = [im["id"] for im in gt["images"]]
    ap = ImageWeightedAP(evaluate_coco(gt, dets), ids)
    rng = np.random.default_rng(seed)
    weights = rng.integers(0, 4, size=(3, len(ids)))
    values = ap.value(weights)
    for w, value in zip(weights, values, strict=True):
        images, annotations, copies = [], [], []
        next_id = 1
        for image_id, count in zip(ids, w, strict=True):
            for _ in range(int(count)):
                new = next_id
                next_id += 1
                images.append({"id": new, "width": 200, "height": 200})
                annotations += [
                    {**a, "id": len(annotations) + k + 1, "image_id": new}
                    for k, a in enumerate(a for a in gt["annotations"] if a["image_id"] == image_id)
                ]
                copies += [{**d, "image_id": new} for d in dets if d["image_id"] == image_id]
        repeated = {"images": images, "annotations": annotations, "categories": gt["categories"]}
        assert value == pytest.approx(_pycocotools_map(repeated, copies), abs=1e-9)


def test_a_draw_without_ground_truth_scores_zero_and_bad_weights_are_refused():
    gt, dets = _detection_set(10, seed=4)
    empty = next(im["id"] for im in gt["images"] if not any(a["image_id"] == im["id"] for a in gt["annotations"]))
    ids = [im["id"] for im in gt["images"]]
    ap = ImageWeightedAP(evaluate_coco(gt, dets), ids)
    only_empty = np.zeros((1, len(ids)))
    only_empty[0, ids.index(empty)] = 2
    assert ap.value(only_empty)[0] == 0.0
    with pytest.raises(ValueError, match="draws × 10 images"):
        ap.value(np.ones(10))
    with pytest.raises(ValueError, match="were not evaluated"):
        ImageWeightedAP(evaluate_coco(gt, dets), [*ids, 999])


def _map_point(n_images: int, seed: int) -> OperatingPoint:
    gt, dets = _detection_set(n_images, seed=seed)
    ids = [im["id"] for im in gt["images"]]
    ev = evaluate_coco(gt, dets)
    samples = InputSamples(
        ids=tuple(f"img{i}" for i in ids),
        bits=np.full(n_images, 1000),
        pixels=np.full(n_images, 40000),
        statistic=ImageWeightedAP(ev, ids).value,
    )
    return OperatingPoint(
        dataset="synthetic", pipeline="feature", codec="x265", qp=30, num_inputs=n_images, bits=1000 * n_images,
        pixels=40000 * n_images, metric_name="mAP", metric=float(ev.stats[0]) * 100.0, metrics={}, times={},
        samples=samples,
    )  # fmt: skip


def test_map_bootstrap_intervals_contain_the_estimate_and_shrink_with_more_images():
    widths = []
    for n in (20, 80, 320):
        point = _map_point(n, seed=7)
        resampled, reason = resample_points([point], resamples=400, seed=0)
        assert resampled is not None, reason
        interval = resampled.interval(point)
        assert interval.lo < point.metric < interval.hi
        widths.append(interval.hi - interval.lo)
    # the spread of a mean-like statistic falls as 1/sqrt(images): 4x the images, about half the width
    assert widths[0] > 1.4 * widths[1] > 1.4 * 1.4 * widths[2]
