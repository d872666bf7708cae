"""``vp9``: libvpx-vp9 (VP9 profile 0, 8 bits)."""

from __future__ import annotations

from fcm.codecs.base import CodecParams
from fcm.codecs.ffmpeg.codec import PyAVCodec
from fcm.codecs.ffmpeg.frames import PlaneLayout


class Vp9(PyAVCodec):
    """VP9 via libvpx-vp9, 8-bit 4:2:0 with flat mid-grey chroma (this libvpx build offers no 10-bit formats).

    ``qp`` 0–63 is libvpx's quantizer scale: CQP pins it with ``qmin = qmax = qp`` in constant-quality mode
    (``qp=0`` is lossless), AQ off. ``"crf"`` is libvpx's constant-quality mode (``crf=qp``, ``b=0``) with variance AQ.
    ``preset`` is libvpx's ``cpu-used`` (0 slowest … 8 fastest), default ``"4"``, with ``deadline=good``. No alt-ref
    frames and no lag, so one visible frame per packet.
    """

    name = "vp9"
    encoder = "libvpx-vp9"
    decoder = "vp9"
    bit_depths = (8,)
    qp_range = (0, 63)
    default_preset = "4"
    presets = tuple(str(p) for p in range(9))  # cpu-used

    def plane_layout(self, bit_depth: int) -> PlaneLayout:
        return PlaneLayout("yuv420p", neutral_chroma=True)

    def intra_period_options(self, period: int) -> tuple[tuple[str, str], ...]:
        return (("keyint_min", str(period)),)

    def encoder_options(self, bit_depth: int, params: CodecParams) -> dict[str, str]:
        opts = {
            "deadline": "good",
            "cpu-used": self._preset(params) or "4",
            "lag-in-frames": "0",
            "auto-alt-ref": "0",
            "b": "0",
            "crf": str(params.qp),
        }
        if params.rate_control == "cqp":
            opts |= {"qmin": str(params.qp), "qmax": str(params.qp), "aq-mode": "0"}
        else:
            opts |= {"aq-mode": "1"}
        if params.gop == "lowdelay":
            opts["keyint_min"] = str(self.gop_size(params))  # = gop size: no automatic key frames
        return opts
