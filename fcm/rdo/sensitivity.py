"""How much each coded sample matters to the cloud: w = diag(JᵀMJ) of the decoder-side chain g.

g maps the packed frames (codec sample values) to what the cloud computes from them::

    frames ─► unpack (untile + de-normalise with the signalled ranges) ─► [post-wrapper] ─► [back half] ─► y

To first order a coding error e on the frames changes y by J e, and the cost the task pays is ``(Je)ᵀ M (Je)``.
Keeping the diagonal gives a weighted SSE ``Σ wᵢ eᵢ²`` with ``wᵢ = (JᵀMJ)ᵢᵢ`` in codec-sample units
(``../shared/docs/methods.md`` §4). Targets (what y and M are):

``kl``
    the classifier's logits with M the Fisher information of its softmax, ``diag(p) − ppᵀ``: then ``½ eᵀJᵀMJe`` is
    the KL divergence between the clean and the coded class distributions to second order (what the ``fidelity``
    evaluator measures). For models whose back half returns a logits tensor.
``output``
    the back half's output tensor itself, M = I.
``features``
    the split tensors after the post-wrapper (what the back half receives), M = I; works for any model, including
    detectors whose outputs are not a tensor.

Estimators: :func:`exact_diagonal` forms J row by row (one backward pass per output element: for tests and small g);
:func:`probe_diagonal` averages ``(JᵀAz)²`` over Rademacher probes ``z`` with ``AAᵀ = M`` (one batched backward pass
for all probes), unbiased: ``E[(JᵀAz)²] = diag(JᵀMJ)``.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np
import torch

from fcm.errors import ConfigError, ShapeError
from fcm.rdo.targets import Target

if TYPE_CHECKING:
    from fcm.models.base import SplitModel
    from fcm.packing.packer import PackedFrames
    from fcm.wrappers.base import WrapperPair

#: maps the output ``y`` (detached) and raw probe directions ``r`` (``m × y.shape``) to ``A r`` with ``A Aᵀ = M``
Mixer = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def identity_mixer(y: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
    return r


def fisher_mixer(logits: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
    """``A r`` with ``A = diag(√p) − p√pᵀ`` per row of ``logits`` (``N×K``), so ``AAᵀ = diag(p) − ppᵀ``."""
    p = torch.softmax(logits.detach().to(torch.float64), dim=-1).to(logits.dtype)
    root = p.sqrt()
    return root * r - p * (root * r).sum(dim=-1, keepdim=True)


def probe_diagonal(
    fn: Callable[[torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    probes: int,
    generator: torch.Generator,
    mixer: Mixer = identity_mixer,
) -> torch.Tensor:
    """Estimate ``diag(JᵀMJ)`` of ``fn`` at ``x`` from ``probes`` Rademacher probes (each of the output's shape)."""
    if probes < 1:
        raise ConfigError(f"probes must be >= 1, got {probes}")
    with torch.enable_grad():
        x = x.detach().requires_grad_(True)
        y = fn(x)
        r = (
            torch.randint(0, 2, (probes, *y.shape), generator=generator, dtype=torch.int64).to(y.device, y.dtype) * 2
            - 1
        )
        v = mixer(y, r)
        try:
            # keep the graph: if an op has no batching rule the per-probe loop below reuses it
            (grads,) = torch.autograd.grad(y, x, v, retain_graph=True, is_grads_batched=True)
        except RuntimeError as e:
            if "batch" not in str(e).lower() and "vmap" not in str(e).lower():
                raise
            grads = torch.stack([torch.autograd.grad(y, x, v[i], retain_graph=True)[0] for i in range(probes)])
    return grads.square().mean(dim=0)


def exact_diagonal(
    fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, mixer: Mixer = identity_mixer
) -> torch.Tensor:
    """``diag(JᵀMJ)`` of ``fn`` at ``x`` exactly: ``Σₖ (Jᵀ A eₖ)²`` over the basis vectors ``eₖ`` of the output."""
    with torch.enable_grad():
        x = x.detach().requires_grad_(True)
        y = fn(x)
        total = torch.zeros_like(x)
        count = y.numel()
        for k in range(count):
            basis = torch.zeros(count, dtype=y.dtype, device=y.device)
            basis[k] = 1
            v = mixer(y, basis.reshape(1, *y.shape))[0]
            (g,) = torch.autograd.grad(y, x, v, retain_graph=k + 1 < count)
            total += g.square()
    return total


def decoder_chain(
    packed: PackedFrames,
    model: SplitModel | None,
    meta: dict[str, tuple[int, ...]],
    wrapper: WrapperPair | None,
    target: Target,
) -> tuple[Callable[[torch.Tensor], torch.Tensor], Mixer]:
    """g for ``packed`` (its layout, ranges and bit depth) and the mixer of ``target``'s metric."""
    from fcm.models.base import Features
    from fcm.packing.torch_ops import SampleRanges, from_sample_frames

    ranges = SampleRanges.from_packed(packed)
    layout, depth = packed.layout, packed.bit_depth

    def features(frames: torch.Tensor) -> OrderedDict[str, torch.Tensor]:
        tensors = from_sample_frames(layout, frames, ranges, depth)
        return tensors if wrapper is None else wrapper.decode(tensors)

    if target == "features":
        return (lambda frames: torch.cat([t.flatten(1) for t in features(frames).values()], dim=1)), identity_mixer
    if model is None:
        raise ConfigError(f"sensitivity target {target!r} runs the back half: give the model")

    def output(frames: torch.Tensor) -> torch.Tensor:
        y = model.back(Features(features(frames), dict(meta)))
        if not isinstance(y, torch.Tensor):
            raise ConfigError(
                f"model {model.name}'s back half returns {type(y).__name__}, not a tensor: use target 'features'"
            )
        if target == "kl" and y.ndim != 2:
            raise ConfigError(f"target 'kl' needs N×K logits, but {model.name}'s back half returns {tuple(y.shape)}")
        return y

    return output, fisher_mixer if target == "kl" else identity_mixer


def frame_sensitivity(
    packed: PackedFrames,
    model: SplitModel | None,
    meta: dict[str, tuple[int, ...]],
    wrapper: WrapperPair | None = None,
    target: Target = "kl",
    probes: int = 8,
    seed: int = 0,
) -> np.ndarray:
    """Raw weights ``w`` (``N×H×W`` float64, ≥ 0) of every sample of ``packed``'s frames (``probes=0``: exact).

    Each frame is estimated on its own (its probes drawn from ``seed`` and the frame index), so a frame's weights do
    not depend on the others in the stack.
    """
    if probes < 0:
        raise ConfigError(f"probes must be >= 0 (0: exact), got {probes}")
    out = np.empty(packed.frames.shape, dtype=np.float64)
    for i in range(packed.frames.shape[0]):
        one = _one_frame(packed, i)
        fn, mixer = decoder_chain(one, model, meta, wrapper, target)
        x = torch.from_numpy(one.frames.astype(np.float32))
        if probes == 0:
            w = exact_diagonal(fn, x, mixer)
        else:
            w = probe_diagonal(fn, x, probes, torch.Generator().manual_seed(seed * 1_000_003 + i), mixer)
        if not bool(torch.isfinite(w).all()):
            raise ShapeError("sensitivity weights are not finite (the back half produced NaN or infinite gradients)")
        out[i] = w[0].double().numpy()
    return out


def _one_frame(packed: PackedFrames, i: int) -> PackedFrames:
    from fcm.packing.packer import PackedFrames

    if packed.frames.shape[0] == 1:
        return packed
    return PackedFrames(
        packed.frames[i : i + 1], packed.layout, packed.bit_depth, packed.range_mode, packed.ranges[i : i + 1]
    )


def coded_channel_weights(
    model: SplitModel,
    wrapper: WrapperPair,
    features: OrderedDict[str, torch.Tensor],
    target: Target = "kl",
    probes: int = 8,
    seed: int = 0,
    chunk: int = 32,
) -> OrderedDict[str, torch.Tensor]:
    """The mean of ``w = diag(JᵀMJ)`` over the samples of each channel of each coded tensor, for the chain coded
    tensors → post-wrapper → back half, over the items of ``features`` (uncompressed split tensors, ``N×C×H×W``).

    Returns ``{coded name: float64 tensor of its channels}``, each ≥ 0, in the wrapper's coded order. A channel's
    weight says how much a unit of coding error spread over it costs the task (target ``kl``: twice the KL to second
    order), which the sample position does not enter; this is what a per-channel gain can act on when a codec's
    block map cannot follow channel tiles. Probes are drawn from ``seed`` (reproducible for a given chunking)."""
    from fcm.models.base import Features

    if target == "features":
        raise ConfigError("coded channel weights need the back half: use target 'kl' or 'output'")
    if probes < 1:
        raise ConfigError(f"probes must be >= 1, got {probes}")
    if chunk < 1:
        raise ConfigError(f"chunk must be >= 1, got {chunk}")
    n = next(iter(features.values())).shape[0] if features else 0
    if n == 0:
        raise ShapeError("coded channel weights need at least one item")
    generator = torch.Generator().manual_seed(seed)
    totals: OrderedDict[str, torch.Tensor] = OrderedDict()
    samples: dict[str, int] = {}
    for start in range(0, n, chunk):
        with torch.no_grad():
            coded = wrapper.encode(OrderedDict((k, v[start : start + chunk]) for k, v in features.items()))
        for name, z in coded.items():

            def output(
                x: torch.Tensor, name: str = name, coded: OrderedDict[str, torch.Tensor] = coded
            ) -> torch.Tensor:
                y = model.back(Features(wrapper.decode({**coded, name: x}), {}))
                if not isinstance(y, torch.Tensor) or (target == "kl" and y.ndim != 2):
                    raise ConfigError(
                        f"target {target!r} needs the back half to return N×K logits; {model.name}'s does not"
                    )
                return y

            w = probe_diagonal(output, z, probes, generator, fisher_mixer if target == "kl" else identity_mixer)
            if not bool(torch.isfinite(w).all()):
                raise ShapeError("coded channel weights are not finite (the back half gave NaN or infinite gradients)")
            per_channel = w.double().sum(dim=(0, 2, 3))
            totals[name] = per_channel if name not in totals else totals[name] + per_channel
            samples[name] = samples.get(name, 0) + w.shape[0] * w.shape[2] * w.shape[3]
    return OrderedDict((name, total / samples[name]) for name, total in totals.items())
