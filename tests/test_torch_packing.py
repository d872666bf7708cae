"""Torch packing: bit-exact agreement with the numpy packer, and a differentiable path to codec samples and back."""

import numpy as np
import pytest
import torch

from fcm.errors import ShapeError
from fcm.packing import Layout, Packer, QuantRange, dequantize, quantize, unpack
from fcm.packing.torch_ops import (
    SampleRanges,
    dequantize_torch,
    from_sample_frames,
    pack_torch,
    quantize_torch,
    tile,
    to_sample_frames,
    unpack_torch,
    untile,
)

# several tensors of different strides and channel counts, odd sizes: tile grids with a partial last row, rows of
# unused slots, an alignment margin
FPN_LIKE = [("p2", 256, 25, 37), ("p3", 256, 13, 19), ("p4", 256, 7, 10), ("p5", 256, 4, 5)]
MIXED = [("a", 7, 5, 6), ("b", 13, 3, 9), ("c", 3, 16, 4), ("d", 1, 1, 1)]


def _assert_same_packing(tensors, bit_depth, range_mode):
    """Frames (uint16), ranges and layout of the torch packer equal numpy's; so do both unpackers' float32 tensors."""
    packer = Packer(bit_depth, range_mode)
    expected = packer.pack(tensors)
    got = pack_torch(packer, tensors)
    assert got.frames.dtype == np.uint16
    np.testing.assert_array_equal(got.frames, expected.frames)
    assert got.ranges == expected.ranges and got.layout == expected.layout
    assert (got.bit_depth, got.range_mode) == (expected.bit_depth, expected.range_mode)
    reference = unpack(expected)
    features = unpack_torch(expected)
    assert list(features) == list(reference)
    for name, t in reference.items():
        assert features[name].dtype == torch.float32
        assert torch.equal(features[name], t), name
    return expected


@pytest.fixture(scope="module")
def lite0_stage4(lite0):
    """Real stage-4 features of two photos (a batch of two frames, each with its own range and fill)."""
    from fcm.images import bundled_photo

    x = torch.cat([lite0.prepare(bundled_photo(name)) for name in ("chelsea", "coffee")])
    with torch.no_grad():
        return lite0.front(x).tensors


@pytest.mark.parametrize("range_mode", ["frame", "tensor"])
@pytest.mark.parametrize("bit_depth", [8, 10])
def test_torch_packing_equals_numpy_on_efficientnet_lite0_features(lite0_stage4, bit_depth, range_mode):
    packed = _assert_same_packing(lite0_stage4, bit_depth, range_mode)
    assert packed.frames.shape == (2, 144, 112)  # 80 channels of 14×14: 10 rows of 8 tiles, 140 rows aligned to 144
    for frame in packed.frames:
        assert frame[140:].min() == frame[140:].max()  # the margin holds the frame's fill
    assert packed.frames[0, 140, 0] != packed.frames[1, 140, 0]  # a fill per frame (the two photos differ)


@pytest.mark.parametrize("range_mode", ["frame", "tensor"])
@pytest.mark.parametrize("bit_depth", [8, 10])
@pytest.mark.parametrize("shapes", [FPN_LIKE, MIXED], ids=["fpn_like", "mixed"])
def test_torch_packing_equals_numpy_on_multi_tensor_layouts(shapes, bit_depth, range_mode):
    rng = np.random.default_rng(bit_depth)
    tensors = {
        name: torch.from_numpy((rng.standard_normal((2, c, h, w)) * 10.0**i + 3 * i).astype(np.float32))
        for i, (name, c, h, w) in enumerate(shapes)
    }
    packed = _assert_same_packing(tensors, bit_depth, range_mode)
    layout = packed.layout
    # the cases exercise what a permutation test alone would miss: partial tile rows and padding with the fill
    assert any(p.channels % p.cols for p in layout.placements)
    assert sum(c * h * w for _, c, h, w in shapes) < layout.frame_height * layout.frame_width
    if range_mode == "tensor":  # tensors of such different scales get ranges of their own
        assert len(set(packed.ranges[0])) == len(shapes)


def test_torch_tiling_equals_the_layout_tiling_sample_for_sample():
    layout = Layout.for_shapes([(n, c, h, w) for n, c, h, w in MIXED])
    offsets = np.cumsum([0] + [2 * c * h * w for _, c, h, w in MIXED])
    numbered = {  # every sample of the batch a distinct integer
        n: torch.arange(offsets[i], offsets[i + 1], dtype=torch.int64).reshape(2, c, h, w)
        for i, (n, c, h, w) in enumerate(MIXED)
    }
    frames = tile(layout, numbered, fill=torch.tensor([-1, -2]))
    for i in range(2):
        expected = layout.tile({n: t[i].numpy() for n, t in numbered.items()}, fill=-1 - i)
        np.testing.assert_array_equal(frames[i].numpy(), expected)
    back = untile(layout, frames)
    assert all(torch.equal(back[n], t) for n, t in numbered.items())
    with pytest.raises(ShapeError, match="layout expects"):
        untile(layout, frames[:, 1:])
    with pytest.raises(ShapeError, match="missing"):
        tile(layout, {"a": numbered["a"]})


@pytest.mark.parametrize("bit_depth", [8, 10, 16])
def test_quantize_torch_equals_numpy_including_ties_and_constant_tensors(bit_depth):
    peak = (1 << bit_depth) - 1
    rng = np.random.default_rng(3)
    x = (rng.standard_normal((4, 9, 11)) * 5 - 2).astype(np.float32)
    cases = [(x, QuantRange.of(x)), (x, QuantRange(-1.5, 2.25))]  # a range narrower than x: clipping at both ends
    # on [0, peak] the samples are the values themselves: exact halves, which round to even
    halves = np.arange(0, peak, max(1, peak // 200), dtype=np.float32) + np.float32(0.5)
    cases.append((halves, QuantRange(0.0, float(peak))))
    cases.append((np.full((3, 3), 2.5, dtype=np.float32), QuantRange(2.5, 2.5)))  # constant: all codes 0
    for values, r in cases:
        codes = quantize_torch(torch.from_numpy(values), r.lo, r.hi, bit_depth)
        expected = quantize(values, r, bit_depth)
        np.testing.assert_array_equal(codes.numpy().astype(np.uint16), expected)
        restored = dequantize_torch(codes, r.lo, r.hi, bit_depth)
        assert torch.equal(restored, torch.from_numpy(dequantize(expected, r, bit_depth)))
    assert quantize_torch(torch.tensor([2.5]), 0.0, 5.0, 8).item() == 128  # 127.5 rounds to the even neighbour


def test_sample_frames_are_differentiable_and_invert_to_the_features():
    rng = np.random.default_rng(4)
    shapes = FPN_LIKE[2:]
    x = {
        n: torch.from_numpy(rng.standard_normal((2, c, h, w)).astype(np.float32)).requires_grad_()
        for n, c, h, w in shapes
    }
    layout = Layout.for_shapes([(n, c, h, w) for n, c, h, w in shapes])
    ranges = SampleRanges.of(layout, x, "tensor")
    frames = to_sample_frames(layout, x, ranges, 10)
    # rounding and clipping the differentiable frames is exactly what the packer sends to the codec
    packed = Packer(10, "tensor").pack(x)
    np.testing.assert_array_equal(frames.detach().round().clamp(0, 1023).numpy().astype(np.uint16), packed.frames)
    restored = from_sample_frames(layout, frames, ranges, 10)
    for n, t in x.items():
        torch.testing.assert_close(restored[n], t, rtol=0, atol=1e-5)
    frames.sum().backward()
    for i, t in enumerate(x.values()):
        lo, hi = ranges.bounds(i)
        assert t.grad is not None
        torch.testing.assert_close(t.grad, (1023 / (hi - lo)).expand_as(t))  # d sample / d feature = peak / span
    frames = frames.detach().requires_grad_()
    sum(t.sum() for t in from_sample_frames(layout, frames, ranges, 10).values()).backward()
    assert frames.grad is not None
    grids = torch.zeros_like(frames, dtype=torch.bool)
    for name in layout.names:
        rows, cols = layout.region(name)
        grids[:, rows, cols] = True
    assert (frames.grad[grids] > 0).sum() == sum(t.numel() for t in x.values())  # each feature reads one sample
    assert (frames.grad[~grids] == 0).all()  # the margin reaches no feature


def test_torch_packer_rejects_what_the_numpy_packer_rejects():
    bad = {"a": torch.tensor([[[[0.0, float("nan")]]]])}
    for pack in (Packer(10).pack, lambda t: pack_torch(Packer(10), t)):
        with pytest.raises(ShapeError, match="NaN"):
            pack(bad)


def test_live_ranges_equal_the_packers_and_make_the_coded_path_scale_invariant():
    """Training's ranges are the packer's values, with gradients: a codec error fixed in samples then costs the same
    whatever scale the pre-wrapper gives its output, so no gradient pushes that scale (detached ranges would: −2L/a)."""
    from collections import OrderedDict

    from fcm.packing import Packer
    from fcm.packing.torch_ops import SampleRanges, from_sample_frames, to_sample_frames

    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 8, 6, 6, generator=g)
    layout = Packer(10).layout_for(OrderedDict(t=x))
    noise = 3 * torch.randn(2, layout.frame_height, layout.frame_width, generator=g)  # a codec error in samples

    def loss_and_grad(scale: float, ranges_of) -> tuple[float, float]:
        a = torch.tensor(scale, requires_grad=True)
        coded = OrderedDict(t=a * x)
        r = ranges_of(layout, coded, "frame")
        y = to_sample_frames(layout, coded, r, 10)
        loss = ((from_sample_frames(layout, y + noise, r, 10)["t"] / a - x) ** 2).mean()
        loss.backward()
        assert a.grad is not None
        return loss.item(), a.grad.item()

    live = [loss_and_grad(s, SampleRanges.live) for s in (0.5, 1.0, 2.0)]
    detached = [loss_and_grad(s, SampleRanges.of) for s in (0.5, 1.0, 2.0)]
    assert all(abs(grad) < 1e-4 * loss for loss, grad in live)  # float rounding only: 2L/a would be ~1e4 larger
    assert all(grad == pytest.approx(-2 * loss / s, rel=1e-3) for (loss, grad), s in zip(detached, (0.5, 1.0, 2.0)))
    coded = OrderedDict(t=x)
    assert torch.equal(SampleRanges.live(layout, coded, "tensor").lo, SampleRanges.of(layout, coded, "tensor").lo)
