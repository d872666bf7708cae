"""``x264``: libx264 (H.264 High / High 10, 4:0:0)."""

from __future__ import annotations

from fcm.codecs.base import CodecParams
from fcm.codecs.ffmpeg.codec import X26X_PRESETS, PyAVCodec, param_string
from fcm.codecs.ffmpeg.frames import PlaneLayout


class X264(PyAVCodec):
    """H.264 via libx264, true 4:0:0 (``gray`` / ``gray10le`` → High / High 10 profile, ``chroma_format_idc`` 0).

    ``qp`` is on the 8-bit H.264/HEVC scale 0–51 at both bit depths; x264's own high-bit-depth QP is
    ``qp + 6 * (bit_depth - 8)`` (measured: x264 10-bit QP 34 ≈ x265 10-bit QP 22 in bytes and PSNR). CRF is passed
    unchanged (x264 shifts it itself). Preset default ``"medium"``. Block QP offsets: 16x16 macroblocks, CRF only.
    Note: x264 always writes an SEI with its version and settings (~0.5 kB) into the first packet; it is kept, as the
    payload holds exactly what the encoder produced.
    """

    name = "x264"
    presets = X26X_PRESETS
    encoder = "libx264"
    decoder = "h264"
    bit_depths = (8, 10)
    qp_range = (0, 51)
    supports_block_qp_offsets = True
    #: measured: these presets turn adaptive quantization off, and libx26x then drops every ROI map (with a warning)
    qp_offset_ignoring_presets = ("ultrafast",)
    default_preset = "medium"
    param_list_keys = ("x264-params",)

    def plane_layout(self, bit_depth: int) -> PlaneLayout:
        return PlaneLayout("gray" if bit_depth == 8 else "gray10le", neutral_chroma=False)

    def intra_period_options(self, period: int) -> tuple[tuple[str, str], ...]:
        return (("x264-params", f"keyint={period}:min-keyint={period}"),)

    def encoder_options(self, bit_depth: int, params: CodecParams) -> dict[str, str]:
        keyint = "1" if params.gop == "intra" else "infinite"
        x264: dict[str, str] = {
            "keyint": keyint,
            "min-keyint": "1",
            "scenecut": "0",
            "bframes": "0",
            "ipratio": "1",
            "pbratio": "1",
        }
        opts: dict[str, str] = {}
        if params.rate_control == "cqp":
            opts["qp"] = str(params.qp + 6 * (bit_depth - 8))
            x264 |= {"aq-mode": "0", "mbtree": "0"}
        else:
            opts["crf"] = str(params.qp)
        opts["x264-params"] = param_string(x264)
        preset = self._preset(params)
        if preset:
            opts["preset"] = preset
        return opts
