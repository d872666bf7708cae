"""Reading input images: files on disk, or the real photos bundled with scikit-image (``skimage:chelsea``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from fcm.errors import ConfigError

#: real photographs shipped inside scikit-image's wheel (no download needed)
BUNDLED_PHOTOS = ("astronaut", "camera", "chelsea", "coffee", "motorcycle", "retina", "rocket", "hubble_deep_field")
PREFIX = "skimage:"


def bundled_photo(name: str) -> np.ndarray:
    if name not in BUNDLED_PHOTOS:
        raise ConfigError(f"unknown bundled photo {name!r}; known: {', '.join(BUNDLED_PHOTOS)}")
    try:
        from skimage import data
    except ImportError as e:
        raise ConfigError("bundled photos need scikit-image (pip install scikit-image)") from e
    image = data.stereo_motorcycle()[0] if name == "motorcycle" else getattr(data, name)()
    if image.ndim == 2:  # the camera man is grey: replicate to RGB
        image = np.repeat(image[:, :, None], 3, axis=2)
    return np.ascontiguousarray(image[:, :, :3])


def load_image(source: str | Path) -> np.ndarray:
    """An ``H×W×3`` ``uint8`` RGB array from a file path or ``skimage:NAME``."""
    s = str(source)
    if s.startswith(PREFIX):
        return bundled_photo(s[len(PREFIX) :])
    path = Path(s)
    if not path.is_file():
        raise ConfigError(f"image not found: {path}")
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            return np.asarray(im.convert("RGB"))
    except (UnidentifiedImageError, OSError) as e:
        raise ConfigError(f"cannot read image {path}: {e}") from e
