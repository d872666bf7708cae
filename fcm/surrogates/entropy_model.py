"""A learned factorized density with a cumulative that is monotone by construction (Ballé et al. 2018, appendix 6.1).

Per channel ``c``, the cumulative ``F_c(x) = σ(f_c(x))`` with ``f_c`` a chain of ``K + 1`` affine maps whose
matrices are ``softplus``-positive, each but the last followed by ``h ↦ h + tanh(a)·tanh(h)`` (``tanh(a) > −1``, so
every link is increasing): ``F_c`` is increasing from 0 to 1 whatever the parameters, so the mass of an interval
is a probability, never negative. This is the density model of CompressAI's ``EntropyBottleneck`` (filters
``(3, 3, 3)``, the same initialisation: ``F`` starts as a smooth step of width about ``init_scale``), written here
without its coding tables: fcm codes with a real codec and uses the density only for a differentiable rate.

``bits(x, half_width) = −log2 max(F(x + w) − F(x − w), bound)``: the information of an interval of width ``2w``
around ``x``. The difference is taken on the side of the median where both sigmoids are small (``sign`` flips
``σ(u) − σ(l)`` into ``σ(−l) − σ(−u)`` above the median), which keeps the tails' tiny masses from cancelling to
zero; the bound (CompressAI's likelihood bound 1e-9, :class:`fcm.surrogates.LowerBound`, gradient passing when it
pushes the mass up) keeps ``−log2`` finite.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from fcm.errors import ConfigError, ShapeError
from fcm.surrogates.lower_bound import lower_bound

#: CompressAI's likelihood bound: no interval carries more than ``−log2(1e-9) ≈ 29.9`` bits
LIKELIHOOD_BOUND = 1e-9
#: bounds on a density's size (a config names them: no option may make it unboundedly large). Each sample of ``x``
#: costs about ``Σ filters`` activations per link evaluation, so these keep a density within ~10× the default's
MAX_CHANNELS, MAX_LINKS, MAX_FILTER_WIDTH = 1024, 4, 16
#: the initial width a density may be given (in the units of ``x``)
INIT_SCALE_RANGE = (1e-3, 1e6)


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


class FactorizedDensity(nn.Module):
    """One learned univariate density per channel; ``bits(x, half_width)`` for ``x`` of shape ``C×M``.

    Args:
        channels: C, the number of independent densities.
        filters: widths of the hidden links of ``f_c`` (CompressAI's default ``(3, 3, 3)``).
        init_scale: initial width of each density, in the units of ``x``.
        likelihood_bound: the least mass an interval may have (sets the most bits one value may cost).
    """

    def __init__(
        self,
        channels: int,
        filters: tuple[int, ...] | list[int] = (3, 3, 3),
        init_scale: float = 10.0,
        likelihood_bound: float = LIKELIHOOD_BOUND,
    ) -> None:
        super().__init__()
        if isinstance(channels, bool) or not isinstance(channels, int) or not 1 <= channels <= MAX_CHANNELS:
            raise ConfigError(f"a factorized density needs 1 to {MAX_CHANNELS} channels, got {channels!r}")
        if (
            not isinstance(filters, (list, tuple))
            or not 1 <= len(filters) <= MAX_LINKS
            or any(isinstance(f, bool) or not isinstance(f, int) or not 1 <= f <= MAX_FILTER_WIDTH for f in filters)
        ):
            raise ConfigError(
                f"filters must be a list of 1 to {MAX_LINKS} integer widths in [1, {MAX_FILTER_WIDTH}], got {filters!r}"
            )
        low, high = INIT_SCALE_RANGE
        if not (_is_number(init_scale) and low <= init_scale <= high):  # comparisons: no overflow, NaN fails
            raise ConfigError(f"init_scale must be a number in [{low:g}, {high:g}], got {init_scale!r}")
        if not (_is_number(likelihood_bound) and 1e-30 <= likelihood_bound < 1):
            raise ConfigError(f"likelihood_bound must be a number in [1e-30, 1), got {likelihood_bound!r}")
        self.channels = int(channels)
        self.filters = tuple(int(f) for f in filters)
        self.likelihood_bound = float(likelihood_bound)
        widths = (1, *self.filters, 1)
        # the chain's slopes multiply to about 1/init_scale at the start: F begins as a step of that width
        scale = float(init_scale) ** (1.0 / (len(self.filters) + 1))
        self.matrices = nn.ParameterList()
        self.biases = nn.ParameterList()
        self.factors = nn.ParameterList()
        for i in range(len(self.filters) + 1):
            start = math.log(math.expm1(1.0 / scale / widths[i + 1]))
            self.matrices.append(nn.Parameter(torch.full((channels, widths[i + 1], widths[i]), start)))
            self.biases.append(nn.Parameter(torch.rand(channels, widths[i + 1], 1) - 0.5))
            if i < len(self.filters):
                self.factors.append(nn.Parameter(torch.zeros(channels, widths[i + 1], 1)))

    def logits_cumulative(self, x: torch.Tensor) -> torch.Tensor:
        """``f_c(x)`` (``F_c = σ(f_c)``) of ``x`` shaped ``C×M``, same shape."""
        h = x.unsqueeze(1)
        for i, matrix in enumerate(self.matrices):
            h = torch.matmul(F.softplus(matrix), h) + self.biases[i]
            if i < len(self.factors):
                h = h + torch.tanh(self.factors[i]) * torch.tanh(h)
        return h.squeeze(1)

    def bits(self, x: torch.Tensor, half_width: float | torch.Tensor) -> torch.Tensor:
        """``−log2`` of each interval ``[x − w, x + w]``'s mass (module doc), shape of ``x`` (``C×M``)."""
        if x.dim() != 2 or x.shape[0] != self.channels:
            raise ShapeError(f"a {self.channels}-channel density takes C×M values, got shape {tuple(x.shape)}")
        lower = self.logits_cumulative(x - half_width)
        upper = self.logits_cumulative(x + half_width)
        sign = -torch.sign(lower + upper).detach()
        mass = torch.abs(torch.sigmoid(sign * upper) - torch.sigmoid(sign * lower))
        return -torch.log2(lower_bound(mass, self.likelihood_bound))

    def extra_repr(self) -> str:
        return f"channels={self.channels}, filters={self.filters}, likelihood_bound={self.likelihood_bound:g}"
