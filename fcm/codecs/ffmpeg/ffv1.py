"""``ffv1``: FFV1 version 3, lossless."""

from __future__ import annotations

from fcm.codecs.base import CodecParams
from fcm.codecs.ffmpeg.codec import PyAVCodec
from fcm.codecs.ffmpeg.frames import PlaneLayout


class Ffv1(PyAVCodec):
    """FFV1 (version 3, range coder, 4 slices with CRCs), lossless, ``gray`` / ``gray10le``.

    ``qp`` is ignored (any value in 0–63 is accepted, so that a QP sweep can include it) and ``preset`` too;
    ``rate_control="crf"`` is refused. ``"intra"`` resets the coder's context every frame, ``"lowdelay"`` keeps
    adapting across frames (only the first frame is a key frame); both are intra coding.
    """

    name = "ffv1"
    encoder = "ffv1"
    decoder = "ffv1"
    bit_depths = (8, 10)
    qp_range = (0, 63)
    lossless = True
    supports_crf = False

    def plane_layout(self, bit_depth: int) -> PlaneLayout:
        return PlaneLayout("gray" if bit_depth == 8 else "gray10le", neutral_chroma=False)

    def encoder_options(self, bit_depth: int, params: CodecParams) -> dict[str, str]:
        # Everything explicit so that a change of FFmpeg defaults cannot change the bytes.
        return {"level": "3", "coder": "1", "context": "0", "slices": "4", "slicecrc": "1"}
