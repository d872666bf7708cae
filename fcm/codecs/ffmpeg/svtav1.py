"""``svtav1``: libsvtav1 (AV1 4:2:0 with flat chroma)."""

from __future__ import annotations

import os

from fcm.codecs.base import CodecParams
from fcm.codecs.ffmpeg.codec import PyAVCodec, param_string
from fcm.codecs.ffmpeg.frames import PlaneLayout


class SvtAv1(PyAVCodec):
    """AV1 via SVT-AV1 (libsvtav1), 4:2:0 with flat mid-grey chroma (``yuv420p`` / ``yuv420p10le``), decoded by
    libdav1d. SVT-AV1 accepts nothing monochrome.

    ``qp`` 1–63: SVT-AV1's CQP needs ``qp >= 1`` (0 would silently fall back to its default CRF). ``"crf"`` is its
    CRF mode (AQ on). Preset default ``"8"`` (0 slowest … 13 fastest). Low delay uses SVT-AV1's low-delay prediction
    structure (``pred-struct=1``): P frames only, though with its layered QP offsets. Frames under 4x4 are padded.
    """

    name = "svtav1"
    encoder = "libsvtav1"
    decoder = "libdav1d"
    bit_depths = (8, 10)
    qp_range = (1, 63)
    default_preset = "8"
    presets = tuple(str(p) for p in range(-1, 14))  # SVT-AV1's encoder modes, slowest to fastest
    min_size = 4  # "Source Width must be at least 4"
    param_list_keys = ("svtav1-params",)

    def plane_layout(self, bit_depth: int) -> PlaneLayout:
        return PlaneLayout("yuv420p" if bit_depth == 8 else "yuv420p10le", neutral_chroma=True)

    def prepare_environment(self) -> None:
        # SVT-AV1 prints its configuration banner to stderr unless told otherwise; 1 keeps errors only.
        os.environ.setdefault("SVT_LOG", "1")

    def thread_count(self) -> int:
        return 0  # SVT-AV1 ignores it; its output does not depend on its thread pool

    def intra_period_options(self, period: int) -> tuple[tuple[str, str], ...]:
        return (("svtav1-params", f"keyint={period}"),)

    def encoder_options(self, bit_depth: int, params: CodecParams) -> dict[str, str]:
        opts = {"qp" if params.rate_control == "cqp" else "crf": str(params.qp)}
        # gop_size=1 makes FFmpeg send every frame as a key picture; low delay: one key frame, P frames only.
        svt = {} if params.gop == "intra" else {"keyint": "-1", "pred-struct": "1"}
        if svt:
            opts["svtav1-params"] = param_string(svt)
        preset = self._preset(params)
        if preset:
            opts["preset"] = preset
        return opts
