"""The registry of codecs by name (the contract a registrant honours is stated in :mod:`fcm.codecs`).

Its own module so that what registers codecs (:mod:`fcm.codecs.user_codecs`) and what looks them up
(:func:`fcm.codecs.get_codec`, which reads ``$FCM_CODECS`` on an unknown name) need not import each other.
"""

from __future__ import annotations

from collections.abc import Callable

from fcm.codecs.base import Codec
from fcm.registry import Registry

CodecFactory = Callable[[], Codec]

#: name → zero-argument factory of a fresh :class:`Codec` of that name
CODECS: Registry[CodecFactory] = Registry("codec")


def register_codec(name: str, factory: CodecFactory) -> None:
    """Register ``factory`` (a zero-argument callable returning a :class:`Codec` named ``name``).

    Raises ValueError if ``name`` is taken.
    """
    CODECS.add(name, factory)
