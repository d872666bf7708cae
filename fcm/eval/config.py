"""Sweep configuration: YAML → a validated :class:`SweepConfig`, before any work starts."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fcm.codecs.base import CodecParams, as_gop_structure, as_rate_control
from fcm.errors import ConfigError, FcmError, UnknownNameError
from fcm.eval.pipelines import PIPELINES, Pipeline, parse_label

#: the pipelines of a sweep that names none: fcm against the remote-inference anchor
DEFAULT_PIPELINES = ("feature", "remote")


@dataclass(frozen=True)
class SweepConfig:
    """A rate–accuracy sweep: every (pipeline, codec, QP) over every input of one dataset.

    Attributes:
        name: run name (used in titles).
        dataset: dataset mapping (``kind`` + arguments, see :func:`fcm.data.build_dataset`).
        model, split, weights, sha256: the split model.
        codecs: codec registry names. ``optional_codecs`` (in YAML) adds more where they are declared, and leaves
            them out with a warning (listed in ``missing_codecs``) where not, e.g. reference encoders built with
            ``tools/build_codecs.py`` and declared through ``--codecs`` / ``FCM_CODECS``.
        pipelines: the registered pipelines (:mod:`fcm.eval.pipelines`) with their settings and QPs, in order. In
            YAML a mapping ``{label: section}`` — the label is a pipeline kind, optionally with a variant
            (``feature``, ``remote``, ``wrapped[scaled]``), the section that pipeline's settings and ``qps`` —, or a
            list of labels using defaults. A section without ``qps`` takes the top-level ``qps``, which may also be
            a mapping ``{label: [qp, …]}`` (the remote anchor usually needs lower QPs than fcm to reach the
            reference accuracy). ``remote`` takes ``format`` (``yuv420p10`` default, ``yuv420p``, ``yuv444p``,
            ``yuv444p10``) and ``range`` (``full`` default, ``limited``); ``wrapped`` takes ``checkpoint``.
        evaluator: evaluator name (``fidelity``, ``accuracy``, ``coco``, ``detection_fidelity``).
        output: results folder.
        bit_depth: packing bit depth (``None``: each codec's highest).
        preset, rate_control, gop: encoder settings shared by all codecs.
        anchor: BD-rate anchor curve ``pipeline/codec`` (default: the first remote curve).
        model_options: extra keyword arguments for the model (e.g. detector ``min_size``).
        limit: use only the first ``limit`` inputs.
        bootstrap: bootstrap resamples of the inputs for the report's confidence intervals (0: none).
        bootstrap_seed: seed of those resamples (intervals are reproducible).
        min_overlap: the report warns when the range a BD metric averages over covers less than this fraction of
            either curve's own range.
        torch_threads: intra-op threads of model inference, in every process of the sweep. Float sums split
            across threads round differently, so this is part of what a sweep computes; fixed here, results do not
            depend on ``--jobs`` or on the machine's core count. Parallelism comes from ``--jobs``.
        skip_unreadable: skip inputs whose image cannot be read (recorded as skipped) instead of stopping.
        codec_threads: encoder threads per codec name (default 1 for every codec: parallelism comes from ``--jobs``,
            so workers never oversubscribe the machine). Part of what a sweep computes (some encoders' output
            depends on it) and recorded in the manifest.
    """

    name: str
    dataset: dict[str, Any]
    model: str
    codecs: tuple[str, ...]
    pipelines: tuple[Pipeline, ...]
    output: Path
    split: str | None = None
    weights: str | None = None
    sha256: str | None = None
    evaluator: str = "fidelity"
    bit_depth: int | None = None
    preset: str | None = None
    rate_control: str = "cqp"
    gop: str = "intra"
    anchor: str | None = None
    model_options: dict[str, Any] = field(default_factory=dict)
    limit: int | None = None
    bootstrap: int = 1000
    bootstrap_seed: int = 0
    min_overlap: float = 0.5
    torch_threads: int = 1
    skip_unreadable: bool = False
    codec_threads: dict[str, int] = field(default_factory=dict)
    #: the optional codecs (``optional_codecs`` in YAML) declared here, included in ``codecs``
    optional_codecs: tuple[str, ...] = ()
    #: optional codecs this machine does not declare, left out of the sweep
    missing_codecs: tuple[str, ...] = ()

    @classmethod
    def from_yaml(cls, path: str | Path, overrides: dict[str, Any] | None = None) -> SweepConfig:
        from fcm.yaml_files import read_mapping

        raw = read_mapping(path, "config file")
        raw = {**raw, **(overrides or {})}
        return cls.from_config(raw)

    @classmethod
    def from_config(cls, raw: dict[str, Any]) -> SweepConfig:
        """Build and validate a config from plain data (relative paths are taken from the working directory)."""
        if not isinstance(raw, dict):
            raise ConfigError(f"a sweep config must be a mapping, got {type(raw).__name__}")
        known = set(cls.__dataclass_fields__) | {"qps"}
        unknown = sorted(set(raw) - known)
        if unknown:
            hint = " (a video sweep config: run it with fcm video-sweep)" if "sequences" in unknown else ""
            raise ConfigError(f"unknown config keys {unknown}; known: {', '.join(sorted(known))}{hint}")
        missing = [k for k in ("dataset", "model", "codecs", "output") if k not in raw]
        if missing:
            raise ConfigError(f"config is missing required keys {missing}")

        def is_a(value: Any, kind: type) -> bool:
            return isinstance(value, kind) and not (kind is int and isinstance(value, bool))

        def as_tuple_of(key: str, given: Any, kind: type) -> tuple:
            value = [given] if isinstance(given, (str, int)) else given
            if not isinstance(value, (list, tuple)) or not value or not all(is_a(v, kind) for v in value):
                raise ConfigError(f"{key} must be a non-empty list of {kind.__name__}, got {given!r}")
            return tuple(value)

        def as_tuple(key: str, kind: type) -> tuple:
            return as_tuple_of(key, raw[key], kind)

        def optional(key: str, kind: type, default: Any = None) -> Any:
            value = raw.get(key, default)
            if value is not None and not is_a(value, kind):
                raise ConfigError(f"{key} must be a {kind.__name__}, got {value!r}")
            return value

        for key in ("output", "weights"):  # paths may come as Path objects from Python callers
            if isinstance(raw.get(key), os.PathLike):
                raw = {**raw, key: os.fspath(raw[key])}
        if is_a(raw.get("preset"), int):  # SVT-AV1 and VP9 presets are numbers
            raw = {**raw, "preset": str(raw["preset"])}
        output = optional("output", str)
        if not output:
            raise ConfigError("output must name a folder")
        dataset = raw["dataset"]
        if isinstance(dataset, str):
            dataset = {"kind": dataset}
        if not isinstance(dataset, dict):
            raise ConfigError(f"dataset must be a mapping with a 'kind' (or a kind name), got {dataset!r}")
        model_options = optional("model_options", dict) or {}
        pipelines = _pipelines(raw.get("pipelines", list(DEFAULT_PIPELINES)), raw.get("qps"), as_tuple_of)
        bootstrap, bootstrap_seed = raw.get("bootstrap", 1000), raw.get("bootstrap_seed", 0)
        if not is_a(bootstrap, int) or bootstrap < 0:
            raise ConfigError(f"bootstrap must be a number of resamples >= 0, got {bootstrap!r}")
        if not is_a(bootstrap_seed, int) or bootstrap_seed < 0:
            raise ConfigError(f"bootstrap_seed must be an integer >= 0, got {bootstrap_seed!r}")
        min_overlap = raw.get("min_overlap", 0.5)
        if not (is_a(min_overlap, float) or is_a(min_overlap, int)) or not 0 <= min_overlap <= 1:
            raise ConfigError(f"min_overlap must be a fraction in [0, 1], got {min_overlap!r}")
        path = Path(output)
        optional_codecs: tuple[str, ...] = ()
        if raw.get("optional_codecs"):
            optional_codecs = as_tuple_of("optional_codecs", raw["optional_codecs"], str)
        codecs, missing_codecs = _available_codecs(as_tuple("codecs", str), optional_codecs)
        cfg = cls(
            name=str(raw.get("name", path.name)),
            dataset=dataset,
            model=optional("model", str),
            split=optional("split", str),
            weights=optional("weights", str),
            sha256=optional("sha256", str),
            codecs=codecs,
            pipelines=pipelines,
            evaluator=optional("evaluator", str, "fidelity"),
            output=path if path.is_absolute() else Path.cwd() / path,
            bit_depth=optional("bit_depth", int),
            preset=optional("preset", str),
            rate_control=optional("rate_control", str, "cqp"),
            gop=optional("gop", str, "intra"),
            anchor=optional("anchor", str),
            model_options=dict(model_options),
            limit=optional("limit", int),
            bootstrap=bootstrap,
            bootstrap_seed=bootstrap_seed,
            min_overlap=float(min_overlap),
            torch_threads=optional("torch_threads", int, 1),
            skip_unreadable=bool(optional("skip_unreadable", bool, False)),
            codec_threads=_codec_threads(raw.get("codec_threads"), codecs, missing_codecs),
            optional_codecs=tuple(c for c in optional_codecs if c not in missing_codecs),
            missing_codecs=missing_codecs,
        )
        cfg.validate()
        return cfg

    def validate(self) -> None:
        """Check names and ranges against the registries, without building models or touching data."""
        from fcm.codecs import get_codec
        from fcm.models import MODELS

        try:
            entry = MODELS.get(self.model)
            if self.split is not None and self.split not in entry.splits and not entry.any_node:
                raise ConfigError(
                    f"unknown split {self.split!r} of model {self.model!r}; known: {', '.join(entry.splits)}"
                )
            split = self.split or entry.default_split
            for pipeline in self.pipelines:
                pipeline.check_split(self.model, split)
                if len(set(pipeline.qps)) != len(pipeline.qps):
                    raise ConfigError(f"qps of pipeline {pipeline.label!r} contain duplicates: {list(pipeline.qps)}")
            if self.sha256 is not None and self.weights is None:
                raise ConfigError("sha256 checks a weights file: set weights too")
            for name in self.codecs:
                codec = get_codec(name)
                depth = codec.default_bit_depth if self.bit_depth is None else self.bit_depth
                for pipeline in self.pipelines:
                    for qp in pipeline.qps:
                        pipeline.check_codec(codec, depth, self.codec_params(qp))
            if self.anchor is not None:
                curves = {f"{p.label}/{c}" for p in self.pipelines for c in self.codecs}
                if self.anchor not in curves:
                    raise ConfigError(f"anchor {self.anchor!r} is not one of the sweep's curves {sorted(curves)}")
            if self.limit is not None and (not isinstance(self.limit, int) or self.limit < 1):
                raise ConfigError(f"limit must be a positive integer, got {self.limit!r}")
            if self.torch_threads is None or self.torch_threads < 1:
                raise ConfigError(f"torch_threads must be a positive integer, got {self.torch_threads!r}")
        except ConfigError:
            raise
        except (FcmError, ValueError) as e:
            raise ConfigError(str(e)) from e

    @property
    def qps(self) -> dict[str, tuple[int, ...]]:
        """QPs of each pipeline, by label."""
        return {p.label: p.qps for p in self.pipelines}

    def pipeline(self, label: str) -> Pipeline:
        for p in self.pipelines:
            if p.label == label:
                return p
        raise ConfigError(f"the sweep has no pipeline {label!r}; it has {[p.label for p in self.pipelines]}")

    def codec_identity(self) -> dict[str, Any]:
        """What decides each codec's output besides its name (external codecs: their command lines)."""
        from fcm.codecs import get_codec

        return {name: get_codec(name).identity() for name in self.codecs}

    def pipeline_identity(self) -> dict[str, Any]:
        """What each pipeline's records depend on besides the shared settings (QPs excluded)."""
        return {p.label: p.identity() for p in self.pipelines}

    def codec_params(self, qp: int) -> CodecParams:
        """Encoder settings of one operating point."""
        return CodecParams(qp, as_rate_control(self.rate_control), as_gop_structure(self.gop), self.preset)

    def resolved(self) -> dict[str, Any]:
        """The config as plain data, for the run manifest."""
        d = {k: getattr(self, k) for k in self.__dataclass_fields__}
        d["output"] = str(self.output)
        # required and optional apart, so that a folder reloads (fcm report) where an optional codec is not declared
        d["codecs"] = [c for c in self.codecs if c not in self.optional_codecs]
        d["optional_codecs"] = [*self.optional_codecs, *self.missing_codecs]
        d.pop("missing_codecs")
        d["pipelines"] = {p.label: p.section() for p in self.pipelines}
        return d


def _available_codecs(required: tuple[str, ...], optional: tuple[str, ...]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """``(codecs to run, optional ones missing here)``: the optional ones are added where they are declared."""
    import warnings

    from fcm.codecs import codec_names

    for kind, names in (("codecs", required), ("optional_codecs", optional)):
        if len(set(names)) != len(names):
            raise ConfigError(f"{kind} repeats a name: {list(names)}")
    known = set(codec_names()) if optional else set()
    missing = tuple(c for c in optional if c not in known and c not in required)
    for name in missing:
        warnings.warn(
            f"optional codec {name!r} is not declared here (fcm --codecs FILE or FCM_CODECS): left out of the sweep",
            stacklevel=4,
        )
    return required + tuple(c for c in optional if c in known and c not in required), missing


def _codec_threads(given: Any, codecs: tuple[str, ...], missing: tuple[str, ...] = ()) -> dict[str, int]:
    """Threads of every codec of the sweep: 1 unless ``codec_threads`` says otherwise (entries for optional codecs
    missing here are dropped)."""
    if given is None:
        given = {}
    if not isinstance(given, dict):
        raise ConfigError(f"codec_threads must map codec names to thread counts, got {given!r}")
    given = {k: v for k, v in given.items() if k not in missing}
    unknown = sorted(set(given) - set(codecs))
    if unknown:
        raise ConfigError(f"codec_threads names codecs {unknown} that the sweep does not run ({list(codecs)})")
    for name, n in given.items():
        if not isinstance(n, int) or isinstance(n, bool) or n < 1:
            raise ConfigError(f"codec_threads of {name!r} must be a positive integer, got {n!r}")
    return {name: int(given.get(name, 1)) for name in codecs}


def _pipelines(given: Any, qps: Any, as_tuple_of: Any) -> tuple[Pipeline, ...]:
    """The ``pipelines`` (and top-level ``qps``) of a config → pipeline objects, each validating its section."""
    if isinstance(given, str):
        given = [given]
    if isinstance(given, (list, tuple)):
        if not given or not all(isinstance(label, str) for label in given):
            raise ConfigError(f"pipelines must be a mapping of label to settings or a list of labels, got {given!r}")
        if len(set(given)) != len(given):
            raise ConfigError(f"pipelines repeat a label: {list(given)}")
        sections: dict[str, Any] = {label: {} for label in given}
    elif isinstance(given, dict) and given:
        sections = {str(k): ({} if v is None else v) for k, v in given.items()}
    else:
        raise ConfigError(f"pipelines must be a mapping of label to settings or a list of labels, got {given!r}")
    if isinstance(qps, dict):
        unknown = sorted(set(qps) - set(sections))
        if unknown:
            raise ConfigError(f"qps name pipelines {unknown} that the sweep does not run ({list(sections)})")
    out = []
    for label, section in sections.items():
        kind, _ = parse_label(label)
        if not isinstance(section, dict):
            raise ConfigError(f"pipeline {label!r}: settings must be a mapping, got {section!r}")
        try:
            cls = PIPELINES.get(kind)
        except UnknownNameError as e:
            raise ConfigError(str(e)) from None
        section = dict(section)
        own = section.pop("qps", None)
        if own is None:
            own = qps.get(label) if isinstance(qps, dict) else qps
        if own is None:
            raise ConfigError(f"qps gives no QPs for pipelines [{label!r}]; set qps in its section or at the top")
        out.append(cls.from_config(label, section, as_tuple_of(f"qps of {label}", own, int)))
    return tuple(out)
