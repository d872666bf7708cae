"""Reading input images: files on disk, or the real photos bundled with scikit-image (``skimage:chelsea``)."""

from __future__ import annotations

import math
import warnings
from pathlib import Path
from typing import Any

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


#: Largest image accepted, in pixels (width × height, as the file declares it): about 12600×12600. Larger files are
#: refused with a :class:`ConfigError` before their pixels are decoded (PIL would raise its DecompressionBombError).
MAX_PIXELS = 160_000_000
#: JPEGs whose longer side exceeds this are decoded at a reduced scale (libjpeg's DCT scaling: 1/2, 1/4 or 1/8, the
#: strongest that keeps the longer side at least this long), so memory stays bounded; smaller images are untouched.
#: Every model resizes its input far below this, but note that ``input_size`` (and so bpp) is then the reduced size.
MAX_SIDE = 4096
#: PIL modes that PIL's own ``convert("RGB")`` maps correctly (alpha is dropped, not composited; palettes, CMYK,
#: YCbCr, LAB and HSV are converted as colours).
_CONVERTIBLE_MODES = frozenset(
    {"1", "L", "LA", "P", "PA", "RGB", "RGBA", "RGBa", "RGBX", "CMYK", "YCbCr", "LAB", "HSV"}
)
#: Integer greyscale modes, read as 16-bit samples (0–65535) and scaled to 8 bits; PIL's convert would clip to white.
_SIXTEEN_BIT_MODES = frozenset({"I;16", "I;16L", "I;16B", "I;16N", "I"})


def load_image(source: str | Path) -> np.ndarray:
    """An ``H×W×3`` ``uint8`` RGB array from a file path or ``skimage:NAME``.

    Every PIL mode is converted as its values mean: 16-bit greyscale (``I;16*``, and ``I`` holding 0–65535) is scaled
    by 255/65535, float greyscale (``F``) in [0, 1] by 255, colour modes by PIL; other modes or values out of those
    ranges raise :class:`ConfigError` naming the mode. Images over :data:`MAX_PIXELS` are refused; JPEGs over
    :data:`MAX_SIDE` are decoded at a reduced scale.
    """
    s = str(source)
    if s.startswith(PREFIX):
        return bundled_photo(s[len(PREFIX) :])
    path = Path(s)
    if path.is_dir():
        raise ConfigError(
            f"{path} is a folder, not an image: give one image file (a sweep config's dataset takes folders: "
            "kind imagefolder)"
        )
    if not path.is_file():
        raise ConfigError(f"image not found: {path}")
    from PIL import Image, UnidentifiedImageError

    try:
        with warnings.catch_warnings():
            # MAX_PIXELS is checked below; PIL's own warning for large images would only add noise.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as im:
                width, height = im.size
                if width * height > MAX_PIXELS:
                    raise ConfigError(
                        f"image {path} is too large: {width}x{height} is over the limit of {MAX_PIXELS} pixels"
                    )
                if im.format == "JPEG" and max(width, height) > MAX_SIDE:
                    scale = MAX_SIDE / max(width, height)
                    im.draft(im.mode, (math.ceil(width * scale), math.ceil(height * scale)))
                return _to_rgb8(im, path)
    except Image.DecompressionBombError as e:
        raise ConfigError(f"image {path} is too large: over the limit of {MAX_PIXELS} pixels ({e})") from e
    except (UnidentifiedImageError, OSError) as e:
        raise ConfigError(f"cannot read image {path}: {e}") from e


def _to_rgb8(im: Any, path: Path) -> np.ndarray:
    mode = im.mode
    if mode in _CONVERTIBLE_MODES:
        return np.asarray(im.convert("RGB"))
    if mode == "La":  # premultiplied greyscale + alpha: PIL converts it to LA only
        return np.asarray(im.convert("LA").convert("RGB"))
    if mode in _SIXTEEN_BIT_MODES:
        values = np.asarray(im)
        if values.size and (int(values.min()) < 0 or int(values.max()) > 65535):
            raise ConfigError(
                f"image {path}: mode {mode} holds values outside 0–65535, which fcm cannot scale to 8 bits"
            )
        grey = ((values.astype(np.uint32) * 255 + 32767) // 65535).astype(np.uint8)
    elif mode == "F":
        values = np.asarray(im, dtype=np.float32)
        if not np.isfinite(values).all() or (values.size and (values.min() < 0 or values.max() > 1)):
            raise ConfigError(
                f"image {path}: mode F holds values outside [0, 1] (or NaN), which fcm cannot scale to 8 bits"
            )
        grey = np.rint(values * 255).astype(np.uint8)
    else:
        raise ConfigError(f"image {path}: unsupported PIL mode {mode!r}")
    return np.ascontiguousarray(np.repeat(grey[:, :, None], 3, axis=2))
