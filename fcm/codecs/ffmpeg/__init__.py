"""In-process inner codecs driving FFmpeg encoders through PyAV's ``av.CodecContext``.

No container, no temporary file, no subprocess: frames go into an encoder context and the packets it returns are kept
byte for byte in an :class:`~fcm.codecs.base.EncodedFrames`; decoding feeds those bytes to an FFmpeg decoder.

What each codec carries, as measured with the FFmpeg libraries inside the ``av==18.1.0`` wheel (libx265 4.2,
SVT-AV1 4.1; ``tests/test_codecs.py`` keeps the evidence as tests, e.g. the H.264 SPS's ``chroma_format_idc``):

============  ===========  ==============================  ===========================================  ==========
registry      encoder      encoder input pixel format      bitstream                                    bit depths
============  ===========  ==============================  ===========================================  ==========
``x265``      libx265      ``gray`` / ``gray10le``         HEVC 4:0:0 (decoded back as gray/gray10le)   8, 10
``x264``      libx264      ``gray`` / ``gray10le``         H.264 High / High 10, ``chroma_format_idc``  8, 10
                                                           0; FFmpeg's decoder returns it as 4:2:0 with
                                                           synthesized neutral chroma, which is dropped
``svtav1``    libsvtav1    ``yuv420p`` / ``yuv420p10le``   AV1 4:2:0, chroma planes a flat mid-grey     8, 10
                                                           (the encoder takes nothing else)
``vp9``       libvpx-vp9   ``yuv420p``                     VP9 profile 0, flat mid-grey chroma; this    8
                                                           libvpx build has no high-bit-depth formats
``ffv1``      ffv1         ``gray`` / ``gray10le``         FFV1 version 3, lossless, CRC per slice      8, 10
============  ===========  ==============================  ===========================================  ==========

Conventions shared by every codec here:

* ``CodecParams.qp`` is the standard's luma QP on the 8-bit scale for H.264/HEVC (0–51 at every bit depth, as with
  HM/VTM and x265). x264 takes high-bit-depth QPs on its own shifted scale, so ``X264`` passes
  ``qp + 6 * (bit_depth - 8)``; at a given ``qp`` x264 and x265 therefore use the same quantizer step.
* ``rate_control="cqp"``: one QP for every frame (I and P alike: x264/x265 ``ipratio=1``), adaptive quantization and
  mb-tree/cu-tree off. ``"crf"``: the encoder's constant-quality mode with its adaptive quantization on.
* ``gop="intra"``: every frame a key frame. ``"lowdelay"``: one key frame, then P frames only; no B frames, no
  reordering, so packets come in display order. Either way there is exactly one packet per frame.
* Deterministic: the same input gives the same bytes on any machine. Encoders whose output depends on their thread
  count run with a fixed one (x264, VP9, FFV1: one thread; x265: one frame thread and no lookahead slices; its WPP
  row threads do not change the output). SVT-AV1 runs with its own thread pool, whose output does not depend on it.
* Quiet: x265 runs with ``log-level=error``, SVT-AV1 with ``SVT_LOG=1`` (unless already set in the environment), and
  FFmpeg's own log messages are captured rather than printed.
* Frames smaller than an encoder accepts (x265: 16×16, SVT-AV1: 4×4) are padded by edge replication before encoding
  and cropped after decoding; :class:`EncodedFrames` always states the caller's size.

``decode`` raises :class:`fcm.errors.CodecError` for anything wrong with a payload: a PyAV/FFmpeg error, an error the
decoder logs while concealing damage (e.g. a failed FFV1 slice CRC), a frame flagged corrupt, a wrong number of
frames, or a wrong size or bit depth. Damage a decoder cannot notice (HEVC and VP9 have no checksums by default)
decodes to wrong pixels; the fcm container's own checksum is what catches that.
"""

from __future__ import annotations

from fcm.codecs.ffmpeg.codec import PyAVCodec
from fcm.codecs.ffmpeg.decode import check_payload_bounds, decode_bitstream, frame_types
from fcm.codecs.ffmpeg.ffv1 import Ffv1
from fcm.codecs.ffmpeg.frames import check_frames
from fcm.codecs.ffmpeg.sessions import DecoderSession, EncoderSession, PictureDecoderSession, PictureEncoderSession
from fcm.codecs.ffmpeg.svtav1 import SvtAv1
from fcm.codecs.ffmpeg.vp9 import Vp9
from fcm.codecs.ffmpeg.x264 import X264
from fcm.codecs.ffmpeg.x265 import X265

__all__ = [
    "X264",
    "X265",
    "DecoderSession",
    "EncoderSession",
    "Ffv1",
    "PictureDecoderSession",
    "PictureEncoderSession",
    "PyAVCodec",
    "SvtAv1",
    "Vp9",
    "check_frames",
    "check_payload_bounds",
    "decode_bitstream",
    "frame_types",
]
