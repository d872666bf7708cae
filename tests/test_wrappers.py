"""Wrappers around the inner codec: architectures, weights tags and checkpoints (fcm.wrappers)."""

from __future__ import annotations

from collections import OrderedDict

import pytest
import torch

from fcm.errors import ConfigError, UnknownNameError, WeightsError
from fcm.models.base import SplitSpec, TensorSpec
from fcm.wrappers import WRAPPERS, build_wrapper, load_wrapper, read_checkpoint, save_wrapper, state_dict_tag

FPN = SplitSpec("faster_rcnn_r50_fpn", "fpn", tuple(TensorSpec(f"p{i}", 256, 2**i) for i in range(2, 6)))


def _features(spec: SplitSpec, size: int = 8) -> OrderedDict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return OrderedDict(
        (t.name, torch.randn(2, t.channels, max(1, size * 4 // t.stride), max(1, size * 4 // t.stride), generator=g))
        for t in spec.tensors
    )


def test_identity_wrapper_codes_the_split_tensors_unchanged(lite0):
    w = build_wrapper("identity", lite0.spec)
    x = _features(lite0.spec)
    assert w.coded_spec.tensors == lite0.spec.tensors and list(w.parameters()) == []
    assert all(torch.equal(a, b) for a, b in zip(w.encode(x).values(), x.values()))
    assert all(torch.equal(a, b) for a, b in zip(w(x).values(), x.values()))


def test_channel_reduction_specs_shapes_and_gradients():
    w = build_wrapper("channel_reduction", FPN, ratio=0.25, hidden=16)
    assert [(t.name, t.channels, t.stride) for t in w.coded_spec.tensors] == [
        (f"p{i}_r", 64, 2**i) for i in range(2, 6)
    ]
    x = _features(FPN)
    coded = w.encode(x)
    assert [tuple(t.shape) for t in coded.values()] == [(2, 64, *x[n].shape[2:]) for n in x]
    out = w.decode(coded)
    assert list(out) == list(x) and all(out[n].shape == x[n].shape for n in x)
    sum(v.square().mean() for v in out.values()).backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in w.parameters())
    with pytest.raises(Exception, match="expects tensors"):
        w.encode(OrderedDict(list(x.items())[:2]))


def test_wrapper_options_are_checked(lite0):
    with pytest.raises(ConfigError, match="channels or ratio, not both"):
        build_wrapper("channel_reduction", lite0.spec, channels=8, ratio=0.5)
    with pytest.raises(ConfigError, match="ratio must be in"):
        build_wrapper("channel_reduction", lite0.spec, ratio=1.5)
    with pytest.raises(ConfigError, match="would grow tensor 'stage4' of 80"):
        build_wrapper("channel_reduction", lite0.spec, channels=96)
    with pytest.raises(TypeError):
        build_wrapper("channel_reduction", lite0.spec, width=3)
    with pytest.raises(UnknownNameError, match="unknown wrapper 'pca'; known: channel_reduction, fpn_fusion, identity"):
        WRAPPERS.get("pca")


def test_weights_tag_follows_the_weights_not_the_object(lite0):
    torch.manual_seed(1)
    a = build_wrapper("channel_reduction", lite0.spec, channels=16)
    torch.manual_seed(1)
    b = build_wrapper("channel_reduction", lite0.spec, channels=16)
    assert a.weights_tag == b.weights_tag == state_dict_tag(a) and len(a.weights_tag) == 16
    with torch.no_grad():
        next(b.parameters()).view(-1)[0] += 1e-6
    assert a.weights_tag != b.weights_tag


def test_checkpoint_round_trip_restores_identical_outputs(tmp_path, lite0):
    w = build_wrapper("channel_reduction", lite0.spec, channels=24, hidden=8)
    with torch.no_grad():  # non-trivial weights in the zero-initialised residual branches too
        for p in w.parameters():
            p.add_(0.01 * torch.randn_like(p))
    tag = save_wrapper(tmp_path / "w.pt", w, lite0, {"surrogate": "scaled", "steps": 3})
    loaded = load_wrapper(tmp_path / "w.pt", lite0)
    x = _features(lite0.spec)
    w.eval()
    assert loaded.weights_tag == tag == w.weights_tag and not loaded.training
    assert torch.equal(loaded(x)["stage4"], w(x)["stage4"])
    assert read_checkpoint(tmp_path / "w.pt")["training"] == {"surrogate": "scaled", "steps": 3}


def test_bad_checkpoints_are_refused(tmp_path, lite0):
    from fcm.models import get_model

    w = build_wrapper("channel_reduction", lite0.spec, channels=24, hidden=8)
    save_wrapper(tmp_path / "w.pt", w, lite0)
    with pytest.raises(WeightsError, match="was trained for efficientnet_lite0/stage4, not efficientnet_lite0/stage3"):
        load_wrapper(tmp_path / "w.pt", get_model("efficientnet_lite0", "stage3"))
    data = torch.load(tmp_path / "w.pt", weights_only=True)
    data["state_dict"]["pre.stage4.0.bias"][0] += 1.0  # edited weights no longer hash to the stated tag
    torch.save(data, tmp_path / "edited.pt")
    with pytest.raises(WeightsError, match="damaged or edited"):
        load_wrapper(tmp_path / "edited.pt", lite0)
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(WeightsError, match="not a readable wrapper checkpoint"):
        load_wrapper(tmp_path / "junk.pt", lite0)
    torch.save({"format": "something-else"}, tmp_path / "other.pt")
    with pytest.raises(WeightsError, match="not an fcm wrapper checkpoint"):
        load_wrapper(tmp_path / "other.pt", lite0)
    with pytest.raises(WeightsError, match="not found"):
        load_wrapper(tmp_path / "missing.pt", lite0)


# ----------------------------------------------------------------------------------------------------------------------
# Coding through a wrapper: the stream names it (bitstream version 2) and the decoder checks it


@pytest.fixture(scope="module")
def reduction(lite0):
    torch.manual_seed(3)
    w = build_wrapper("channel_reduction", lite0.spec, channels=40, hidden=8)
    with torch.no_grad():
        for p in w.parameters():
            p.add_(0.01 * torch.randn_like(p))
    return w.eval()


def test_wrapped_stream_names_its_wrapper_and_decodes_with_it(chelsea, lite0, reduction):
    from fcm import bitstream, pipeline
    from fcm.codecs import CodecParams

    enc = pipeline.encode(chelsea, lite0, "x265", CodecParams(30, preset="ultrafast"), wrapper=reduction)
    header, _ = bitstream.read(enc.bitstream)
    assert enc.bitstream[4] == 2 and header.version == 2
    assert (header.wrapper.name, header.wrapper.weights_tag) == ("channel_reduction", reduction.weights_tag)
    assert [p.name for p in header.layout.placements] == ["stage4_r"]
    assert [p.channels for p in header.layout.placements] == [40]
    plain = pipeline.encode(chelsea, lite0, "x265", CodecParams(30, preset="ultrafast"))
    assert header.layout.frame_height * header.layout.frame_width < plain.header.layout.frame_height * (
        plain.header.layout.frame_width
    )  # 40 of 80 channels: a smaller frame
    dec = pipeline.decode(enc.bitstream, lite0, wrapper=reduction)
    assert dec.output.shape == (1, 1000) and torch.isfinite(dec.output).all()
    assert list(dec.features.tensors) == ["stage4"] and dec.features.tensors["stage4"].shape[1] == 80
    assert enc.wrap_s > 0 and dec.unwrap_s > 0


def test_decoder_refuses_a_missing_or_different_wrapper(chelsea, lite0, reduction, tmp_path):
    from fcm import pipeline
    from fcm.codecs import CodecParams
    from fcm.errors import BitstreamError, ShapeError

    params = CodecParams(30, preset="ultrafast")
    wrapped = pipeline.encode(chelsea, lite0, "x265", params, wrapper=reduction).bitstream
    with pytest.raises(BitstreamError, match=r"coded with wrapper channel_reduction .*needs that wrapper's checkpoint"):
        pipeline.decode(wrapped, lite0)
    other = build_wrapper("channel_reduction", lite0.spec, channels=40, hidden=8)
    with pytest.raises(BitstreamError, match=f"the one given is channel_reduction \\(weights {other.weights_tag}\\)"):
        pipeline.decode(wrapped, lite0, wrapper=other)
    plain = pipeline.encode(chelsea, lite0, "x265", params).bitstream
    with pytest.raises(BitstreamError, match="coded without a wrapper"):
        pipeline.decode(plain, lite0, wrapper=reduction)
    from fcm.models import get_model

    stage3 = get_model("efficientnet_lite0", "stage3")
    with pytest.raises(ShapeError, match="built for efficientnet_lite0/stage4, not efficientnet_lite0/stage3"):
        pipeline.encode(chelsea, stage3, "x265", params, wrapper=reduction)


def test_identity_wrapper_codes_what_the_feature_pipeline_codes(chelsea, lite0):
    """The anchor wrapper changes nothing but the header: same frames, same payload, same task output."""
    from fcm import bitstream, pipeline
    from fcm.codecs import CodecParams

    identity = build_wrapper("identity", lite0.spec)
    params = CodecParams(32, preset="ultrafast")
    wrapped = pipeline.encode(chelsea, lite0, "x265", params, wrapper=identity)
    plain = pipeline.encode(chelsea, lite0, "x265", params)
    (hw, pw), (hp, pp) = bitstream.read(wrapped.bitstream), bitstream.read(plain.bitstream)
    assert pw == pp and hw.layout == hp.layout and hw.ranges == hp.ranges and hw.version == 2 and hp.version == 1
    assert torch.equal(
        pipeline.decode(wrapped.bitstream, lite0, wrapper=identity).output,
        pipeline.decode(plain.bitstream, lite0).output,
    )


def test_shipped_checkpoint_is_what_the_training_config_makes(lite0):
    """checkpoints/…scaled.pt loads for Lite0 stage4, and was trained by exactly configs/train_wrapped.yaml (the same
    config identity: `fcm train configs/train_wrapped.yaml` retrains it), with SCALED through x265."""
    from pathlib import Path

    from fcm.train.config import TrainConfig

    root = Path(__file__).resolve().parent.parent
    path = root / "checkpoints" / "efficientnet_lite0_stage4_cr40_scaled.pt"
    wrapper = load_wrapper(path, lite0)
    assert wrapper.name == "channel_reduction" and [t.channels for t in wrapper.coded_spec.tensors] == [40]
    training = read_checkpoint(path)["training"]
    config = TrainConfig.from_yaml(root / "configs" / "train_wrapped.yaml")
    assert training["config_identity"] == config.identity()
    assert (training["surrogate"], training["codec"], training["steps"]) == ("scaled", "x265", config.steps)
    assert path.stat().st_size < 4 * 2**20  # a few MB at most


def test_malformed_checkpoint_contents_are_weights_errors(tmp_path, lite0):
    w = build_wrapper("channel_reduction", lite0.spec, channels=24, hidden=8)
    save_wrapper(tmp_path / "w.pt", w, lite0)
    data = torch.load(tmp_path / "w.pt", weights_only=True)
    for key, value, message in (
        ("options", {"channels": 24, "hidden": 8, "depth": 3}, "cannot rebuild wrapper"),
        ("options", [24], "must be mappings"),
        ("state_dict", [1, 2], "must be mappings"),
        ("wrapper", "pca", "cannot rebuild wrapper 'pca'"),
    ):
        torch.save({**data, key: value}, tmp_path / "bad.pt")
        with pytest.raises(WeightsError, match=message):
            load_wrapper(tmp_path / "bad.pt", lite0)
    torch.save({k: v for k, v in data.items() if k != "model_weights_tag"}, tmp_path / "bad.pt")
    with pytest.raises(WeightsError, match="lacks"):
        load_wrapper(tmp_path / "bad.pt", lite0)


def test_pca_start_reconstructs_like_principal_components(lite0):
    """channel_reduction's PCA start: decode(encode(x)) is the rank-K projection of the channel vectors onto the
    leading principal components of the example tensors (residual blocks still zero), deterministically."""
    g = torch.Generator().manual_seed(0)
    mixing = torch.randn(80, 80, generator=g)
    x = torch.einsum("dc,nchw->ndhw", mixing, torch.randn(6, 80, 14, 14, generator=g)) + 3.0
    torch.manual_seed(1)
    a = build_wrapper("channel_reduction", lite0.spec, channels=24, hidden=8)
    torch.manual_seed(2)
    b = build_wrapper("channel_reduction", lite0.spec, channels=24, hidden=8)
    a.init_from_features({"stage4": x})
    b.init_from_features({"stage4": x})
    # the projections depend on the data only (the residual blocks' inner weights keep their random start)
    assert torch.equal(a.pre["stage4"][0].weight, b.pre["stage4"][0].weight)
    assert torch.equal(a.post["stage4"][-1].bias, b.post["stage4"][-1].bias)
    rows = x.double().permute(0, 2, 3, 1).reshape(-1, 80)
    mean = rows.mean(0)
    _, _, v = torch.linalg.svd(rows - mean, full_matrices=False)
    expected = ((rows - mean) @ v[:24].T @ v[:24] + mean).reshape(6, 14, 14, 80).permute(0, 3, 1, 2)
    with torch.no_grad():
        got = a(OrderedDict(stage4=x))["stage4"].double()
    assert torch.allclose(got, expected, atol=1e-3 * float(expected.abs().max()))


def test_linear_full_rank_pca_start_is_an_invertible_rotation(lite0):
    """hidden 0 with K = C: the pair is the Karhunen–Loève transform and its inverse (no residual block), so it
    restores any tensor exactly, and its coded channels are decorrelated with falling variance."""
    g = torch.Generator().manual_seed(0)
    mixing = torch.randn(80, 80, generator=g)
    x = torch.einsum("dc,nchw->ndhw", mixing, torch.randn(4, 80, 10, 10, generator=g))
    w = build_wrapper("channel_reduction", lite0.spec, channels=80, hidden=0)
    assert len(w.pre["stage4"]) == 1 and sum(p.numel() for p in w.parameters()) == 2 * (80 * 80 + 80)
    w.init_from_features({"stage4": x})
    with torch.no_grad():
        coded = w.encode(OrderedDict(stage4=x))["stage4_r"]
        other = torch.randn(1, 80, 5, 5, generator=g)
        back = w.decode(w.encode(OrderedDict(stage4=other)))["stage4"]
    assert torch.allclose(back, other, atol=1e-4)
    variances = coded.permute(0, 2, 3, 1).reshape(-1, 80).var(dim=0)
    assert bool((variances[:-1] >= variances[1:] - 1e-3 * variances[0]).all())
    with pytest.raises(ConfigError, match="hidden must be an integer ≥ 0"):
        build_wrapper("channel_reduction", lite0.spec, channels=80, hidden=-1)


def test_fpn_fusion_codes_four_levels_as_one_tensor(tmp_path):
    """P2–P5 of a detector padded to multiples of 32 → one `fused` tensor at stride 16 → P2–P5 back at their sizes;
    the pair trains (gradients reach every parameter), checkpoints, and refuses levels that are not exact multiples."""
    from fcm.errors import ShapeError
    from fcm.models import MODELS

    (spec,) = MODELS.get("faster_rcnn_r50_fpn").split_specs()
    w = build_wrapper("fpn_fusion", spec, channels=32, per_level=16)
    assert [(t.name, t.channels, t.stride) for t in w.coded_spec.tensors] == [("fused", 32, 16)]
    h, w_ = 8 * 32, 10 * 32  # a padded 256×320 input
    g = torch.Generator().manual_seed(0)
    levels = OrderedDict(
        (t.name, torch.randn(1, 256, h // t.stride, w_ // t.stride, generator=g)) for t in spec.tensors
    )
    coded = w.encode(levels)
    assert list(coded) == ["fused"] and tuple(coded["fused"].shape) == (1, 32, h // 16, w_ // 16)
    out = w.decode(coded)
    assert list(out) == list(levels) and all(out[n].shape == levels[n].shape for n in levels)
    sum(v.square().mean() for v in out.values()).backward()
    assert all(p.grad is not None and bool(p.grad.abs().sum() > 0) for p in w.parameters())
    odd = OrderedDict(levels, p5=torch.randn(1, 256, 3, 5))
    with pytest.raises(ShapeError, match="level 'p5' is"):
        w.encode(odd)
    with pytest.raises(ConfigError, match="stride among their strides"):
        build_wrapper("fpn_fusion", spec, stride=64)


def test_fpn_fusion_through_a_detector_and_the_codec():
    """End to end on Faster R-CNN's FPN split (random weights, small input): one fused frame instead of P2–P5's."""
    from fcm import pipeline
    from fcm.codecs import CodecParams
    from fcm.images import bundled_photo
    from fcm.models import get_model

    model = get_model("faster_rcnn_r50_fpn", "fpn", min_size=256, max_size=320)
    wrapper = build_wrapper("fpn_fusion", model.spec, channels=32, per_level=16).eval()
    image = bundled_photo("coffee")
    params = CodecParams(32, preset="ultrafast")
    enc = pipeline.encode(image, model, "x265", params, wrapper=wrapper)
    plain = pipeline.encode(image, model, "x265", params)
    assert [p.name for p in enc.header.layout.placements] == ["fused"]
    fused_area = enc.header.layout.frame_height * enc.header.layout.frame_width
    assert fused_area * 50 < plain.header.layout.frame_height * plain.header.layout.frame_width
    dec = pipeline.decode(enc.bitstream, model, wrapper=wrapper)
    assert isinstance(dec.output, list) and set(dec.output[0]) >= {"boxes", "scores", "labels"}


def test_channel_gains_keep_the_pca_start_and_are_refused_on_trained_blocks(lite0, chelsea):
    from fcm import pipeline

    features = pipeline.run_front(chelsea, lite0).features.tensors
    w = build_wrapper("channel_reduction", lite0.spec, channels=16, hidden=8).eval()
    w.init_from_features(features)
    (coded,) = w.coded_spec.names
    with torch.no_grad():
        before, z_before = w(features), w.encode(features)[coded]
        gains = torch.linspace(0.5, 2.0, 16, dtype=torch.float64)
        w.scale_coded_channels({coded: gains})
        after, z_after = w(features), w.encode(features)[coded]
    for name in features:
        torch.testing.assert_close(after[name], before[name], rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(z_after, z_before * gains.view(1, -1, 1, 1).float(), rtol=1e-4, atol=1e-5)
    with pytest.raises(ConfigError, match="must be 16 finite positive numbers"):
        w.scale_coded_channels({coded: torch.zeros(16)})
    with pytest.raises(ConfigError, match="no gains for coded tensor"):
        w.scale_coded_channels({})
    with torch.no_grad():
        w.post[lite0.spec.names[0]][0].body[-1].weight.add_(0.01)  # a trained residual block
    with pytest.raises(ConfigError, match="not trained blocks"):
        w.scale_coded_channels({coded: gains})
