"""The pictures fcm trains on, by name, loaded as ``uint8`` RGB: the built-in sources (scikit-image, matplotlib), a
catalogued photo (``photo:PACKAGE/NAME``) and a user's file (``file:PATH``). Which names a training config may use,
and how ``photos:train`` or ``folder:PATH`` expand into them, is :func:`fcm.train.data.resolve_sources`.

Its own module so that the shapes generator (:mod:`fcm.data.shapes`, whose backgrounds are these pictures) does not
import the training package.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path

import numpy as np

from fcm.errors import ConfigError, ShapeError

_SKIMAGE = (
    "brick",
    "cell",
    "clock",
    "coins",
    "colorwheel",
    "grass",
    "gravel",
    "horse",
    "immunohistochemistry",
    "logo",
    "microaneurysms",
    "moon",
    "page",
    "text",
)

#: scikit-image / matplotlib names that show an evaluation photo: never a training source.
EXCLUDED_PHOTOS = (
    "astronaut",
    "camera",
    "cat",  # skimage.data.cat() is chelsea
    "chelsea",
    "coffee",
    "motorcycle",
    "stereo_motorcycle",  # left and right frames: one scene
    "rocket",
    "retina",
    "hubble_deep_field",
)


def _skimage(name: str) -> Callable[[], np.ndarray]:
    def load() -> np.ndarray:
        from skimage import data

        return getattr(data, name)()

    return load


def _grace_hopper() -> np.ndarray:
    from matplotlib.cbook import get_sample_data
    from PIL import Image

    path = get_sample_data("grace_hopper.jpg", asfileobj=False)
    with Image.open(str(path)) as image:
        return np.asarray(image.convert("RGB"))


#: name → loader of the raw picture (any dtype, grey/RGB/RGBA); :func:`load_source` makes it ``uint8`` RGB.
TRAINING_SOURCES: OrderedDict[str, Callable[[], np.ndarray]] = OrderedDict(
    [(f"skimage:{n}", _skimage(n)) for n in _SKIMAGE] + [("matplotlib:grace_hopper", _grace_hopper)]
)


def _load_named(name: str) -> np.ndarray:
    if name.startswith("photo:"):
        from fcm.data.photos import load_photo, photo_by_id

        return load_photo(photo_by_id(name.removeprefix("photo:"))[1])
    if name.startswith("file:"):
        from fcm.images import load_image

        return load_image(str(Path(name.removeprefix("file:")).expanduser()))
    loader = TRAINING_SOURCES.get(name)
    if loader is None:
        raise ConfigError(f"unknown training source {name!r}; known: {', '.join(TRAINING_SOURCES)}")
    return np.asarray(loader())


def load_source(name: str) -> np.ndarray:
    """Training source ``name`` (built-in, ``photo:…`` or ``file:…``) as an ``H×W×3`` ``uint8`` RGB array."""
    try:
        image = _load_named(name)
    except ImportError as e:
        raise ConfigError(f"training source {name!r} needs a package that is not installed: {e}") from e
    if image.dtype == bool:
        image = image.astype(np.uint8) * 255
    if image.ndim == 2:
        image = np.repeat(image[:, :, None], 3, axis=2)
    if image.shape[2] == 4:  # composite on white: transparent pixels carry arbitrary colours
        alpha = image[:, :, 3:].astype(np.float32) / 255.0
        image = np.rint(image[:, :, :3] * alpha + 255.0 * (1.0 - alpha)).astype(np.uint8)
    if image.dtype != np.uint8:
        raise ShapeError(f"training source {name!r} is {image.dtype}, not uint8")
    return np.ascontiguousarray(image[:, :, :3])
