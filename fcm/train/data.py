"""Training images and the cache of what the frozen edge half makes of them.

Sources (:data:`TRAINING_SOURCES`) are photos that installed packages ship, none of them an evaluation input:

* scikit-image (``skimage.data``): brick, cell, clock, coins, colorwheel, grass, gravel, horse, immunohistochemistry,
  logo, microaneurysms, moon, page, text (grey images and the binary horse are replicated to RGB; the logo's
  transparency is composited on white);
* matplotlib's sample data: ``grace_hopper.jpg``;
* natural photographs (:mod:`fcm.data.photos`, fetched by ``tools/fetch_photos.py``): ``photos:train`` names every
  photo of the train split (Debian's Plasma wallpapers), ``photo:PACKAGE/NAME`` one; the validation and test photos
  are refused here;
* a user's own pictures: ``folder:PATH`` (every image below a folder) or ``file:PATH``.

Excluded on purpose: the evaluation photos (:data:`fcm.data.datasets._EMBEDDED_PHOTOS`: astronaut, camera, chelsea,
coffee, motorcycle, rocket; both motorcycle frames, ``stereo_motorcycle``, show one scene; ``skimage.data.cat`` *is*
chelsea) and every other photo the CLI offers as ``skimage:NAME`` (:data:`fcm.images.BUNDLED_PHOTOS`: retina,
hubble_deep_field), so a user's evaluation on any bundled photo never sees a training image.

Augmentation (seeded, numpy ``Generator``): per crop, a square side drawn uniformly in ``crop_size`` (clipped to the
source's short side) — the scale augmentation, since the model resizes every crop to its input size — a uniform
position, a horizontal flip with probability ½, and (``color_jitter`` j > 0) brightness, contrast and saturation
factors drawn from [1 − j, 1 + j].

:func:`build_cache` runs ``model.prepare`` and ``model.front`` once per crop (no gradient) and keeps the split
tensors and the teacher output (``model.back`` on those uncompressed tensors), so training steps run only the
wrapper, the codec path and the back half.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from fcm.data.sources import EXCLUDED_PHOTOS, TRAINING_SOURCES, load_source
from fcm.errors import ConfigError, ShapeError
from fcm.models.base import Features, SplitModel

__all__ = ["EXCLUDED_PHOTOS", "TRAINING_SOURCES", "build_cache", "load_source", "plan_crops", "resolve_sources"]

#: how a config names sources beyond the built-in ones (:func:`resolve_sources` expands them)
SOURCE_FORMS = (
    "photos:train (every photograph of the train split, fcm.data.photos; fetch them with tools/fetch_photos.py)",
    "photos:train:PACKAGE (the train photographs of one package, e.g. photos:train:opencv-doc)",
    "photo:PACKAGE/NAME (one of them)",
    "folder:PATH (every image in a folder of your own, e.g. an ImageNet or COCO train set)",
    "file:PATH (one image)",
    "shapes:train:N (the first N images of the generated shapes train split, fcm.data.shapes, seed 0: a detector's)",
)


def resolve_sources(names: Sequence[str]) -> tuple[str, ...]:
    """``names`` with ``photos:train`` and ``folder:PATH`` expanded into one source per picture, each checked: a
    validation or test photo is refused (those splits are for tuning and reporting), so is a missing file. A
    catalogued photo is identified by its checksum, a user's file by its absolute path (a training run's identity
    names each)."""
    from fcm.data.photos import check_photo, find_photo, package, split_photos

    out: list[str] = []
    for name in names:
        if name in TRAINING_SOURCES:
            out.append(name)
        elif name.startswith("photos:"):
            split, colon, package_name = name.removeprefix("photos:").partition(":")
            if split != "train":
                raise ConfigError(f"{name}: only the train split is for training (validation tunes, test reports)")
            if colon and not package_name:
                raise ConfigError(f"{name}: name a train package after 'photos:train:' (or write photos:train)")
            if package_name:
                pkg = package(package_name)
                if pkg.split != "train":
                    raise ConfigError(f"{name}: {pkg.name} is a {pkg.split} package; only train packages train")
                for photo in pkg.photos:
                    check_photo(pkg, photo)
                out += [f"photo:{pid}" for pid in pkg.photo_ids()]
            else:
                out += [f"photo:{pid}" for pid, _ in split_photos("train")]
        elif name.startswith("photo:"):
            pkg, photo = find_photo(name.removeprefix("photo:"))
            if pkg.split != "train":
                raise ConfigError(f"{name} is a {pkg.split} photo: only train photos are for training")
            check_photo(pkg, photo)
            out.append(name)
        elif name.startswith("folder:"):
            from fcm.data.datasets import IMAGE_SUFFIXES

            folder = Path(name.removeprefix("folder:")).expanduser()
            if not folder.is_dir():
                raise ConfigError(f"{name}: no such folder")
            files = sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
            if not files:
                raise ConfigError(f"{name}: the folder holds no images ({', '.join(IMAGE_SUFFIXES)})")
            out += [f"file:{p.resolve()}" for p in files]
        elif name.startswith("shapes:"):
            out += _shapes_sources(name)
        elif name.startswith("file:"):
            path = Path(name.removeprefix("file:")).expanduser()
            if not path.is_file():
                raise ConfigError(f"{name}: no such file")
            out.append(f"file:{path.resolve()}")  # absolute: the same file whatever the working directory
        else:
            raise ConfigError(
                f"unknown training source {name!r}; known: {', '.join(TRAINING_SOURCES)}, or " + "; ".join(SOURCE_FORMS)
            )
    return tuple(out)


def _shapes_sources(name: str) -> list[str]:
    """``shapes:train:N`` → the files of the first N generated train images (drawn once into the data cache)."""
    from fcm.data.datasets import ShapesDetection
    from fcm.data.shapes import iter_split

    parts = name.split(":")
    if len(parts) != 3 or not parts[2].isdigit() or int(parts[2]) < 1:
        raise ConfigError(f"{name}: write shapes:train:N with N a positive number of images")
    if parts[1] != "train":
        raise ConfigError(f"{name}: only the shapes train split is for training (val measures the detector)")
    data = ShapesDetection(split="train", images=int(parts[2]), seed=0)
    return [f"file:{path.resolve()}" for path, _ in iter_split(data.folder)]


#: Rec. 601 luma weights: the grey a saturation change moves towards
_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)


@dataclass(frozen=True)
class Crop:
    """Where one training crop comes from: source, square box (top, left, side), whether it is mirrored, and its
    colour jitter (brightness gain, contrast and saturation factors; 1 leaves the pixels as they are)."""

    source: str
    top: int
    left: int
    side: int
    flip: bool
    brightness: float = 1.0
    contrast: float = 1.0
    saturation: float = 1.0

    def cut(self, image: np.ndarray) -> np.ndarray:
        crop = image[self.top : self.top + self.side, self.left : self.left + self.side]
        crop = crop[:, ::-1] if self.flip else crop
        if (self.brightness, self.contrast, self.saturation) != (1.0, 1.0, 1.0):
            x: np.ndarray = crop.astype(np.float32)
            grey = (x @ _LUMA)[..., None]
            x = grey + self.saturation * (x - grey)
            x = x.mean() + self.contrast * (x - x.mean())
            crop = np.clip(np.rint(self.brightness * x), 0, 255).astype(np.uint8)
        return np.ascontiguousarray(crop)


def plan_crops(
    sources: Sequence[str],
    crops_per_image: int,
    crop_size: tuple[int, int],
    rng: np.random.Generator,
    color_jitter: float = 0.0,
) -> list[Crop]:
    """``crops_per_image`` random crops of each source (module doc), drawn from ``rng`` in source order; with
    ``color_jitter`` = j > 0, each crop's brightness, contrast and saturation factors are drawn uniformly from
    [1 − j, 1 + j] (after its box and flip, so j = 0 draws exactly the crops it always did)."""
    if not 0.0 <= color_jitter < 1.0:
        raise ConfigError(f"color_jitter must be in [0, 1), got {color_jitter!r}")
    crops = []
    for name in sources:
        h, w = load_source(name).shape[:2]
        for _ in range(crops_per_image):
            short = min(h, w)
            side = min(short, int(rng.integers(crop_size[0], crop_size[1] + 1)))
            top = int(rng.integers(0, h - side + 1))
            left = int(rng.integers(0, w - side + 1))
            flip = bool(rng.integers(0, 2))
            jitter: tuple[float, ...] = ()
            if color_jitter > 0:
                jitter = tuple(float(f) for f in rng.uniform(1 - color_jitter, 1 + color_jitter, 3))
            crops.append(Crop(name, top, left, side, flip, *jitter))
    return crops


@dataclass(frozen=True)
class FeatureCache:
    """The frozen edge half's output on every crop, and the teacher's answer.

    Attributes:
        features: ``{name: N×C×H×W}`` split tensors (uncompressed), in spec order.
        teacher: ``model.distill_outputs`` of those tensors (logits ``N×K`` for a classifier, RPN objectness
            logits ``N×A`` for a detector).
        input_pixels: pixels of one model input (``h·w`` after ``prepare``): the rate is normalised by it.
        crops: where each item came from.
    """

    features: OrderedDict[str, torch.Tensor]
    teacher: torch.Tensor
    input_pixels: int
    crops: tuple[Crop, ...]

    def __len__(self) -> int:
        return len(self.crops)

    def take(self, index: torch.Tensor) -> tuple[OrderedDict[str, torch.Tensor], torch.Tensor]:
        """The features and teacher outputs of items ``index``."""
        return OrderedDict((k, v[index]) for k, v in self.features.items()), self.teacher[index]

    def to(self, device: torch.device) -> FeatureCache:
        features = OrderedDict((k, v.to(device)) for k, v in self.features.items())
        return FeatureCache(features, self.teacher.to(device), self.input_pixels, self.crops)


def build_cache(
    model: SplitModel, crops: Sequence[Crop], chunk: int = 16, on_chunk: Callable[[int], None] | None = None
) -> FeatureCache:
    """Run ``prepare`` → ``front`` → ``back`` once per crop, without gradients, on the CPU; ``on_chunk(n)`` after
    each ``n`` crops (a progress bar)."""
    if not crops:
        raise ConfigError("no training crops")
    images: dict[str, np.ndarray] = {}
    inputs = []
    for crop in crops:
        if crop.source not in images:
            images[crop.source] = load_source(crop.source)
        inputs.append(model.prepare(crop.cut(images[crop.source])))
    sizes = {tuple(x.shape) for x in inputs}
    if len(sizes) != 1:
        raise ShapeError(
            f"model {model.name} prepares crops to different sizes {sorted(sizes)}; training batches need one size "
            "(a classifier's fixed input size)"
        )
    parts: list[OrderedDict[str, torch.Tensor]] = []
    teachers = []
    with torch.no_grad():
        for start in range(0, len(inputs), chunk):
            batch = torch.cat(inputs[start : start + chunk])
            front = model.front_batch(batch)
            parts.append(front.tensors)
            teachers.append(model.distill_outputs(Features(front.tensors, front.meta)))
            if on_chunk is not None:
                on_chunk(len(batch))
    features = OrderedDict((name, torch.cat([p[name] for p in parts])) for name in model.spec.names)
    height, width = inputs[0].shape[-2:]
    return FeatureCache(features, torch.cat(teachers), int(height * width), tuple(crops))
