"""Evaluators: turn task outputs into metrics, following detectron2's reset / process / evaluate protocol.

``process(sample, output, reference)`` returns a small JSON-ready record for one input (stored by sweeps, so that a
resumed sweep can ``extend`` an evaluator with records computed earlier) and keeps it; ``evaluate()`` aggregates the
kept records into metrics (percent for accuracies). ``kind`` says what the numbers are measured against:
``"labels"`` (ground truth) or ``"fidelity"`` (the uncompressed model's own output on the same input, for label-free
data); ``primary`` names the metric that rate–accuracy curves plot.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fcm.data import Sample
from fcm.errors import ConfigError
from fcm.eval.coco_resample import ImageWeightedAP, evaluate_coco
from fcm.registry import Registry
from fcm.tasks import TaskType, get_task


@dataclass(frozen=True)
class SmoothMeasure:
    """A measure that ranks close curves better than a thresholded metric such as top-1 agreement: per-input values
    (``key`` of each input's record, from the evaluator's part ``"eval"`` or the pipeline's ``"record"``), averaged
    over inputs and turned into the measure through ``link`` (:data:`fcm.eval.points.LINKS`). Higher is better."""

    name: str
    key: str
    link: str
    description: str
    source: str = "eval"


#: every coded-features pipeline records the PSNR of the decoded split tensors (``Measurement.feature_psnr``)
FEATURE_PSNR = SmoothMeasure(
    "feature_psnr",
    "feature_psnr",
    "mean",
    "mean over inputs of the PSNR (dB) of the decoded split tensors against the uncompressed ones, peak = the input's "
    "feature range",
    source="record",
)


class Evaluator(ABC):
    name: str = ""
    kind: str = "labels"
    primary: str = ""
    description: str = ""
    #: whether ``process`` needs the uncompressed model's output on the same input
    needs_reference: bool = False
    #: the kinds of ground truth (:attr:`fcm.tasks.TaskType.labels`) whose tasks this evaluator scores
    scores: tuple[str, ...] = ("classification",)
    #: whether it reads a COCO annotation file (the dataset's, or a labelled clip's)
    needs_annotations: bool = False
    #: measures besides the primary metric that reports rank curves on (:class:`SmoothMeasure`)
    smooth_measures: tuple[SmoothMeasure, ...] = (FEATURE_PSNR,)

    def __init__(self) -> None:
        self._records: list[dict[str, Any]] = []

    @classmethod
    def for_task(cls, task: TaskType, annotations: str | Path | None, **options: Any) -> Evaluator:
        """Built for a model doing ``task``, with the ground truth the caller holds (the first argument of an
        evaluator that :attr:`needs_annotations`); ``options`` from a config."""
        make: Callable[..., Evaluator] = cls  # subclasses take their own arguments
        return make(annotations, **options) if cls.needs_annotations else make(**options)

    def reset(self) -> None:
        self._records = []

    def process(self, sample: Sample, output: Any, reference: Any = None) -> dict[str, Any]:
        if self.needs_reference and reference is None:
            raise ConfigError(f"evaluator {self.name!r} needs the uncompressed output as reference")
        record = self.record(sample, output, reference)
        self._records.append(record)
        return record

    def extend(self, records: list[dict[str, Any]]) -> None:
        self._records.extend(records)

    @abstractmethod
    def record(self, sample: Sample, output: Any, reference: Any) -> dict[str, Any]: ...

    @abstractmethod
    def evaluate(self) -> dict[str, float]: ...

    def input_scores(self, records: list[dict[str, Any]]) -> np.ndarray | None:
        """Per-input values whose mean is the primary metric of ``records`` (what bootstrap intervals resample), or
        ``None`` when the primary metric is not a mean over inputs (mAP ranks detections across images)."""
        return None

    def input_statistic(self, records: list[dict[str, Any]]) -> Callable[[np.ndarray], np.ndarray] | None:
        """For a primary metric that is not a mean over inputs (:meth:`input_scores` gives ``None``): the metric of
        ``records`` when input ``i`` is counted ``w[i]`` times, for each row ``w`` of a ``draws × inputs`` weight
        matrix (columns in ``records`` order) — what bootstrap intervals resample. ``None``: not resampled."""
        return None


EVALUATORS: Registry[type[Evaluator]] = Registry("evaluator")


def _probs(logits: Any) -> torch.Tensor:
    return torch.as_tensor(logits).double().softmax(dim=1)[0]


@EVALUATORS.register("accuracy")
class ClassificationAccuracy(Evaluator):
    name = "accuracy"
    kind = "labels"
    primary = "top1"
    description = "top-1 / top-5 accuracy against the dataset's labels (%)"

    def record(self, sample: Sample, output: Any, reference: Any) -> dict[str, Any]:
        if sample.label is None:
            raise ConfigError(f"sample {sample.id!r} has no label; use the 'fidelity' evaluator for label-free data")
        probs = _probs(output)
        top5 = probs.topk(min(5, probs.numel())).indices.tolist()
        return {"label": sample.label, "top5": top5}

    def input_scores(self, records: list[dict[str, Any]]) -> np.ndarray | None:
        return np.array([100.0 * (r["top5"][0] == r["label"]) for r in records])

    def evaluate(self) -> dict[str, float]:
        if not self._records:
            return {"top1": float("nan"), "top5": float("nan")}
        top1 = np.mean([r["top5"][0] == r["label"] for r in self._records])
        top5 = np.mean([r["label"] in r["top5"] for r in self._records])
        return {"top1": 100.0 * float(top1), "top5": 100.0 * float(top5)}


@EVALUATORS.register("fidelity")
class ClassificationFidelity(Evaluator):
    name = "fidelity"
    kind = "fidelity"
    primary = "top1_agreement"
    description = (
        "agreement with uncompressed inference (no labels): top-1 agreement (%) and mean KL(p_uncompressed ‖ p_decoded)"
        " in nats"
    )
    needs_reference = True
    smooth_measures = (
        SmoothMeasure(
            "kl_db",
            "kl",
            "neg_db",
            "−10·log10 of the mean KL divergence between uncompressed and decoded class distributions (dB; higher is "
            "closer to uncompressed inference)",
        ),
        FEATURE_PSNR,
    )

    def record(self, sample: Sample, output: Any, reference: Any) -> dict[str, Any]:
        p, q = _probs(reference), _probs(output)
        kl = float(torch.sum(p * (torch.log(p.clamp_min(1e-300)) - torch.log(q.clamp_min(1e-300)))))
        return {"top1": int(q.argmax()), "ref_top1": int(p.argmax()), "kl": max(kl, 0.0)}

    def input_scores(self, records: list[dict[str, Any]]) -> np.ndarray | None:
        return np.array([100.0 * (r["top1"] == r["ref_top1"]) for r in records])

    def evaluate(self) -> dict[str, float]:
        if not self._records:
            return {"top1_agreement": float("nan"), "mean_kl": float("nan")}
        agree = np.mean([r["top1"] == r["ref_top1"] for r in self._records])
        return {"top1_agreement": 100.0 * float(agree), "mean_kl": float(np.mean([r["kl"] for r in self._records]))}


def _coco_detections(output: Any) -> list[list[float]]:
    """torchvision detections → ``[x, y, w, h, score, category]`` rows."""
    det = output[0]
    rows = []
    for box, score, label in zip(det["boxes"].tolist(), det["scores"].tolist(), det["labels"].tolist(), strict=True):
        x0, y0, x1, y1 = box
        # scores keep 7 significant digits: rounding to fixed decimals makes ties that reorder COCO matching
        rows.append(
            [round(x0, 2), round(y0, 2), round(x1 - x0, 2), round(y1 - y0, 2), float(f"{score:.7g}"), int(label)]
        )
    return rows


def _mask_rles(output: Any) -> list[dict[str, Any]]:
    """Mask R-CNN soft masks (N×1×H×W) → COCO compressed RLEs of ``mask > 0.5``, in detection order."""
    from pycocotools import mask as mask_utils

    masks = output[0]["masks"]
    if len(masks) == 0:
        return []
    binary = np.asfortranarray((masks[:, 0] > 0.5).permute(1, 2, 0).numpy().astype(np.uint8))
    return [
        {"size": [int(r["size"][0]), int(r["size"][1])], "counts": r["counts"].decode("ascii")}
        for r in mask_utils.encode(binary)
    ]


def _coco_map(gt: dict[str, Any], detections: list[dict[str, Any]], iou_type: str = "bbox") -> dict[str, float]:
    """COCO AP@[.5:.95], AP50, AP75 (in %) for ``iou_type`` ``"bbox"`` or ``"segm"`` (keys prefixed ``mask_``)."""
    prefix = "mask_" if iou_type == "segm" else ""
    if not detections:
        return {f"{prefix}mAP": 0.0, f"{prefix}AP50": 0.0, f"{prefix}AP75": 0.0}
    ev = evaluate_coco(gt, detections, iou_type)
    stats = [max(float(s), 0.0) * 100.0 for s in ev.stats[:3]]  # -1 means "no ground truth": count as 0
    return {f"{prefix}mAP": stats[0], f"{prefix}AP50": stats[1], f"{prefix}AP75": stats[2]}


def _map_statistic(
    gt: dict[str, Any], detections: list[dict[str, Any]], image_ids: list[int]
) -> Callable[[np.ndarray], np.ndarray]:
    """Box mAP (%) under image weights (columns in ``image_ids`` order), from one COCO matching of ``detections``,
    made on the first call (a report without bootstrap never pays for it)."""
    built: list[ImageWeightedAP] = []

    def value(weights: np.ndarray) -> np.ndarray:
        if not detections:
            return np.zeros(np.asarray(weights).shape[0])
        if not built:
            built.append(ImageWeightedAP(evaluate_coco(gt, detections), image_ids))
        return built[0].value(weights)

    return value


def _as_results(image_id: int, rows: list[list[float]]) -> list[dict[str, Any]]:
    return [{"image_id": image_id, "bbox": r[:4], "score": r[4], "category_id": r[5]} for r in rows]


@EVALUATORS.register("coco")
class CocoMAP(Evaluator):
    """COCO box mAP@[.5:.95], AP50 and AP75 against a COCO annotation file (pycocotools); with ``masks=True``
    (Mask R-CNN) also mask AP (``mask_mAP``, ``mask_AP50``, ``mask_AP75``), which needs ``segmentation`` in every
    ground-truth annotation."""

    name = "coco"
    kind = "labels"
    primary = "mAP"
    description = "COCO box mAP@[.5:.95] / AP50 / AP75 against ground-truth annotations (%)"
    scores = ("detection",)
    needs_annotations = True

    def __init__(self, annotations: str | Path, masks: bool = False) -> None:
        super().__init__()
        path = Path(annotations)
        if not path.is_file():
            raise ConfigError(f"COCO annotation file not found: {path}")
        self.gt = json.loads(path.read_text())
        self.masks = masks
        if masks and not all("segmentation" in a for a in self.gt.get("annotations", [])):
            raise ConfigError(f"{path}: mask AP needs a 'segmentation' in every annotation")

    @classmethod
    def for_task(cls, task: TaskType, annotations: str | Path | None, **options: Any) -> Evaluator:
        assert annotations is not None  # build_evaluator refused the call without them
        return cls(annotations, masks=task.masks, **options)  # a task with masks is judged on its masks too

    def record(self, sample: Sample, output: Any, reference: Any) -> dict[str, Any]:
        if sample.image_id is None:
            raise ConfigError(f"sample {sample.id!r} has no COCO image id")
        record: dict[str, Any] = {"image_id": sample.image_id, "detections": _coco_detections(output)}
        if self.masks:
            record["masks"] = _mask_rles(output)
        return record

    def _ground_truth(self, records: list[dict[str, Any]]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        """The annotation file restricted to the images of ``records``, and their detections as COCO results."""
        ids = {r["image_id"] for r in records}
        gt = dict(self.gt)
        gt["images"] = [im for im in self.gt["images"] if im["id"] in ids]
        gt["annotations"] = [a for a in self.gt["annotations"] if a["image_id"] in ids]
        return gt, [d for r in records for d in _as_results(r["image_id"], r["detections"])]

    def evaluate(self) -> dict[str, float]:
        gt, dets = self._ground_truth(self._records)
        metrics = _coco_map(gt, dets)
        if self.masks:
            segm = [
                {**d, "segmentation": m}
                for r in self._records
                for d, m in zip(_as_results(r["image_id"], r["detections"]), r["masks"], strict=True)
            ]
            for d in segm:
                d.pop("bbox")  # loadRes takes the box from the mask for segm results
            metrics |= _coco_map(gt, segm, "segm")
        return metrics

    def input_statistic(self, records: list[dict[str, Any]]) -> Callable[[np.ndarray], np.ndarray] | None:
        gt, dets = self._ground_truth(records)
        return _map_statistic(gt, dets, [r["image_id"] for r in records])


@EVALUATORS.register("mot")
class MultiObjectTracking(Evaluator):
    """MOTA (primary), IDF1, MOTP, identity switches, misses and false positives of the detector's per-frame output
    tracked by :class:`fcm.eval.tracking.IouTracker`, against the ground-truth tracks (``track_id`` of each COCO
    annotation, as labelled shapes clips carry them). Frames are tracked in image-id order when evaluated, so it
    scores one sequence (a video sweep builds one per clip and point, and a point over several clips is the
    frame-weighted mean of their MOTA, as for every video metric; the MOT benchmarks pool the error counts
    instead); ``iscrowd`` slivers are ignore regions."""

    name = "mot"
    kind = "labels"
    primary = "MOTA"
    description = "MOTA / IDF1 (%) of IoU-tracked detections against ground-truth tracks (motmetrics)"
    scores = ("detection",)
    needs_annotations = True
    smooth_measures = ()

    def __init__(self, annotations: str | Path, score_threshold: float = 0.5) -> None:
        super().__init__()
        path = Path(annotations)
        if not path.is_file():
            raise ConfigError(f"annotation file not found: {path}")
        gt = json.loads(path.read_text())
        anns = gt.get("annotations", [])
        if any("track_id" not in a for a in anns if not a.get("iscrowd")):
            raise ConfigError(f"{path}: evaluator 'mot' needs a track_id in every annotation (labelled shapes clips)")
        self.frames = sorted(im["id"] for im in gt.get("images", []))
        self.tracks: dict[int, list[tuple[int, list[float]]]] = {i: [] for i in self.frames}
        self.ignored: dict[int, list[list[float]]] = {i: [] for i in self.frames}
        for a in anns:
            if a["image_id"] in self.tracks:
                if a.get("iscrowd"):
                    self.ignored[a["image_id"]].append(a["bbox"])
                else:
                    self.tracks[a["image_id"]].append((int(a["track_id"]), a["bbox"]))
        self.score_threshold = score_threshold

    def record(self, sample: Sample, output: Any, reference: Any) -> dict[str, Any]:
        if sample.image_id not in self.tracks:
            raise ConfigError(f"sample {sample.id!r}: frame {sample.image_id} is not in the ground truth")
        return {"image_id": sample.image_id, "detections": _coco_detections(output)}

    def evaluate(self) -> dict[str, float]:
        from fcm.eval.tracking import IouTracker, mot_metrics

        by_frame = {r["image_id"]: r["detections"] for r in self._records}
        frames = sorted(by_frame)
        tracker = IouTracker(score_threshold=self.score_threshold)
        hypotheses = [[(t, box) for t, box, _ in tracker.update(by_frame[i])] for i in frames]
        return mot_metrics([self.tracks[i] for i in frames], hypotheses, [self.ignored[i] for i in frames])


@EVALUATORS.register("detection_fidelity")
class DetectionFidelity(Evaluator):
    """Box mAP of decoded-feature detections against the uncompressed model's detections (score ≥ threshold)."""

    name = "detection_fidelity"
    kind = "fidelity"
    primary = "mAP"
    description = "box mAP (%) against the uncompressed model's own detections (score ≥ 0.5) as pseudo ground truth"
    needs_reference = True
    scores = ("detection",)

    def __init__(self, score_threshold: float = 0.5) -> None:
        super().__init__()
        self.score_threshold = score_threshold

    def record(self, sample: Sample, output: Any, reference: Any) -> dict[str, Any]:
        ref = [r for r in _coco_detections(reference) if r[4] >= self.score_threshold]
        return {"sample": sample.id, "detections": _coco_detections(output), "reference": ref}

    @staticmethod
    def _pseudo_ground_truth(records: list[dict[str, Any]]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        """The reference detections of ``records`` as a COCO dataset (image ``n`` is record ``n − 1``), and the
        decoded detections as COCO results."""
        images: list[dict[str, Any]] = []
        annotations: list[dict[str, Any]] = []
        dets: list[dict[str, Any]] = []
        categories: set[Any] = set()
        for i, r in enumerate(records, 1):
            images.append({"id": i, "width": 1, "height": 1})
            for row in r["reference"]:
                categories.add(row[5])
                annotations.append(
                    {
                        "id": len(annotations) + 1,
                        "image_id": i,
                        "bbox": row[:4],
                        "area": row[2] * row[3],
                        "category_id": row[5],
                        "iscrowd": 0,
                    }
                )
            dets.extend(_as_results(i, r["detections"]))
        categories |= {d["category_id"] for d in dets}
        gt = {"images": images, "annotations": annotations, "categories": [{"id": c} for c in sorted(categories)]}
        return gt, dets

    def evaluate(self) -> dict[str, float]:
        return _coco_map(*self._pseudo_ground_truth(self._records))

    def input_statistic(self, records: list[dict[str, Any]]) -> Callable[[np.ndarray], np.ndarray] | None:
        gt, dets = self._pseudo_ground_truth(records)
        return _map_statistic(gt, dets, list(range(1, len(records) + 1)))


def evaluator_class(name: str, model_task: str) -> type[Evaluator]:
    """The evaluator ``name`` means for a model doing ``model_task`` (``fidelity``: the task's label-free evaluator),
    refused (ConfigError) if it does not score that task."""
    task = get_task(model_task)
    if name == "fidelity":
        name = task.fidelity_evaluator
    cls = EVALUATORS.get(name)
    if task.labels not in cls.scores:
        raise ConfigError(
            f"evaluator {name!r} scores {' or '.join(cls.scores)} models, but the model does {model_task}"
        )
    return cls


def build_evaluator(
    name: str,
    model_task: str,
    dataset_task: str = "unlabeled",
    annotations: str | Path | None = None,
    where: str = "the dataset",
    **options: Any,
) -> Evaluator:
    """The evaluator ``name`` (:data:`EVALUATORS`; ``fidelity`` on a detector means ``detection_fidelity``) for a
    model doing ``model_task`` on data of ``dataset_task`` with ``annotations`` (a COCO file, or ``None``), checked
    against both; ``where`` names the data in errors."""
    cls = evaluator_class(name, model_task)
    if cls.kind == "labels" and dataset_task == "unlabeled":
        raise ConfigError(f"evaluator {cls.name!r} needs labels, but {where} has none; use 'fidelity'")
    if cls.needs_annotations and annotations is None:
        raise ConfigError(
            f"evaluator {cls.name!r} needs COCO annotations (a dataset of kind: coco or shapes), but {where} has none"
        )
    try:
        return cls.for_task(get_task(model_task), annotations, **options)
    except TypeError as e:
        raise ConfigError(f"bad options for evaluator {cls.name!r}: {e}") from e
