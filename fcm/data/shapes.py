"""A procedurally generated detection dataset: coloured, textured shapes composited onto real backgrounds, written
in COCO format with boxes and masks.

Six classes (:data:`CATEGORIES`): disc, box, triangle, star, ring and cross, each drawn with its own aspect, rotation
and size (``min_object``–``max_object`` pixels across), filled with a flat colour, a gradient, stripes or a tinted
texture, sometimes outlined. Several objects per image overlap in drawing order; an annotation describes the
*visible* part (mask, box and area of what later objects leave uncovered), and objects less than
``min_visible`` visible are left out of the picture altogether, so every drawn object is annotated.

Backgrounds are crops of the pictures fcm trains on (:data:`BACKGROUND_SOURCES`, frozen here: textures and photos that
scikit-image and matplotlib ship, none an evaluation photo), flipped and colour-jittered. Each source picture is cut
once into a left part (train crops) and a right part (validation crops), so the splits share no background pixel.
The validation strips are narrower, so validation backgrounds are more often upscaled (blurrier) than training ones:
a mild shift that makes validation harder, not easier. The **test** split is held out from both: its backgrounds (and
textures) are the test photographs of :mod:`fcm.data.photos` (Debian's ``lomiri-wallpapers-16.04``, at 512 px on
the short side; fetched by ``tools/fetch_photos.py``), a source no training, tuning or architecture choice ever
saw, drawn from a random stream of its own: report there what was chosen on val.

Deterministic: image ``i`` of a split depends only on ``(seed, split, i)``, the settings and
:data:`GENERATOR_VERSION` (numpy ``Generator``s, integer rasterisation, lossless PNG): the same call draws the same
pixels wherever scikit-image's images, its ``draw`` module and Pillow's bilinear resize and JPEG decoder are the
same (PNG *file* bytes may differ between Pillow builds: compare pixels).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from fcm.errors import ConfigError

CATEGORIES: tuple[str, ...] = ("disc", "box", "triangle", "star", "ring", "cross")
#: bumped whenever the same (seed, settings) would draw other pixels: caches made by another version are redrawn
GENERATOR_VERSION = 1
#: background sources, frozen here (a source added to fcm.train.data must not redraw every image of this dataset)
BACKGROUND_SOURCES: tuple[str, ...] = (
    "skimage:brick",
    "skimage:cell",
    "skimage:clock",
    "skimage:coins",
    "skimage:colorwheel",
    "skimage:grass",
    "skimage:gravel",
    "skimage:horse",
    "skimage:immunohistochemistry",
    "skimage:logo",
    "skimage:microaneurysms",
    "skimage:moon",
    "skimage:page",
    "skimage:text",
    "matplotlib:grace_hopper",
)
SPLITS = ("train", "val", "test")
#: the short side of the test split's background photos
TEST_BACKGROUND_SIDE = 512
#: where each background source is cut: train crops left of this fraction of the width, validation crops right of it
SPLIT_AT = 0.7
ANNOTATIONS = "annotations.json"
IMAGES = "images"


@dataclass(frozen=True)
class ShapesSettings:
    """How a split is drawn (every field is part of what makes its bytes)."""

    size: int = 256
    min_objects: int = 1
    max_objects: int = 6
    min_object: int = 20
    max_object: int = 110
    #: an object must keep this fraction of its pixels visible (else it is not drawn)
    min_visible: float = 0.4

    @classmethod
    def for_size(cls, size: int) -> ShapesSettings:
        """The default settings scaled to ``size``-pixel images (object sizes in proportion to 256)."""
        if isinstance(size, bool) or not isinstance(size, int):
            raise ConfigError(f"image size must be an integer, got {size!r}")
        if size == 256:
            return cls()
        return cls(size=size, min_object=max(8, round(20 * size / 256)), max_object=max(8, round(110 * size / 256)))

    def __post_init__(self) -> None:
        for name in ("size", "min_objects", "max_objects", "min_object", "max_object"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise ConfigError(f"{name} must be an integer, got {value!r}")
        if not 64 <= self.size <= 2048:
            raise ConfigError(f"image size must lie in [64, 2048], got {self.size}")
        if not 1 <= self.min_objects <= self.max_objects <= 50:
            raise ConfigError("need 1 <= min_objects <= max_objects <= 50")
        if not 8 <= self.min_object <= self.max_object <= self.size:
            raise ConfigError("need 8 <= min_object <= max_object <= size")
        if not 0 < self.min_visible <= 1:
            raise ConfigError("min_visible must lie in (0, 1]")


def generate_split(
    out: str | Path, split: str, num_images: int, seed: int = 0, settings: ShapesSettings | None = None
) -> Path:
    """Write ``num_images`` images of ``split`` (``train``, ``val`` or ``test``) under ``out/split`` with their COCO
    annotations (``annotations.json``); returns the annotation file."""
    if split not in SPLITS:
        raise ConfigError(f"split must be one of {SPLITS}, got {split!r}")
    if isinstance(num_images, bool) or not isinstance(num_images, int) or num_images < 1:
        raise ConfigError(f"num_images must be a positive integer, got {num_images!r}")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ConfigError(f"seed must be a non-negative integer, got {seed!r}")
    settings = settings or ShapesSettings()
    import os
    import shutil

    from PIL import Image

    final = Path(out) / split
    # drawn into a private folder and moved into place at the end: a reader never sees half a split, and an
    # interrupted run leaves the previous split (or nothing) behind, never a mixture
    backgrounds = _Backgrounds(split)  # first: a missing background photo leaves no folder behind
    root = Path(out) / f".{split}.tmp-{os.getpid()}"
    shutil.rmtree(root, ignore_errors=True)
    (root / IMAGES).mkdir(parents=True)
    images: list[dict[str, Any]] = []
    annotations: list[dict[str, Any]] = []
    for i in range(num_images):
        image, objects = draw_image(i, split, seed, settings, backgrounds)
        name = f"{split}_{i:06d}.png"
        Image.fromarray(image).save(root / IMAGES / name, optimize=False, compress_level=6)
        images.append({"id": i + 1, "file_name": f"{IMAGES}/{name}", "width": settings.size, "height": settings.size})
        for category, mask in objects:
            annotations.append(_annotation(len(annotations) + 1, i + 1, category, mask))
    coco = {
        "info": {
            "description": f"fcm shapes, {split} split",
            "generator": "fcm.data.shapes",
            "version": GENERATOR_VERSION,
            "seed": seed,
            "settings": asdict(settings),
        },
        "images": images,
        "annotations": annotations,
        "categories": [{"id": k + 1, "name": n, "supercategory": "shape"} for k, n in enumerate(CATEGORIES)],
    }
    (root / ANNOTATIONS).write_text(json.dumps(coco, separators=(",", ":")) + "\n")
    if final.exists():
        old = Path(out) / f".{split}.old-{os.getpid()}"
        final.replace(old)
        shutil.rmtree(old, ignore_errors=True)
    root.replace(final)
    return final / ANNOTATIONS


def made_with(root: str | Path, seed: int, settings: ShapesSettings, num_images: int) -> bool:
    """Whether the split at ``root`` was drawn by this generator version with ``seed``, ``settings`` and
    ``num_images`` images (a cache that can be reused)."""
    path = Path(root) / ANNOTATIONS
    try:
        coco = json.loads(path.read_text())
        info = coco["info"]
        return (
            info.get("version") == GENERATOR_VERSION
            and info.get("seed") == seed
            and info.get("settings") == asdict(settings)
            and len(coco["images"]) == num_images
        )
    except (OSError, ValueError, KeyError, TypeError):
        return False


def _annotation(ann_id: int, image_id: int, category: int, mask: np.ndarray) -> dict[str, Any]:
    from pycocotools import mask as mask_utils

    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    ys, xs = np.nonzero(mask)
    x0, y0, x1, y1 = int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1
    return {
        "id": ann_id,
        "image_id": image_id,
        "category_id": category + 1,
        "bbox": [x0, y0, x1 - x0, y1 - y0],
        "area": int(mask.sum()),
        "segmentation": {"size": [int(mask.shape[0]), int(mask.shape[1])], "counts": rle["counts"].decode("ascii")},
        "iscrowd": 0,
    }


class _Backgrounds:
    """The split's part of every training source (train, val), or the test photos (test), loaded once."""

    def __init__(self, split: str) -> None:
        from fcm.data.sources import load_source

        self.parts = []
        if split == "test":
            from fcm.data.photos import load_photo, split_photos

            self.parts = [load_photo(path, TEST_BACKGROUND_SIDE) for _, path in split_photos("test")]
            return
        for name in BACKGROUND_SOURCES:
            picture = load_source(name)
            cut = int(picture.shape[1] * SPLIT_AT)
            self.parts.append(picture[:, :cut] if split == "train" else picture[:, cut:])


def draw_image(
    index: int, split: str, seed: int, settings: ShapesSettings, backgrounds: _Backgrounds
) -> tuple[np.ndarray, list[tuple[int, np.ndarray]]]:
    """Image ``index`` of ``split``: RGB ``uint8`` and its objects (category index, visible mask), in drawing
    order."""
    rng = np.random.default_rng([seed, SPLITS.index(split), index])
    size = settings.size
    canvas = _background(rng, backgrounds, size).astype(np.float32)
    wanted = int(rng.integers(settings.min_objects, settings.max_objects + 1))
    drawn: list[tuple[int, np.ndarray, np.ndarray, np.ndarray]] = []  # category, full mask, alpha, fill
    for _ in range(wanted):
        category = int(rng.integers(len(CATEGORIES)))
        extent = int(rng.integers(settings.min_object, settings.max_object + 1))
        cy, cx = (int(v) for v in rng.integers(0, size, 2))
        mask = _shape_mask(CATEGORIES[category], rng, size, cy, cx, extent)
        if mask.sum() < 16:
            continue
        drawn.append((category, mask, _soft(mask), _fill(rng, backgrounds, size, mask)))
    # what stays visible once every later object is drawn over an earlier one
    objects = []
    covered = np.zeros((size, size), dtype=bool)
    keep = []
    for category, mask, alpha, fill in reversed(drawn):
        visible = mask & ~covered
        if visible.sum() >= settings.min_visible * mask.sum() and visible.sum() >= 16:
            keep.append((category, mask, alpha, fill, visible))
            covered |= mask
    for category, _mask, alpha, fill, visible in reversed(keep):  # draw bottom to top
        canvas = canvas * (1 - alpha[..., None]) + fill * alpha[..., None]
        objects.append((category, visible))
    return np.clip(np.rint(canvas), 0, 255).astype(np.uint8), objects


def _background(rng: np.random.Generator, backgrounds: _Backgrounds, size: int) -> np.ndarray:
    from PIL import Image

    part = backgrounds.parts[int(rng.integers(len(backgrounds.parts)))]
    h, w = part.shape[:2]
    side = int(rng.integers(max(16, min(h, w) // 3), min(h, w) + 1))
    top, left = int(rng.integers(0, h - side + 1)), int(rng.integers(0, w - side + 1))
    crop = part[top : top + side, left : left + side]
    if rng.random() < 0.5:
        crop = crop[:, ::-1]
    resized = np.asarray(Image.fromarray(np.ascontiguousarray(crop)).resize((size, size), Image.Resampling.BILINEAR))
    # colour jitter: brightness, contrast and a per-channel gain
    image = resized.astype(np.float32)
    mean = image.mean()
    contrast = rng.uniform(0.6, 1.3)
    brightness = rng.uniform(-30, 30)
    gains = rng.uniform(0.8, 1.2, 3).astype(np.float32)
    return np.clip((image - mean) * contrast + mean + brightness, 0, 255) * gains


def _shape_mask(kind: str, rng: np.random.Generator, size: int, cy: int, cx: int, extent: int) -> np.ndarray:
    from skimage.draw import disk, ellipse, polygon

    mask = np.zeros((size, size), dtype=bool)
    r = extent / 2
    angle = rng.uniform(0, 2 * math.pi)
    if kind == "disc":
        ratio = rng.uniform(0.75, 1.0)
        rr, cc = ellipse(cy, cx, r, r * ratio, shape=mask.shape, rotation=angle)
        mask[rr, cc] = True
        return mask
    if kind == "ring":
        rr, cc = disk((cy, cx), r, shape=mask.shape)
        mask[rr, cc] = True
        rr, cc = disk((cy, cx), r * rng.uniform(0.45, 0.65), shape=mask.shape)
        mask[rr, cc] = False
        return mask
    if kind == "box":
        aspect = rng.uniform(0.6, 1.0)
        corners = [(-r, -r * aspect), (r, -r * aspect), (r, r * aspect), (-r, r * aspect)]
    elif kind == "triangle":
        corners = [(r * math.cos(a), r * math.sin(a)) for a in (math.pi / 2 + k * 2 * math.pi / 3 for k in range(3))]
    elif kind == "star":
        inner = rng.uniform(0.38, 0.5)
        corners = [
            (
                (r if k % 2 == 0 else r * inner) * math.cos(k * math.pi / 5),
                (r if k % 2 == 0 else r * inner) * math.sin(k * math.pi / 5),
            )
            for k in range(10)
        ]
    elif kind == "cross":
        t = r * rng.uniform(0.3, 0.42)
        corners = [
            (-t, -r),
            (t, -r),
            (t, -t),
            (r, -t),
            (r, t),
            (t, t),
            (t, r),
            (-t, r),
            (-t, t),
            (-r, t),
            (-r, -t),
            (-t, -t),
        ]
    else:  # pragma: no cover - CATEGORIES is closed
        raise ConfigError(f"unknown shape {kind!r}")
    cos, sin = math.cos(angle), math.sin(angle)
    ys = [cy + y * cos - x * sin for x, y in corners]
    xs = [cx + y * sin + x * cos for x, y in corners]
    rr, cc = polygon(np.array(ys), np.array(xs), shape=mask.shape)
    mask[rr, cc] = True
    return mask


def _soft(mask: np.ndarray) -> np.ndarray:
    """Alpha of a mask with a soft one-pixel halo outside it (a camera's edges are not binary); 1 inside."""
    from scipy.ndimage import uniform_filter

    halo = uniform_filter(mask.astype(np.float32), 3)
    return np.where(mask, 1.0, 0.5 * halo).astype(np.float32)


def _fill(rng: np.random.Generator, backgrounds: _Backgrounds, size: int, mask: np.ndarray) -> np.ndarray:
    """The object's colours over the whole canvas (only its mask shows): flat, gradient, stripes or tinted texture."""
    import colorsys

    hue, sat, val = rng.random(), rng.uniform(0.45, 1.0), rng.uniform(0.35, 1.0)
    base = np.array(colorsys.hsv_to_rgb(hue, sat, val), dtype=np.float32) * 255
    style = rng.choice(4, p=[0.4, 0.2, 0.2, 0.2])
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    if style == 0:
        fill = np.broadcast_to(base, (size, size, 3)).copy()
    elif style == 1:
        other = np.array(colorsys.hsv_to_rgb((hue + rng.uniform(0.1, 0.4)) % 1, sat, val), dtype=np.float32) * 255
        a = rng.uniform(0, 2 * math.pi)
        t = (xx * math.cos(a) + yy * math.sin(a)) / size
        t = (t - t.min()) / max(float(np.ptp(t)), 1e-6)
        fill = base * (1 - t[..., None]) + other * t[..., None]
    elif style == 2:
        period = rng.uniform(4, 14)
        a = rng.uniform(0, math.pi)
        stripes = (np.sin((xx * math.cos(a) + yy * math.sin(a)) * 2 * math.pi / period) > 0).astype(np.float32)
        fill = base * (0.55 + 0.45 * stripes[..., None])
    else:
        texture = _background(rng, backgrounds, size).mean(axis=2, keepdims=True) / 255
        fill = base * (0.4 + 0.8 * texture)
    if rng.random() < 0.3:  # an outline in a darker shade
        from scipy.ndimage import binary_erosion

        edge = mask & ~binary_erosion(mask, iterations=2)
        fill[edge] *= 0.35
    return np.clip(fill, 0, 255).astype(np.float32)


def iter_split(root: str | Path) -> Iterator[tuple[Path, list[dict[str, Any]]]]:
    """``(image path, annotations)`` of a written split, in image order."""
    root = Path(root)
    coco = json.loads((root / ANNOTATIONS).read_text())
    by_image: dict[int, list[dict[str, Any]]] = {}
    for a in coco["annotations"]:
        by_image.setdefault(a["image_id"], []).append(a)
    for image in coco["images"]:
        yield root / image["file_name"], by_image.get(image["id"], [])


#: bumped whenever :func:`draw_clip` would draw other frames for the same arguments
CLIP_VERSION = 1
#: in a clip, an object is labelled where at least this fraction of it (and 16 pixels) is visible; a smaller visible
#: sliver is marked ``iscrowd`` (detections of it are neither rewarded nor punished by COCO evaluation)
CLIP_MIN_VISIBLE = 0.25


def draw_clip(
    seed: int, frames: int, settings: ShapesSettings | None = None
) -> Iterator[tuple[np.ndarray, list[tuple[int, np.ndarray, bool, int]]]]:
    """A labelled video: ``frames`` frames of shapes moving (bouncing off the borders, 0.5–3 px per frame) over a
    background a virtual camera pans across; per frame the RGB image and its objects (category index, visible mask,
    whether it is only a sliver: see :data:`CLIP_MIN_VISIBLE`, and its track id: the object's index in the clip, the
    same in every frame it shows in). Backgrounds come from the validation parts of the
    pictures (never a training pixel). Objects keep their shape, size, rotation, fill and outline from frame to
    frame, the fill moving rigidly with the object. Frame ``t`` depends only on ``(seed, t)`` and the settings, not
    on the clip's length."""
    from PIL import Image
    from scipy.ndimage import binary_erosion

    settings = settings or ShapesSettings()
    size = settings.size
    rng = np.random.default_rng([seed, 7, 0])
    backgrounds = _Backgrounds("val")
    part = backgrounds.parts[int(rng.integers(len(backgrounds.parts)))]
    h, w = part.shape[:2]
    side = max(16, min(h, w) * 3 // 4)
    lo = min(max(2, settings.min_objects), 5)
    count = int(rng.integers(lo, max(lo, min(5, settings.max_objects)) + 1))
    objects = []
    for k in range(count):
        obj_seed = [seed, 7, k + 1]
        orng = np.random.default_rng(obj_seed)
        category = int(orng.integers(len(CATEGORIES)))
        extent = int(orng.integers(settings.min_object, settings.max_object + 1))
        start = orng.uniform(extent / 2, size - extent / 2, 2)
        speed = orng.uniform(0.5, 3.0, 2) * orng.choice([-1, 1], 2)
        # the fill on a canvas three times the frame, so any displacement within the frame finds fill (no seams)
        fill = _fill(orng, backgrounds, 3 * size, np.zeros((3 * size, 3 * size), dtype=bool))
        outlined = bool(orng.random() < 0.3)
        objects.append((category, extent, start, speed, obj_seed, fill, outlined))
    jitter = (rng.uniform(0.8, 1.2), rng.uniform(-20, 20))
    for t in range(frames):
        # the camera: a square window sliding along the background part and back every 200 frames
        phase = (t % 200) / 100
        u = phase if phase <= 1 else 2 - phase
        top, left = round(u * (h - side) * 0.5), round(u * (w - side))
        crop = np.ascontiguousarray(part[top : top + side, left : left + side])
        canvas = np.asarray(Image.fromarray(crop).resize((size, size), Image.Resampling.BILINEAR)).astype(np.float32)
        canvas = np.clip(canvas * jitter[0] + jitter[1], 0, 255)
        drawn = []
        for track, (category, extent, start, speed, obj_seed, fill, outlined) in enumerate(objects):
            centre = _bounce(start + speed * t, extent / 2, size - extent / 2)
            cy, cx = round(float(centre[0])), round(float(centre[1]))
            shape_rng = np.random.default_rng([*obj_seed, 1])  # the same draw every frame: same shape and angle
            mask = _shape_mask(CATEGORIES[category], shape_rng, size, cy, cx, extent)
            # one integer displacement for the mask and its fill: the texture moves rigidly with the shape
            dy, dx = cy - round(float(start[0])), cx - round(float(start[1]))
            colours = fill[size - dy : 2 * size - dy, size - dx : 2 * size - dx].copy()
            if outlined:
                colours[mask & ~binary_erosion(mask, iterations=2)] *= 0.35
            drawn.append((category, mask, colours, track))
        covered = np.zeros((size, size), dtype=bool)
        labels = []
        for category, mask, _, track in reversed(drawn):  # top object first: what stays visible of each
            visible = mask & ~covered
            covered |= mask
            if visible.sum():
                sliver = bool(visible.sum() < max(16, CLIP_MIN_VISIBLE * mask.sum()))
                labels.append((category, visible, sliver, track))
        labels.reverse()  # drawing order
        for _, mask, colours, _ in drawn:
            alpha = _soft(mask)[..., None]
            canvas = canvas * (1 - alpha) + colours * alpha
        yield np.clip(np.rint(canvas), 0, 255).astype(np.uint8), labels


def _bounce(position: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """``position`` folded into ``[lo, hi]`` as a ball bouncing between the two walls."""
    span = max(hi - lo, 1e-6)
    x = np.mod(position - lo, 2 * span)
    return lo + np.where(x > span, 2 * span - x, x)


def clip_annotations(
    labels: list[tuple[int, np.ndarray, bool, int]], image_id: int, first_id: int
) -> list[dict[str, Any]]:
    """COCO annotations of one clip frame's objects (ids from ``first_id``; slivers as ``iscrowd`` regions), each
    with its object's ``track_id`` (MOT ground truth: the same object keeps its id from frame to frame)."""
    out = []
    for k, (category, mask, sliver, track) in enumerate(labels):
        ann = _annotation(first_id + k, image_id, category, mask)
        ann["iscrowd"] = int(sliver)
        ann["track_id"] = int(track) + 1
        out.append(ann)
    return out
