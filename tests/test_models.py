"""Split models: front + back equals the unsplit model; specs match real tensors; helpful errors."""

from pathlib import Path

import numpy as np
import pytest
import torch

from fcm.errors import ShapeError, UnknownNameError, WeightsError
from fcm.models import MODELS, get_model, model_names
from fcm.models.efficientnet_lite import SPLITS as LITE_SPLITS
from fcm.models.weights import verify_file


def _assert_same_output(a, b):
    if isinstance(a, torch.Tensor):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
        return
    assert len(a) == len(b)
    for da, db in zip(a, b):
        assert da.keys() == db.keys()
        for k in da:
            torch.testing.assert_close(da[k], db[k], rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("split", LITE_SPLITS)
def test_efficientnet_lite0_every_split_matches_unsplit(split, chelsea):
    model = get_model("efficientnet_lite0", split)
    x = model.prepare(chelsea)
    features = model.front(x)
    ((_, t),) = features.tensors.items()
    spec = model.spec.tensors[0]
    assert t.shape == (1, *spec.shape_for(224, 224))
    _assert_same_output(model.back(features), model.full(x))


def test_efficientnet_lite0_real_weights_classify_the_cat(lite0, chelsea):
    """The bundled photo of Chelsea the cat must come out as a cat (ImageNet classes 281–285)."""
    logits = lite0.full(lite0.prepare(chelsea))
    top5 = logits.softmax(1).topk(5).indices[0].tolist()
    assert top5[0] in range(281, 286), top5
    assert sum(c in range(281, 286) for c in top5[:3]) == 3
    record = lite0.describe(logits)[0]
    assert "cat" in record["top"][0]["label"]


def test_efficientnet_lite0_other_photos(lite0):
    from fcm.images import bundled_photo

    top1 = lite0.full(lite0.prepare(bundled_photo("coffee"))).argmax(1).item()
    assert lite0.categories[top1] == "espresso"


@pytest.mark.parametrize("name", ["faster_rcnn_r50_fpn", "mask_rcnn_r50_fpn"])
def test_rcnn_fpn_split_matches_unsplit(name):
    model = get_model(name, "fpn", min_size=256, max_size=320, box_score_thresh=0.0)
    image = (np.random.default_rng(1).random((200, 300, 3)) * 255).astype(np.uint8)
    x = model.prepare(image)
    features = model.front(x)
    assert list(features.tensors) == ["p2", "p3", "p4", "p5"]
    for ts in model.spec.tensors:
        t = features.tensors[ts.name]
        assert t.shape[1] == 256
        assert t.shape[-1] == features.meta["batch_size"][1] // ts.stride
    assert features.meta["original_size"] == (200, 300)
    out = model.back(features)
    ref = model.full(x)
    assert len(out[0]["boxes"]) > 0  # score threshold 0: the random head still proposes boxes
    _assert_same_output(out, ref)
    rec = model.describe(out)[0]["detections"][0]
    assert set(rec) == {"label_id", "label", "score", "box_xyxy"}


@pytest.mark.parametrize("name, split", [("resnet50", "layer2"), ("mobilenet_v3_large", "features.6")])
def test_every_torchvision_classifier_split_matches_unsplit(name, split):
    model = get_model(name, split)
    x = torch.randn(1, 3, 160, 160)
    features = model.front(x)
    features.check(model.spec)
    _assert_same_output(model.back(features), model.full(x))


def test_torchvision_classifier_split_at_node_matches_unsplit():
    model = get_model("resnet18", "layer3")
    x = torch.randn(1, 3, 224, 224)
    f = model.front(x)
    assert f.tensors["layer3"].shape == (1, 256, 14, 14)
    assert model.spec.tensors[0].channels == 256 and model.spec.tensors[0].stride == 16
    _assert_same_output(model.back(f), model.full(x))
    inner = get_model("resnet18", "layer2.1")  # any graph node (a block output) is accepted
    _assert_same_output(inner.back(inner.front(x)), inner.full(x))


def test_split_at_bad_node_names_are_helpful():
    with pytest.raises(UnknownNameError, match="did you mean layer2"):
        get_model("resnet18", "layr2")
    with pytest.raises(UnknownNameError, match="not a clean cut"):
        get_model("resnet18", "layer2.0.conv1")


def test_unknown_model_and_split_list_known_names():
    with pytest.raises(UnknownNameError, match=r"known: .*efficientnet_lite0"):
        get_model("efficientnet_b9")
    with pytest.raises(UnknownNameError, match="stage4"):
        get_model("efficientnet_lite0", "stage9")
    with pytest.raises(UnknownNameError, match="fpn"):
        get_model("faster_rcnn_r50_fpn", "c4")


def test_registry_publishes_specs_for_every_model():
    for name in model_names():
        entry = MODELS.get(name)
        specs = entry.split_specs()
        assert [s.split for s in specs] == list(entry.splits)
        assert entry.default_split in entry.splits
        assert all(t.channels > 0 and t.stride >= 1 for s in specs for t in s.tensors)


def test_features_check_rejects_wrong_tensors(lite0, chelsea):
    f = lite0.front(lite0.prepare(chelsea))
    f.tensors["stage4"] = f.tensors["stage4"][:, :10]
    with pytest.raises(ShapeError, match="80"):
        lite0.back(f)


def test_bad_images_are_rejected(lite0):
    with pytest.raises(ShapeError, match="uint8"):
        lite0.prepare(np.zeros((32, 32, 3), dtype=np.float32))
    with pytest.raises(ShapeError, match="RGB"):
        lite0.prepare(np.zeros((32, 32, 5), dtype=np.uint8))


def test_weights_checksum_and_loading(tmp_path: Path):
    import torchvision

    net = torchvision.models.resnet18()
    path = tmp_path / "resnet18.pth"
    torch.save(net.state_dict(), path)
    digest = verify_file(path)
    model = get_model("resnet18", "layer2", weights=path, sha256=digest[:12])
    assert model.weights_tag == digest[:16]
    x = torch.randn(1, 3, 64, 64)
    torch.testing.assert_close(model.full(x), net.eval()(x))
    with pytest.raises(WeightsError, match="checksum mismatch"):
        get_model("resnet18", "layer2", weights=path, sha256="0" * 64)
    # a torch.hub-style name carries a hash prefix that is checked too
    named = tmp_path / "resnet18-deadbeef.pth"
    named.write_bytes(path.read_bytes())
    with pytest.raises(WeightsError, match="checksum mismatch"):
        get_model("resnet18", "layer2", weights=named)
    with pytest.raises(WeightsError, match="not found"):
        get_model("resnet18", "layer2", weights=tmp_path / "missing.pth")
    wrong = tmp_path / "wrong.pth"
    torch.save({"fc.weight": torch.zeros(3, 3)}, wrong)
    with pytest.raises(WeightsError, match="do not fit"):
        get_model("resnet18", "layer2", weights=wrong)


def test_mac_count_of_efficientnet_lite0_matches_the_published_figure(lite0):
    """torch's FLOP counter on the whole network at 224²: ≈ 0.4 GMACs and 4.65 M parameters, as published for
    EfficientNet-Lite0 (0.39 G for B0, whose only extra MACs are the squeeze-excitation blocks Lite drops)."""
    from fcm.models.cost import measure_cost

    x = torch.zeros(1, 3, 224, 224)
    full = measure_cost(lite0.full, x)
    assert full.macs == pytest.approx(0.4e9, rel=0.05)
    assert full.params == sum(p.numel() for p in lite0.net.parameters())  # every parameter is read by the full net
    front = measure_cost(lite0.front, x)
    assert 0 < front.macs < full.macs and 0 < front.params < full.params
    # the back half reads the rest: front and back split the parameters between them
    back = measure_cost(lite0.back, lite0.front(x))
    assert front.params + back.params == full.params and front.macs + back.macs == full.macs


# ---------------------------------------------------------------- split models as differentiable modules


def test_split_models_are_eval_mode_modules_owning_their_network_once():
    model = get_model("resnet18", "layer2")
    assert isinstance(model, torch.nn.Module)
    assert not any(m.training for m in model.modules())  # built for inference: BatchNorm uses running statistics
    assert list(model.parameters()) == list(model.net.parameters())
    # the FX halves share the network's modules without being submodules: one copy of each weight in the state
    assert sorted(model.state_dict()) == sorted(f"net.{k}" for k in model.net.state_dict())
    model.double()  # .to() reaches the halves through the shared modules
    x = torch.randn(1, 3, 64, 64, dtype=torch.float64)
    assert model.front(x).tensors["layer2"].dtype == torch.float64


def test_gradients_flow_through_efficientnet_lite0_halves():
    model = get_model("efficientnet_lite0", "stage4")
    stats = model.net._bn0.running_mean.clone()
    x = torch.randn(2, 3, 64, 64, requires_grad=True)
    model.back(model.front(x)).logsumexp(1).sum().backward()
    for name, grad in (
        ("input", x.grad),
        ("front stem", model.net._conv_stem.weight.grad),
        ("back classifier", model.net._fc.weight.grad),
    ):
        assert grad is not None and torch.isfinite(grad).all() and grad.abs().sum() > 0, name
    assert torch.equal(model.net._bn0.running_mean, stats)  # eval mode: a backward pass changes no statistics


def test_inference_drivers_record_no_autograd_graph(lite0, chelsea):
    from fcm import pipeline
    from fcm.codecs import CodecParams

    edge = pipeline.run_front(chelsea, lite0)
    assert all(not t.requires_grad for t in edge.features.tensors.values())
    enc = pipeline.encode_features(edge, lite0, "ffv1", CodecParams(qp=0), 8)
    assert not pipeline.decode(enc.bitstream, lite0).output.requires_grad


class _TrainOnlyBranch(torch.nn.Module):
    """A net whose forward reads ``self.training``: tracing bakes the branch into the graph of one mode only."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = torch.nn.Conv2d(3, 8, 3, padding=1)
        self.bn = torch.nn.BatchNorm2d(8)
        self.conv2 = torch.nn.Conv2d(8, 8, 3, padding=1)
        self.fc = torch.nn.Linear(8, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.bn(self.conv1(x))
        if self.training:
            x = x * 0.5
        return self.fc(self.conv2(x).relu().mean((2, 3)))


def test_fx_split_swaps_in_the_train_mode_graph():
    from fcm.models.fx_split import split_at

    net = _TrainOnlyBranch()
    halves = split_at(net, "conv2")
    assert not net.training and not halves.front.training
    x = torch.randn(2, 3, 10, 10)
    with torch.no_grad():
        assert torch.equal(halves.back(halves.front(x)), net(x))
        halves.train()
        net.train()
        # the train graph has the ×0.5 the eval trace dropped, and BatchNorm switched to batch statistics
        assert torch.equal(halves.back(halves.front(x)), net(x))
        assert not torch.allclose(halves.back(halves.front(x)), net.eval()(x))


def test_torchvision_split_in_train_mode_gives_gradients_and_eval_mode_matches_unsplit_exactly():
    model = get_model("resnet18", "layer2")
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        eval_out = model.back(model.front(x))
    model.train()
    assert model._split.front.graph is model._split.front.train_graph and model.net.layer1[0].bn1.training
    inputs = x.clone().requires_grad_(True)
    train_out = model.back(model.front(inputs))
    assert not torch.allclose(train_out, eval_out)  # BatchNorm used the batch's statistics
    train_out.logsumexp(1).sum().backward()
    for grad in (inputs.grad, model.net.conv1.weight.grad, model.net.layer1[0].conv1.weight.grad):
        assert grad is not None and torch.isfinite(grad).all() and grad.abs().sum() > 0
    model.eval()
    assert model._split.front.graph is model._split.front.eval_graph
    with torch.no_grad():
        assert torch.equal(model.back(model.front(x)), model.full(x))
