"""Fixed offline weight maps: the mean normalised sample weights of one (model, split, wrapper, target) over a set of
inputs, with the identifiers and packing layout they belong to (``fcm rdo-weights CONFIG -o map.npz``).

File: a numpy ``.npz`` (read with ``allow_pickle=False``) holding ``weights`` (``H×W`` float32, mean 1) and
``identity`` (a JSON string: format tag, model, split, model weights tag, wrapper name and weights tag or null,
target, the layout, and how the map was made). :meth:`FixedMap.check` refuses a map whose identifiers or layout differ
from what is being coded, naming the field.
"""

from __future__ import annotations

import json
import zipfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from fcm.errors import ConfigError

if TYPE_CHECKING:
    from fcm.models.base import SplitModel
    from fcm.packing.layout import Layout
    from fcm.packing.packer import RangeMode
    from fcm.rdo.settings import RdoSettings
    from fcm.wrappers.base import WrapperPair

FORMAT = "fcm-rdo-map/1"


def layout_record(layout: Layout) -> dict[str, Any]:
    return {
        "frame_height": layout.frame_height,
        "frame_width": layout.frame_width,
        "placements": [[p.name, p.channels, p.height, p.width, p.cols, p.top] for p in layout.placements],
    }


def identifiers(model: SplitModel | None, wrapper: WrapperPair | None) -> dict[str, Any]:
    """What a map belongs to besides its layout."""
    return {
        "model": None if model is None else model.name,
        "split": None if model is None else model.split,
        "model_weights": None if model is None else model.weights_tag,
        "wrapper": None if wrapper is None else [wrapper.name, wrapper.weights_tag],
    }


@dataclass(frozen=True)
class FixedMap:
    """A fixed map and what it belongs to."""

    weights: np.ndarray
    identity: dict[str, Any]

    def check(
        self, model: SplitModel | None, wrapper: WrapperPair | None, layout: Layout, range_mode: str = "frame"
    ) -> None:
        """Raise :class:`ConfigError` naming the first identifier, the layout or the range mode that differs (the
        weights scale with each range's span, so a map made for per-tensor ranges does not fit per-frame ones)."""
        want = {**identifiers(model, wrapper), "layout": layout_record(layout), "range_mode": range_mode}
        for key, value in want.items():
            have = self.identity.get(key)
            if _plain(have) != _plain(value):
                raise ConfigError(
                    f"the fixed rdo map was made for {key} {_show(have)}, but this stream has {_show(value)}; "
                    "make a map for it with `fcm rdo-weights`"
                )

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        if path.suffix != ".npz":
            raise ConfigError(f"a fixed rdo map is a .npz file, got {path}")
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp.npz")
        np.savez_compressed(
            tmp, weights=self.weights.astype(np.float32), identity=np.array(json.dumps(self.identity, sort_keys=True))
        )
        tmp.replace(path)
        return path

    @classmethod
    def load(cls, path: str | Path) -> FixedMap:
        """The map saved at ``path``; :class:`ConfigError` naming the problem for a missing, foreign, damaged or
        inflated file. Nothing large is inflated before it is known to fit: the identity member is bounded, and the
        weights member's ``.npy`` header (shape, dtype) and size are compared with the layout the identity names."""
        try:
            with np.load(path, allow_pickle=False) as data:
                sizes = {info.filename: info.file_size for info in data.zip.infolist()}
                if sizes.get("identity.npy", 0) > _MAX_IDENTITY_BYTES:
                    raise ConfigError(f"{path}: its identity member inflates to {sizes['identity.npy']} bytes")
                identity = json.loads(str(data["identity"]))
                if not isinstance(identity, dict) or identity.get("format") != FORMAT:
                    raise ConfigError(f"{path} is not a fixed rdo map (format {FORMAT})")
                layout = identity.get("layout")
                if not isinstance(layout, dict):
                    raise ConfigError(f"{path} is not a fixed rdo map: it names no layout")
                h, w = layout.get("frame_height"), layout.get("frame_width")
                if not (isinstance(h, int) and isinstance(w, int) and h > 0 and 0 < h * w <= _MAX_FRAME_SAMPLES):
                    raise ConfigError(f"{path}: the layout it names has no valid frame size ({h}x{w})")
                if "weights.npy" not in sizes:
                    raise ConfigError(f"{path} is not a fixed rdo map: it has no weights")
                with data.zip.open("weights.npy") as member:  # the header only: a few hundred bytes
                    version = np.lib.format.read_magic(member)
                    if version not in ((1, 0), (2, 0)):
                        raise ConfigError(f"{path}: its weights member has .npy format version {version}")
                    formats = np.lib.format
                    read_header = formats.read_array_header_1_0 if version == (1, 0) else formats.read_array_header_2_0
                    shape, _, dtype = read_header(member)
                if tuple(shape) != (h, w) or dtype not in (np.dtype(np.float32), np.dtype(np.float64)):
                    raise ConfigError(
                        f"{path}: weights of shape {tuple(shape)} ({dtype}) do not match the {h}x{w} frame of the "
                        "layout it names"
                    )
                if sizes["weights.npy"] > dtype.itemsize * h * w + 4096:  # the data plus the .npy header
                    raise ConfigError(
                        f"{path}: its weights member inflates to {sizes['weights.npy']} bytes, more than a {h}x{w} "
                        "frame holds"
                    )
                weights = np.asarray(data["weights"], dtype=np.float64)
        except ConfigError:
            raise
        except FileNotFoundError:
            raise ConfigError(f"fixed rdo map {path} does not exist") from None
        except (OSError, KeyError, ValueError, TypeError, zipfile.BadZipFile, MemoryError) as e:
            raise ConfigError(f"{path} is not a fixed rdo map: {type(e).__name__}: {e}") from None
        if weights.shape != (h, w):
            raise ConfigError(f"{path}: weights of shape {weights.shape} do not match the layout it names")
        if not np.isfinite(weights).all() or (weights < 0).any():
            raise ConfigError(f"{path}: weights must be finite and non-negative")
        return cls(weights, identity)


_MAX_IDENTITY_BYTES = 1 << 20
_MAX_FRAME_SAMPLES = 1 << 26  # a frame no codec fcm drives takes is refused before its map is inflated


def make_fixed_map(
    model: SplitModel,
    images: Iterable[np.ndarray],
    settings: RdoSettings,
    bit_depth: int,
    range_mode: RangeMode = "frame",
    wrapper: WrapperPair | None = None,
    progress: Callable[[int], None] | None = None,
) -> FixedMap:
    """Average the per-frame normalised weights (mean 1 each) of ``images`` coded as the edge would code them."""
    import torch

    from fcm.edge import run_front
    from fcm.packing import Packer
    from fcm.rdo.maps import normalise
    from fcm.rdo.sensitivity import frame_sensitivity
    from fcm.rdo.targets import as_target

    target = as_target(settings.target_for(model))
    total: np.ndarray | None = None
    layout = None
    count = 0
    for image in images:
        edge = run_front(image, model, torch_threads=None)
        tensors = edge.features.tensors
        if wrapper is not None:
            with torch.no_grad():
                tensors = wrapper.encode(tensors)
        packed = Packer(bit_depth, range_mode).pack(tensors)
        if layout is not None and packed.layout != layout:
            raise ConfigError(
                "the inputs pack to different layouts (a model whose input size follows the image's): a fixed map "
                "needs inputs of one size"
            )
        layout = packed.layout
        raw = frame_sensitivity(
            packed, model, edge.features.meta, wrapper, target, settings.probes, settings.seed + count
        )
        norm = normalise(raw).sum(axis=0)
        total = norm if total is None else total + norm
        count += packed.frames.shape[0]
        if progress is not None:
            progress(1)
    if total is None or layout is None:
        raise ConfigError("no inputs to average a fixed rdo map over")
    identity = {
        "format": FORMAT,
        **identifiers(model, wrapper),
        "layout": layout_record(layout),
        "target": target,
        "frames": count,
        "probes": settings.probes,
        "seed": settings.seed,
        "bit_depth": bit_depth,
        "range_mode": range_mode,
    }
    return FixedMap(total / count, identity)


def _plain(value: Any) -> Any:
    return json.loads(json.dumps(value))


def _show(value: Any) -> str:
    if isinstance(value, dict):
        return f"{value.get('frame_width')}×{value.get('frame_height')} layout {value.get('placements')}"
    return repr(value)
