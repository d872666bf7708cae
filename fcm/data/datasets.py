"""Dataset implementations (see the package docstring for the contract)."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, overload

import numpy as np

from fcm.errors import ConfigError
from fcm.images import BUNDLED_PHOTOS, bundled_photo, load_image

DatasetTask = Literal["classification", "detection", "unlabeled"]
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".ppm")


@dataclass(frozen=True)
class Sample:
    """One input: a stable id, a loader for its pixels, and its label (class id) or COCO image id if any."""

    id: str
    load: Callable[[], np.ndarray]
    label: int | None = None
    image_id: int | None = None

    def image(self) -> np.ndarray:
        return self.load()


class Dataset(Sequence[Sample]):
    name: str = ""
    task: DatasetTask = "unlabeled"
    #: ground-truth annotation file (COCO instances JSON) of a dataset that has one, for the ``coco`` evaluator
    annotations: Path | None = None

    def __init__(self, samples: list[Sample]) -> None:
        if not samples:
            raise ConfigError(f"dataset {self.name!r} has no images")
        ids = [s.id for s in samples]
        if len(set(ids)) != len(ids):
            raise ConfigError(f"dataset {self.name!r} has duplicate sample ids")
        self._samples = samples

    def __len__(self) -> int:
        return len(self._samples)

    @overload
    def __getitem__(self, i: int) -> Sample: ...

    @overload
    def __getitem__(self, i: slice) -> list[Sample]: ...

    def __getitem__(self, i: int | slice) -> Sample | list[Sample]:
        return self._samples[i]


def _images_in(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def _loader(path: Path) -> Callable[[], np.ndarray]:
    return lambda: load_image(path)


class ImageSet(Dataset):
    """A label-free set: every image in a folder (sorted), or the files listed one per line in a text file."""

    task: DatasetTask = "unlabeled"

    def __init__(self, root: str | Path, name: str | None = None) -> None:
        root = Path(root)
        self.name = name or root.stem
        if root.is_dir():
            paths = _images_in(root)
        elif root.is_file():
            paths = [(root.parent / line.strip()) for line in root.read_text().splitlines() if line.strip()]
            missing = [p for p in paths if not p.is_file()]
            if missing:
                raise ConfigError(f"{root} lists {len(missing)} missing files, e.g. {missing[0]}")
        else:
            raise ConfigError(f"image set not found: {root}")
        super().__init__([Sample(p.stem if root.is_dir() else str(p), _loader(p)) for p in paths])


class ImageFolderClassification(Dataset):
    """Labelled images: ``root/<class>/*.jpg`` or a list file with lines ``relative/path.jpg <class>``.

    ``<class>`` is an integer class id of the model, or a class name found in ``categories`` (e.g. the ImageNet
    names a classifier publishes), so folders can be named ``281`` or ``tabby``.
    """

    task: DatasetTask = "classification"

    def __init__(self, root: str | Path, categories: Sequence[str] = (), name: str | None = None) -> None:
        root = Path(root)
        self.name = name or root.stem
        index = {c: i for i, c in enumerate(categories)}

        def class_id(token: str) -> int:
            if token.isdigit():
                return int(token)
            if token in index:
                return index[token]
            raise ConfigError(f"class {token!r} is neither an integer id nor a known class name")

        samples = []
        if root.is_dir():
            for class_dir in sorted(p for p in root.iterdir() if p.is_dir()):
                label = class_id(class_dir.name)
                for p in _images_in(class_dir):
                    samples.append(Sample(f"{class_dir.name}/{p.stem}", _loader(p), label=label))
        elif root.is_file():
            for n, line in enumerate(root.read_text().splitlines(), 1):
                if not line.strip():
                    continue
                parts = line.rsplit(maxsplit=1)
                if len(parts) != 2:
                    raise ConfigError(f"{root}:{n}: expected 'path class', got {line!r}")
                p = root.parent / parts[0]
                if not p.is_file():
                    raise ConfigError(f"{root}:{n}: image not found: {p}")
                samples.append(Sample(parts[0], _loader(p), label=class_id(parts[1])))
        else:
            raise ConfigError(f"classification dataset not found: {root}")
        super().__init__(samples)


class CocoDetection(Dataset):
    """A COCO-format detection set: an image folder and an ``instances_*.json`` annotation file."""

    task: DatasetTask = "detection"

    def __init__(self, images: str | Path, annotations: str | Path, name: str | None = None, limit: int | None = None):
        images, annotations = Path(images), Path(annotations)
        if not images.is_dir():
            raise ConfigError(f"COCO image folder not found: {images}")
        if not annotations.is_file():
            raise ConfigError(f"COCO annotation file not found: {annotations}")
        try:
            gt = json.loads(annotations.read_text())
            entries = sorted(gt["images"], key=lambda e: e["id"])
            gt["annotations"], gt["categories"]
        except (ValueError, KeyError, TypeError) as e:
            raise ConfigError(f"{annotations} is not a COCO instances file: {e}") from e
        self.name = name or annotations.stem
        self.annotations = annotations
        samples = []
        for entry in entries[:limit]:
            p = images / entry["file_name"]
            if not p.is_file():
                raise ConfigError(f"COCO image {p} (id {entry['id']}) not found")
            samples.append(Sample(str(entry["id"]), _loader(p), image_id=int(entry["id"])))
        super().__init__(samples)


#: (crop box as fractions top, left, height, width; output scale) — deterministic variants of each photo
_VARIANTS = (
    ("full", (0.0, 0.0, 1.0, 1.0), 1.0),
    ("center", (0.15, 0.15, 0.7, 0.7), 1.0),
    ("half", (0.0, 0.0, 1.0, 1.0), 0.5),
    ("left", (0.05, 0.0, 0.9, 0.75), 0.8),
    ("right", (0.05, 0.25, 0.9, 0.75), 0.8),
)
#: photos whose subject an ImageNet classifier knows (scikit-image ships them; see fcm.images)
_EMBEDDED_PHOTOS = ("astronaut", "camera", "chelsea", "coffee", "motorcycle", "rocket")


def _variant(photo: str, box: tuple[float, float, float, float], scale: float) -> Callable[[], np.ndarray]:
    def load() -> np.ndarray:
        from PIL import Image

        img = bundled_photo(photo)
        h, w = img.shape[:2]
        top, left, bh, bw = box
        crop = img[int(top * h) : int((top + bh) * h), int(left * w) : int((left + bw) * w)]
        if scale != 1.0:
            ch, cw = crop.shape[:2]
            size = (max(16, round(cw * scale)), max(16, round(ch * scale)))
            crop = np.asarray(Image.fromarray(crop).resize(size, Image.Resampling.LANCZOS))
        return np.ascontiguousarray(crop)

    return load


class EmbeddedPhotos(Dataset):
    """The embedded default: real photos bundled with scikit-image, each in a few deterministic crops/rescales.

    Label-free (the photos carry no ImageNet labels): use a fidelity evaluator. ``photos`` and ``variants`` select
    subsets (default: 6 photos × 5 variants = 30 inputs).
    """

    task: DatasetTask = "unlabeled"

    def __init__(self, photos: Sequence[str] | None = None, variants: int | None = None, name: str = "embedded"):
        if isinstance(photos, str) or (photos is not None and not isinstance(photos, (list, tuple))):
            raise ConfigError(f"photos must be a list of bundled photo names, got {photos!r}")
        if variants is not None and (not isinstance(variants, int) or not 1 <= variants <= len(_VARIANTS)):
            raise ConfigError(f"variants must be an integer from 1 to {len(_VARIANTS)}, got {variants!r}")
        photos = tuple(photos) if photos else _EMBEDDED_PHOTOS
        unknown = [p for p in photos if p not in BUNDLED_PHOTOS]
        if unknown:
            raise ConfigError(f"unknown bundled photos {unknown}; known: {', '.join(BUNDLED_PHOTOS)}")
        chosen = _VARIANTS[: variants or len(_VARIANTS)]
        self.name = name
        super().__init__([Sample(f"{p}/{v}", _variant(p, box, scale)) for p in photos for v, box, scale in chosen])


class ShapesDetection(CocoDetection):
    """The generated detection dataset (:mod:`fcm.data.shapes`): split ``split`` of ``images`` images drawn with
    ``seed``, written once under ``root`` (default ``$FCM_DATA`` or ``~/.cache/fcm``, in a folder named by the
    settings) and reused while its annotation file says it was made with the same settings."""

    def __init__(
        self,
        split: str = "val",
        images: int = 100,
        seed: int = 0,
        size: int = 256,
        root: str | Path | None = None,
        name: str | None = None,
    ) -> None:
        import os

        from fcm.data.shapes import ANNOTATIONS, GENERATOR_VERSION, ShapesSettings, generate_split, made_with

        if not isinstance(images, int) or isinstance(images, bool) or images < 1:
            raise ConfigError(f"images must be a positive integer, got {images!r}")
        settings = ShapesSettings.for_size(size)
        base = Path(root) if root is not None else Path(os.environ.get("FCM_DATA", Path.home() / ".cache" / "fcm"))
        folder = base / f"shapes-v{GENERATOR_VERSION}-seed{seed}-size{size}-{images}"
        if not made_with(folder / split, seed, settings, images):
            generate_split(folder, split, images, seed, settings)
        super().__init__(folder / split, folder / split / ANNOTATIONS, name=name or f"shapes-{split}")
        #: the written split (its images and annotation file)
        self.folder = folder / split


#: the views of each photo in a :class:`PhotoSplit`: name, box (top, left, height, width as fractions)
PHOTO_VIEWS: tuple[tuple[str, tuple[float, float, float, float]], ...] = (
    ("whole", (0.0, 0.0, 1.0, 1.0)),
    ("centre", (0.2, 0.2, 0.6, 0.6)),
    ("left", (0.1, 0.0, 0.8, 0.6)),
    ("right", (0.1, 0.4, 0.8, 0.6)),
)


class PhotoSplit(Dataset):
    """The validation or test photographs of :mod:`fcm.data.photos` (fetched by ``tools/fetch_photos.py``), each
    whole and in a few crops (:data:`PHOTO_VIEWS`; ``views`` keeps the first N), every view at ``short_side``
    pixels on its short side. Label-free: use a fidelity evaluator. The train split is refused: a figure measured
    on training photos is not a result."""

    task: DatasetTask = "unlabeled"

    def __init__(
        self,
        split: str = "test",
        views: int | None = None,
        short_side: int | None = None,
        root: str | Path | None = None,
        name: str | None = None,
    ) -> None:
        from fcm.data.photos import SHORT_SIDE, load_photo, split_photos

        if split == "train":
            raise ConfigError(
                "photos: the train split is for training only; evaluate on 'validation' (to tune) or 'test'"
            )
        if views is not None and (
            not isinstance(views, int) or isinstance(views, bool) or not 1 <= views <= len(PHOTO_VIEWS)
        ):
            raise ConfigError(f"views must be an integer from 1 to {len(PHOTO_VIEWS)}, got {views!r}")
        side = SHORT_SIDE if short_side is None else short_side
        if not isinstance(side, int) or isinstance(side, bool) or not 16 <= side <= 4096:
            raise ConfigError(f"short_side must be an integer from 16 to 4096 pixels, got {short_side!r}")
        self.name = name or f"photos-{split}"
        photos = split_photos(split, None if root is None else Path(root))

        def view(path: Path, box: tuple[float, float, float, float]) -> Callable[[], np.ndarray]:
            return lambda: load_photo(path, side, box)

        chosen = PHOTO_VIEWS[: views or len(PHOTO_VIEWS)]
        super().__init__([Sample(f"{pid}/{v}", view(path, box)) for pid, path in photos for v, box in chosen])


def build_dataset(spec: dict[str, Any], categories: Sequence[str] = ()) -> Dataset:
    """Build a dataset from its config mapping (``kind`` plus the kind's arguments); errors name the problem."""
    if not isinstance(spec, dict) or "kind" not in spec:
        raise ConfigError(
            "dataset must be a mapping with a 'kind' (embedded, photos, imagefolder, images, coco, shapes)"
        )
    kind = spec["kind"]
    args = {k: v for k, v in spec.items() if k != "kind"}
    builders: dict[str, Callable[..., Dataset]] = {
        "embedded": EmbeddedPhotos,
        "photos": PhotoSplit,
        "imagefolder": lambda **a: ImageFolderClassification(categories=categories, **a),
        "images": ImageSet,
        "coco": CocoDetection,
        "shapes": ShapesDetection,
    }
    if kind not in builders:
        raise ConfigError(f"unknown dataset kind {kind!r}; known: {', '.join(builders)}")
    try:
        return builders[kind](**args)
    except TypeError as e:
        raise ConfigError(f"bad arguments for dataset kind {kind!r}: {e}") from e
