"""Rate-adaptive wrapper families: one variant per QP band, chosen per operating point and named in the stream.

One channel-reduction wrapper serves a band of rates, not all of them: its bottleneck caps what it can restore, so
above some rate plain feature coding is more accurate for the same bits. A :class:`WrapperFamily` holds several
**variants** — each a trained :class:`~fcm.wrappers.base.WrapperPair`, or ``plain`` (no wrapper: the split tensors
coded as they are) — and one QP band per variant; the bands tile a QP interval without gap or overlap.

* Encoding at QP ``q`` uses the variant whose band holds ``q`` (:meth:`WrapperFamily.select`). A QP outside every
  band is refused (a :class:`~fcm.errors.ConfigError` naming the bands), never served by the nearest variant.
* The stream names the variant it was coded with as any wrapped stream does (the wrapper's name and weights tag; a
  plain-variant stream names no wrapper and decodes without the family), so the decoder picks the same variant from
  the family by the header alone (:meth:`WrapperFamily.for_stream`) and refuses a stream whose variant the family
  lacks, naming the variants it has.
* Bands are chosen on a validation split, never on the data a figure is reported on (``tools/make_family.py``
  writes the choice and its validation figures into the file's ``selection``).

File format: a ``torch.save``'d mapping (read with ``weights_only=True``), ``format`` ``"fcm-wrapper-family"``,
``format_version`` 1, ``model`` / ``split`` / ``model_weights_tag``, ``variants`` (a list of ``{"label", "qp_min",
"qp_max", "checkpoint"}``, ``checkpoint`` a whole wrapper checkpoint mapping as :mod:`fcm.wrappers.checkpoint`
writes it, or ``None`` for plain), ``weights_tag`` (:attr:`WrapperFamily.weights_tag`), ``selection`` and
``evaluation`` (free-form provenance).
"""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fcm.errors import BitstreamError, ConfigError, WeightsError
from fcm.torch_files import load_mapping, save_mapping
from fcm.wrappers.base import WrapperPair
from fcm.wrappers.checkpoint import check_checkpoint, checkpoint_payload, wrapper_from_checkpoint

if TYPE_CHECKING:
    from fcm.bitstream import WrapperRef
    from fcm.models.base import SplitModel

__all__ = [
    "FAMILY_FORMAT",
    "FamilyVariant",
    "WrapperFamily",
    "describe_family",
    "is_family_file",
    "load_family",
    "read_family",
    "save_family",
]

FAMILY_FORMAT = "fcm-wrapper-family"
FAMILY_FORMAT_VERSION = 1
PLAIN = "plain"


@dataclass(frozen=True)
class FamilyVariant:
    """One variant of a family: ``wrapper`` (``None``: plain coding) serves QPs ``qp_min`` … ``qp_max``."""

    label: str
    qp_min: int
    qp_max: int
    wrapper: WrapperPair | None
    #: the variant checkpoint's training provenance (kept in the family file)
    training: dict[str, Any] = field(default_factory=dict, compare=False)

    @property
    def ref(self) -> str:
        what = PLAIN if self.wrapper is None else f"{self.wrapper.name} (weights {self.wrapper.weights_tag})"
        return f"{self.label!r}: {what}, QP {self.qp_min}–{self.qp_max}"


class WrapperFamily:
    """Variants of one split, each serving a QP band (module doc). Not an ``nn.Module``: it is never trained as one;
    each variant is trained on its own and the family only routes operating points and streams to them."""

    def __init__(self, variants: Sequence[FamilyVariant]) -> None:
        if not variants:
            raise ConfigError("a wrapper family needs at least one variant")
        ordered = sorted(variants, key=lambda v: v.qp_min)
        labels = [v.label for v in ordered]
        if len(set(labels)) != len(labels):
            raise ConfigError(f"wrapper family variant labels must differ, got {labels}")
        for v in ordered:
            if not (isinstance(v.qp_min, int) and isinstance(v.qp_max, int)) or not 0 <= v.qp_min <= v.qp_max:
                raise ConfigError(f"wrapper family variant {v.label!r}: bad QP band {v.qp_min!r}–{v.qp_max!r}")
        for a, b in itertools.pairwise(ordered):
            if b.qp_min != a.qp_max + 1:
                raise ConfigError(
                    f"wrapper family bands must tile the QPs without gap or overlap: {a.label!r} ends at QP "
                    f"{a.qp_max}, {b.label!r} starts at {b.qp_min}"
                )
        specs = {v.wrapper.input_spec for v in ordered if v.wrapper is not None}
        if len(specs) > 1:
            raise ConfigError("the variants of a wrapper family must all be built for the same split")
        tags = [(v.wrapper.name, v.wrapper.weights_tag) for v in ordered if v.wrapper is not None]
        if len(set(tags)) != len(tags):
            raise ConfigError("two variants of a wrapper family hold the same weights: a stream could not tell them")
        self.variants: tuple[FamilyVariant, ...] = tuple(ordered)

    @property
    def qp_range(self) -> tuple[int, int]:
        return self.variants[0].qp_min, self.variants[-1].qp_max

    @property
    def weights_tag(self) -> str:
        """16 hex digits of SHA-256 over every variant's label, band and weights: equal tags, equal families."""
        digest = hashlib.sha256()
        for v in self.variants:
            tag = PLAIN if v.wrapper is None else f"{v.wrapper.name}:{v.wrapper.weights_tag}"
            digest.update(f"{v.label}|{v.qp_min}|{v.qp_max}|{tag}\n".encode())
        return digest.hexdigest()[:16]

    def describe(self) -> str:
        return "; ".join(v.ref for v in self.variants)

    def variant_at(self, qp: int) -> FamilyVariant:
        """The variant serving QP ``qp``; a :class:`ConfigError` when no band holds it."""
        for v in self.variants:
            if v.qp_min <= qp <= v.qp_max:
                return v
        lo, hi = self.qp_range
        raise ConfigError(f"QP {qp} is outside the wrapper family's bands (QP {lo}–{hi}): {self.describe()}")

    def select(self, qp: int) -> WrapperPair | None:
        """The wrapper to code QP ``qp`` with (``None``: plain coding)."""
        return self.variant_at(qp).wrapper

    def for_stream(self, coded_with: WrapperRef | None) -> WrapperPair | None:
        """The variant a stream was coded with, from its header's wrapper reference (``None``: no wrapper, the plain
        variant); a :class:`BitstreamError` naming the family's variants when it has no such variant."""
        for v in self.variants:
            if coded_with is None and v.wrapper is None:
                return None
            if (
                coded_with is not None
                and v.wrapper is not None
                and (v.wrapper.name, v.wrapper.weights_tag) == (coded_with.name, coded_with.weights_tag)
            ):
                return v.wrapper
        what = "without a wrapper (plain coding)" if coded_with is None else f"with wrapper {coded_with}"
        raise BitstreamError(
            f"the stream was coded {what}, a variant the wrapper family (weights {self.weights_tag}) does not "
            f"have; its variants: {self.describe()}"
        )


def is_family_file(path: str | Path) -> bool:
    """Whether ``path`` is a wrapper family file (rather than a single wrapper checkpoint); reads the file."""
    try:
        return _read(Path(path)).get("format") == FAMILY_FORMAT
    except WeightsError:
        return False


def _read(path: Path) -> dict[str, Any]:
    import torch

    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise WeightsError(f"{path} is not a readable wrapper file: {type(e).__name__}: {e}") from e
    if not isinstance(data, dict):
        raise WeightsError(f"{path} is not an fcm wrapper file")
    return data


def save_family(
    path: str | Path,
    family: WrapperFamily,
    model: SplitModel,
    selection: dict[str, Any] | None = None,
    evaluation: dict[str, Any] | None = None,
) -> str:
    """Write ``family`` to ``path`` (atomically) with its provenance; returns its weights tag."""
    variants = [
        {
            "label": v.label,
            "qp_min": v.qp_min,
            "qp_max": v.qp_max,
            "checkpoint": None if v.wrapper is None else checkpoint_payload(v.wrapper, model, v.training),
        }
        for v in family.variants
    ]
    payload = {
        "format_version": FAMILY_FORMAT_VERSION,
        "model": model.name,
        "split": model.split,
        "model_weights_tag": model.weights_tag,
        "variants": variants,
        "weights_tag": family.weights_tag,
        "selection": dict(selection or {}),
        "evaluation": dict(evaluation or {}),
    }
    save_mapping(Path(path), FAMILY_FORMAT, payload)
    return family.weights_tag


def read_family(path: str | Path) -> dict[str, Any]:
    """The family mapping at ``path``, checked for its format and keys; :class:`WeightsError` names any problem."""
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"wrapper family not found: {path}")
    data = load_mapping(path, FAMILY_FORMAT, "wrapper family")
    if data.get("format_version") != FAMILY_FORMAT_VERSION:
        raise WeightsError(f"{path}: family format version {data.get('format_version')!r} is not 1")
    missing = [k for k in ("model", "split", "model_weights_tag", "variants", "weights_tag") if k not in data]
    if missing:
        raise WeightsError(f"{path}: wrapper family lacks {missing}")
    if not isinstance(data["variants"], list) or not data["variants"]:
        raise WeightsError(f"{path}: a wrapper family's variants must be a non-empty list")
    for i, v in enumerate(data["variants"]):
        if not isinstance(v, dict) or {"label", "qp_min", "qp_max", "checkpoint"} - set(v):
            raise WeightsError(f"{path}: variant {i} must hold label, qp_min, qp_max and checkpoint")
        if v["checkpoint"] is not None:
            check_checkpoint(v["checkpoint"], f"{path} variant {v['label']!r}")
    return data


def describe_family(data: dict[str, Any]) -> str:
    """The variants of a family mapping (as :func:`read_family` returns), as :meth:`WrapperFamily.describe` words
    them, without building any wrapper."""
    words = []
    for v in data["variants"]:
        ck = v["checkpoint"]
        what = PLAIN if ck is None else f"{ck['wrapper']} (weights {ck['weights_tag']})"
        words.append(f"{v['label']!r}: {what}, QP {v['qp_min']}–{v['qp_max']}")
    return "; ".join(words)


def load_family(path: str | Path, model: SplitModel) -> WrapperFamily:
    """Rebuild the family at ``path`` for ``model``; every variant's weights are checked against its tag, and the
    family against its own tag."""
    data = read_family(path)
    if (data["model"], data["split"]) != (model.name, model.split):
        raise WeightsError(f"{path} is a family for {data['model']}/{data['split']}, not {model.name}/{model.split}")
    variants = []
    for v in data["variants"]:
        where = f"{path} variant {v['label']!r}"
        wrapper = None if v["checkpoint"] is None else wrapper_from_checkpoint(v["checkpoint"], model, where)
        training = {} if v["checkpoint"] is None else dict(v["checkpoint"].get("training") or {})
        variants.append(FamilyVariant(str(v["label"]), v["qp_min"], v["qp_max"], wrapper, training))
    try:
        family = WrapperFamily(variants)
    except ConfigError as e:
        raise WeightsError(f"{path}: {e}") from e
    if family.weights_tag != data["weights_tag"]:
        raise WeightsError(
            f"{path}: the family hashes to {family.weights_tag}, but the file states {data['weights_tag']} "
            "(damaged or edited file)"
        )
    return family
