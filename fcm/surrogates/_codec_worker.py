"""What a codec worker process runs: one picture through a real codec. Imports no torch, so workers start fast."""

from __future__ import annotations

import numpy as np

from fcm.codecs import CodecParams, get_codec


def code_picture(codec_name: str, frame: np.ndarray, bit_depth: int, params: CodecParams) -> tuple[np.ndarray, int]:
    """Encode then decode one ``uint16`` ``H×W`` picture; returns the decoded picture and the codec's byte count."""
    codec = get_codec(codec_name)
    encoded = codec.encode(frame[None], bit_depth, params)
    return codec.decode(encoded)[0], encoded.num_bytes
