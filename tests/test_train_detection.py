"""Training a detection wrapper (fpn_fusion on faster_rcnn_lite0_fpn) through the real codec: the detector's
distillation target, batched edge half, the shapes training source and a short end-to-end run."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
import torch

from fcm.errors import BitstreamError, ConfigError, WeightsError
from fcm.models import get_model
from fcm.models.base import Features
from fcm.train import TrainConfig
from fcm.train.data import load_source, resolve_sources
from fcm.train.loop import read_log, train
from fcm.wrappers import build_wrapper, load_wrapper


@pytest.fixture(scope="module")
def detector():
    return get_model("faster_rcnn_lite0_fpn", "fpn").requires_grad_(False)


@pytest.fixture(scope="module")
def shapes_data(tmp_path_factory):
    """The generated shapes cache in a folder of this module's own (FCM_DATA), so no test reads another's."""
    root = tmp_path_factory.mktemp("fcm_data")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("FCM_DATA", str(root))
        yield root


def _inputs(detector, sources: tuple[str, ...]) -> torch.Tensor:
    return torch.cat([detector.prepare(load_source(s)) for s in sources])


def test_shapes_source_expands_to_the_train_images_and_refuses_val(shapes_data):
    sources = resolve_sources(["shapes:train:3"])
    assert len(sources) == 3 and all(s.startswith(f"file:{shapes_data}") for s in sources)
    assert load_source(sources[0]).shape == (256, 256, 3)
    assert resolve_sources(["shapes:train:3"]) == sources  # drawn once, then reused
    with pytest.raises(ConfigError, match="only the shapes train split is for training"):
        resolve_sources(["shapes:val:3"])
    with pytest.raises(ConfigError, match="shapes:train:N"):
        resolve_sources(["shapes:train:0"])


def test_batched_front_equals_the_front_of_each_image(detector, shapes_data):
    x = _inputs(detector, resolve_sources(["shapes:train:2"]))
    with torch.no_grad():
        batched = detector.front_batch(x)
        single = [detector.front(x[i : i + 1]) for i in range(2)]
    for name in detector.spec.names:
        torch.testing.assert_close(batched.tensors[name], torch.cat([s.tensors[name] for s in single]))
    assert batched.meta == single[0].meta


def test_objectness_distillation_is_zero_for_the_teacher_and_grows_with_the_error(detector, shapes_data):
    x = _inputs(detector, resolve_sources(["shapes:train:2"]))
    with torch.no_grad():
        front = detector.front_batch(x)
        teacher = detector.distill_outputs(front)
    anchors = sum(3 * t.shape[-2] * t.shape[-1] for t in front.tensors.values())
    anchors += 3 * math.ceil(front.tensors["p5"].shape[-2] / 2) * math.ceil(front.tensors["p5"].shape[-1] / 2)
    assert teacher.shape == (2, anchors)  # P2–P6, three anchors a cell
    assert detector.distill_loss(teacher, teacher).abs() < 1e-6
    losses = []
    for scale in (0.05, 0.3):
        noisy = {k: (v + scale * v.std() * torch.randn_like(v)).requires_grad_(True) for k, v in front.tensors.items()}
        loss = detector.distill_loss(detector.distill_outputs(Features(noisy)), teacher)
        loss.backward()
        assert all(torch.isfinite(t.grad).all() and t.grad.abs().sum() > 0 for t in noisy.values())
        losses.append(float(loss.detach()))
    assert 0 < losses[0] < losses[1]


def test_fpn_fusion_blocks_option():
    spec = get_model("faster_rcnn_lite0_fpn", "fpn").spec
    plain = build_wrapper("fpn_fusion", spec, channels=8, per_level=4)
    assert not any("blocks" in k for k in plain.state_dict()) and "blocks" not in plain.options
    deep = build_wrapper("fpn_fusion", spec, channels=8, per_level=4, blocks=2)
    assert deep.options["blocks"] == 2 and any(k.startswith("restore_blocks.1.") for k in deep.state_dict())
    for bad in (-1, 17, 1.5, True):
        with pytest.raises(ConfigError, match="blocks must be an integer"):
            build_wrapper("fpn_fusion", spec, blocks=bad)


def test_fpn_fusion_learned_resampling_keeps_fine_detail():
    """``resample: learned``: strided convolutions down, transposed ones (and a residual refinement) up. Unlike
    average pooling, it sees a stride-4 level's detail inside each cell of the stride-16 grid."""
    spec = get_model("faster_rcnn_lite0_fpn", "fpn").spec
    learned = build_wrapper("fpn_fusion", spec, channels=8, per_level=4, stride=16, resample="learned")
    assert learned.options["resample"] == "learned"
    assert "resample" not in build_wrapper("fpn_fusion", spec, channels=8, per_level=4).options  # old checkpoints
    assert learned.project["p2"].kernel_size == (4, 4) and learned.project["p2"].stride == (4, 4)
    assert learned.project["p4"].kernel_size == (1, 1)  # the fused grid's own level and coarser ones: 1x1
    x = {t.name: torch.randn(1, t.channels, 256 // t.stride, 256 // t.stride) for t in spec.tensors}
    fused = learned.encode(x)["fused"]
    assert fused.shape == (1, 8, 16, 16)
    out = learned.decode({"fused": fused})
    assert {k: tuple(v.shape) for k, v in out.items()} == {k: tuple(v.shape) for k, v in x.items()}
    # pooling cannot tell apart two P2 patterns with the same cell means; the strided convolution can
    a = {k: v.clone() for k, v in x.items()}
    b = {k: v.clone() for k, v in x.items()}
    b["p2"] = b["p2"] + torch.tensor([[1.0, -1.0], [-1.0, 1.0]]).repeat(32, 32)  # zero mean in every 4x4 cell
    pool = build_wrapper("fpn_fusion", spec, channels=8, per_level=4, stride=16)
    assert torch.allclose(pool.encode(a)["fused"], pool.encode(b)["fused"], atol=1e-5)
    assert not torch.allclose(learned.encode(a)["fused"], learned.encode(b)["fused"], atol=1e-3)
    with pytest.raises(ConfigError, match="resample must be 'pool' or 'learned'"):
        build_wrapper("fpn_fusion", spec, resample="bicubic")


def test_cosine_learning_rate_schedule():
    from fcm.train.config import TrainConfig

    base = {"checkpoint": "w.pt", "wrapper": {"name": "channel_reduction", "channels": 8}, "steps": 101, "lr": 0.01}
    constant = TrainConfig.from_config(base)
    assert TrainConfig.from_config({**base, "lr_schedule": "constant"}).identity() == constant.identity()
    cosine = TrainConfig.from_config({**base, "lr_schedule": "cosine"})
    assert cosine.identity() != constant.identity()
    assert [constant.lr_at(s) for s in (0, 50, 100)] == [0.01] * 3
    assert cosine.lr_at(0) == pytest.approx(0.01) and cosine.lr_at(100) == pytest.approx(1e-4)
    assert cosine.lr_at(50) == pytest.approx(0.01 * (0.01 + 0.99 * 0.5))
    assert all(cosine.lr_at(s) > cosine.lr_at(s + 1) for s in range(100))
    with pytest.raises(ConfigError, match="lr_schedule"):
        TrainConfig.from_config({**base, "lr_schedule": "step"})


DETECTION_TINY: dict[str, Any] = {
    "model": "faster_rcnn_lite0_fpn",
    "split": "fpn",
    "wrapper": {"name": "fpn_fusion", "channels": 8, "per_level": 4, "stride": 16, "blocks": 1},
    "images": ["shapes:train:4"],
    "crops_per_image": 1,
    "crop_size": [256, 256],
    "batch_size": 2,
    "steps": 3,
    "qps": [27, 37],
    "surrogate": "scaled",
    "loss": "mix",
}


@pytest.mark.parametrize("loss", ["mix", "output", "features"])
def test_fusion_wrapper_trains_through_x265_on_the_detector(tmp_path, detector, shapes_data, loss):
    config = TrainConfig.from_config({**DETECTION_TINY, "loss": loss, "checkpoint": str(tmp_path / "w.pt")})
    result = train(config, progress=False, model=detector)
    assert result.finished and result.steps == 3
    rows = read_log(config.log_path)
    assert all(math.isfinite(float(r["loss"])) and float(r["loss"]) > 0 and int(r["real_bytes"]) > 0 for r in rows)
    wrapper = load_wrapper(result.checkpoint, detector)
    assert wrapper.weights_tag == result.weights_tag and wrapper.options["blocks"] == 1


# -- the shipped detection wrapper -----------------------------------------------------------------------------------

SHIPPED = Path(__file__).resolve().parents[1] / "checkpoints" / "faster_rcnn_lite0_fpn_fusion.pt"


def test_shipped_detection_wrapper_round_trips_a_stream_and_refuses_other_wrappers(detector):
    from fcm import pipeline
    from fcm.codecs import CodecParams
    from fcm.data.datasets import ShapesDetection

    wrapper = load_wrapper(SHIPPED, detector)
    image = ShapesDetection(split="val", images=2, seed=0)[0].image()
    with torch.no_grad():
        (uncompressed,) = detector.full(detector.prepare(image))
    coded = pipeline.encode(image, detector, "x265", CodecParams(22, preset="ultrafast"), wrapper=wrapper)
    plain = pipeline.encode(image, detector, "x265", CodecParams(22, preset="ultrafast"))
    assert len(coded.bitstream) < len(plain.bitstream) / 4  # one fused tensor instead of P2–P5
    (detections,) = pipeline.decode(coded.bitstream, detector, wrapper=wrapper).output
    # the confident detections survive: each uncompressed one above 0.8 has a decoded box of its class nearby
    from torchvision.ops import box_iou

    confident = uncompressed["scores"] > 0.8
    assert confident.any()
    iou = box_iou(uncompressed["boxes"][confident], detections["boxes"])
    same_class = uncompressed["labels"][confident][:, None] == detections["labels"][None]
    assert ((iou > 0.5) & same_class).any(dim=1).all()

    stranger = build_wrapper("fpn_fusion", detector.spec, **wrapper.options)
    with pytest.raises(BitstreamError, match="wrapper"):
        pipeline.decode(coded.bitstream, detector, wrapper=stranger)
    with pytest.raises(BitstreamError, match="wrapper"):
        pipeline.decode(coded.bitstream, detector)


def test_detector_and_classifier_checkpoints_are_not_interchangeable(detector):
    classifier = get_model("efficientnet_lite0", "stage4")
    with pytest.raises(WeightsError, match="trained for faster_rcnn_lite0_fpn/fpn, not efficientnet_lite0/stage4"):
        load_wrapper(SHIPPED, classifier)
    cr40 = SHIPPED.with_name("efficientnet_lite0_stage4_cr40_scaled.pt")
    with pytest.raises(WeightsError, match="trained for efficientnet_lite0/stage4, not faster_rcnn_lite0_fpn/fpn"):
        load_wrapper(cr40, detector)
