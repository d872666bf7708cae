"""Video sweeps: each sequence coded as one stream per (pipeline, codec, QP), rate in kbps from the real stream bytes
and the frame rate, task fidelity aggregated over every frame, BD-rate on kbps.

Pipelines:

``feature``
    fcm: the split features of every frame packed and coded as one low-delay (or all-intra) stream in the fcm video
    container (:mod:`fcm.video`); the rate counts every byte of the ``.fcmv`` stream, its header and the framing of
    each access unit included (about 10 bytes per frame beyond the ranges: 2 kbps at 25 fps).
``remote``
    the anchor: the RGB video itself coded as video with the same codec, GOP and intra period (4:2:0 by default), the
    whole model run on each decoded frame; the rate counts every byte of the elementary stream.

Every frame's task output is compared with the uncompressed model's on the same frame (``fidelity``: top-1 agreement
and KL for classifiers; ``detection_fidelity``: box mAP against the model's own detections), or, for labelled clips
(``shapes:SEED[:FRAMES[:SIZE]]``), with the clip's ground truth (``coco``: box mAP over the sequence's frames). A
point's metric is the frame-weighted mean over sequences of each sequence's metric, its rate the total bits over the
total duration.

Records go to ``results.jsonl`` one per (sequence, pipeline, codec, QP) as each is measured; a rerun resumes, and a
folder holding another sweep's records is refused. Nothing here depends on thread counts: ``torch_threads`` is part
of the config, and the codecs are deterministic.

Over 500 lines until issue #23's single evaluation engine folds video sweeps into the image sweep's engine (its
config, results store and report would then be shared, not repeated here).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from fcm.codecs import CodecParams, get_codec
from fcm.codecs.base import as_gop_structure, as_rate_control
from fcm.codecs.color import PICTURE_FORMATS, PictureFormat
from fcm.errors import CodecError, ConfigError, FcmError, worker_death_message
from fcm.eval.manifest import finish, run_manifest
from fcm.eval.pipelines import parse_label
from fcm.eval.sweep import exclusive_folder, exit_with_parent, stop_pool
from fcm.numerics import torch_threads

if TYPE_CHECKING:
    from fcm.rdo.settings import RdoSettings

RESULTS_FILE = "results.jsonl"
SWEEP_FILE = "video_sweep.json"
VIDEO_PIPELINES = ("feature", "wrapped", "remote")
#: the pipelines a config that names none runs
DEFAULT_PIPELINES = ("feature", "remote")
_KEYS = {
    "name",
    "output",
    "model",
    "split",
    "weights",
    "sha256",
    "sequences",
    "max_frames",
    "fps",
    "codecs",
    "qps",
    "pipelines",
    "wrapper",
    "rdo",
    "gop",
    "intra_period",
    "preset",
    "rate_control",
    "bit_depth",
    "range_mode",
    "picture",
    "evaluator",
    "torch_threads",
}


@dataclass(frozen=True)
class VideoSweepConfig:
    """A video sweep (``configs/video_sweep.yaml`` shows every key)."""

    name: str
    output: Path
    sequences: tuple[str, ...]
    codecs: tuple[str, ...]
    qps: tuple[int, ...]
    model: str = "efficientnet_lite0"
    split: str | None = None
    weights: str | None = None
    sha256: str | None = None
    max_frames: int | None = None
    fps: float | None = None
    pipelines: tuple[str, ...] = DEFAULT_PIPELINES
    #: the wrapper checkpoint or family file the ``wrapped`` pipeline codes with (a family: its variant for each QP)
    wrapper: str | None = None
    #: options of every wrapper-aware pipeline (``feature[wa-gop]``, ``wrapped[wa-fixed]``: the variant names the
    #: RDO policy, :mod:`fcm.rdo.policies`), as a config's ``rdo`` mapping (probes, target, block, max_offset, map,
    #: gop — by default the intra period); the QP route only (the codec's per-block QP map)
    rdo: dict[str, Any] | None = None
    gop: str = "lowdelay"
    intra_period: int = 32
    preset: str | None = None
    rate_control: str = "cqp"
    bit_depth: int | None = None
    range_mode: str = "frame"
    picture: str = "yuv420p10"
    evaluator: str = "fidelity"
    torch_threads: int = 1

    def __post_init__(self) -> None:
        if not self.sequences or not self.codecs or not self.qps or not self.pipelines:
            raise ConfigError("a video sweep needs sequences, codecs, qps and pipelines")
        unknown = [p for p in self.pipelines if pipeline_kind(p) not in VIDEO_PIPELINES]
        if unknown:
            raise ConfigError(f"unknown video pipeline(s) {unknown}; known: {', '.join(VIDEO_PIPELINES)}")
        if self.rdo is not None and not isinstance(self.rdo, dict):
            raise ConfigError(f"rdo must be a mapping of RDO options, got {self.rdo!r}")
        policies = [s.policy_class for p in self.pipelines if (s := self.rdo_settings(p)) is not None and s.makes_map]
        given = set(self.rdo or {})
        if fixed := sorted(given & {"mode", "route"}):
            raise ConfigError(
                f"rdo: {fixed[0]!r} is not an option here (the pipeline's variant is its mode; video takes the QP "
                "route)"
            )
        unread = sorted(given - set().union(*(c.option_keys() for c in policies)))
        if unread:
            raise ConfigError(
                f"rdo: {unread} {'is' if len(unread) == 1 else 'are'} read by none of this sweep's wrapper-aware "
                "pipelines (e.g. feature[wa-gop]): add one that reads it, or drop it"
            )
        if any(pipeline_kind(p) == "wrapped" for p in self.pipelines) != (self.wrapper is not None):
            raise ConfigError(
                "the 'wrapped' pipeline needs 'wrapper: CHECKPOINT'"
                if self.wrapper is None
                else "'wrapper' is read only by the 'wrapped' pipeline: add it to pipelines or drop the key"
            )
        if len(set(self.qps)) != len(self.qps) or len(set(self.sequences)) != len(self.sequences):
            raise ConfigError("qps and sequences must not repeat")
        if self.intra_period < 0 or self.torch_threads < 1:
            raise ConfigError("intra_period must be >= 0 and torch_threads >= 1")
        if self.picture not in PICTURE_FORMATS:
            raise ConfigError(f"picture must be one of {', '.join(PICTURE_FORMATS)}, got {self.picture!r}")
        try:
            as_gop_structure(self.gop)
            as_rate_control(self.rate_control)
        except ValueError as e:
            raise ConfigError(str(e)) from None
        from fcm.packing.packer import RANGE_MODES

        if self.range_mode not in RANGE_MODES:
            raise ConfigError(f"range_mode must be one of {', '.join(RANGE_MODES)}, got {self.range_mode!r}")

    @classmethod
    def from_config(cls, raw: dict[str, Any], base: Path | None = None) -> VideoSweepConfig:
        """From a YAML mapping; ``output`` relative to ``base`` (the config's folder) unless absolute."""
        if not isinstance(raw, dict):
            raise ConfigError("a video sweep config must be a mapping")
        unknown = sorted(set(raw) - _KEYS)
        if unknown:
            raise ConfigError(f"unknown video sweep key(s) {', '.join(unknown)}; known: {', '.join(sorted(_KEYS))}")
        for key in ("sequences", "codecs", "qps"):
            if key not in raw:
                raise ConfigError(f"a video sweep needs {key!r}")
        values = dict(raw)
        try:
            for key in ("sequences", "codecs", "pipelines"):
                if key in values:
                    values[key] = tuple(str(v) for v in _as_list(values[key], key))
            values["qps"] = tuple(_as_int(v, "each of qps") for v in _as_list(values["qps"], "qps"))
            for key in ("max_frames", "intra_period", "bit_depth", "torch_threads"):
                if values.get(key) is not None:
                    values[key] = _as_int(values[key], key)
            if values.get("fps") is not None:
                values["fps"] = float(values["fps"])
            if values.get("wrapper") is not None:
                values["wrapper"] = str(values["wrapper"])
            if values.get("rdo") is not None and not isinstance(values["rdo"], dict):
                raise TypeError(f"rdo must be a mapping, got {values['rdo']!r}")
        except (TypeError, ValueError) as e:
            raise ConfigError(f"bad video sweep value: {e}") from None
        name = str(values.pop("name", "video"))
        out = Path(str(values.pop("output", f"runs/{name}")))
        if base is not None and not out.is_absolute():
            out = base / out
        return cls(name=name, output=out, **values)

    @classmethod
    def load(cls, path: str | Path) -> VideoSweepConfig:
        from fcm.yaml_files import read_mapping

        path = Path(path)
        return cls.from_config(read_mapping(path, "video sweep config"), Path.cwd())

    def rdo_settings(self, label: str) -> RdoSettings | None:
        """The RDO settings of pipeline ``label`` (``None``: the codec's own RDO): its variant names the policy."""
        from fcm.rdo.policies import RDO_POLICIES, rdo_modes
        from fcm.rdo.settings import RdoSettings

        kind, variant = parse_label(label)
        if variant is None:
            return None
        if kind == "remote" or variant not in rdo_modes():
            raise ConfigError(
                f"video pipeline {label!r}: a feature or wrapped pipeline's variant is an rdo mode "
                f"({', '.join(rdo_modes())}); remote takes none"
            )
        reads = RDO_POLICIES.get(variant).option_keys()
        options = {k: v for k, v in (self.rdo or {}).items() if k in reads}  # each policy takes what it reads
        raw = {"gop": self.intra_period or 8, **options, "mode": variant, "route": "qp"}
        if isinstance(raw.get("map"), str):
            raw["map"] = str(Path(raw["map"]).resolve())
        return RdoSettings.from_config(raw, f"video pipeline {label!r}: rdo")

    def params(self, qp: int) -> CodecParams:
        return CodecParams(qp, as_rate_control(self.rate_control), as_gop_structure(self.gop), self.preset)

    def identity(self) -> dict[str, Any]:
        """What decides the records (everything but the name and output folder; for generated labelled clips, the
        generator's versions)."""
        d = asdict(self)
        d.pop("name")
        d.pop("output")
        # what each wrapper-aware pipeline codes with (the map by content wherever the file lies); absent where none
        # is, so folders written before video sweeps took rdo variants keep their identity
        rdo = {p: _rdo_identity(s) for p in self.pipelines if (s := self.rdo_settings(p)) is not None and s.makes_map}
        d.pop("rdo")
        if rdo:
            d["rdo"] = rdo
        if any(s.startswith("shapes:") for s in self.sequences):
            from fcm.data.shapes import CLIP_VERSION, GENERATOR_VERSION

            d["clip_generator"] = [GENERATOR_VERSION, CLIP_VERSION]
        return json.loads(json.dumps(d))


def pipeline_kind(label: str) -> str:
    """``"feature[wa-gop]"`` → ``"feature"``."""
    return parse_label(label)[0]


def _rdo_identity(settings: RdoSettings) -> dict[str, Any]:
    from fcm.eval.pipelines import file_tag

    tag = file_tag(settings.map_path) if settings.map_path else None
    return settings.identity() | ({"map": tag} if tag is not None else {})


def _as_list(value: Any, key: str) -> list[Any]:
    if not isinstance(value, list):
        raise TypeError(f"{key} must be a list")
    return value


def _as_int(value: Any, key: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{key} must be an integer, got {value!r}")
    return value


@dataclass
class VideoSweepOutcome:
    records: list[dict[str, Any]]
    new_records: int
    complete: bool
    report: dict[str, Any] = field(default_factory=dict)


def record_key(r: dict[str, Any]) -> tuple[str, str, str, int]:
    return r["sequence"], r["pipeline"], r["codec"], int(r["qp"])


def read_records(path: Path, repair: bool = False) -> list[dict[str, Any]]:
    """The records of ``results.jsonl``, the last one per point. A last line cut by a crash is dropped (its point is
    measured again) and, with ``repair``, cut from the file so the next record starts on a line of its own."""
    if not path.is_file():
        return []
    data = path.read_bytes()
    lines = data.split(b"\n")
    records: dict[tuple[str, str, str, int], dict[str, Any]] = {}
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            if i == len(lines) - 1:  # no newline after it: a write the crash interrupted
                if repair:
                    with open(path, "r+b") as f:
                        f.truncate(len(data) - len(line))
                break
            raise ConfigError(
                f"{path}: line {i + 1} is not JSON (not a crash-cut last line): fix or remove it"
            ) from None
        records[record_key(record)] = record  # a point measured twice (two runs before locking) counts once
    return list(records.values())


def _check_folder(
    cfg: VideoSweepConfig, weights_tag: str, wrapper_tag: str | None, write: bool = True, merge: bool = False
) -> str:
    """Refuse a folder holding another sweep's records (the lists of sequences, QPs, codecs and pipelines may grow
    or shrink; each codec both runs name must be the same build), or one made by a sweep of another name unless
    ``merge``. Returns the folder's sweep name (with ``merge``, that of the sweep that made it)."""
    cfg.output.mkdir(parents=True, exist_ok=True)
    identity = {**cfg.identity(), "weights_tag": weights_tag, "codec_identity": _codec_identity(cfg)}
    if wrapper_tag is not None:  # folders of sweeps without a wrapper keep their identity
        identity["wrapper_tag"] = wrapper_tag
    path = cfg.output / SWEEP_FILE
    lists = ("sequences", "qps", "codecs", "pipelines", "codec_identity")
    name = cfg.name
    if path.is_file():
        stored = json.loads(path.read_text())
        stored_name = stored.pop("name", None)
        other_name = stored_name is not None and stored_name != cfg.name
        merged = lists + ("rdo",)  # per-name identities: the names may come and go, each must stay the same
        changed = sorted(k for k in set(stored) | set(identity) if k not in merged and stored.get(k) != identity.get(k))
        before, now = stored.get("codec_identity") or {}, identity["codec_identity"]
        changed += [f"codec_identity of {k!r}" for k in sorted(set(before) & set(now)) if before[k] != now[k]]
        rdo_before, rdo_now = stored.get("rdo") or {}, identity.get("rdo") or {}
        changed += [f"rdo of {k!r}" for k in sorted(set(rdo_before) & set(rdo_now)) if rdo_before[k] != rdo_now[k]]
        if changed:
            whose = f"of video sweep {stored_name!r}" if other_name else "of a different video sweep"
            raise ConfigError(
                f"{cfg.output} holds results {whose} (differs in {', '.join(changed)}); choose another output "
                "folder or delete it"
            )
        if other_name and not merge:  # same settings: the points could join that folder, if the user says so
            raise ConfigError(
                f"{cfg.output} holds the results of video sweep {stored_name!r}, not of this config's sweep "
                f"{cfg.name!r}: choose another --output, or pass --merge to add this sweep's points to that folder"
            )
        identity["codec_identity"] = {**before, **now}
        if rdo_before or rdo_now:
            identity["rdo"] = {**rdo_before, **rdo_now}
        if merge and stored_name is not None:  # the folder stays the sweep that made it
            name = stored_name
    if write:
        path.write_text(json.dumps({"name": name, **identity}, indent=2) + "\n")
    return name


def check_folder_read_only(cfg: VideoSweepConfig, merge: bool = False) -> str:
    """:func:`_check_folder` without writing: the folder's records were measured with ``cfg``'s settings. Returns
    the folder's sweep name."""
    from fcm.models import get_model

    model = get_model(cfg.model, cfg.split, cfg.weights, cfg.sha256)
    return _check_folder(cfg, model.weights_tag, _wrapper_tag(_load_wrapper(cfg, model)), write=False, merge=merge)


def _load_wrapper(cfg: VideoSweepConfig, model: Any) -> Any:
    """The config's wrapper (checkpoint or family) for ``model``, checked against its split; ``None`` without one."""
    if cfg.wrapper is None:
        return None
    from fcm.pipeline import check_wrapper_split
    from fcm.wrappers import WrapperFamily, load_wrapper_or_family

    wrapper = load_wrapper_or_family(cfg.wrapper, model)
    pairs = [v.wrapper for v in wrapper.variants] if isinstance(wrapper, WrapperFamily) else [wrapper]
    for pair in pairs:
        if pair is not None:
            check_wrapper_split(pair, model)
    return wrapper


def _wrapper_tag(wrapper: Any) -> str | None:
    return None if wrapper is None else str(wrapper.weights_tag)


def _codec_identity(cfg: VideoSweepConfig) -> dict[str, Any]:
    from fcm import __version__

    return {"fcm": __version__, **{name: get_codec(name).identity() for name in cfg.codecs}}


def run_video_sweep(
    cfg: VideoSweepConfig, progress: bool = True, jobs: int = 1, merge: bool = False
) -> VideoSweepOutcome:
    """Measure every (sequence, pipeline, codec, QP) not yet in the output folder (in ``jobs`` worker processes),
    then write the report. A folder made by a video sweep of another name is refused unless ``merge``."""

    from fcm.eval.evaluators import build_evaluator, evaluator_class
    from fcm.models import get_model
    from fcm.pipeline import check_allocation
    from fcm.rdo.policies import build_allocation
    from fcm.video.sources import open_source

    try:  # every codec setting checked before any folder is made
        # a wrapper-aware pipeline needs the codec's per-block QP map (a wa-fixed map file is read once, here)
        allocations = [build_allocation(s) for p in cfg.pipelines if (s := cfg.rdo_settings(p)) is not None]
        for name in cfg.codecs:
            chosen = get_codec(name)
            if not chosen.supports_streaming:
                raise ConfigError(f"codec {name!r} cannot code video frame by frame")
            for qp in cfg.qps:
                chosen.check_params(cfg.bit_depth or chosen.default_bit_depth, cfg.params(qp))
                for allocation in allocations:
                    check_allocation(allocation, chosen, cfg.params(qp))
                if "remote" in cfg.pipelines:
                    fmt = PictureFormat.parse(cfg.picture)
                    chosen.check_image_format(fmt)
                    chosen.check_params(fmt.bit_depth, cfg.params(qp))
    except CodecError as e:
        raise ConfigError(str(e)) from e
    with torch_threads(cfg.torch_threads):
        model = get_model(cfg.model, cfg.split, cfg.weights, cfg.sha256)
        sources = {s: open_source(s, cfg.max_frames, cfg.fps) for s in cfg.sequences}
        evaluator = evaluator_class(cfg.evaluator, model.task)  # checked before any work
        if evaluator.needs_annotations:  # every sequence must carry its ground truth
            unlabelled = [s for s, src in sources.items() if not src.labelled]
            if unlabelled:
                raise ConfigError(
                    f"evaluator {evaluator.name!r} needs labelled sequences (shapes:SEED…); not: {unlabelled}"
                )
        else:
            build_evaluator(cfg.evaluator, model.task)
        cfg.output.mkdir(parents=True, exist_ok=True)
        with exclusive_folder(cfg.output):
            wrapper_tag = _wrapper_tag(_load_wrapper(cfg, model))
            # the folder's name titles the report
            cfg = replace(cfg, name=_check_folder(cfg, model.weights_tag, wrapper_tag, merge=merge))
            config = {"name": cfg.name, "output": str(cfg.output), **cfg.identity()}
            manifest, t0 = run_manifest(config, cfg.torch_threads, jobs), time.perf_counter()
            records, new = _measure_all(cfg, model, sources, progress, jobs)
            finish(manifest, cfg.output, t0, new)
    from fcm.eval.video_report import write_report

    report = write_report(cfg, records)
    return VideoSweepOutcome(records, new, True, report)


def _measure_all(
    cfg: VideoSweepConfig, model: Any, sources: dict[str, Any], progress: bool, jobs: int = 1
) -> tuple[list[dict[str, Any]], int]:
    """Measure every point not in the folder yet, in this process or in ``jobs`` worker processes (each point is
    measured by one process and written here as it arrives; the records do not depend on ``jobs``)."""
    from tqdm import tqdm

    results = cfg.output / RESULTS_FILE
    records = read_records(results, repair=True)
    done = {record_key(r) for r in records}
    todo = [
        (sequence, pipeline, codec, qp)
        for sequence in cfg.sequences
        for pipeline in cfg.pipelines
        for codec in cfg.codecs
        for qp in cfg.qps
        if (sequence, pipeline, codec, qp) not in done
    ]
    new = 0
    bar = tqdm(total=len(todo), unit="pt", desc=f"video sweep {cfg.name}", disable=not progress)
    with open(results, "a", encoding="utf-8") as sink, bar:

        def keep(record: dict[str, Any]) -> None:
            nonlocal new
            sink.write(json.dumps(record, separators=(",", ":")) + "\n")
            sink.flush()
            records.append(record)
            new += 1
            bar.update(1)

        if jobs <= 1 or len(todo) <= 1:
            measurer = _PointMeasurer(cfg, model, sources)
            for key in todo:
                keep(measurer.measure(*key))
        else:
            _measure_in_workers(cfg, todo, min(jobs, len(todo)), keep)
    return records, new


class _PointMeasurer:
    """Measures one sweep's points in one process: the model built once, each sequence's reference outputs (or
    ground truth) computed once, for the sequence at hand only (points arrive sequence by sequence)."""

    def __init__(self, cfg: VideoSweepConfig, model: Any, sources: dict[str, Any] | None = None) -> None:
        self.cfg = cfg
        self.model = model
        self.sources = dict(sources or {})
        self._references: dict[str, list[Any]] = {}
        self._ground_truth: dict[str, Path] = {}
        self.wrapper = _load_wrapper(cfg, model)
        #: each wa-fixed pipeline's map as the folder's identity names it (by content, written when the sweep started)
        folder = cfg.output / SWEEP_FILE
        rdo = (json.loads(folder.read_text()) if folder.is_file() else cfg.identity()).get("rdo", {})
        self._map_tags = {p: rdo.get(p, {}).get("map") for p in cfg.pipelines}

    def measure(self, sequence: str, pipeline: str, codec: str, qp: int) -> dict[str, Any]:
        from fcm.video.sources import open_source

        cfg = self.cfg
        if sequence not in self.sources:
            self.sources[sequence] = open_source(sequence, cfg.max_frames, cfg.fps)
        src = self.sources[sequence]
        if sequence not in self._references:
            self._references = {sequence: _reference_outputs(cfg, src, self.model)}
            if _needs_ground_truth(cfg, self.model):
                self._ground_truth = {sequence: _ground_truth_file(cfg, src)}
        evaluator = _evaluator(cfg, self.model, self._ground_truth.get(sequence))
        references = self._references[sequence]
        if pipeline == "remote":
            record = _measure_remote(cfg, src, self.model, codec, qp, references, evaluator)
        else:
            from fcm.rdo.policies import build_allocation

            wrapper = self.wrapper if pipeline_kind(pipeline) == "wrapped" else None
            settings = cfg.rdo_settings(pipeline)
            if (
                settings is not None
                and settings.map_path
                and _rdo_identity(settings).get("map") != self._map_tags[pipeline]
            ):
                raise ConfigError(f"{settings.map_path} changed since the sweep started")  # its records would mix maps
            allocation = None if settings is None else build_allocation(settings)  # one per stream: a GOP's map
            record = _measure_feature(
                cfg, src, self.model, codec, qp, references, evaluator, wrapper, pipeline, allocation
            )
        return {"sequence": sequence, **record}


_WORKER: _PointMeasurer | None = None
_WORKER_ERROR: BaseException | None = None


def _start_worker(cfg: VideoSweepConfig, parent_pid: int, codec_files: list[str]) -> None:
    """Build this process's measurer; a failure is kept and raised by the first point, so the parent sees its cause
    (an exception in a pool initializer only shows up as a dead process)."""
    global _WORKER, _WORKER_ERROR
    exit_with_parent(parent_pid)
    torch.set_num_threads(cfg.torch_threads)  # a process of its own: pinned for its whole life
    try:
        from fcm.codecs.user_codecs import load_codec_file
        from fcm.models import get_model

        for path in codec_files:  # external codecs the parent declared (--codecs, FCM_CODECS)
            load_codec_file(path)
        _WORKER = _PointMeasurer(cfg, get_model(cfg.model, cfg.split, cfg.weights, cfg.sha256))
    except Exception as e:
        _WORKER_ERROR = e


def _worker_measure(key: tuple[str, str, str, int]) -> dict[str, Any]:
    if _WORKER_ERROR is not None:
        raise _WORKER_ERROR
    assert _WORKER is not None, "worker not started"
    return _WORKER.measure(*key)


def _measure_in_workers(cfg: VideoSweepConfig, todo: list[tuple[str, str, str, int]], jobs: int, keep: Any) -> None:
    """Measure ``todo`` in ``jobs`` worker processes, keeping each record as it arrives. A worker's exception is
    raised here, a dead worker stops the sweep with an FcmError; on either (or Ctrl-C) the workers are ended at once
    and every record received so far is kept."""
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor, as_completed
    from concurrent.futures.process import BrokenProcessPool

    from fcm.codecs.user_codecs import loaded_files

    # spawn: forking a process whose torch has started threads can deadlock
    pool = ProcessPoolExecutor(
        jobs,
        mp_context=mp.get_context("spawn"),
        initializer=_start_worker,
        initargs=(cfg, os.getpid(), loaded_files()),
    )
    try:
        futures = [pool.submit(_worker_measure, key) for key in todo]  # in order: workers share a sequence's work
        for future in as_completed(futures):
            try:
                record = future.result()
            except BrokenProcessPool:
                raise FcmError(
                    f"{worker_death_message('video sweep')}; the records finished so far are saved: rerun the same "
                    "command to resume"
                ) from None
            keep(record)
    except BaseException:
        stop_pool(pool)
        raise
    pool.shutdown(wait=True)


def _needs_ground_truth(cfg: VideoSweepConfig, model: Any) -> bool:
    """Whether the sweep's evaluator scores against each clip's ground truth (else against uncompressed inference)."""
    from fcm.eval.evaluators import evaluator_class

    return evaluator_class(cfg.evaluator, model.task).needs_annotations


def _evaluator(cfg: VideoSweepConfig, model: Any, ground_truth: Path | None) -> Any:
    """A fresh evaluator for one point: COCO mAP against a labelled clip's ``ground_truth`` file, or fidelity to
    uncompressed inference."""
    from fcm.eval.evaluators import build_evaluator

    if not _needs_ground_truth(cfg, model):
        return build_evaluator(cfg.evaluator, model.task)
    return build_evaluator(cfg.evaluator, model.task, "detection", annotations=ground_truth, where="the clip")


def _ground_truth_file(cfg: VideoSweepConfig, src: Any) -> Path:
    """A labelled clip's ground truth, drawn for this run and written next to the results under a name made of its
    content: a file left by another generator or clip length is never used."""
    import hashlib

    text = json.dumps(src.ground_truth(), separators=(",", ":"))
    path = cfg.output / f".gt-{hashlib.sha256(text.encode()).hexdigest()[:16]}.json"
    if not path.is_file():
        tmp = path.with_suffix(f".{os.getpid()}.tmp")  # worker processes may draw the same clip at once
        tmp.write_text(text)
        tmp.replace(path)
    return path


def _reference_outputs(cfg: VideoSweepConfig, src: Any, model: Any) -> list[Any]:
    """The uncompressed model's output on every frame (what fidelity compares with); with ground truth instead
    (``coco``), one ``None`` per frame: only the count matters."""
    if _needs_ground_truth(cfg, model):
        return [None] * src.num_frames if src.num_frames is not None else [None for _ in src.frames()]
    outputs = []
    with torch.no_grad():
        for frame in src.frames():
            outputs.append(model.full(model.prepare(frame)))
    return outputs


def _sample(src: Any, i: int) -> Any:
    return SimpleNamespace(id=f"{src.name}#{i}", image_id=i + 1)  # frame i is image i + 1 of a clip's ground truth


def _score(
    cfg: VideoSweepConfig, src: Any, model: Any, evaluator: Any, outputs: Iterator[Any], references: list[Any]
) -> tuple[int, dict[str, float], list[float]]:
    """Feed each frame's output to the evaluator against its reference; frames, metrics and per-frame KL (nats,
    as the classifier fidelity evaluator records it)."""
    frames = 0
    kls: list[float] = []
    for i, output in enumerate(outputs):
        if i >= len(references):
            raise FcmError(f"{src.name}: more decoded frames than the source has")
        record = evaluator.process(_sample(src, i), output, references[i])
        if "kl" in record:
            kls.append(record["kl"])
        frames += 1
    if frames != len(references):
        raise FcmError(f"{src.name}: {frames} frames decoded, the source has {len(references)}")
    return frames, evaluator.evaluate(), kls


def _measure_feature(
    cfg: VideoSweepConfig,
    src: Any,
    model: Any,
    codec: str,
    qp: int,
    references: list[Any],
    evaluator: Any,
    wrapper: Any = None,
    pipeline: str = "feature",
    allocation: Any = None,
) -> dict[str, Any]:
    """Code ``src`` as one feature video (through ``wrapper``, a checkpoint or family, where given; with
    ``allocation``'s block QP maps, where given), decode it and score every frame; the record is labelled
    ``pipeline``."""
    from fcm.pipeline import variant_for
    from fcm.video.pipeline import decode_video, encode_video

    wrapper = variant_for(wrapper, cfg.params(qp))  # a family: one variant for the whole video

    tmp = cfg.output / f".stream-{os.getpid()}.fcmv"
    try:
        with open(tmp, "wb") as sink:
            stats = encode_video(
                src.frames(),
                model,
                codec,
                cfg.params(qp),
                sink,
                src.fps,
                intra_period=cfg.intra_period,
                bit_depth=cfg.bit_depth,
                range_mode=cfg.range_mode,  # type: ignore[arg-type]
                wrapper=wrapper,
                allocation=allocation,
                torch_threads=cfg.torch_threads,
            )
        t0 = time.perf_counter()
        with open(tmp, "rb") as f:
            _, results = decode_video(f, model, wrapper)
            frames, metrics, kls = _score(cfg, src, model, evaluator, (r.output for r in results), references)
        decode_s = time.perf_counter() - t0
        size = tmp.stat().st_size
    finally:
        tmp.unlink(missing_ok=True)
    if size != stats.bytes:
        raise FcmError(f"{src.name}: the stream file holds {size} bytes, the writer counted {stats.bytes}")
    return _record(
        cfg,
        src,
        pipeline,
        codec,
        qp,
        frames,
        size,
        stats.seconds,
        decode_s,
        metrics,
        kls,
        {"front_s": stats.front_s, "codec_s": stats.codec_s},
    )


def _measure_remote(
    cfg: VideoSweepConfig, src: Any, model: Any, codec_name: str, qp: int, references: list[Any], evaluator: Any
) -> dict[str, Any]:
    counted = {"bytes": 0}
    t0 = time.perf_counter()
    outputs = _remote_outputs(
        src, model, codec_name, cfg.params(qp), PictureFormat.parse(cfg.picture), cfg.intra_period, counted
    )
    frames, metrics, kls = _score(cfg, src, model, evaluator, outputs, references)
    seconds = time.perf_counter() - t0
    record = _record(cfg, src, "remote", codec_name, qp, frames, counted["bytes"], 0.0, None, metrics, kls, {})
    record["roundtrip_fps"] = frames / seconds if seconds > 0 else None  # encode, decode and model in lockstep
    return record


def _remote_outputs(
    src: Any,
    model: Any,
    codec_name: str,
    params: CodecParams,
    fmt: PictureFormat,
    intra_period: int,
    counted: dict[str, int],
) -> Iterator[Any]:
    """Encode the RGB frames as video and decode them in lockstep (memory holds a packet, never the sequence),
    running the whole model on each decoded frame; ``counted["bytes"]``: the elementary stream's size."""
    codec = get_codec(codec_name)
    encoder: Any = None
    decoder: Any = None

    def decode(packets: list[bytes]) -> Iterator[Any]:
        nonlocal decoder
        for packet in packets:
            if decoder is None:
                counted["bytes"] += len(encoder.extradata)
                decoder = codec.open_picture_decoder(encoder.width, encoder.height, fmt, encoder.extradata)
            counted["bytes"] += len(packet)
            for picture in decoder.push(packet):
                yield _run_full(model, picture)

    for frame in src.frames():
        if encoder is None:
            encoder = codec.open_picture_encoder(frame.shape[1], frame.shape[0], params, fmt, intra_period)
        yield from decode(encoder.push(frame))
    if encoder is not None:
        yield from decode(encoder.flush())
    if decoder is not None:
        for picture in decoder.flush():
            yield _run_full(model, picture)


def _run_full(model: Any, picture: np.ndarray) -> Any:
    with torch.no_grad():
        return model.full(model.prepare(picture))


def _record(
    cfg: VideoSweepConfig,
    src: Any,
    pipeline: str,
    codec: str,
    qp: int,
    frames: int,
    size: int,
    encode_s: float,
    decode_s: float | None,
    metrics: dict[str, float],
    kls: list[float],
    times: dict[str, float],
) -> dict[str, Any]:
    duration = frames / float(src.fps)
    record: dict[str, Any] = {
        "source": src.spec,
        "name": src.name,
        "pipeline": pipeline,
        "codec": codec,
        "qp": qp,
        "frames": frames,
        "fps": float(src.fps),
        "bytes": size,
        "kbps": 8 * size / 1000 / duration,
        "metrics": metrics,
        "encode_fps": frames / encode_s if encode_s > 0 else None,
        "decode_fps": (frames / decode_s) if decode_s else None,
        "times": {k: round(v, 4) for k, v in times.items()},
    }
    if kls:
        record["mean_kl"] = float(np.mean(kls))
    return record
