"""Task types (fcm.tasks) and what evaluators and RDO read from them instead of branching on task names."""

from __future__ import annotations

import json

import pytest

from fcm.errors import ConfigError, UnknownNameError
from fcm.eval.evaluators import EVALUATORS, CocoMAP, DetectionFidelity, build_evaluator, evaluator_class
from fcm.models import MODELS
from fcm.rdo import RdoSettings
from fcm.tasks import TASKS, get_task


def test_every_model_declares_a_registered_task_and_every_task_can_be_scored():
    for name in MODELS.names():
        assert MODELS.get(name).task in TASKS, name
    for name in TASKS.names():
        task = get_task(name)
        assert task.name == name
        assert task.fidelity_evaluator in EVALUATORS
        assert task.labels in EVALUATORS.get(task.fidelity_evaluator).scores
        assert any(task.labels in EVALUATORS.get(e).scores for e in EVALUATORS.names() if e != task.fidelity_evaluator)
    with pytest.raises(UnknownNameError, match="unknown task 'captioning'; known: classification"):
        get_task("captioning")


def test_fidelity_means_the_tasks_own_label_free_evaluator():
    assert evaluator_class("fidelity", "classification").name == "fidelity"
    assert evaluator_class("fidelity", "detection") is DetectionFidelity
    assert evaluator_class("fidelity", "instance_segmentation") is DetectionFidelity


def test_an_evaluator_for_another_task_is_refused_naming_both():
    with pytest.raises(
        ConfigError, match="evaluator 'accuracy' scores classification models, but the model does detection"
    ):
        build_evaluator("accuracy", "detection", "detection")
    with pytest.raises(
        ConfigError, match="evaluator 'coco' scores detection models, but the model does classification"
    ):
        build_evaluator("coco", "classification", "detection")


def test_label_evaluators_need_labels_and_coco_its_annotations(tmp_path):
    with pytest.raises(ConfigError, match="needs labels, but dataset 'photos' has none"):
        build_evaluator("accuracy", "classification", "unlabeled", where="dataset 'photos'")
    with pytest.raises(ConfigError, match="needs COCO annotations"):
        build_evaluator("coco", "detection", "detection")


def test_a_task_with_masks_is_scored_on_its_masks(tmp_path):
    gt = tmp_path / "gt.json"
    ann = {"id": 1, "image_id": 1, "category_id": 1, "bbox": [0, 0, 2, 2], "area": 4, "iscrowd": 0}
    rle = {"size": [4, 4], "counts": "04000"}
    coco = {"images": [{"id": 1, "width": 4, "height": 4}], "categories": [{"id": 1}]}
    gt.write_text(json.dumps(coco | {"annotations": [ann | {"segmentation": rle}]}))
    boxes_only = build_evaluator("coco", "detection", "detection", annotations=gt)
    with_masks = build_evaluator("coco", "instance_segmentation", "detection", annotations=gt)
    assert isinstance(boxes_only, CocoMAP) and not boxes_only.masks
    assert isinstance(with_masks, CocoMAP) and with_masks.masks
    gt.write_text(json.dumps(coco | {"annotations": [ann]}))
    with pytest.raises(ConfigError, match="mask AP needs a 'segmentation' in every annotation"):
        build_evaluator("coco", "instance_segmentation", "detection", annotations=gt)


def test_rdo_protects_the_tasks_default_target(lite0):
    assert RdoSettings().target_for(lite0) == "kl"

    class Detector:
        task = "detection"

    assert RdoSettings().target_for(Detector()) == "features"
    assert RdoSettings(target="output").target_for(lite0) == "output"
