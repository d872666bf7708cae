"""The remote anchor's RGB ↔ Y'CbCr conversion (fcm.codecs.color) and the picture formats the codecs carry."""

from __future__ import annotations

import numpy as np
import pytest

from fcm.codecs import CodecParams, get_codec
from fcm.codecs.color import DEFAULT_FORMAT, PICTURE_FORMATS, PictureFormat, planes_to_rgb, rgb_to_planes
from fcm.errors import CodecError, ConfigError, ShapeError
from fcm.images import BUNDLED_PHOTOS, bundled_photo


def _even(image: np.ndarray) -> np.ndarray:
    h, w = image.shape[:2]
    return np.ascontiguousarray(image[: h // 2 * 2, : w // 2 * 2])


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse)


def _luma(rgb: np.ndarray) -> np.ndarray:
    x = rgb.astype(np.float64)
    return 0.299 * x[..., 0] + 0.587 * x[..., 1] + 0.114 * x[..., 2]


@pytest.fixture(scope="module")
def photos() -> dict[str, np.ndarray]:
    return {name: _even(bundled_photo(name)) for name in BUNDLED_PHOTOS}


@pytest.mark.parametrize("name", PICTURE_FORMATS)
def test_conversion_alone_keeps_means_and_detail(photos, name):
    """No codec: every bundled photo's channel means move by < 0.1 and luma keeps ≥ 50 dB; 4:4:4 keeps ≥ 50 dB RGB.

    4:2:0 throws chroma detail away, so its RGB PSNR is bounded by the picture, not by the conversion (measured here:
    35.1 dB on `rocket`, 56 dB on `retina`); what the conversion must not do is shift colours or blur luma.
    """
    fmt = PictureFormat.parse(name)
    for photo, rgb in photos.items():
        back = planes_to_rgb(*rgb_to_planes(rgb, fmt), fmt)
        shift = (back.astype(np.float64) - rgb).mean(axis=(0, 1))
        assert np.all(np.abs(shift) < 0.1), (photo, shift)
        assert _psnr(_luma(back), _luma(rgb)) >= 50.0, photo
        assert _psnr(back, rgb) >= (50.0 if fmt.chroma == "444" else 35.0), photo


def test_ten_bit_444_is_exact_and_limited_range_keeps_means(photos):
    for rgb in photos.values():
        fmt = PictureFormat.parse("yuv444p10")
        assert np.array_equal(planes_to_rgb(*rgb_to_planes(rgb, fmt), fmt), rgb)
        limited = PictureFormat.parse("yuv420p10", "limited")
        shift = (planes_to_rgb(*rgb_to_planes(rgb, limited), limited).astype(np.float64) - rgb).mean(axis=(0, 1))
        assert np.all(np.abs(shift) < 0.1)


def test_pyav_default_conversion_is_the_bias_this_replaces(photos):
    """FFmpeg's scaler through PyAV's ``reformat`` shifts chelsea's means by about −1.1 to −1.4: the measured bug."""
    import av

    rgb = photos["chelsea"]
    back = av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(format="yuv420p").to_ndarray(format="rgb24")
    ours = planes_to_rgb(*rgb_to_planes(rgb, PictureFormat.parse("yuv420p")), PictureFormat.parse("yuv420p"))
    assert np.all((back.astype(np.float64) - rgb).mean(axis=(0, 1)) < -0.9)
    assert _psnr(ours, rgb) > _psnr(back, rgb) + 2.0


def test_known_values_follow_bt601_and_h273():
    """Pure colours land on the code values H.273's formulas give (full and limited range, 8 and 10 bits)."""
    rgb = np.array([[[255, 255, 255], [0, 0, 0]], [[255, 0, 0], [0, 0, 255]]], dtype=np.uint8)
    y, cb, cr = rgb_to_planes(rgb, PictureFormat.parse("yuv444p", "full"))
    assert y.tolist() == [[255, 0], [76, 29]]  # 0.299·255 = 76.2, 0.114·255 = 29.1
    assert cb.tolist() == [[128, 128], [85, 255]]  # blue: Pb = +0.5 → 255.5 clipped to 255
    assert cr.tolist() == [[128, 128], [255, 107]]
    y, cb, cr = rgb_to_planes(rgb, PictureFormat.parse("yuv444p10", "limited"))
    assert y[0].tolist() == [940, 64] and cb[0].tolist() == [512, 512]  # (219 + 16)·4, 16·4; 128·4
    _, cb420, _ = rgb_to_planes(rgb, PictureFormat.parse("yuv420p", "full"))
    red = 128 - 0.299 / (2 * (1 - 0.114)) * 255  # red's Cb before rounding; white's and black's are 128, blue's 255.5
    col0, col1 = (128 + red) / 2, (128 + 255.5) / 2  # rows averaged in pairs (vertically interstitial chroma)
    # [1, 2, 1] / 4 around column 0, the column left of it repeated (chroma co-sited with even columns), then rounded
    assert cb420.shape == (1, 1) and cb420[0, 0] == int(np.floor((3 * col0 + col1) / 4 + 0.5))


def test_format_names_and_errors():
    assert PictureFormat.parse("yuv420p10", "full") == DEFAULT_FORMAT  # the MPEG FCM remote-inference anchor's
    assert str(DEFAULT_FORMAT) == "yuv420p10 (full range, BT.601)" and DEFAULT_FORMAT.pix_fmt == "yuv420p10le"
    assert PictureFormat.parse("yuv444p").pix_fmt == "yuv444p"
    with pytest.raises(ConfigError, match="unknown picture format 'nv12'"):
        PictureFormat.parse("nv12")
    with pytest.raises(ConfigError, match="unknown sample range"):
        PictureFormat.parse("yuv420p", "studio")
    with pytest.raises(ShapeError, match="even sizes"):
        rgb_to_planes(np.zeros((3, 4, 3), np.uint8), DEFAULT_FORMAT)
    with pytest.raises(ShapeError, match="uint8 RGB"):
        rgb_to_planes(np.zeros((4, 4), np.uint8), DEFAULT_FORMAT)


def test_lossless_codec_round_trip_of_444_is_exact(photos):
    """FFV1 carries the planes losslessly, so the 10-bit 4:4:4 remote picture comes back bit-exact (odd size too)."""
    ffv1 = get_codec("ffv1")
    rgb = photos["coffee"][:101, :77]
    fmt = PictureFormat.parse("yuv444p10")
    assert np.array_equal(ffv1.decode_image(ffv1.encode_image(rgb, CodecParams(0), fmt), fmt), rgb)
    with pytest.raises(CodecError, match="does not signal its sample range"):
        ffv1.decode_image(ffv1.encode_image(rgb, CodecParams(0), fmt))  # FFV1 has no range field: never guessed
    eight = PictureFormat.parse("yuv444p")  # 8-bit: the codec is exact, the conversion's rounding is what remains
    assert _psnr(ffv1.decode_image(ffv1.encode_image(rgb, CodecParams(0), eight), eight), rgb) > 50


@pytest.mark.parametrize("codec_name", ["x265", "x264", "svtav1"])
def test_streams_signal_their_format_and_decode_without_being_told(chelsea, codec_name):
    """The coded stream's own headers carry bit depth, chroma format and range: decode needs no side information,
    and a caller expecting another format is refused."""
    codec = get_codec(codec_name)
    rgb = chelsea[:64, :96]
    formats = ["yuv420p", "yuv420p10"] + (["yuv444p"] if codec_name != "svtav1" else [])
    for name in formats:
        for sample_range in ("full", "limited"):
            fmt = PictureFormat.parse(name, sample_range)
            enc = codec.encode_image(rgb, CodecParams(22), fmt)
            back = codec.decode_image(enc)
            shift = (back.astype(np.float64) - rgb).mean(axis=(0, 1))
            assert np.all(np.abs(shift) < 0.6) and _psnr(back, rgb) > 36, (name, sample_range, shift)
    enc = codec.encode_image(rgb, CodecParams(22), PictureFormat.parse("yuv420p10", "full"))
    with pytest.raises(CodecError, match="expected yuv420p10 \\(limited"):
        codec.decode_image(enc, PictureFormat.parse("yuv420p10", "limited"))


def test_remote_format_support_is_checked(chelsea):
    with pytest.raises(CodecError, match="cannot code yuv444p10 pictures; it takes: yuv420p, yuv420p10"):
        get_codec("svtav1").encode_image(chelsea, CodecParams(30), PictureFormat.parse("yuv444p10"))
    with pytest.raises(CodecError, match="does not support 10-bit"):
        get_codec("vp9").encode_image(chelsea, CodecParams(30), PictureFormat.parse("yuv444p10"))


def test_image_payload_holds_exactly_one_packet(chelsea):
    """A second packet (here an access unit delimiter) would decode and pass unnoticed: refused."""
    from dataclasses import replace

    x265 = get_codec("x265")
    enc = x265.encode_image(chelsea[:64, :64], CodecParams(30))
    with pytest.raises(CodecError, match="one packet, this one 2"):
        x265.decode_image(replace(enc, packets=(*enc.packets, b"\x00\x00\x00\x01\x46\x01\x50")))
