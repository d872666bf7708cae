"""Packing: tiling is an exact permutation; quantization round trips within half a step and exactly on the grid."""

import numpy as np
import pytest
import torch

from fcm.errors import ShapeError
from fcm.models import MODELS
from fcm.packing import Layout, PackedFrames, Packer, QuantRange, dequantize, quantize, unpack


def _registered_shapes(input_h=224, input_w=224):
    """(model/split, [(name, C, H, W)]) for every named split of the models whose specs are cheap to get."""
    cases = []
    for model in ("efficientnet_lite0", "faster_rcnn_r50_fpn", "mask_rcnn_r50_fpn"):
        for spec in MODELS.get(model).split_specs():
            cases.append((f"{model}/{spec.split}", [(t.name, *t.shape_for(input_h, input_w)) for t in spec.tensors]))
    return cases


@pytest.mark.parametrize("case", _registered_shapes(), ids=lambda c: c[0])
@pytest.mark.parametrize("bit_depth", [8, 10])
def test_pack_unpack_round_trip_on_registered_split_shapes(case, bit_depth):
    _, shapes = case
    rng = np.random.default_rng(7)
    tensors = {n: torch.from_numpy(rng.normal(size=(2, c, h, w)).astype(np.float32) * 3) for n, c, h, w in shapes}
    packer = Packer(bit_depth)
    packed = packer.pack(tensors)
    assert packed.frames.dtype == np.uint16
    assert packed.frames.max() < 2**bit_depth
    assert packed.frames.shape[0] == 2
    out = unpack(packed)
    assert list(out) == [n for n, *_ in shapes]
    for i in range(2):
        r = packed.ranges[i][0]
        step = (r.hi - r.lo) / (2**bit_depth - 1)
        for n in out:
            err = (out[n][i] - tensors[n][i]).abs().max().item()
            assert err <= step / 2 + 1e-6 * (abs(r.lo) + abs(r.hi))  # half a step, plus float32 rounding
    # exact on the quantization grid: packing what unpack produced gives the same frames again
    again = packer.pack(out)
    np.testing.assert_array_equal(again.frames, packed.frames)


def test_tiling_is_an_exact_permutation():
    shapes = [("a", 7, 5, 6), ("b", 256, 8, 8), ("c", 3, 16, 4)]
    layout = Layout.for_shapes(shapes, align=8)
    rng = np.random.default_rng(0)
    tensors = {n: rng.integers(0, 1 << 16, size=(c, h, w), dtype=np.uint16) for n, c, h, w in shapes}
    frame = layout.tile(tensors, fill=0)
    back = layout.untile(frame)
    for n in tensors:
        np.testing.assert_array_equal(back[n], tensors[n])
    # every sample of every tensor appears in the frame exactly once
    offset = 0
    numbered = {}
    for n, c, h, w in shapes:
        numbered[n] = np.arange(offset, offset + c * h * w, dtype=np.int64).reshape(c, h, w)
        offset += c * h * w
    mosaic = layout.tile(numbered, fill=-1)
    placed = mosaic[mosaic >= 0]
    assert placed.size == offset and np.array_equal(np.sort(placed), np.arange(offset))
    assert layout.frame_height % 8 == 0 and layout.frame_width % 8 == 0


def test_layout_is_the_fcm_anchor_tiling():
    """256 channels → a 16×16 grid; FPN levels re-flow to the widest level's width and stack."""
    layout = Layout.for_shapes([("p2", 256, 64, 96), ("p3", 256, 32, 48), ("p4", 256, 16, 24), ("p5", 256, 8, 12)])
    p2, p3, p4, p5 = layout.placements
    assert (p2.rows, p2.cols) == (16, 16)
    assert layout.frame_width == 16 * 96
    assert (p3.cols, p3.rows, p3.top) == (32, 8, 16 * 64)
    assert (p4.cols, p4.rows) == (64, 4)
    assert (p5.cols, p5.rows) == (128, 2)
    assert layout.frame_height == 16 * 64 + 8 * 32 + 4 * 16 + 2 * 8
    # 80 channels: a = 8 (largest divisor ≤ √80), grid 8×10 in the squarer orientation
    lay80 = Layout.for_shapes([("s", 80, 14, 14)])
    p = lay80.placements[0]
    assert {p.rows, p.cols} == {8, 10}


def test_quantize_formula_and_constant_tensor():
    r = QuantRange(-1.0, 3.0)
    x = np.array([-1.0, 0.0, 1.0, 3.0], dtype=np.float32)
    q = quantize(x, r, 10)
    np.testing.assert_array_equal(q, np.rint((x + 1) / 4 * 1023).astype(np.uint16))
    np.testing.assert_allclose(dequantize(q, r, 10), x, atol=4 / 1023 / 2)
    const = np.full((4, 4), 2.5, dtype=np.float32)
    packed = Packer(10).pack({"t": torch.from_numpy(const)[None, None]})
    np.testing.assert_array_equal(unpack(packed)["t"][0, 0].numpy(), const)


def test_per_tensor_ranges_are_tighter():
    rng = np.random.default_rng(3)
    t = {
        "small": torch.from_numpy(rng.normal(size=(1, 16, 8, 8)).astype(np.float32) * 0.01),
        "big": torch.from_numpy(rng.normal(size=(1, 16, 8, 8)).astype(np.float32) * 100),
    }
    err = {}
    for mode in ("frame", "tensor"):
        out = unpack(Packer(8, mode).pack(t))
        err[mode] = (out["small"] - t["small"]).abs().max().item()
    assert err["tensor"] < err["frame"] / 100


def test_bad_inputs_are_rejected():
    with pytest.raises(ShapeError, match="NaN"):
        Packer(10).pack({"t": torch.tensor([[[[float("nan"), 1.0]]]])})
    with pytest.raises(ShapeError, match="N×C×H×W"):
        Packer(10).pack({"t": torch.zeros(3, 4, 4)})
    with pytest.raises(ShapeError, match="batch size"):
        Packer(10).pack({"a": torch.zeros(1, 2, 4, 4), "b": torch.zeros(2, 2, 4, 4)})
    with pytest.raises(ShapeError, match="bit depth"):
        Packer(9)
    layout = Layout.for_shapes([("t", 4, 4, 4)])
    with pytest.raises(ShapeError, match="shape"):
        layout.untile(np.zeros((3, 3), dtype=np.uint16))
    with pytest.raises(ShapeError, match="does not fit"):
        Layout(layout.placements, 4, 4)
    with pytest.raises(ShapeError, match="expected"):
        PackedFrames(np.zeros((1, 4, 4), np.uint16), layout, 10, "frame", ((QuantRange(0, 1),),))


def test_unused_samples_hold_the_mean_of_the_tensors_mean_codes():
    """The fill both packers (numpy and torch) put in unused tile slots and the alignment margin."""
    # integer features spanning [0, 255]: at 8 bits with per-tensor ranges, every code equals its feature
    a = torch.tensor([0.0, 255.0, 30.0]).reshape(1, 3, 1, 1)  # mean code 95
    b = torch.tensor([0.0, 255.0] + [10.0] * 6).reshape(1, 2, 2, 2)  # mean code 315 / 8 = 39.375
    packed = Packer(8, "tensor").pack({"a": a, "b": b})
    layout = packed.layout
    tiles = layout.tile({p.name: np.ones((p.channels, p.height, p.width), bool) for p in layout.placements})
    unused = packed.frames[0][~tiles]
    assert unused.size == layout.frame_height * layout.frame_width - 3 - 8 > 0
    assert set(unused.tolist()) == {67}  # round((95 + 39.375) / 2)
