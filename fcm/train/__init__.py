"""Training learned wrappers end to end through a real codec (``fcm train CONFIG.yaml``).

* :mod:`fcm.train.config` — :class:`TrainConfig`, the validated YAML;
* :mod:`fcm.train.data` — training sources (none an evaluation photo), random crops, the cached edge-half features;
* :mod:`fcm.train.channel` — the coded path (wrapper → packing → codec surrogate → unpacking → wrapper);
* :mod:`fcm.train.objective` — task loss + λ · rate proxy;
* :mod:`fcm.train.state` — the resumable trainer state;
* :mod:`fcm.train.distributed` — ``torchrun`` data parallelism;
* :mod:`fcm.train.loop` — :func:`train`, :func:`evaluate`.
"""

from __future__ import annotations

from fcm.train.config import TrainConfig

__all__ = ["TrainConfig"]
