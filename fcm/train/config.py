"""Training configuration: YAML → a validated, frozen :class:`TrainConfig`, before any work starts."""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Literal

from fcm.errors import ConfigError, FcmError

Surrogate = Literal["scaled", "ste", "noise", "proxy"]
SURROGATES: tuple[str, ...] = ("scaled", "ste", "noise", "proxy")
Loss = Literal["output", "features", "mix"]
LOSSES: tuple[str, ...] = ("output", "features", "mix")
#: how the wrapper starts: ``pca`` (from the training features, see WrapperPair.init_from_features), ``fisher_pca``
#: (that start with task-weighted channel gains, see fcm.train.loop.fisher_gains) or ``random`` (as built)
INITS: tuple[str, ...] = ("pca", "fisher_pca", "random")
LR_SCHEDULES: tuple[str, ...] = ("constant", "cosine")

#: Fields that do not change what training computes: they are left out of :meth:`TrainConfig.identity`, so a run
#: may resume with other workers, another log file or another save interval.
_NOT_IN_IDENTITY = ("workers", "checkpoint", "log", "save_every")
#: the rate model fcm trained with before rate models were selectable (configs that do not name one keep their
#: identity and their weights)
DEFAULT_RATE_MODEL: dict[str, Any] = {"name": "log_magnitude"}


@dataclass(frozen=True)
class TrainConfig:
    """How to train a wrapper pair end to end through a codec (or a stand-in for one).

    Attributes:
        checkpoint: where the trained wrapper is written (:func:`fcm.wrappers.save_wrapper`); the resumable trainer
            state lives next to it (``CHECKPOINT.state``).
        wrapper: ``{name, ...options}`` of :func:`fcm.wrappers.build_wrapper`.
        model, split: the split model (``split``: the model's default when omitted).
        codec: registry name of the inner codec (``fcm codecs``).
        preset: encoder preset of the real codec. ``ultrafast`` by default: training codes every batch item at every
            step, and the fastest preset keeps the codec from dominating a step. Evaluate with the preset you deploy.
        bit_depth: packing bit depth (``None``: the codec's highest).
        qps: one is drawn per step (seeded), so one wrapper serves the whole rate range.
        surrogate: the gradient path through the codec: ``scaled`` / ``ste`` (the real codec in the forward pass),
            ``noise`` (uniform noise of the codec's quantizer step), ``proxy`` (the differentiable block-DCT codec).
        lam: λ, weight of the rate proxy (bits per input pixel), ≥ 0.
        rate_model: ``{name, ...options}`` of :func:`fcm.surrogates.rate_models.build_rate_model`, what the rate
            term counts: ``log_magnitude`` (default, no parameters) or ``factorized`` (a learned density per block-DCT
            frequency, fitted by maximum likelihood on the training frames alongside the wrapper, whatever λ).
        rate_model_lr: Adam step size of a learned rate model's parameters (constant; default 0.01: the density
            must track frames that move while the wrapper trains).
        init: ``pca`` (default: the wrapper starts from the training features' principal components, where its
            architecture supports it), ``fisher_pca`` (that start, then each coded channel scaled by its task
            weight to the power ``fisher_exponent / 2``: see :func:`fcm.train.loop.fisher_gains`; classifiers with
            ``channel_reduction``) or ``random`` (as built).
        fisher_exponent: β of ``fisher_pca``, in (0, 2] (default 0.5; 1 is the high-rate optimum for a weighted
            squared error, smaller values hedge for the low rates where weak channels are quantized away).
        loss: ``output`` (distillation, no labels: the model's ``distill_loss`` of its ``distill_outputs`` against
            the uncompressed model's — a classifier's class-distribution KL, a detector's per-anchor RPN objectness
            KL), ``features`` (MSE of the restored split tensors to the uncompressed ones) or ``mix`` (the
            distillation plus the features' MSE relative to their mean square: :mod:`fcm.train.objective`).
        steps, batch_size, lr, seed: optimisation (Adam) and the seed of everything random; ``steps: 0`` saves the
            start itself (with ``init: pca``, the principal-component pair) as the checkpoint.
        lr_schedule: ``constant`` (default) or ``cosine``: the step size falls from ``lr`` to 1 % of it along half a
            cosine over ``steps`` (a function of the step alone, so a resumed run follows the same schedule).
        images: training sources (:data:`fcm.train.data.TRAINING_SOURCES`, ``photos:train``, ``photo:…``,
            ``folder:PATH``, ``file:PATH``: :func:`fcm.train.data.resolve_sources`; default the built-in ones).
        crops_per_image: random crops taken per source (cached once, then sampled).
        crop_size: ``[low, high]`` side of the square crops in source pixels (the model resizes them).
        color_jitter: j in [0, 1): each crop's brightness, contrast and saturation scaled by factors drawn from
            [1 − j, 1 + j] (default 0: none).
        workers: codec worker processes (results do not depend on it).
        log: per-step CSV log (default: the checkpoint's path with suffix ``.csv``).
        save_every: steps between saves of the resumable trainer state.
        torch_threads: intra-op threads of torch while training (default 2, whatever the machine). Float sums split
            across threads round differently, so the weights depend on it: a fixed default makes a config give the
            same weights on any machine of the same CPU type; raise it for speed on a bigger machine, knowing the
            weights then differ.
    """

    checkpoint: Path
    wrapper: dict[str, Any]
    model: str = "efficientnet_lite0"
    split: str | None = None
    codec: str = "x265"
    preset: str | None = "ultrafast"
    bit_depth: int | None = None
    qps: tuple[int, ...] = (27, 32, 37, 42)
    surrogate: Surrogate = "scaled"
    lam: float = 0.0
    rate_model: dict[str, Any] = field(default_factory=lambda: dict(DEFAULT_RATE_MODEL))
    rate_model_lr: float = 1e-2
    loss: Loss = "output"
    init: str = "pca"
    fisher_exponent: float = 0.5
    steps: int = 300
    batch_size: int = 8
    lr: float = 1e-3
    lr_schedule: str = "constant"
    seed: int = 0
    images: tuple[str, ...] = ()
    crops_per_image: int = 8
    crop_size: tuple[int, int] = (128, 384)
    color_jitter: float = 0.0
    workers: int = 0
    log: Path | None = None
    save_every: int = 50
    torch_threads: int = 2

    @classmethod
    def from_yaml(cls, path: str | Path, overrides: dict[str, Any] | None = None) -> TrainConfig:
        from fcm.yaml_files import read_mapping

        raw = read_mapping(path, "config file")
        return cls.from_config({**raw, **(overrides or {})})

    @classmethod
    def from_config(cls, raw: dict[str, Any]) -> TrainConfig:
        """Validate ``raw`` (a YAML mapping); :class:`ConfigError` names the first bad key."""
        if not isinstance(raw, dict):
            raise ConfigError(f"a training config must be a mapping, got {type(raw).__name__}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(raw) - known)
        if unknown:
            raise ConfigError(f"unknown config keys {unknown}; known: {', '.join(sorted(known))}")
        missing = [k for k in ("checkpoint", "wrapper") if raw.get(k) is None]
        if missing:
            raise ConfigError(f"config is missing required keys {missing}")
        values = dict(raw)
        values["checkpoint"] = _path(raw["checkpoint"], "checkpoint")
        values["log"] = None if raw.get("log") is None else _path(raw["log"], "log")
        values["wrapper"] = _wrapper(raw["wrapper"])
        for key in ("model", "codec"):
            if key in raw:
                values[key] = _string(raw[key], key)
        for key in ("split", "preset"):
            if raw.get(key) is not None:
                values[key] = _string(raw[key], key)
        if raw.get("bit_depth") is not None:
            values["bit_depth"] = _integer(raw["bit_depth"], "bit_depth", 1)
        if "qps" in raw:
            values["qps"] = _int_list(raw["qps"], "qps", 0)
        values["surrogate"] = _choice(raw.get("surrogate", cls.surrogate), "surrogate", SURROGATES)
        values["loss"] = _choice(raw.get("loss", cls.loss), "loss", LOSSES)
        values["init"] = _choice(raw.get("init", cls.init), "init", INITS)
        values["lr_schedule"] = _choice(raw.get("lr_schedule", cls.lr_schedule), "lr_schedule", LR_SCHEDULES)
        if "lam" in raw:
            values["lam"] = _number(raw["lam"], "lam", 0.0)
        if raw.get("rate_model") is not None:
            values["rate_model"] = _rate_model(raw["rate_model"])
        else:
            values.pop("rate_model", None)
        if "rate_model_lr" in raw:
            values["rate_model_lr"] = _number(raw["rate_model_lr"], "rate_model_lr", 0.0)
            if values["rate_model_lr"] <= 0:
                raise ConfigError(f"rate_model_lr must be > 0, got {raw['rate_model_lr']!r}")
        if "fisher_exponent" in raw:
            values["fisher_exponent"] = _number(raw["fisher_exponent"], "fisher_exponent", 0.0)
            if not 0 < values["fisher_exponent"] <= 2:
                raise ConfigError(f"fisher_exponent must be in (0, 2], got {raw['fisher_exponent']!r}")
            if values["init"] != "fisher_pca":
                raise ConfigError("fisher_exponent applies to init: fisher_pca only")
        if "lr" in raw:
            values["lr"] = _number(raw["lr"], "lr", 0.0)
            if values["lr"] <= 0:
                raise ConfigError(f"lr must be > 0, got {raw['lr']!r}")
        # steps 0: the start itself becomes the checkpoint (e.g. the PCA start of a full-rank linear pair: the KLT)
        for key, low in (("steps", 0), ("batch_size", 1), ("crops_per_image", 1), ("save_every", 1)):
            if key in raw:
                values[key] = _integer(raw[key], key, low)
        if "torch_threads" in raw:
            values["torch_threads"] = _integer(raw["torch_threads"], "torch_threads", 1)
        for key in ("seed", "workers"):
            if key in raw:
                values[key] = _integer(raw[key], key, 0)
        if raw.get("images") is not None:
            values["images"] = _images(raw["images"])
        else:
            values.pop("images", None)
        if "crop_size" in raw:
            values["crop_size"] = _crop_size(raw["crop_size"])
        if "color_jitter" in raw:
            values["color_jitter"] = _number(raw["color_jitter"], "color_jitter", 0.0)
            if values["color_jitter"] >= 1:
                raise ConfigError(
                    f"color_jitter must be below 1 (factors in [1 − j, 1 + j]), got {raw['color_jitter']!r}"
                )
        config = cls(**values)
        config._check_codec()
        config._check_rate_model()
        config._check_wrapper()
        return config

    @property
    def rate_model_is_default(self) -> bool:
        return self.rate_model == DEFAULT_RATE_MODEL

    def _check_rate_model(self) -> None:
        """The rate model's options, checked by building it (a few small tensors)."""
        import torch

        from fcm.surrogates.rate_models import build_rate_model

        try:
            with torch.random.fork_rng(devices=[]):  # building draws initial weights: leave the caller's stream be
                build_rate_model(self.rate_model, self.codec_bit_depth, self.steps)
        except FcmError as e:
            raise ConfigError(f"rate_model: {e}") from e

    def _check_wrapper(self) -> None:
        """Model, split and wrapper options, checked by building the wrapper on the split's published spec (no
        weights are loaded), so a bad option fails here rather than after the feature cache is built."""
        from fcm.models import MODELS
        from fcm.wrappers import build_wrapper

        try:
            entry = MODELS.get(self.model)
        except FcmError as e:
            raise ConfigError(f"model: {e}") from e
        split = self.split or entry.default_split
        specs = {spec.split: spec for spec in entry.split_specs()}
        if split not in specs:
            if entry.any_node:  # a graph node: its tensors are known only once the model is cut there
                return
            raise ConfigError(f"split: unknown split {split!r} of model {self.model!r}; known: {', '.join(specs)}")
        options = {k: v for k, v in self.wrapper.items() if k != "name"}
        try:
            wrapper = build_wrapper(self.wrapper["name"], specs[split], **options)
        except TypeError as e:
            raise ConfigError(f"wrapper {self.wrapper['name']!r}: {e}") from None
        except FcmError as e:
            raise ConfigError(f"wrapper: {e}") from e
        from fcm.wrappers.architectures import ChannelReduction

        if self.init == "fisher_pca" and not isinstance(wrapper, ChannelReduction):
            raise ConfigError(f"init: fisher_pca scales the channels of channel_reduction, not {self.wrapper['name']}")
        if not any(p.requires_grad for p in wrapper.parameters()):
            raise ConfigError(f"wrapper {self.wrapper['name']!r} has no parameters to train")

    def _check_codec(self) -> None:
        from fcm.codecs import get_codec

        try:
            codec = get_codec(self.codec)
        except FcmError as e:
            raise ConfigError(f"codec: {e}") from e
        if self.bit_depth is not None and self.bit_depth not in codec.bit_depths:
            raise ConfigError(
                f"bit_depth {self.bit_depth} is not one {self.codec} codes; it codes {list(codec.bit_depths)}"
            )
        low, high = codec.qp_range
        bad = [q for q in self.qps if not low <= q <= high]
        if bad:
            raise ConfigError(f"qps {bad} lie outside {self.codec}'s range [{low}, {high}]")
        # the noise and proxy surrogates and the rate models take their step from the H.264/HEVC QP scale
        uses_step = self.surrogate in ("noise", "proxy") or self.lam > 0 or not self.rate_model_is_default
        if uses_step and (codec.qp_range != (0, 51) or codec.lossless):
            raise ConfigError(
                f"surrogate {self.surrogate!r} (and the rate models, lam > 0 or a rate_model) model an H.264/HEVC "
                f"quantizer step; codec {self.codec!r} has another QP scale: use scaled or ste with lam 0 and the "
                "default rate model, or x264/x265"
            )

    @property
    def sources(self) -> tuple[str, ...]:
        """The training sources in use (``images``, or every source when it is empty)."""
        from fcm.train.data import TRAINING_SOURCES

        return self.images or tuple(TRAINING_SOURCES)

    @property
    def codec_bit_depth(self) -> int:
        """``bit_depth``, or the codec's highest."""
        from fcm.codecs import get_codec

        return self.bit_depth if self.bit_depth is not None else get_codec(self.codec).default_bit_depth

    @property
    def log_path(self) -> Path:
        return self.log if self.log is not None else self.checkpoint.with_suffix(".csv")

    @property
    def state_path(self) -> Path:
        """The resumable trainer state, next to the checkpoint."""
        return self.checkpoint.with_name(self.checkpoint.name + ".state")

    def lr_at(self, step: int) -> float:
        """The step size of optimisation step ``step`` (0-based)."""
        if self.lr_schedule == "constant" or self.steps <= 1:
            return self.lr
        return self.lr * (0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * step / (self.steps - 1))))

    def identity(self) -> str:
        """16 hex digits over every setting that changes what training computes (a resumed run must match it)."""
        data = {k: v for k, v in asdict(self).items() if k not in _NOT_IN_IDENTITY}
        if not self.color_jitter:  # configs from before colour jitter keep their identity (and resume)
            data.pop("color_jitter")
        if self.lr_schedule == "constant":  # likewise for configs from before the schedule
            data.pop("lr_schedule")
        if self.init != "fisher_pca":  # configs from before Fisher gains keep their identity (it is unused then)
            data.pop("fisher_exponent")
        if self.rate_model_is_default:  # likewise for configs from before rate models (its lr is then unused)
            data.pop("rate_model")
            data.pop("rate_model_lr")
        data["images"] = list(self.sources)
        data["split"] = self.split
        data["bit_depth"] = self.codec_bit_depth
        text = json.dumps(data, sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:16]


def _path(value: Any, key: str) -> Path:
    if not isinstance(value, (str, Path)) or not str(value).strip():
        raise ConfigError(f"{key} must be a file path, got {value!r}")
    return Path(value)


def _string(value: Any, key: str) -> str:
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{key} must be a non-empty string, got {value!r}")
    return value


def _integer(value: Any, key: str, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ConfigError(f"{key} must be an integer ≥ {low}, got {value!r}")
    return value


def _number(value: Any, key: str, low: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= low:
        raise ConfigError(f"{key} must be a finite number ≥ {low}, got {value!r}")
    try:
        number = float(value)  # an integer of hundreds of digits overflows
    except OverflowError:
        number = math.inf
    if number == math.inf:
        raise ConfigError(f"{key} must be a finite number ≥ {low}, got {value!r}")
    return number


def _int_list(value: Any, key: str, low: int) -> tuple[int, ...]:
    if not isinstance(value, list) or not value:
        raise ConfigError(f"{key} must be a non-empty list of integers, got {value!r}")
    out = tuple(_integer(v, f"{key} entry", low) for v in value)
    if len(set(out)) != len(out):
        raise ConfigError(f"{key} contain duplicates: {list(out)}")
    return out


def _choice(value: Any, key: str, choices: tuple[str, ...]) -> Any:
    if value not in choices:
        raise ConfigError(f"{key} must be one of {', '.join(choices)}; got {value!r}")
    return value


def _wrapper(value: Any) -> dict[str, Any]:
    if isinstance(value, str):
        value = {"name": value}
    if not isinstance(value, dict) or not isinstance(value.get("name"), str):
        raise ConfigError(f"wrapper must be a mapping with a 'name' (e.g. channel_reduction), got {value!r}")
    from fcm.wrappers import WRAPPERS

    if value["name"] not in WRAPPERS.names():
        raise ConfigError(f"wrapper: unknown wrapper {value['name']!r}; known: {', '.join(WRAPPERS.names())}")
    return dict(value)


def _rate_model(value: Any) -> dict[str, Any]:
    if isinstance(value, str):
        value = {"name": value}
    if not isinstance(value, dict) or not isinstance(value.get("name"), str):
        raise ConfigError(f"rate_model must be a mapping with a 'name' (e.g. factorized), got {value!r}")
    from fcm.surrogates.rate_models import RATE_MODELS

    if value["name"] not in RATE_MODELS:
        raise ConfigError(f"rate_model: unknown rate model {value['name']!r}; known: {', '.join(RATE_MODELS.names())}")
    return dict(value)


def _images(value: Any) -> tuple[str, ...]:
    from fcm.train.data import resolve_sources

    if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
        raise ConfigError(f"images must be a non-empty list of training source names, got {value!r}")
    try:
        sources = resolve_sources(value)
    except ConfigError as e:
        raise ConfigError(f"images: {e}") from None
    if len(set(sources)) != len(sources):
        raise ConfigError(f"images contain duplicates: {value}")
    return sources


def _crop_size(value: Any) -> tuple[int, int]:
    if isinstance(value, int) and not isinstance(value, bool):
        value = [value, value]
    if not isinstance(value, list) or len(value) != 2:
        raise ConfigError(f"crop_size must be [low, high] (pixels), got {value!r}")
    low, high = (_integer(v, "crop_size entry", 16) for v in value)
    if low > high:
        raise ConfigError(f"crop_size must be [low, high] with low ≤ high, got {value!r}")
    return low, high
