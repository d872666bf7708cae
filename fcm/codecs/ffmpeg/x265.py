"""``x265``: libx265 (HEVC 4:0:0)."""

from __future__ import annotations

from fcm.codecs.base import CodecParams
from fcm.codecs.ffmpeg.codec import X26X_PRESETS, PyAVCodec, param_string
from fcm.codecs.ffmpeg.frames import PlaneLayout


class X265(PyAVCodec):
    """HEVC via libx265, true 4:0:0 (``gray`` / ``gray10le``), 8 and 10 bits.

    ``qp`` 0–51 (CRF 0–51 with ``rate_control="crf"``); preset default ``"medium"``. Block QP offsets (16x16, CRF
    only) go to x265's per-block quant offsets; ``qg-size=16`` is set in CRF mode so they act at that granularity.
    No SEI with the encoder's version string (``info=0``): it would cost ~2 kB per stream.
    """

    name = "x265"
    presets = X26X_PRESETS
    encoder = "libx265"
    decoder = "hevc"
    bit_depths = (8, 10)
    qp_range = (0, 51)
    supports_block_qp_offsets = True
    #: measured: these presets turn adaptive quantization off, and libx26x then drops every ROI map (with a warning)
    qp_offset_ignoring_presets = ("ultrafast", "superfast")
    qp_block_sizes = (16, 8)
    default_preset = "medium"
    min_size = 16  # libx265 refuses smaller pictures ("Image size is too small")
    param_list_keys = ("x265-params",)

    def plane_layout(self, bit_depth: int) -> PlaneLayout:
        return PlaneLayout("gray" if bit_depth == 8 else "gray10le", neutral_chroma=False)

    def block_size_options(self, block: int) -> tuple[tuple[str, str], ...]:
        return (("x265-params", f"qg-size={block}"),) if block != 16 else ()

    def intra_period_options(self, period: int) -> tuple[tuple[str, str], ...]:
        return (("x265-params", f"keyint={period}:min-keyint={period}"),)

    def encoder_options(self, bit_depth: int, params: CodecParams) -> dict[str, str]:
        x265: dict[str, str] = {
            "log-level": "error",
            "info": "0",
            # Output must not depend on the machine: a fixed single frame thread and no lookahead slices (WPP row
            # threads are deterministic in x265).
            "frame-threads": "1",
            "lookahead-slices": "0",
            "bframes": "0",
            "scenecut": "0",
            "keyint": "1" if params.gop == "intra" else "-1",
            "min-keyint": "1",
            # Same QP for I and P frames (x265 would otherwise lower I-frame QP by ~3).
            "ipratio": "1",
            "pbratio": "1",
        }
        if self.threads is not None:  # the wavefront thread pool: the output does not depend on its size
            x265["pools"] = str(self.threads)
        if params.rate_control == "cqp":
            x265 |= {"qp": str(params.qp), "aq-mode": "0", "cutree": "0"}
        else:
            x265 |= {"crf": str(params.qp), "qg-size": "16"}
        opts = {"x265-params": param_string(x265)}
        preset = self._preset(params)
        if preset:
            opts["preset"] = preset
        return opts
