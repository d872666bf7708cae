"""The generated detection dataset and the offline detector trained on it (faster_rcnn_lite0_fpn)."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest

from fcm.data.shapes import ANNOTATIONS, CATEGORIES, SPLIT_AT, ShapesSettings, generate_split, iter_split
from fcm.errors import ConfigError

#: sha256 over the annotation file and the decoded pixels of
#: generate_split(..., "val", 3, seed=7, ShapesSettings(size=96, min_object=12, max_object=48))
GOLDEN_SMALL_SPLIT = "fb7ee5074b9285a0611fed8da32e5c55e05e7a356f407e1c44a0b7e9e68b72aa"


def _digest(root) -> str:
    from PIL import Image

    h = hashlib.sha256((root / ANNOTATIONS).read_bytes())
    for path, _ in iter_split(root):  # pixels, not PNG bytes: zlib builds differ between Pillow wheels
        with Image.open(path) as im:
            h.update(np.asarray(im).tobytes())
    return h.hexdigest()


def test_generator_is_deterministic_and_matches_its_golden_hash(tmp_path):
    settings = ShapesSettings(size=96, min_object=12, max_object=48)
    a = generate_split(tmp_path / "a", "val", 3, seed=7, settings=settings).parent
    b = generate_split(tmp_path / "b", "val", 3, seed=7, settings=settings).parent
    assert _digest(a) == _digest(b)
    assert _digest(a) == GOLDEN_SMALL_SPLIT
    c = generate_split(tmp_path / "c", "val", 3, seed=8, settings=settings).parent
    assert _digest(c) != _digest(a)


def test_annotations_describe_what_is_visible(tmp_path):
    from pycocotools import mask as mask_utils

    root = generate_split(tmp_path, "train", 6, seed=3, settings=ShapesSettings(size=128)).parent
    coco = json.loads((root / ANNOTATIONS).read_text())
    assert [c["name"] for c in coco["categories"]] == list(CATEGORIES)
    assert len(coco["images"]) == 6 and coco["annotations"]
    for ann in coco["annotations"]:
        mask = mask_utils.decode({"size": ann["segmentation"]["size"], "counts": ann["segmentation"]["counts"]})
        ys, xs = np.nonzero(mask)
        x, y, w, h = ann["bbox"]
        assert (x, y, x + w, y + h) == (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1)  # tight on the mask
        assert ann["area"] == int(mask.sum()) >= 16 and 1 <= ann["category_id"] <= len(CATEGORIES)
    # masks of one image never overlap: each pixel belongs to the object drawn on top
    for image in coco["images"]:
        masks = [mask_utils.decode(a["segmentation"]) for a in coco["annotations"] if a["image_id"] == image["id"]]
        if masks:
            assert int(np.sum(masks, axis=0).max()) == 1


def test_train_and_validation_backgrounds_share_no_pixel():
    from fcm.data.shapes import BACKGROUND_SOURCES, _Backgrounds
    from fcm.train.data import EXCLUDED_PHOTOS, TRAINING_SOURCES, load_source

    assert set(BACKGROUND_SOURCES) <= set(TRAINING_SOURCES)  # training pictures only, never an evaluation photo
    assert not {n.split(":")[1] for n in BACKGROUND_SOURCES} & set(EXCLUDED_PHOTOS)
    train, val = _Backgrounds("train"), _Backgrounds("val")
    for name, a, b in zip(BACKGROUND_SOURCES, train.parts, val.parts, strict=True):
        full = load_source(name)
        cut = int(full.shape[1] * SPLIT_AT)
        assert np.array_equal(a, full[:, :cut]) and np.array_equal(b, full[:, cut:])  # complementary columns
        assert not np.shares_memory(a, b)
    with pytest.raises(ConfigError, match="split must be"):
        generate_split("/nonexistent", "holdout", 1)


def _photos_fetched() -> bool:
    from fcm.data import photos

    return all(photos.cached_path(p, f).is_file() for p in photos.CATALOGUE for f in p.photos)


@pytest.mark.skipif(not _photos_fetched(), reason="the photos are not fetched here: run python tools/fetch_photos.py")
def test_the_test_split_is_drawn_over_the_test_photos_alone(tmp_path):
    """Held out from everything the detector and its wrappers were trained or chosen on: its backgrounds are the
    photo test split (no training source, no val strip), and its images are not val's."""
    from fcm.data.photos import CATALOGUE, load_photo, split_photos
    from fcm.data.shapes import TEST_BACKGROUND_SIDE, _Backgrounds

    test = _Backgrounds("test")
    photos = split_photos("test")
    assert len(test.parts) == len(photos) >= 10
    assert all(pid.split("/")[0] in {p.name for p in CATALOGUE if p.split == "test"} for pid, _ in photos)
    assert np.array_equal(test.parts[0], load_photo(photos[0][1], TEST_BACKGROUND_SIDE))
    settings = ShapesSettings(size=96, min_object=12, max_object=48)
    a = generate_split(tmp_path / "a", "test", 3, seed=7, settings=settings).parent
    b = generate_split(tmp_path / "b", "test", 3, seed=7, settings=settings).parent
    val = generate_split(tmp_path / "v", "val", 3, seed=7, settings=settings).parent
    assert _digest(a) == _digest(b) != _digest(val)
    coco = json.loads((a / ANNOTATIONS).read_text())
    assert coco["info"]["description"] == "fcm shapes, test split" and coco["annotations"]


def test_a_missing_test_photo_is_named_with_the_command_that_fetches_it(tmp_path, monkeypatch):
    monkeypatch.setenv("FCM_PHOTOS", str(tmp_path / "empty"))
    with pytest.raises(ConfigError, match=r"run python tools/fetch_photos\.py"):
        generate_split(tmp_path / "out", "test", 1)


@pytest.fixture(scope="module")
def detector():
    from fcm.models import get_model
    from fcm.models.rcnn import SHAPES_DETECTOR_WEIGHTS

    if not SHAPES_DETECTOR_WEIGHTS.is_file():  # pragma: no cover - the weights ship with fcm
        pytest.fail(f"the shipped detector weights are missing: {SHAPES_DETECTOR_WEIGHTS}")
    return get_model("faster_rcnn_lite0_fpn")


def _coco_map(root, outputs) -> float:
    """mAP@[.5:.95] (a fraction) of per-image outputs against the split's annotations, by fcm's coco evaluator."""
    from types import SimpleNamespace

    from fcm.eval.evaluators import CocoMAP

    evaluator = CocoMAP(root / ANNOTATIONS)
    for image_id, out in enumerate(outputs, 1):
        evaluator.process(SimpleNamespace(id=str(image_id), image_id=image_id), [out])
    return evaluator.evaluate()["mAP"] / 100


def test_shipped_detector_finds_generated_objects_uncompressed_and_through_the_fpn_split(detector, tmp_path):
    """Eight fresh validation images (another seed than training used): mAP@[.5:.95] above a floor uncompressed,
    and about the same when P2–P5 go through x265 at a high rate."""
    import torch

    from fcm import pipeline
    from fcm.codecs import CodecParams
    from fcm.images import load_image

    root = generate_split(tmp_path, "val", 8, seed=123).parent
    paths = [p for p, _ in iter_split(root)]
    with torch.no_grad():
        full = [detector.full(detector.prepare(load_image(p)))[0] for p in paths]
    assert _coco_map(root, full) >= 0.7  # 0.873 measured
    coded = [
        pipeline.decode(pipeline.encode(load_image(p), detector, "x265", CodecParams(22)).bitstream, detector).output[0]
        for p in paths
    ]
    assert _coco_map(root, coded) >= _coco_map(root, full) - 0.05  # 0.865 at QP 22
    assert detector.spec.tensors[0].channels == 96 and detector.categories[1:] == CATEGORIES


def test_shapes_dataset_kind_and_detection_sweep_config(tmp_path, monkeypatch):
    from pathlib import Path

    import fcm.data.shapes as shapes
    from fcm.data import build_dataset
    from fcm.eval.config import SweepConfig

    ds = build_dataset({"kind": "shapes", "split": "val", "images": 2, "seed": 5, "size": 128, "root": str(tmp_path)})
    assert (
        ds.task == "detection" and len(ds) == 2 and ds.annotations is not None and ds[0].image().shape == (128, 128, 3)
    )
    calls = []
    monkeypatch.setattr(shapes, "generate_split", lambda *a, **k: calls.append(a))
    again = build_dataset(
        {"kind": "shapes", "split": "val", "images": 2, "seed": 5, "size": 128, "root": str(tmp_path)}
    )
    assert again.annotations == ds.annotations and calls == []  # reused, not redrawn
    with pytest.raises(ConfigError):  # another image count is another dataset: drawn (here: the stub draws nothing)
        build_dataset({"kind": "shapes", "split": "val", "images": 3, "seed": 5, "size": 128, "root": str(tmp_path)})
    assert len(calls) == 1
    with pytest.raises(ConfigError, match="must be an integer"):
        build_dataset({"kind": "shapes", "size": "big", "root": str(tmp_path)})
    cfg = SweepConfig.from_yaml(Path(__file__).parent.parent / "configs" / "detection_shapes.yaml")
    assert cfg.model == "faster_rcnn_lite0_fpn" and cfg.codecs == ("x265",) and min(map(len, cfg.qps.values())) >= 6
