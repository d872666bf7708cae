"""Bounds and nominal values every FFmpeg module here shares."""

from __future__ import annotations

#: Nominal frame rate handed to encoders; with constant QP it changes nothing but the stream's timing fields.
NOMINAL_FPS = 25
#: Largest frame side accepted in a payload to decode (guards against absurd declared sizes).
MAX_SIDE = 1 << 15
#: A payload may hold at most this many times the raw frame bytes (plus :data:`SLACK_BYTES`) before decode refuses
#: it: even lossless coding of noise stays far below, and it bounds what garbage can make the decoder chew on.
MAX_EXPANSION = 4
SLACK_BYTES = 1 << 20
