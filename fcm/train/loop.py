"""The training loop: Adam on the wrapper pair, through the coded path, with the model frozen.

Per step ``k``: draw a batch of cached crops and one QP of ``qps`` (numpy ``Generator`` seeded by ``seed``), run
:class:`fcm.train.channel.CodedPath` (encode → pack → surrogate → unpack → decode), the frozen back half, and
minimise ``task loss + lam · rate (bits per input pixel)`` (:mod:`fcm.train.objective`), plus, for a learned rate
model, its bits of the detached frames per input pixel (its maximum-likelihood fit, Adam at ``rate_model_lr``; the
rate it reports then tracks the frames the wrapper makes). The fit's gradient reaches the rate model alone; the λ
term's reaches both the wrapper and the rate model, where it is the same likelihood gradient scaled by λ (Adam's
steps hardly depend on the scale). The logged ``loss`` is the whole sum, fit included. The model's own parameters
never require gradients: gradients reach the wrapper (and a learned rate model) only.

Reproducibility: everything random is seeded from ``seed`` (the crops, the wrapper's initial weights, the batches
and QPs, the surrogates' noise), ``torch.use_deterministic_algorithms(True)`` is on while training, and the real
codec is deterministic and run in submission order — so a config gives the same weights every time, whatever
``workers`` (on one machine; set ``torch_threads`` to fix the float summation order across machines). The
trainer state (:mod:`fcm.train.state`) is saved every ``save_every`` steps and at the end; running the same
config again resumes from it and ends with the weights of an uninterrupted run (another config is refused).
The per-step CSV log is trimmed back to the resumed step.

Just over 500 lines: the loop, its resumable checkpoints and its log are one state machine (a resumed run must
continue the same draws); configs are :mod:`fcm.train.config`, data :mod:`fcm.train.data`.
"""

from __future__ import annotations

import csv
import random
import sys
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fcm.errors import ConfigError, WeightsError
from fcm.models.base import Features, SplitModel
from fcm.surrogates.rate_models import RateModel, build_rate_model
from fcm.train import distributed
from fcm.train.channel import CodecChannel, CodedPath, RealChannel
from fcm.train.config import TrainConfig
from fcm.train.data import FeatureCache, build_cache, plan_crops
from fcm.train.objective import feature_error, rate_per_pixel, relative_feature_error
from fcm.train.state import TrainerState, capture_rng, load_state, restore_rng, save_state
from fcm.wrappers import WrapperPair, build_wrapper, save_wrapper
from fcm.wrappers.architectures import ChannelReduction

LOG_COLUMNS = (
    "step",
    "qp",
    "loss",
    "task_loss",
    "rate_bpp",
    "rate_fit_bpp",
    "real_bytes",
    "real_bpp",
    "temperature",
    "seconds",
)

#: independent seeded streams derived from ``seed``
_CROPS_STREAM, _BATCH_STREAM, _HELD_OUT_STREAM, _RATE_MODEL_STREAM = 1, 2, 3, 4


@dataclass
class TrainResult:
    """What :func:`train` did."""

    checkpoint: Path | None  # the wrapper checkpoint, when training finished
    weights_tag: str
    steps: int  # steps completed (all runs of this config together)
    finished: bool
    wall_seconds: float  # training time, all runs of this config together
    log: Path
    final: dict[str, float] = field(default_factory=dict)  # the last step's loss terms

    def summary(self) -> dict[str, Any]:
        return {
            "checkpoint": None if self.checkpoint is None else str(self.checkpoint),
            "weights_tag": self.weights_tag,
            "steps": self.steps,
            "finished": self.finished,
            "wall_seconds": round(self.wall_seconds, 3),
            "log": str(self.log),
            "final": self.final,
        }


def load_model(config: TrainConfig) -> SplitModel:
    """The split model, frozen (no parameter requires a gradient) and in eval mode."""
    from fcm.models import get_model

    model = get_model(config.model, config.split)
    model.requires_grad_(False)
    return model.eval()


def crop_rng(config: TrainConfig, stream: int = _CROPS_STREAM) -> np.random.Generator:
    """The generator the config's training crops are drawn from (another ``stream``: other crops)."""
    return np.random.default_rng([config.seed, stream])


def crop_cache(
    config: TrainConfig, model: SplitModel, stream: int = _CROPS_STREAM, progress: Progress | None = None
) -> FeatureCache:
    """The cached features of the config's crops (``stream``: another seeded stream gives held-out crops)."""
    crops = plan_crops(
        config.sources, config.crops_per_image, config.crop_size, crop_rng(config, stream), config.color_jitter
    )
    if progress is None:
        return build_cache(model, crops)
    bar = progress.bar(len(crops), "cache features", "crop")
    try:
        return build_cache(model, crops, on_chunk=bar.update)
    finally:
        bar.close()


#: the smallest gain fisher_gains gives a channel, relative to the largest
MIN_RELATIVE_GAIN = 1e-3


def fisher_gains(
    wrapper: WrapperPair,
    model: SplitModel,
    features: OrderedDict[str, torch.Tensor],
    exponent: float,
    seed: int,
    probes: int = 8,
) -> OrderedDict[str, torch.Tensor]:
    """Per coded channel k, the gain ``g_k ∝ w_k^(exponent/2)`` (geometric mean 1 over each tensor's channels) where
    ``w_k`` is the channel's mean task weight (:func:`fcm.rdo.sensitivity.coded_channel_weights`, target ``kl``) on
    ``features``. With one quantizer step for the whole frame, channel k's restored error then scales as ``1/g_k²``:
    at ``exponent`` 1 the weighted error ``Σ w_k e_k²`` is spread evenly, the high-rate optimum of weighted reverse
    water-filling; below 1 the weak channels keep more of their samples at low rates."""
    from fcm.rdo.sensitivity import coded_channel_weights

    if not isinstance(wrapper, ChannelReduction):
        raise ConfigError(f"init: fisher_pca scales the channels of channel_reduction, not of {wrapper.name}")
    weights = coded_channel_weights(model, wrapper, features, "kl", probes=probes, seed=seed)
    gains: OrderedDict[str, torch.Tensor] = OrderedDict()
    for name, w in weights.items():
        # a channel the task ignores keeps a gain ≥ 1/1000 of the largest: the second-order weight says nothing
        # about how far the post-wrapper may amplify the codec's error on it
        g = w.pow(exponent / 2)
        g = g.clamp_min(float(g.max()) * MIN_RELATIVE_GAIN)
        gains[name] = g / g.log().mean().exp()
    return gains


def held_out_cache(config: TrainConfig, model: SplitModel) -> FeatureCache:
    """Crops of the same sources drawn from a stream training never uses: for measuring generalisation."""
    return crop_cache(config, model, _HELD_OUT_STREAM)


def train(
    config: TrainConfig,
    progress: bool | None = None,
    max_steps: int | None = None,
    model: SplitModel | None = None,
) -> TrainResult:
    """Train (or resume training) the wrapper of ``config``; stop after ``max_steps`` steps of this call if given.

    ``progress``: ``True`` tqdm bars, ``False`` nothing, ``None`` bars on a terminal and a line every tenth of the
    feature cache and of the steps elsewhere (a batch job's log). ``model``: an already built model
    (it is frozen here); else it is built from the config.
    """
    where = distributed.setup()
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(config.torch_threads)
    previous_determinism = torch.are_deterministic_algorithms_enabled()
    # CUDA's deterministic kernels need a cuBLAS workspace setting the user may not have made: warn there, not fail
    torch.use_deterministic_algorithms(True, warn_only=where.device.type == "cuda")
    try:
        return _train(config, where, progress, max_steps, model)
    finally:
        torch.use_deterministic_algorithms(previous_determinism)
        torch.set_num_threads(previous_threads)
        distributed.teardown(where)


def _train(
    config: TrainConfig,
    where: distributed.Distributed,
    progress: bool | None,
    max_steps: int | None,
    model: SplitModel | None,
) -> TrainResult:
    if max_steps is not None and max_steps < 0:
        raise ConfigError(f"max_steps must be ≥ 0, got {max_steps}")
    if config.batch_size < where.world_size:
        raise ConfigError(f"batch_size {config.batch_size} is smaller than the {where.world_size} processes")
    identity = config.identity()
    model = load_model(config) if model is None else model.requires_grad_(False).eval()
    if (model.name, model.split) != (config.model, config.split or model.split):
        raise ConfigError(f"model {model.name}/{model.split} is not the config's {config.model}/{config.split}")
    reporter = Progress(_progress_mode(progress) if where.is_main else "off")
    cache = crop_cache(config, model, progress=reporter).to(where.device)
    model.to(where.device)

    torch.manual_seed(config.seed)
    random.seed(config.seed)
    sampler = np.random.default_rng([config.seed, _BATCH_STREAM])
    wrapper = build_wrapper(config.wrapper["name"], model.spec, **_options(config.wrapper)).to(where.device)
    if config.init in ("pca", "fisher_pca"):  # a resumed run overwrites this start with its saved weights below
        wrapper.init_from_features(cache.features)
    if config.init == "fisher_pca" and not config.state_path.is_file():
        gains = fisher_gains(wrapper, model, cache.features, config.fisher_exponent, config.seed)
        assert isinstance(wrapper, ChannelReduction)  # fisher_gains refuses any other wrapper
        wrapper.scale_coded_channels(gains)
    wrapper.train()
    rate_model = _rate_model(config).to(where.device)
    groups: list[dict[str, Any]] = [{"params": list(wrapper.parameters())}]
    if list(rate_model.parameters()):  # its own constant step size (group 1); configs without one keep group 0 only
        groups.append({"params": list(rate_model.parameters()), "lr": config.rate_model_lr})
    optimizer = torch.optim.Adam(groups, lr=config.lr)
    start, wall_before = 0, 0.0
    if config.state_path.is_file():
        state = load_state(config.state_path, identity)
        try:
            wrapper.load_state_dict(state.wrapper)
            if state.rate_model is not None or list(rate_model.state_dict()):
                rate_model.load_state_dict(state.rate_model or {})
            optimizer.load_state_dict(state.optimizer)
            restore_rng(state.rng, sampler)
        except (RuntimeError, ValueError, KeyError, TypeError, IndexError) as e:
            raise WeightsError(
                f"{config.state_path}: trainer state does not fit this run ({type(e).__name__}: {e}); "
                "delete it to start over"
            ) from e
        start, wall_before = state.step, state.wall_seconds
    if where.is_main:
        _trim_log(config.log_path, start)

    channel = CodecChannel(config)
    path: torch.nn.Module = CodedPath(wrapper, channel, channel.bit_depth, rate_model)
    if where.active:
        from torch.nn.parallel import DistributedDataParallel

        path = DistributedDataParallel(path, device_ids=[where.device.index] if where.device.type == "cuda" else None)

    end = config.steps if max_steps is None else min(config.steps, start + max_steps)
    began = time.perf_counter()
    final: dict[str, float] = {}
    step = start
    try:
        bar = reporter.bar(config.steps, "train", "step", initial=start)
        for step in range(start, end):
            t0 = time.perf_counter()
            row = _step(config, model, cache, path, optimizer, sampler, step, where)
            row["seconds"] = round(time.perf_counter() - t0, 4)
            final = {k: float(row[k]) for k in ("loss", "task_loss", "rate_bpp")}
            if where.is_main:
                _append_log(config.log_path, row)
                if (step + 1) % config.save_every == 0 and step + 1 < end:
                    _save(
                        config, identity, step + 1, wrapper, rate_model, optimizer, sampler, wall_before + _since(began)
                    )
            bar.update(1, f"loss {row['loss']:.4g}, qp {row['qp']}")
        step = end
        bar.close()
    finally:
        channel.close()
    wall = wall_before + _since(began)
    finished = step >= config.steps
    checkpoint = None
    if where.is_main:
        _save(config, identity, step, wrapper, rate_model, optimizer, sampler, wall)
        if finished:
            checkpoint = config.checkpoint
            save_wrapper(checkpoint, wrapper, model, training=_provenance(config, wall))
    return TrainResult(checkpoint, wrapper.weights_tag, step, finished, wall, config.log_path, final)


def _step(
    config: TrainConfig,
    model: SplitModel,
    cache: FeatureCache,
    path: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    sampler: np.random.Generator,
    step: int,
    where: distributed.Distributed,
) -> dict[str, Any]:
    """One optimisation step on this process's shard of the batch; returns its log row."""
    count = len(cache)
    batch = sampler.choice(count, size=config.batch_size, replace=count < config.batch_size)
    qp = int(config.qps[int(sampler.integers(len(config.qps)))])
    shard = torch.as_tensor(np.sort(batch)[where.rank :: where.world_size], device=cache.teacher.device)
    features, teacher = cache.take(shard)

    out = path(features, qp, step)
    task = _task(config.loss, model, out.restored, features, teacher)
    rate = rate_per_pixel(out.rate_bits, cache.input_pixels)
    loss = task + config.lam * rate if config.lam > 0 else task
    fit = None if out.fit_bits is None else rate_per_pixel(out.fit_bits, cache.input_pixels)
    if fit is not None:  # the rate model's own fit: its gradient reaches the rate model alone (detached frames)
        loss = loss + fit
    if not torch.isfinite(loss):
        raise ConfigError(f"training diverged at step {step}: the loss is {loss.item()} (lower lr?)")
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.param_groups[0]["lr"] = config.lr_at(step)  # the wrapper's; a rate model's (group 1) is constant
    optimizer.step()

    real_bytes = None if out.real_bytes is None else int(out.real_bytes.sum())
    items = int(shard.numel())
    return {
        "step": step,
        "qp": qp,
        "loss": float(loss.detach()),
        "task_loss": float(task.detach()),
        "rate_bpp": float(rate.detach()),
        "rate_fit_bpp": "" if fit is None else float(fit.detach()),
        "real_bytes": "" if real_bytes is None else real_bytes,
        "real_bpp": "" if real_bytes is None else 8 * real_bytes / (items * cache.input_pixels),
        "temperature": "" if out.temperature is None else out.temperature,
    }


def evaluate(
    wrapper: WrapperPair, model: SplitModel, cache: FeatureCache, config: TrainConfig, qps: tuple[int, ...] = ()
) -> float:
    """Mean task loss of ``wrapper`` on ``cache`` through the **real** codec (the config's codec and preset), over
    ``qps`` (default the config's): how well the pair does where it is deployed, not on a surrogate."""
    scores = []
    with RealChannel(config) as channel, torch.no_grad():
        path = CodedPath(wrapper, channel, channel.bit_depth)
        for qp in qps or config.qps:
            out = path(cache.features, qp, 0)
            scores.append(float(_task(config.loss, model, out.restored, cache.features, cache.teacher)))
    return sum(scores) / len(scores)


def _task(
    loss: str,
    model: SplitModel,
    restored: OrderedDict[str, torch.Tensor],
    features: OrderedDict[str, torch.Tensor],
    teacher: torch.Tensor,
) -> torch.Tensor:
    """The config's task loss (:mod:`fcm.train.objective`) of the restored tensors."""
    if loss == "features":
        return feature_error(restored, features)
    kl = model.distill_loss(model.distill_outputs(Features(restored)), teacher)
    return kl if loss == "output" else kl + relative_feature_error(restored, features)


def _options(spec: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in spec.items() if k != "name"}


def _rate_model(config: TrainConfig) -> RateModel:
    """The config's rate model, its initial parameters drawn (on the CPU) from a stream of their own, so that naming
    a learned model does not move the wrapper's start and the default leaves every generator as it was. (A learned
    model with a ``noise`` or ``sua`` quantizer then draws its noise from torch's generator at each step, like the
    surrogates.)"""
    seed = int(np.random.default_rng([config.seed, _RATE_MODEL_STREAM]).integers(2**62))
    with torch.random.fork_rng(devices=[]):
        torch.default_generator.manual_seed(seed)  # the CPU generator alone: torch.manual_seed reseeds CUDA's too
        return build_rate_model(config.rate_model, config.codec_bit_depth, config.steps)


def _provenance(config: TrainConfig, wall: float) -> dict[str, Any]:
    from fcm import __version__
    from fcm.numerics import numerics_record, package_versions

    return {
        "surrogate": config.surrogate,
        "steps": config.steps,
        "qps": list(config.qps),
        "lam": config.lam,
        **(
            {}
            if config.rate_model_is_default
            else {"rate_model": config.rate_model, "rate_model_lr": config.rate_model_lr}
        ),
        "loss": config.loss,
        "init": config.init,
        **({"fisher_exponent": config.fisher_exponent} if config.init == "fisher_pca" else {}),
        "seed": config.seed,
        "codec": config.codec,
        "preset": config.preset,
        "bit_depth": config.codec_bit_depth,
        "batch_size": config.batch_size,
        "lr": config.lr,
        "lr_schedule": config.lr_schedule,
        "images": list(config.sources),
        "config_identity": config.identity(),
        "fcm_version": __version__,
        # what else decides the weights' last bits on this machine (see fcm.numerics)
        "numerics": numerics_record(config.torch_threads),
        "packages": package_versions(),
        "wall_seconds": round(wall, 3),
    }


def _save(
    config: TrainConfig,
    identity: str,
    step: int,
    wrapper: WrapperPair,
    rate_model: RateModel,
    optimizer: torch.optim.Optimizer,
    sampler: np.random.Generator,
    wall: float,
) -> None:
    rate_state = {k: v.detach().cpu() for k, v in rate_model.state_dict().items()}
    state = TrainerState(
        identity,
        step,
        {k: v.detach().cpu() for k, v in wrapper.state_dict().items()},
        optimizer.state_dict(),
        capture_rng(sampler),
        wall,
        rate_state or None,
    )
    save_state(config.state_path, state)


def _since(t0: float) -> float:
    return time.perf_counter() - t0


def _progress_mode(progress: bool | None) -> str:
    """``bar`` on a terminal, ``lines`` (a line every 10 %) when stderr is a file or pipe, ``off`` if told."""
    if progress is False:
        return "off"
    return "bar" if progress or sys.stderr.isatty() else "lines"


class Progress:
    """Progress of training's long stages on stderr: tqdm bars on a terminal, a plain line every tenth of a stage
    elsewhere (logs of batch jobs), nothing when ``mode`` is ``off``."""

    def __init__(self, mode: str) -> None:
        self.mode = mode

    def bar(self, total: int, desc: str, unit: str, initial: int = 0) -> _Bar:
        return _Bar(self.mode, total, desc, unit, initial)


class _Bar:
    def __init__(self, mode: str, total: int, desc: str, unit: str, initial: int) -> None:
        self.mode, self.total, self.desc, self.unit, self.done = mode, total, desc, unit, initial
        self._tqdm: Any = None
        self._began = time.perf_counter()
        self._next = initial + max(1, total // 10)
        if mode == "bar":
            from tqdm import tqdm

            self._tqdm = tqdm(total=total, initial=initial, desc=desc, unit=unit, dynamic_ncols=True)
        elif mode == "lines":
            print(f"fcm train: {desc}: {initial}/{total} {unit}s", file=sys.stderr, flush=True)

    def update(self, n: int = 1, status: str = "") -> None:
        self.done += n
        if self._tqdm is not None:
            self._tqdm.update(n)
            if status:
                self._tqdm.set_postfix_str(status)
        elif self.mode == "lines" and (self.done >= self._next or self.done == self.total):
            self._next = self.done + max(1, self.total // 10)
            elapsed = time.perf_counter() - self._began
            extra = f", {status}" if status else ""
            print(
                f"fcm train: {self.desc}: {self.done}/{self.total} {self.unit}s ({elapsed:.0f} s{extra})",
                file=sys.stderr,
                flush=True,
            )

    def close(self) -> None:
        if self._tqdm is not None:
            self._tqdm.close()


def _append_log(path: Path, row: dict[str, Any]) -> None:
    new = not path.is_file()
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=LOG_COLUMNS)
        if new:
            writer.writeheader()
        writer.writerow(row)


def _trim_log(path: Path, start: int) -> None:
    """Keep the log rows of steps before ``start`` (a run may have logged steps after its last saved state)."""
    if not path.is_file():
        return
    if start == 0:
        path.unlink()
        return
    with path.open(newline="") as handle:
        rows = [r for r in csv.DictReader(handle) if r.get("step", "").isdigit() and int(r["step"]) < start]
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=LOG_COLUMNS, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    tmp.replace(path)


def read_log(path: Path) -> list[dict[str, str]]:
    """The CSV log's rows."""
    with Path(path).open(newline="") as handle:
        return list(csv.DictReader(handle))


__all__ = [
    "LOG_COLUMNS",
    "TrainResult",
    "crop_cache",
    "crop_rng",
    "evaluate",
    "held_out_cache",
    "load_model",
    "read_log",
    "train",
]
