"""fcm.surrogates.rate_models and entropy_model: the training rate term's values, gradients, fitting and errors."""

from __future__ import annotations

import itertools

import pytest
import torch

from fcm.errors import ConfigError, ShapeError, UnknownNameError
from fcm.surrogates import ProxyCodec
from fcm.surrogates.entropy_model import FactorizedDensity
from fcm.surrogates.rate_models import RATE_MODELS, FactorizedRate, build_rate_model

QPS = (22, 27, 32, 37, 42, 47)


def frames(n: int = 2, h: int = 32, w: int = 48, seed: int = 0) -> torch.Tensor:
    """10-bit float frames with smooth structure plus noise, like packed features."""
    g = torch.Generator().manual_seed(seed)
    rows = torch.linspace(0, 1, h)[:, None]
    cols = torch.linspace(0, 1, w)[None, :]
    base = 400 + 300 * rows * cols + 150 * torch.sin(12 * cols) * torch.cos(7 * rows)
    return (base[None] + 25 * torch.randn(n, h, w, generator=g)).clamp(0, 1023)


def test_registry_holds_both_models() -> None:
    assert {"log_magnitude", "factorized"} <= set(RATE_MODELS.names())


def test_log_magnitude_is_the_proxy_codecs_rate() -> None:
    y = frames()
    model = build_rate_model({"name": "log_magnitude"}, bit_depth=10)
    assert not model.learned and not list(model.parameters())
    for qp in (22, 37):
        expected = ProxyCodec(bit_depth=10, mode="ste")(y, qp).rate
        torch.testing.assert_close(model(y, qp), expected)
    # N×1×H×W frames are taken as N×H×W
    torch.testing.assert_close(model(y[:, None], 32), model(y, 32))


@pytest.mark.parametrize("quantizer", ["noise", "ste", "sua"])
@pytest.mark.parametrize("zero_center", [False, True])
def test_factorized_bits_fall_as_qp_grows_with_finite_gradients(quantizer: str, zero_center: bool) -> None:
    torch.manual_seed(0)
    model = build_rate_model(
        {"name": "factorized", "quantizer": quantizer, "zero_center": zero_center}, bit_depth=10, steps=10
    )
    assert model.learned and list(model.parameters())
    y = frames().requires_grad_(True)
    totals = []
    for qp in QPS:
        torch.manual_seed(1)  # the noise surrogate's draw, the same at every QP
        bits = model(y, qp, step=5)
        assert bits.shape == (2,)
        assert torch.isfinite(bits).all() and (bits > 0).all()
        totals.append(float(bits.detach().sum()))
    assert all(a > b for a, b in itertools.pairwise(totals)), totals
    # both the frames and the density receive finite, non-zero gradients
    model.zero_grad()
    y.grad = None
    model(y, 32, step=5).sum().backward()
    assert y.grad is not None and torch.isfinite(y.grad).all() and y.grad.abs().sum() > 0
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)
    assert sum(float(g.abs().sum()) for g in grads) > 0


def test_fitting_the_density_lowers_the_bits_of_frames_it_has_not_seen() -> None:
    torch.manual_seed(0)
    model = FactorizedRate(bit_depth=10, quantizer="noise")
    train, held_out = frames(4, seed=1), frames(2, seed=2)
    with torch.no_grad():
        before = float(model(held_out, 32).sum())
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(150):
        opt.zero_grad()
        loss = model(train, 32).sum() / train.numel()
        loss.backward()
        opt.step()
    with torch.no_grad():
        after = float(model(held_out, 32).sum())
    assert after < 0.7 * before, (before, after)


def test_the_ste_quantizer_counts_the_bits_of_the_levels() -> None:
    """With rounding, frames whose coefficients round to the same levels cost the same bits."""
    torch.manual_seed(0)
    model = FactorizedRate(bit_depth=10, quantizer="ste")
    y = frames(1)
    flat = torch.full_like(y, 512.0)  # all coefficients zero
    tiny = flat + 0.01 * torch.randn_like(flat)  # rounds to zero at QP 37 (Δ ≫ 0.01)
    torch.testing.assert_close(model(tiny, 37), model(flat, 37))
    assert float(model(y, 37).detach()) > float(model(flat, 37).detach())


def test_likelihood_bound_caps_the_bits_of_one_coefficient() -> None:
    torch.manual_seed(0)
    model = FactorizedRate(bit_depth=10, quantizer="ste", block_size=1, init_scale=1.0, likelihood_bound=1e-3)
    y = torch.full((1, 4, 4), 512.0)
    y[0, 0, 0] = 1023.0  # far in the tail of a narrow density
    bits = float(model(y, 22))
    assert bits <= 16 * -torch.log2(torch.tensor(1e-3)).item() + 1e-4


def test_density_cumulative_is_monotone_and_masses_sum_to_one() -> None:
    torch.manual_seed(0)
    density = FactorizedDensity(3, init_scale=5.0)
    with torch.no_grad():
        for p in density.parameters():  # any parameters: monotone by construction
            p.add_(torch.randn_like(p))
        x = torch.linspace(-200, 200, 4001).expand(3, -1).contiguous()
        cdf = torch.sigmoid(density.logits_cumulative(x))
        assert (cdf[:, 1:] >= cdf[:, :-1] - 1e-7).all()
        centres = torch.arange(-2000.0, 2001.0).expand(3, -1).contiguous()
        mass = torch.exp2(-density.bits(centres, 0.5)).sum(dim=1)
    torch.testing.assert_close(mass, torch.ones(3), atol=1e-3, rtol=0)


def test_unknown_name_and_bad_options_are_refused() -> None:
    with pytest.raises(UnknownNameError, match="wavelet"):
        build_rate_model({"name": "wavelet"}, bit_depth=10)
    with pytest.raises(ConfigError, match="quantizer"):
        build_rate_model({"name": "factorized", "quantizer": "dither"}, bit_depth=10)
    with pytest.raises(ConfigError, match="zero_center"):
        build_rate_model({"name": "factorized", "zero_center": "yes"}, bit_depth=10)
    with pytest.raises(ConfigError, match="block_size"):
        build_rate_model({"name": "factorized", "block_size": 0}, bit_depth=10)
    with pytest.raises(ConfigError, match="likelihood_bound"):
        build_rate_model({"name": "factorized", "likelihood_bound": 2.0}, bit_depth=10)
    with pytest.raises(ConfigError, match="filters"):
        build_rate_model({"name": "factorized", "filters": []}, bit_depth=10)
    with pytest.raises(ConfigError, match="init_scale"):
        build_rate_model({"name": "factorized", "init_scale": float("nan")}, bit_depth=10)
    with pytest.raises(ConfigError, match="colour"):
        build_rate_model({"name": "factorized", "colour": 3}, bit_depth=10)
    with pytest.raises(ConfigError, match="colour"):
        build_rate_model({"name": "log_magnitude", "colour": 3}, bit_depth=10)
    with pytest.raises(ConfigError, match="name"):
        build_rate_model({"name": 3}, bit_depth=10)


def test_wrong_shapes_and_dtypes_are_refused() -> None:
    for spec in ({"name": "log_magnitude"}, {"name": "factorized"}):
        model = build_rate_model(spec, bit_depth=10)
        with pytest.raises(ShapeError, match="N×H×W"):
            model(torch.zeros(8, 8), 32)
        with pytest.raises(ShapeError, match="N×H×W"):
            model(torch.zeros(1, 3, 8, 8), 32)
        with pytest.raises(ShapeError, match="float"):
            model(torch.zeros(1, 8, 8, dtype=torch.int32), 32)
    with pytest.raises(ShapeError, match="C×M"):
        FactorizedDensity(4).bits(torch.zeros(3, 5), 0.5)


@pytest.mark.parametrize(
    "options",
    [
        {"filters": [100000, 100000]},
        {"filters": [64] * 8},
        {"init_scale": 10**400},
        {"init_scale": 1e-300},
        {"likelihood_bound": 0.0},
        {"filters": [3] * 50},
        {"filters": ["3"]},
        {"filters": 3},
        {"block_size": 4096},
        {"block_size": 32},
        {"block_size": True},
        {"init_scale": "wide"},
        {"likelihood_bound": "small"},
        {"quantizer": ["noise"]},
    ],
)
def test_hostile_options_are_refused_before_anything_is_allocated(options: dict[str, object]) -> None:
    with pytest.raises(ConfigError):
        build_rate_model({"name": "factorized", **options}, bit_depth=10)


@pytest.mark.parametrize("zero_center", [False, True])
def test_in_eval_mode_a_noisy_quantizer_counts_the_rounded_levels(zero_center: bool) -> None:
    """Scoring must not depend on noise: eval mode rounds, whatever the training surrogate."""
    torch.manual_seed(0)
    noisy = FactorizedRate(bit_depth=10, quantizer="noise", zero_center=zero_center)
    rounded = FactorizedRate(bit_depth=10, quantizer="ste", zero_center=zero_center)
    rounded.load_state_dict(noisy.state_dict())
    y = frames()
    noisy.eval()
    with torch.no_grad():
        first, again = noisy(y, 32), noisy(y, 32)
        torch.testing.assert_close(first, again)
        torch.testing.assert_close(first, rounded(y, 32))
        noisy.train()
        assert not torch.equal(noisy(y, 32), first)
