"""Files of tensors fcm writes itself (wrapper checkpoints, trainer states): saved atomically, read safely.

Each is a ``torch.save``'d mapping with a ``format`` key naming what it is. :func:`load_mapping` reads one back with
``weights_only=True`` (tensors and plain Python values only: loading runs no pickled code) and checks its format, so a
damaged, foreign or hostile file is one clear :class:`~fcm.errors.WeightsError`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from fcm.errors import WeightsError

__all__ = ["load_mapping", "save_mapping"]


def save_mapping(path: Path, fmt: str, data: dict[str, Any]) -> None:
    """Write ``{"format": fmt, **data}`` to ``path`` through a temporary file renamed into place (no torn file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save({"format": fmt, **data}, tmp)
    tmp.replace(path)


def load_mapping(path: Path, fmt: str, what: str) -> dict[str, Any]:
    """The mapping saved at ``path`` by :func:`save_mapping` with format ``fmt``; ``what`` names it in errors."""
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise WeightsError(f"{path} is not a readable {what}: {type(e).__name__}: {e}") from e
    if not isinstance(data, dict) or data.get("format") != fmt:
        raise WeightsError(f"{path} is not an fcm {what} (no format {fmt!r})")
    return data
