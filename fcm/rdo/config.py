"""``fcm rdo-weights CONFIG.yaml -o map.npz``: a fixed offline weight map from a YAML config.

Keys: ``model``, ``split``, ``weights``, ``sha256`` (the split model); ``wrapper`` (a wrapper checkpoint, optional);
``bit_depth`` (default 10) and ``range_mode`` (``frame``) — how the edge packs; ``target``, ``probes``, ``seed`` (the
weights, :mod:`fcm.rdo.sensitivity`); ``dataset``: ``training`` (default: crops of the photos installed packages ship,
none of them an evaluation input — :mod:`fcm.train.data`; options ``crops_per_image``, ``crop_size``, ``seed``) or any
sweep dataset mapping (``images``, ``imagefolder``, …: the user's own training images); ``limit``; ``torch_threads``
(default 1: the map is the same on any machine).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from fcm.errors import ConfigError
from fcm.rdo.fixed_map import FixedMap, make_fixed_map
from fcm.rdo.settings import RdoSettings

_TRAINING_KEYS = ("kind", "crops_per_image", "crop_size", "seed")


@dataclass(frozen=True)
class RdoWeightsConfig:
    """What ``fcm rdo-weights`` reads (see the module docstring)."""

    model: str
    split: str | None = None
    weights: str | None = None
    sha256: str | None = None
    wrapper: str | None = None
    bit_depth: int = 10
    range_mode: str = "frame"
    target: str | None = None
    probes: int = 16
    seed: int = 0
    dataset: dict[str, Any] = field(default_factory=lambda: {"kind": "training"})
    limit: int | None = None
    #: intra-op threads of torch while estimating (fixed, so the map does not depend on the machine's cores)
    torch_threads: int = 1

    @classmethod
    def from_yaml(cls, path: str | Path) -> RdoWeightsConfig:
        from fcm.yaml_files import read_mapping

        return cls.from_config(read_mapping(path, "rdo-weights config"))

    @classmethod
    def from_config(cls, raw: dict[str, Any]) -> RdoWeightsConfig:
        if not isinstance(raw, dict):
            raise ConfigError(f"an rdo-weights config must be a mapping, got {type(raw).__name__}")
        unknown = sorted(set(raw) - set(cls.__dataclass_fields__))
        if unknown:
            raise ConfigError(f"unknown rdo-weights keys {unknown}; known: {', '.join(cls.__dataclass_fields__)}")
        if not isinstance(raw.get("model"), str):
            raise ConfigError("rdo-weights config needs model: a split model name (see `fcm models`)")
        types: dict[str, type] = {
            "split": str,
            "weights": str,
            "sha256": str,
            "wrapper": str,
            "bit_depth": int,
            "range_mode": str,
            "target": str,
            "probes": int,
            "seed": int,
            "limit": int,
            "torch_threads": int,
        }
        for key, kind in types.items():
            value = raw.get(key)
            if value is not None and (not isinstance(value, kind) or isinstance(value, bool)):
                raise ConfigError(f"{key} must be a {kind.__name__}, got {value!r}")
        dataset = raw.get("dataset", {"kind": "training"})
        dataset = {"kind": dataset} if isinstance(dataset, str) else dataset
        if not isinstance(dataset, dict) or "kind" not in dataset:
            raise ConfigError(f"dataset must be 'training' or a dataset mapping with a kind, got {dataset!r}")
        if dataset["kind"] == "training" and set(dataset) - set(_TRAINING_KEYS):
            raise ConfigError(f"dataset 'training' takes {', '.join(_TRAINING_KEYS[1:])}, got {sorted(dataset)}")
        from fcm.packing.packer import RANGE_MODES

        if raw.get("range_mode", "frame") not in RANGE_MODES:
            raise ConfigError(f"range_mode must be one of {', '.join(RANGE_MODES)}, got {raw['range_mode']!r}")
        for key in ("limit", "torch_threads"):
            if raw.get(key) is not None and raw[key] < 1:
                raise ConfigError(f"{key} must be a positive integer, got {raw[key]}")
        cfg = cls(**{k: v for k, v in raw.items() if k != "dataset"}, dataset=dict(dataset))
        cfg.settings()  # validates target, probes, seed
        return cfg

    def settings(self) -> RdoSettings:
        return RdoSettings(mode="wa-frame", target=self.target, probes=self.probes, seed=self.seed)

    def images(self, model: Any) -> tuple[int, Callable[[], Iterator[np.ndarray]]]:
        """How many inputs, and an iterator over them (``uint8`` RGB)."""
        spec = dict(self.dataset)
        if spec["kind"] == "training":
            from fcm.train.data import TRAINING_SOURCES, load_source, plan_crops

            crop_size = spec.get("crop_size", [128, 384])
            if not (isinstance(crop_size, list) and len(crop_size) == 2 and all(isinstance(v, int) for v in crop_size)):
                raise ConfigError(f"crop_size must be [min, max] pixels, got {crop_size!r}")
            rng = np.random.default_rng(int(spec.get("seed", 0)))
            crops = plan_crops(list(TRAINING_SOURCES), int(spec.get("crops_per_image", 4)), tuple(crop_size), rng)
            crops = crops[: self.limit] if self.limit else crops

            def training() -> Iterator[np.ndarray]:
                cache: dict[str, np.ndarray] = {}
                for crop in crops:
                    if crop.source not in cache:
                        cache = {crop.source: load_source(crop.source)}
                    yield crop.cut(cache[crop.source])

            return len(crops), training
        from fcm.data import build_dataset

        dataset = build_dataset(spec, model.categories)
        samples = dataset[: self.limit] if self.limit else dataset[:]
        return len(samples), lambda: (s.image() for s in samples)

    def run(self, progress: bool = True) -> FixedMap:
        from fcm.models import get_model

        model = get_model(self.model, self.split, self.weights, self.sha256)
        wrapper = None
        if self.wrapper is not None:
            from fcm.wrappers import load_wrapper

            wrapper = load_wrapper(self.wrapper, model)
        count, images = self.images(model)
        from tqdm import tqdm

        from fcm.numerics import torch_threads

        with (
            torch_threads(self.torch_threads),
            tqdm(total=count, desc="rdo weights", unit="input", disable=not progress) as bar,
        ):
            return make_fixed_map(
                model,
                images(),
                self.settings(),
                self.bit_depth,
                "frame" if self.range_mode == "frame" else "tensor",
                wrapper,
                progress=bar.update,
            )
