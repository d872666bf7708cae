"""Multi-object tracking over a detector's per-frame outputs, and its CLEAR-MOT and identity metrics.

:class:`IouTracker` is a SORT-style tracker without appearance: each live track's box is predicted one frame ahead
at constant velocity, detections (score ≥ ``score_threshold``) are assigned to predictions of the same class by the
Hungarian method on ``1 − IoU`` (``scipy.optimize.linear_sum_assignment``), a pair counts only at IoU ≥
``iou_threshold``; an unmatched detection starts a track, a track unmatched for more than ``max_age`` frames ends.
Chosen over a Kalman filter for the generated clips, whose objects move at constant velocity between bounces: the
constant-velocity prediction is what a Kalman filter's state would converge to there, with nothing to tune.

:func:`mot_metrics` scores tracks against ground-truth tracks with ``motmetrics`` (the ``track`` extra): MOTA,
IDF1, MOTP, identity switches, misses and false positives, a pair matching at IoU ≥ 0.5 as in the MOT benchmarks.
Hypotheses over a ground-truth *ignore* region (a sliver marked ``iscrowd``) are dropped before scoring, as the
MOT17 evaluation drops those over its ignored boxes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from fcm.errors import ConfigError

#: a ground-truth or tracked object in one frame: (track id, box ``x, y, w, h``)
Box = tuple[int, Sequence[float]]


def iou_xywh(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise IoU of ``N×4`` and ``M×4`` ``x, y, w, h`` boxes (``N×M``)."""
    a, b = np.asarray(a, dtype=np.float64).reshape(-1, 4), np.asarray(b, dtype=np.float64).reshape(-1, 4)
    ax1, ay1, bx1, by1 = a[:, 0] + a[:, 2], a[:, 1] + a[:, 3], b[:, 0] + b[:, 2], b[:, 1] + b[:, 3]
    w = np.clip(np.minimum(ax1[:, None], bx1[None]) - np.maximum(a[:, None, 0], b[None, :, 0]), 0, None)
    h = np.clip(np.minimum(ay1[:, None], by1[None]) - np.maximum(a[:, None, 1], b[None, :, 1]), 0, None)
    inter = w * h
    union = (a[:, 2] * a[:, 3])[:, None] + (b[:, 2] * b[:, 3])[None] - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)


@dataclass
class _Track:
    id: int
    box: np.ndarray  # x, y, w, h
    label: int
    velocity: np.ndarray = field(default_factory=lambda: np.zeros(4))
    misses: int = 0


class IouTracker:
    """Frame-by-frame association (see the module docstring); :meth:`update` once per frame, in order."""

    def __init__(self, iou_threshold: float = 0.3, max_age: int = 2, score_threshold: float = 0.5) -> None:
        if not 0 < iou_threshold <= 1 or max_age < 0 or not 0 <= score_threshold <= 1:
            raise ConfigError(
                f"tracker: iou_threshold in (0, 1], max_age >= 0, score_threshold in [0, 1]; got {iou_threshold}, "
                f"{max_age}, {score_threshold}"
            )
        self.iou_threshold, self.max_age, self.score_threshold = iou_threshold, max_age, score_threshold
        self._tracks: list[_Track] = []
        self._next_id = 1

    def update(self, detections: Sequence[Sequence[float]]) -> list[tuple[int, list[float], int]]:
        """One frame's detections as ``[x, y, w, h, score, category]`` rows → the tracks seen in it, as
        ``(track id, [x, y, w, h], category)``."""
        from scipy.optimize import linear_sum_assignment

        rows = [d for d in detections if d[4] >= self.score_threshold]
        boxes = np.asarray([d[:4] for d in rows], dtype=np.float64).reshape(-1, 4)
        labels = [int(d[5]) for d in rows]
        predicted = np.asarray([t.box + t.velocity for t in self._tracks]).reshape(-1, 4)
        overlap = iou_xywh(predicted, boxes)
        same_class = np.asarray([[t.label == c for c in labels] for t in self._tracks], dtype=bool).reshape(
            overlap.shape
        )
        overlap = np.where(same_class, overlap, 0.0)
        matched_tracks: set[int] = set()
        matched_dets: set[int] = set()
        seen: list[tuple[int, list[float], int]] = []
        if overlap.size:
            for ti, di in zip(*linear_sum_assignment(1.0 - overlap), strict=True):
                if overlap[ti, di] < self.iou_threshold:
                    continue
                track = self._tracks[ti]
                track.velocity = 0.5 * track.velocity + 0.5 * (boxes[di] - track.box)  # smoothed displacement
                track.box, track.misses = boxes[di], 0
                matched_tracks.add(int(ti))
                matched_dets.add(int(di))
                seen.append((track.id, boxes[di].tolist(), track.label))
        survivors = []
        for ti, track in enumerate(self._tracks):
            if ti in matched_tracks:
                survivors.append(track)
                continue
            track.misses += 1
            track.box = track.box + track.velocity  # coasts on its prediction
            if track.misses <= self.max_age:
                survivors.append(track)
        for di in range(len(rows)):
            if di not in matched_dets:
                track = _Track(self._next_id, boxes[di], labels[di])
                self._next_id += 1
                survivors.append(track)
                seen.append((track.id, boxes[di].tolist(), track.label))
        self._tracks = survivors
        return seen


def mot_metrics(
    ground_truth: Sequence[Sequence[Box]],
    hypotheses: Sequence[Sequence[Box]],
    ignore: Sequence[Sequence[Sequence[float]]] | None = None,
    iou: float = 0.5,
) -> dict[str, float]:
    """CLEAR-MOT and identity metrics (``motmetrics``) of ``hypotheses`` against ``ground_truth``, one list of
    ``(id, [x, y, w, h])`` per frame each; ``ignore``: per frame, boxes over which unmatched hypotheses are dropped.
    MOTA, IDF1, precision and recall in percent; MOTP as the mean IoU of matches (percent); counts as numbers."""
    try:
        import motmetrics as mm
    except ImportError as e:  # pragma: no cover - the test extra installs it
        raise ConfigError(f"tracking metrics need motmetrics: pip install 'fcm[track]' ({e})") from e
    if len(ground_truth) != len(hypotheses):
        raise ConfigError(f"{len(ground_truth)} ground-truth frames but {len(hypotheses)} tracked frames")
    acc = mm.MOTAccumulator(auto_id=True)
    for k, (gt, hyp) in enumerate(zip(ground_truth, hypotheses, strict=True)):
        gt_boxes = np.asarray([b for _, b in gt], dtype=np.float64).reshape(-1, 4)
        hyp_boxes = np.asarray([b for _, b in hyp], dtype=np.float64).reshape(-1, 4)
        if ignore is not None and len(ignore[k]) and len(hyp):
            over_ignored = iou_xywh(hyp_boxes, np.asarray(ignore[k])).max(axis=1) >= iou
            near_gt = iou_xywh(hyp_boxes, gt_boxes).max(axis=1, initial=0.0) >= iou
            keep = ~over_ignored | near_gt
            hyp = [h for h, kept in zip(hyp, keep, strict=True) if kept]
            hyp_boxes = hyp_boxes[keep]
        overlap = iou_xywh(gt_boxes, hyp_boxes)
        distance = np.where(overlap >= iou, 1.0 - overlap, np.nan)  # nan: may not be paired
        acc.update([i for i, _ in gt], [i for i, _ in hyp], distance)
    names = ["mota", "idf1", "motp", "num_switches", "num_misses", "num_false_positives", "precision", "recall"]
    summary = mm.metrics.create().compute(acc, metrics=names, name="all").iloc[0]
    out = {
        "MOTA": 100.0 * float(summary["mota"]),
        "IDF1": 100.0 * float(summary["idf1"]),
        "MOTP": 100.0 * (1.0 - float(summary["motp"])),
        "IDSW": float(summary["num_switches"]),
        "FN": float(summary["num_misses"]),
        "FP": float(summary["num_false_positives"]),
        "precision": 100.0 * float(summary["precision"]),
        "recall": 100.0 * float(summary["recall"]),
    }
    return {k: (v if np.isfinite(v) else float("nan")) for k, v in out.items()}
