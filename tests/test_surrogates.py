"""fcm.surrogates: values and gradients of every surrogate, with real codecs where φ is a codec."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from fcm.errors import CodecError, ConfigError, ShapeError
from fcm.surrogates import (
    AdditiveUniformNoise,
    CodecSurrogate,
    LowerBound,
    ProxyCodec,
    RealCodec,
    RoundSTE,
    Scaled,
    StochasticUniformAnnealing,
    StraightThrough,
    TemperatureSchedule,
    ZeroCenterQuantizer,
    dct_matrix,
    quantizer_step,
)
from fcm.surrogates.proxy_codec import block_dct, inverse_block_dct

PEAK_10BIT = 1023


def packed_frames(n: int, h: int = 32, w: int = 48, seed: int = 0) -> torch.Tensor:
    """10-bit-range float frames with structure (a ramp and a blob) plus noise, like packed features."""
    g = torch.Generator().manual_seed(seed)
    rows = torch.linspace(0, 1, h)[:, None]
    cols = torch.linspace(0, 1, w)[None, :]
    base = 300 + 400 * rows * cols + 200 * torch.exp(-((rows - 0.5) ** 2 + (cols - 0.4) ** 2) * 20)
    frames = base[None] + 40 * torch.randn(n, h, w, generator=g) + 30 * torch.arange(n)[:, None, None]
    return frames.clamp(0, PEAK_10BIT)


def fake_codec(y: torch.Tensor) -> torch.Tensor:
    """A fixed, deterministic, non-differentiable stand-in for a codec (coarse rounding plus a data-dependent
    offset), used where the Jacobian is computed in full."""
    return torch.round(y * 0.3) / 0.3 + 0.25 * torch.sin(torch.round(3 * y))


def full_jacobian(module: torch.nn.Module, y: torch.Tensor) -> torch.Tensor:
    jac = torch.autograd.functional.jacobian(module, y)
    assert isinstance(jac, torch.Tensor)
    return jac.reshape(y.numel(), y.numel())


# --- straight-through ---------------------------------------------------------------------------------------------


def test_straight_through_value_is_f_and_gradient_is_identity():
    y = (torch.randn(2, 3, 5) * 4).requires_grad_()
    ste = StraightThrough(fake_codec)
    out = ste(y)
    assert torch.equal(out, fake_codec(y.detach()))
    g = torch.randn_like(y)
    out.backward(g)
    assert torch.equal(y.grad, g)
    assert torch.equal(full_jacobian(ste, y.detach().double()), torch.eye(30, dtype=torch.float64))


def test_round_ste_rounds_with_identity_gradient():
    y = torch.tensor([-1.5, -0.4, 0.5, 0.6, 2.5, 7.49], requires_grad=True)
    out = RoundSTE()(y)
    assert torch.equal(out, torch.round(y.detach()))
    out.sum().backward()
    assert torch.equal(y.grad, torch.ones_like(y))


# --- SCALED -------------------------------------------------------------------------------------------------------


def test_scaled_forward_equals_real_x265_output_bit_exactly():
    frames = packed_frames(2)[:, None]  # N×1×H×W
    y = (frames + 0.3).requires_grad_()  # not on the integer grid: the codec input is rounded first
    with RealCodec("x265", qp=30, bit_depth=10) as codec:
        decoded = codec(y.detach())
        out = Scaled(codec)(y)
        via_module, num_bytes = CodecSurrogate(codec, "scaled")(y)
    assert torch.equal(out, decoded)
    assert torch.equal(via_module, decoded)
    assert not torch.equal(decoded, torch.round(frames))  # lossy: the check is not vacuous
    assert num_bytes.shape == (2,) and bool((num_bytes > 0).all())
    assert out.requires_grad


def scaled_jacobian_formula(eps: torch.Tensor, delta: float) -> torch.Tensor:
    """I − ε vᵀ/(‖v‖² + Nδ) for one reduction set (flattened)."""
    v = eps - eps.mean()
    return torch.eye(eps.numel(), dtype=eps.dtype) - torch.outer(eps, v) / (v @ v + eps.numel() * delta)


def test_scaled_jacobian_is_a_projector_per_sample_and_plane():
    # 2 samples × 2 planes × 4×5, float64; one reduction set = one (sample, plane): 20 elements
    y = torch.randn(2, 2, 4, 5, dtype=torch.float64) * 6
    delta = 1e-12
    scaled = Scaled(fake_codec, dims=(-2, -1), delta=delta)
    jac = full_jacobian(scaled, y)
    eps = (fake_codec(y) - y).reshape(-1)

    block_diagonal = torch.block_diag(*[scaled_jacobian_formula(e, delta) for e in eps.reshape(4, 20)])
    torch.testing.assert_close(jac, block_diagonal, rtol=0, atol=1e-12)
    # projector: J² = J, J ε = 0, εᵀ(Jᵀ g) = 0 (tolerances: float64 round-off of ~40-term sums of O(1) values)
    torch.testing.assert_close(jac @ jac, jac, rtol=0, atol=1e-10)
    assert (jac @ eps).abs().max() < 1e-9 * eps.abs().max()
    g = torch.randn(eps.numel(), dtype=torch.float64)
    assert abs(float(eps @ (jac.T @ g))) < 1e-9 * float(eps.norm() * g.norm())
    eigenvalues = torch.linalg.eigvals(jac)
    near_0_or_1 = torch.minimum((eigenvalues - 0).abs(), (eigenvalues - 1).abs())
    assert near_0_or_1.max() < 1e-6


def test_scaled_delta_guard_limits():
    y = torch.randn(1, 1, 4, 5, dtype=torch.float64) * 6
    eps = (fake_codec(y) - y).reshape(-1)
    v = eps - eps.mean()
    n = eps.numel()
    # J ε = ε·Nδ/(‖v‖² + Nδ): → 0 as δ → 0 (projector), → ε as δ → ∞ (straight-through)
    residuals = []
    for delta in (1e-2, 1e-6, 1e-10, 0.0):
        jac = full_jacobian(Scaled(fake_codec, delta=delta), y)
        expected = eps * n * delta / (v @ v + n * delta)
        torch.testing.assert_close(jac @ eps, expected, rtol=0, atol=1e-10)
        residuals.append(float((jac @ eps).norm()))
    assert residuals == sorted(residuals, reverse=True) and residuals[-1] < 1e-10
    jac_huge_delta = full_jacobian(Scaled(fake_codec, delta=1e12), y)
    torch.testing.assert_close(jac_huge_delta, torch.eye(n, dtype=torch.float64), rtol=0, atol=1e-9)
    # a flat error (‖v‖ = 0, e.g. a constant offset) with δ > 0: exactly straight-through, value φ(y)
    shift = Scaled(lambda t: t + 3.0, delta=1e-6)
    integers = torch.round(y)  # (t + 3) − t is exactly 3 there, so ‖v‖ = 0 exactly
    assert torch.equal(full_jacobian(shift, integers), torch.eye(n, dtype=torch.float64))
    assert torch.equal(shift(integers), integers + 3.0)
    # elsewhere ε is 3 up to float round-off (‖v‖² ~ 1e-30 ≪ Nδ): straight-through up to O(‖v‖²/(Nδ))
    torch.testing.assert_close(full_jacobian(shift, y), torch.eye(n, dtype=torch.float64), rtol=0, atol=1e-9)


def test_scaled_gradient_through_real_codec_matches_formula():
    frames = packed_frames(2)
    y = frames.double().requires_grad_()
    delta = 1e-6
    with RealCodec("x265", qp=34, bit_depth=10) as codec:
        out, _ = CodecSurrogate(codec, "scaled", delta=delta)(y)
        eps = (out.detach() - y.detach()).reshape(2, -1)
    g = torch.randn_like(y)
    out.backward(g)
    for i in range(2):
        e, gi = eps[i], g[i].reshape(-1)
        v = e - e.mean()
        expected = gi - v * (e @ gi) / (v @ v + e.numel() * delta)
        torch.testing.assert_close(y.grad[i].reshape(-1), expected, rtol=1e-10, atol=1e-10)
        assert abs(float(e @ y.grad[i].reshape(-1))) < 1e-8 * float(e.norm() * gi.norm())


def test_codec_surrogate_ste_gradient_is_identity():
    y = packed_frames(1).requires_grad_()
    with RealCodec("x264", qp=30, bit_depth=10) as codec:
        out, _ = CodecSurrogate(codec, "ste")(y)
        assert torch.equal(out, codec(y.detach()))
    g = torch.randn_like(y)
    out.backward(g)
    assert torch.equal(y.grad, g)


# --- quantization surrogates --------------------------------------------------------------------------------------


def test_additive_noise_trains_with_bounded_noise_and_evaluates_by_rounding():
    y = torch.randn(4000) * 10
    noise = AdditiveUniformNoise(step=2.0)
    y_train = y.clone().requires_grad_()
    out = noise(y_train)
    err = out.detach() - y
    assert err.abs().max() <= 1.0 and err.std() > 0.5  # U(−1, 1): std 2/√12 ≈ 0.577
    out.sum().backward()
    assert torch.equal(y_train.grad, torch.ones_like(y))
    noise.eval()
    assert torch.equal(noise(y), torch.round(y / 2) * 2)


def test_sua_at_zero_temperature_is_rounding_exactly():
    y = (torch.randn(10_000) * 20).requires_grad_()
    sua = StochasticUniformAnnealing(temperature=0.0)
    out = sua(y)
    assert torch.equal(out, torch.round(y.detach()))
    out.sum().backward()
    assert torch.equal(y.grad, torch.ones_like(y))  # straight-through: the gradient does not vanish at T = 0
    sua.temperature = 1e-9  # T → 0 from above: within T·(|y − round(y)| + ½) of rounding
    assert (sua(y.detach()) - torch.round(y.detach())).abs().max() <= 1e-9 * 1.0 + 1e-5


def test_sua_at_unit_temperature_is_uniform_noise():
    y = torch.randn(100_000, dtype=torch.float64) * 5
    torch.manual_seed(1)
    sua_out = StochasticUniformAnnealing(temperature=1.0)(y)
    torch.manual_seed(1)
    assert torch.equal(sua_out, AdditiveUniformNoise()(y))  # same draws: identical values
    # in distribution: ŷ − y ~ U(−½, ½) (Kolmogorov–Smirnov distance; 1.63/√n is the 1 % critical value)
    err, _ = torch.sort(sua_out - y)
    n = err.numel()
    cdf = (err + 0.5).clamp(0, 1)
    ranks = torch.arange(1, n + 1, dtype=torch.float64) / n
    ks = torch.maximum((ranks - cdf).abs(), (ranks - 1 / n - cdf).abs()).max()
    assert float(ks) < 1.63 / math.sqrt(n)
    assert abs(float(err.var()) - 1 / 12) < 0.002


def test_sua_intermediate_temperature_interpolates():
    y = torch.randn(1000, dtype=torch.float64) * 5
    torch.manual_seed(3)
    noisy = AdditiveUniformNoise()(y)
    torch.manual_seed(3)
    out = StochasticUniformAnnealing(temperature=0.25)(y)
    torch.testing.assert_close(out, 0.75 * torch.round(y) + 0.25 * noisy, rtol=0, atol=1e-12)
    sua = StochasticUniformAnnealing(temperature=0.5).eval()
    assert torch.equal(sua(y), torch.round(y))
    with pytest.raises(ConfigError):
        sua.temperature = 1.5


def test_temperature_schedules():
    exp = TemperatureSchedule("exponential", start=1.0, end=0.01, steps=100)
    assert exp(0) == 1.0 and exp(100) == 0.01 and exp(10_000) == 0.01
    assert math.isclose(exp(50), 0.1)
    lin = TemperatureSchedule("linear", start=1.0, end=0.0, steps=10)
    assert [lin(k) for k in (0, 5, 10, 11)] == [1.0, 0.5, 0.0, 0.0]
    values = [exp(k) for k in range(0, 101, 10)]
    assert values == sorted(values, reverse=True)
    with pytest.raises(ConfigError):
        TemperatureSchedule("exponential", end=0.0)
    with pytest.raises(ConfigError):
        TemperatureSchedule("linear", start=2.0)


# --- zero-centre quantization and lower bound ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("stop_inner", "stop_outer", "mu_grad_factor"),
    [(True, False, 1.0), (False, False, 0.0), (False, True, -1.0), (True, True, None)],
)
@pytest.mark.parametrize("mode", ["ste", "noise"])
def test_zero_center_stop_gradient_flags_choose_mu_gradient(mode, stop_inner, stop_outer, mu_grad_factor):
    y = (torch.randn(3, 8) * 4).requires_grad_()
    mu = (torch.randn(3, 8) * 4).requires_grad_()
    quantizer = ZeroCenterQuantizer(mode, stop_inner=stop_inner, stop_outer=stop_outer)
    out = quantizer(y, mu)
    if mode == "ste":
        torch.testing.assert_close(out, torch.round(y - mu) + mu, rtol=0, atol=1e-5)
    else:
        assert ((out - mu) - (y - mu)).abs().max() <= 0.5 + 1e-5
    g = torch.randn_like(y)
    out.backward(g)
    assert torch.equal(y.grad, g)
    if mu_grad_factor is None:
        assert mu.grad is None
    else:
        torch.testing.assert_close(mu.grad, mu_grad_factor * g, rtol=0, atol=0)


def test_zero_center_round_mode_is_hard():
    y = torch.tensor([0.2, 1.7, -2.6])
    mu = torch.tensor([0.5, 0.5, 0.5])
    out = ZeroCenterQuantizer("round", stop_inner=False)(y, mu)
    assert torch.equal(out, torch.round(y - mu) + mu)
    with pytest.raises(ConfigError):
        ZeroCenterQuantizer("soft")  # type: ignore[arg-type]


def test_lower_bound_value_and_gradient():
    bound = LowerBound()  # CompressAI's 0.11
    x = torch.tensor([0.05, 0.05, 0.11, 0.5, 0.5], requires_grad=True)
    out = bound(x)
    assert torch.equal(out, torch.tensor([0.11, 0.11, 0.11, 0.5, 0.5]))
    g = torch.tensor([1.0, -1.0, 1.0, 1.0, -1.0])
    out.backward(g)
    # below the bound only a gradient that pushes x up (g < 0) passes; at or above it everything passes
    assert torch.equal(x.grad, torch.tensor([0.0, -1.0, 1.0, 1.0, -1.0]))
    assert float(LowerBound(0.2).bound) == pytest.approx(0.2)


# --- proxy codec --------------------------------------------------------------------------------------------------


def test_proxy_codec_dct_is_orthonormal_and_inverts():
    for size in (4, 8):
        d = dct_matrix(size)
        torch.testing.assert_close(d @ d.T, torch.eye(size, dtype=torch.float64), rtol=0, atol=1e-12)
    planes = packed_frames(2, 16, 24).double()
    coefficients = block_dct(planes, dct_matrix(8))
    assert (inverse_block_dct(coefficients, dct_matrix(8)) - planes).abs().max() < 1e-6
    torch.testing.assert_close(coefficients.pow(2).sum(), planes.pow(2).sum(), rtol=1e-12, atol=0)  # Parseval
    # with a tiny step every surrogate level is the coefficient itself (±½ step), so the codec is near-lossless
    frames = packed_frames(1, 13, 21)  # not multiples of 8: padding and cropping
    out = ProxyCodec(qp=-80, mode="ste")(frames)
    assert out.frames.shape == frames.shape and (out.frames - frames).abs().max() < 1e-3


def test_proxy_codec_is_differentiable():
    x = (torch.rand(2, 5, 6, dtype=torch.float64) * PEAK_10BIT).requires_grad_()
    proxy = ProxyCodec(qp=22, bit_depth=10, block_size=4, mode="noise")

    def fixed_noise_proxy(t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        torch.manual_seed(7)  # the same noise draw at every evaluation
        return tuple(proxy(t))

    assert torch.autograd.gradcheck(fixed_noise_proxy, (x,), eps=1e-6, atol=1e-5)
    for mode in ("ste", "sua"):
        out = ProxyCodec(qp=22, mode=mode, temperature=0.5)(x)
        (out.frames.sum() + out.rate.sum()).backward()
        assert x.grad is not None and torch.isfinite(x.grad).all()


def test_proxy_codec_rate_falls_and_error_grows_with_qp():
    frames = packed_frames(2).double()
    rates, errors = [], []
    for qp in (12, 22, 32, 42):
        torch.manual_seed(0)
        out = ProxyCodec(mode="round")(frames, qp=qp)
        rates.append(out.rate)
        errors.append(float((out.frames - frames).pow(2).mean()))
    for lower, higher in itertools.pairwise(rates):
        assert bool((higher < lower).all())
    assert errors == sorted(errors)
    # the step rule: Δ = 2^((QP − 4)/6)·2^(bits − 8), doubling every 6 QP; per-item QPs as a tensor
    assert quantizer_step(4, 8) == 1.0 and quantizer_step(10, 10) == 8.0
    per_item = ProxyCodec(mode="round")(frames, qp=torch.tensor([12.0, 42.0]))
    torch.testing.assert_close(per_item.rate, torch.stack([rates[0][0], rates[3][1]]))


# --- real codec ---------------------------------------------------------------------------------------------------


def test_real_codec_results_do_not_depend_on_workers():
    frames = packed_frames(4) + 0.4
    qps = [26, 30, 34, 38]
    with RealCodec("x265", qp=30, bit_depth=10, workers=0) as inline:
        inline_out = inline.run(frames, qp=qps)
    with RealCodec("x265", qp=30, bit_depth=10, workers=2) as pooled:
        pooled_out = pooled.run(frames, qp=qps)
        again = pooled.run(frames, qp=qps)  # the same pool, reused
    assert torch.equal(inline_out.frames, pooled_out.frames) and torch.equal(again.frames, pooled_out.frames)
    assert torch.equal(inline_out.num_bytes, pooled_out.num_bytes)
    assert inline_out.frames.dtype == frames.dtype and inline_out.num_bytes.dtype == torch.int64


def test_real_codec_rate_falls_with_qp():
    frames = packed_frames(1)
    with RealCodec("x265", qp=22, bit_depth=10) as codec:
        sizes = [int(codec.run(frames, qp=qp).num_bytes[0]) for qp in (22, 30, 38, 46)]
        tensor_qp = codec.run(frames.expand(2, -1, -1), qp=torch.tensor([22, 46])).num_bytes
        assert tensor_qp.tolist() == [sizes[0], sizes[-1]]
        assert int(codec.run(frames, qp=torch.tensor(30)).num_bytes[0]) == sizes[1]
        errors = [float((codec.run(frames, qp=qp).frames - frames).pow(2).mean()) for qp in (22, 46)]
    assert sizes == sorted(sizes, reverse=True) and sizes[0] > sizes[-1]
    assert errors[0] < errors[1]


def test_real_codec_lossless_codec_returns_rounded_clipped_input():
    frames = packed_frames(2) * 1.2 - 50  # some samples outside [0, 1023]
    with RealCodec("ffv1", qp=0, bit_depth=10) as codec:
        out = codec(frames)
    assert torch.equal(out, torch.round(frames).clamp(0, PEAK_10BIT))


def test_real_codec_rejects_bad_input():
    codec = RealCodec("x265", qp=30, bit_depth=10)
    with pytest.raises(ShapeError, match="N×H×W"):
        codec(torch.zeros(32, 48))
    with pytest.raises(ShapeError, match="N×H×W"):
        codec(torch.zeros(2, 3, 32, 48))
    nan_frames = packed_frames(1)
    nan_frames[0, 3, 4] = float("nan")
    with pytest.raises(ShapeError, match="NaN"):
        codec(nan_frames)
    with pytest.raises(ShapeError, match="float"):
        codec(torch.zeros(1, 32, 48, dtype=torch.int64))
    with pytest.raises(CodecError, match="QP"):
        codec.run(packed_frames(1), qp=70)
    with pytest.raises(ConfigError, match="QPs"):
        codec.run(packed_frames(2), qp=[30])
    with pytest.raises(CodecError, match="12-bit"):
        RealCodec("x265", qp=30, bit_depth=12)
