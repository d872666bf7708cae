"""Multi-object tracking (fcm.eval.tracking) and the ``mot`` evaluator: metrics against hand-computed values, the
tracker's identities, and a video sweep scored by MOTA on labelled clips."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from fcm.errors import ConfigError
from fcm.eval.evaluators import build_evaluator
from fcm.eval.tracking import IouTracker, iou_xywh, mot_metrics


def _box(x: float, y: float = 0.0) -> list[float]:
    return [x, y, 10.0, 10.0]


def test_mot_metrics_match_a_hand_count():
    """Two objects over three frames. Frame 1: both tracked. Frame 2: object 2 gets a new hypothesis id (a switch).
    Frame 3: object 2 is missed, and a hypothesis far from anything is a false positive.
    GT = 6, FN = 1, FP = 1, IDSW = 1: MOTA = 1 − 3/6 = 50 %. Identities: gt1↔h1 3 frames, gt2↔h2 (or h3) 1 frame:
    IDTP = 4, IDFN = 6 − 4 = 2, IDFP = 6 hypotheses − 4 = 2, IDF1 = 8 / (8 + 2 + 2) = 66.7 %."""
    gt = [[(1, _box(0)), (2, _box(50))], [(1, _box(1)), (2, _box(51))], [(1, _box(2)), (2, _box(52))]]
    hyp = [[(1, _box(0)), (2, _box(50))], [(1, _box(1)), (3, _box(51))], [(1, _box(2)), (4, _box(200))]]
    m = mot_metrics(gt, hyp)
    assert (m["FN"], m["FP"], m["IDSW"]) == (1, 1, 1)
    assert m["MOTA"] == pytest.approx(50.0) and m["IDF1"] == pytest.approx(200 / 3)
    assert m["MOTP"] == pytest.approx(100.0)  # every match is exact
    perfect = mot_metrics(gt, gt)
    assert perfect["MOTA"] == pytest.approx(100.0) and perfect["IDF1"] == pytest.approx(100.0)
    # a hypothesis over an ignore region is not a false positive
    assert mot_metrics(gt[:1], [[*hyp[0], (9, _box(200))]], ignore=[[_box(200)]])["FP"] == 0
    with pytest.raises(ConfigError, match="3 ground-truth frames but 2 tracked frames"):
        mot_metrics(gt, hyp[:2])


def test_the_tracker_keeps_identities_through_motion_and_a_missed_frame():
    tracker = IouTracker(max_age=2)
    ids = []
    for t in range(8):
        dets = [[*_box(5 * t), 0.9, 1], [*_box(100 - 4 * t, 40), 0.9, 2]]
        if t == 4:
            dets = dets[:1]  # the second object is not detected in frame 4: its track coasts
        ids.append(sorted(track for track, _, _ in tracker.update(dets)))
    assert ids[0] == [1, 2] and all(i == [1, 2] for i in ids[5:]) and ids[4] == [1]
    assert tracker.update([[*_box(300), 0.9, 1]])[0][0] == 3  # a new object: a new id
    assert tracker.update([[*_box(300), 0.2, 1]]) == []  # below the score threshold: ignored
    assert iou_xywh([_box(0)], [_box(5)])[0, 0] == pytest.approx(50 / 150)
    with pytest.raises(ConfigError, match="tracker"):
        IouTracker(iou_threshold=0)


def test_the_mot_evaluator_scores_a_clips_ground_truth_as_perfect_and_needs_track_ids(tmp_path):
    from fcm.video.sources import open_source

    gt = open_source("shapes:3:6:128").ground_truth()
    assert all("track_id" in a for a in gt["annotations"])
    tracks = {}  # the same object keeps its id across frames
    for a in gt["annotations"]:
        tracks.setdefault(a["track_id"], set()).add(a["category_id"])
    assert len(tracks) >= 2 and all(len(c) == 1 for c in tracks.values())
    path = tmp_path / "gt.json"
    path.write_text(json.dumps(gt))
    ev = build_evaluator("mot", "detection", "detection", annotations=path)
    for image in gt["images"]:
        anns = [a for a in gt["annotations"] if a["image_id"] == image["id"] and not a["iscrowd"]]
        boxes = torch.tensor([[x, y, x + w, y + h] for x, y, w, h in (a["bbox"] for a in anns)]).reshape(-1, 4)
        output = [
            {"boxes": boxes, "scores": torch.ones(len(anns)), "labels": torch.tensor([a["category_id"] for a in anns])}
        ]
        ev.process(SimpleNamespace(id=str(image["id"]), image_id=image["id"]), output)
    m = ev.evaluate()
    assert m["MOTA"] == pytest.approx(100.0) and m["IDF1"] == pytest.approx(100.0) and m["IDSW"] == 0
    for a in gt["annotations"]:
        a.pop("track_id")
    path.write_text(json.dumps(gt))
    with pytest.raises(ConfigError, match="needs a track_id"):
        build_evaluator("mot", "detection", "detection", annotations=path)
    with pytest.raises(ConfigError, match="scores detection models"):
        build_evaluator("mot", "classification", "detection", annotations=path)


def test_a_tracking_video_sweep_reports_mota_against_kbps(tmp_path):
    from fcm.eval.video_sweep import VideoSweepConfig, run_video_sweep

    cfg = VideoSweepConfig.from_config(
        {
            "name": "mot",
            "output": str(tmp_path / "mot"),
            "model": "faster_rcnn_lite0_fpn",
            "split": "fpn",
            "sequences": ["shapes:3:6"],
            "codecs": ["x265"],
            "qps": [27, 47],
            "pipelines": ["remote"],
            "preset": "ultrafast",
            "intra_period": 4,
            "evaluator": "mot",
        }
    )
    outcome = run_video_sweep(cfg, progress=False)
    by_qp = {r["qp"]: r["metrics"] for r in outcome.records}
    assert outcome.report["primary_metric"] == "MOTA"
    assert by_qp[27]["MOTA"] >= 50 and np.isfinite(by_qp[47]["MOTA"]) and by_qp[27]["MOTA"] <= 100
    assert {"IDF1", "IDSW", "MOTP"} <= set(by_qp[27])
