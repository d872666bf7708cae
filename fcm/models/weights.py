"""Loading model weights from local files, with checksums. Nothing is ever downloaded."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import torch

from fcm.errors import WeightsError

# torchvision / torch.hub file names carry the first hex digits of the file's sha256: name-<hex>.pth
_HASH_IN_NAME = re.compile(r"-([a-f0-9]{6,64})\.(?:pth|pt)$")


def sha256_of(path: str | Path, chunk_size: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk_size):
            digest.update(block)
    return digest.hexdigest()


def verify_file(path: str | Path, sha256: str | None = None) -> str:
    """Check ``path`` exists and matches ``sha256`` (full hex digest or a prefix of at least 6 digits).

    Without ``sha256``, a hash prefix embedded in the file name (``fasterrcnn_resnet50_fpn_coco-258fb6c6.pth``, the
    torch.hub convention) is checked instead. Returns the file's full sha256.
    """
    p = Path(path)
    if not p.is_file():
        raise WeightsError(f"weights file not found: {p}")
    digest = sha256_of(p)
    expected = sha256
    if expected is None:
        m = _HASH_IN_NAME.search(p.name)
        expected = m.group(1) if m else None
    if expected is not None:
        expected = expected.lower()
        if len(expected) < 6 or not digest.startswith(expected):
            raise WeightsError(f"checksum mismatch for {p}: expected sha256 {expected}…, file has {digest}")
    return digest


def load_state_dict(path: str | Path, sha256: str | None = None) -> tuple[dict[str, torch.Tensor], str]:
    """Verify and load a state dict (weights only, no pickled code). Returns ``(state_dict, sha256)``."""
    digest = verify_file(path, sha256)
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises many types for a bad file
        raise WeightsError(f"cannot load weights from {path}: {e}") from e
    if isinstance(obj, dict) and "model" in obj and isinstance(obj["model"], dict):
        obj = obj["model"]  # detectron2/torchvision training checkpoints wrap the state dict
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise WeightsError(f"{path} does not hold a state dict of tensors")
    return obj, digest


def load_into(module: torch.nn.Module, state_dict: dict[str, torch.Tensor], source: str) -> None:
    """``load_state_dict(strict=True)`` with an error that names the file and the first mismatching keys."""
    try:
        result = module.load_state_dict(state_dict, strict=True)
    except RuntimeError as e:  # tensor shape mismatches
        raise WeightsError(f"weights {source} do not fit {type(module).__name__}: {e}") from e
    if result.missing_keys or result.unexpected_keys:
        raise WeightsError(
            f"weights {source} do not fit {type(module).__name__}: "
            f"missing {result.missing_keys[:5]} ({len(result.missing_keys)} in all), "
            f"unexpected {result.unexpected_keys[:5]} ({len(result.unexpected_keys)} in all)"
        )
