"""Reading image files: every PIL mode becomes the right 8-bit RGB, and huge images are refused or reduced early."""

import numpy as np
import pytest
from PIL import Image

from fcm import images
from fcm.errors import ConfigError
from fcm.images import load_image

#: eight distinct colours, primaries and greys included
COLOURS = np.array(
    [
        [[255, 0, 0], [0, 255, 0], [0, 0, 255], [128, 128, 128]],
        [[0, 0, 0], [255, 255, 255], [200, 120, 40], [30, 60, 90]],
    ],
    np.uint8,
)


def _saved(tmp_path, im: Image.Image, fmt: str) -> str:
    path = tmp_path / f"image.{fmt.lower()}"
    im.save(path, fmt)
    return str(path)


def _sixteen_bit(values, mode: str) -> Image.Image:
    """A 16-bit (or, for ``I``, 32-bit) greyscale image of ``mode`` holding ``values``."""
    values = np.asarray(values)
    if mode == "I":
        return Image.fromarray(values.astype(np.int32))
    dtype = {"I;16B": ">u2", "I;16N": "=u2"}.get(mode, "<u2")
    return Image.frombytes(mode, values.shape[::-1], values.astype(dtype).tobytes())


def _grey(values) -> np.ndarray:
    values = np.asarray(values, np.uint8)
    return np.repeat(values[:, :, None], 3, axis=2)


@pytest.mark.parametrize(
    ("mode", "fmt"),
    [("I;16", "PNG"), ("I;16B", "PNG"), ("I;16", "TIFF"), ("I;16B", "TIFF"), ("I;16L", "TIFF"), ("I", "TIFF")],
)
def test_sixteen_bit_greyscale_is_scaled_not_clipped(tmp_path, mode, fmt):
    # 16-bit samples k·257 are exactly 8-bit k; before the fix PIL clipped everything above 255 to white
    eight = np.array([[0, 1, 64, 128], [200, 254, 255, 100]], np.uint16)
    path = _saved(tmp_path, _sixteen_bit(eight * 257, mode), fmt)
    assert Image.open(path).mode.startswith("I")
    np.testing.assert_array_equal(load_image(path), _grey(eight))


def test_sixteen_bit_rounding(tmp_path):
    im = _sixteen_bit([[128, 129, 32767, 32768, 65534]], "I;16")
    np.testing.assert_array_equal(load_image(_saved(tmp_path, im, "PNG"))[..., 0], [[0, 1, 127, 128, 255]])


def test_float_greyscale(tmp_path):
    im = Image.fromarray(np.array([[0.0, 0.5, 1.0, 0.25]], np.float32), "F")
    np.testing.assert_array_equal(load_image(_saved(tmp_path, im, "TIFF")), _grey([[0, 128, 255, 64]]))


@pytest.mark.parametrize(
    ("mode", "values", "message"),
    [
        ("F", [[0.0, 2.0]], "mode F holds values outside"),
        ("F", [[0.0, np.nan]], "mode F holds values outside"),
        ("I", [[-1, 0]], "mode I holds values outside 0–65535"),
        ("I", [[0, 70000]], "mode I holds values outside 0–65535"),
    ],
)
def test_unscalable_values_are_refused(tmp_path, mode, values, message):
    im = Image.fromarray(np.array(values, np.float32 if mode == "F" else np.int32), mode)
    with pytest.raises(ConfigError, match=message):
        load_image(_saved(tmp_path, im, "TIFF"))


def _colour_image(mode: str) -> Image.Image:
    rgb = Image.fromarray(COLOURS)
    if mode in ("P", "PA"):  # an exact 8-colour palette
        p = rgb.quantize(colors=8, method=Image.Quantize.MEDIANCUT)
        return p if mode == "P" else p.convert("PA")
    return rgb.convert(mode)


@pytest.mark.parametrize(
    ("mode", "fmt", "tolerance"),
    [
        ("RGB", "PNG", 0),
        ("RGBA", "PNG", 0),
        ("P", "PNG", 0),
        ("PA", "TIFF", 0),
        ("RGBX", "TIFF", 0),
        ("CMYK", "TIFF", 0),
        ("YCbCr", "TIFF", 2),
    ],
)
def test_colour_modes(tmp_path, mode, fmt, tolerance):
    path = _saved(tmp_path, _colour_image(mode), fmt)
    assert Image.open(path).mode in (mode, "RGB")
    out = load_image(path)
    assert out.dtype == np.uint8 and out.shape == COLOURS.shape
    assert np.abs(out.astype(int) - COLOURS).max() <= tolerance


@pytest.mark.parametrize(("mode", "fmt"), [("L", "PNG"), ("LA", "PNG"), ("L", "TIFF"), ("LA", "TIFF")])
def test_greyscale_modes(tmp_path, mode, fmt):
    grey = np.array([[0, 50, 128, 255]], np.uint8)
    im = Image.fromarray(grey).convert(mode)
    np.testing.assert_array_equal(load_image(_saved(tmp_path, im, fmt)), _grey(grey))


@pytest.mark.parametrize("fmt", ["PNG", "TIFF"])
def test_bilevel(tmp_path, fmt):
    im = Image.fromarray(np.array([[0, 255, 255, 0]], np.uint8)).convert("1")
    np.testing.assert_array_equal(load_image(_saved(tmp_path, im, fmt)), _grey([[0, 255, 255, 0]]))


def test_lab_is_converted_as_colour(tmp_path):
    # PIL stores a* and b* as signed bytes: 0 is neutral
    lab = Image.fromarray(np.array([[[0, 0, 0], [255, 0, 0], [128, 0, 0]]], np.uint8), "LAB")
    out = load_image(_saved(tmp_path, lab, "TIFF")).astype(int)
    assert (out[0, 0] <= 1).all() and (out[0, 1] >= 254).all()  # black and white, not raw L/a/b channels
    assert np.ptp(out[0, 2]) <= 2 and 100 < out[0, 2, 0] < 140  # a neutral mid grey


@pytest.mark.parametrize("mode", ["HSV", "RGBa", "La", "I;16N"])
def test_modes_no_file_format_stores(mode):
    # PIL can make these but neither PNG nor TIFF saves them; they can still come from other readers or formats
    if mode == "I;16N":
        im = _sixteen_bit([[0, 257 * 128, 65535]], "I;16N")
        np.testing.assert_array_equal(images._to_rgb8(im, "x"), _grey([[0, 128, 255]]))
        return
    if mode == "La":  # premultiplied grey + alpha; alpha 255 leaves the grey unchanged
        im = Image.frombytes("La", (3, 1), bytes([0, 255, 90, 255, 255, 255]))
        np.testing.assert_array_equal(images._to_rgb8(im, "x"), _grey([[0, 90, 255]]))
        return
    im = Image.fromarray(COLOURS).convert(mode)
    assert np.abs(images._to_rgb8(im, "x").astype(int) - COLOURS).max() <= 1


def test_every_pil_mode_is_handled():
    for mode in Image.MODES:
        out = images._to_rgb8(Image.new(mode, (3, 2)), "x")
        assert out.shape == (2, 3, 3) and out.dtype == np.uint8, mode


def test_unknown_mode_is_named():
    # every mode this PIL makes is handled (above); a mode a later PIL adds must be refused, not guessed at
    class FutureModeImage:
        mode = "BGR;24"

    with pytest.raises(ConfigError, match="unsupported PIL mode 'BGR;24'"):
        images._to_rgb8(FutureModeImage(), "x")


# ----------------------------------------------------------------------------------------------------------------------
# Huge images
# ----------------------------------------------------------------------------------------------------------------------


def test_image_over_pil_bomb_limit_is_a_config_error(tmp_path):
    # 14000×14000 is over PIL's own DecompressionBombError threshold; an all-black 1-bit PNG is a few kB
    path = _saved(tmp_path, Image.new("1", (14000, 14000)), "PNG")
    with pytest.raises(ConfigError, match=r"too large.*160000000 pixels"):
        load_image(path)


def test_pixel_limit_is_checked_before_decoding(tmp_path, monkeypatch):
    path = _saved(tmp_path, Image.new("L", (100, 50)), "PNG")
    monkeypatch.setattr(images, "MAX_PIXELS", 4999)
    with pytest.raises(ConfigError, match="too large: 100x50 is over the limit of 4999 pixels"):
        load_image(path)
    monkeypatch.setattr(images, "MAX_PIXELS", 5000)
    assert load_image(path).shape == (50, 100, 3)


def test_large_jpeg_is_decoded_reduced(tmp_path, monkeypatch):
    ramp = np.tile(np.linspace(0, 255, 800, dtype=np.uint8)[None, :, None], (400, 1, 3))
    path = _saved(tmp_path, Image.fromarray(ramp), "JPEG")
    assert load_image(path).shape == (400, 800, 3)  # under MAX_SIDE: full size
    monkeypatch.setattr(images, "MAX_SIDE", 300)
    out = load_image(path)
    assert out.shape == (200, 400, 3)  # 1/2 is the strongest DCT scaling keeping the longer side >= 300
    assert np.abs(out[100, ::50, 0].astype(int) - ramp[200, ::100, 0]).max() < 12
