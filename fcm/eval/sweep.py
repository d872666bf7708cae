"""Resumable rate–accuracy sweeps: every (pipeline, codec, QP) on every input, one JSON line per finished point.

Results live in ``<output>/results.jsonl``. Each finished (pipeline, codec, QP, input) record is appended and
flushed as soon as it exists, so a killed sweep loses at most the points in flight; running the same config again
skips what is done. ``jobs > 1`` runs inputs in worker processes (each loads the model once), which send records
back to the parent, the only writer of the file. The first record of every input is its uncompressed reference
(``pipeline = "uncompressed"``), which fidelity evaluators compare against and the report shows as a line.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import queue as queue_module
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fcm.errors import ConfigError
from fcm.eval.config import SweepConfig
from fcm.eval.points import OperatingPoint

RESULTS_FILE = "results.jsonl"
SWEEP_FILE = "sweep.json"
REFERENCE = ("uncompressed", "none", 0)
#: config fields that change what a record means; a results folder only resumes a sweep that agrees on them
_IDENTITY_FIELDS = ("dataset", "model", "split", "weights", "evaluator", "bit_depth", "preset", "rate_control", "gop",
                    "model_options")


@dataclass(frozen=True)
class PointKey:
    pipeline: str
    codec: str
    qp: int


def record_key(r: dict[str, Any]) -> tuple[str, str, int, str]:
    return (r["pipeline"], r["codec"], int(r["qp"]), r["input"])


class Worker:
    """Everything one process needs to measure points: model, dataset, evaluator, codecs."""

    def __init__(self, cfg: SweepConfig) -> None:
        from fcm.data import build_dataset
        from fcm.eval.evaluators import build_evaluator
        from fcm.models import get_model

        self.cfg = cfg
        self.model = get_model(cfg.model, cfg.split, cfg.weights, cfg.sha256, **cfg.model_options)
        self.dataset = build_dataset(cfg.dataset, self.model.categories)
        self.evaluator_options = {"annotations": self.dataset.annotations} if cfg.evaluator == "coco" else {}
        self.evaluator = build_evaluator(cfg.evaluator, self.dataset.task, self.model.task, **self.evaluator_options)

    def run_input(self, index: int, keys: list[PointKey], emit) -> None:
        """Measure ``keys`` on input ``index``; call ``emit(record)`` as each one finishes."""
        sample = self.dataset[index]
        image = sample.image()
        pixels = int(image.shape[0] * image.shape[1])
        t0 = time.perf_counter()
        reference = self.model.full(self.model.prepare(image))
        ref_time = time.perf_counter() - t0
        for key in keys:
            if (key.pipeline, key.codec, key.qp) == REFERENCE:
                output, bits, times = reference, 0, {"infer": ref_time}
            elif key.pipeline == "feature":
                output, bits, times = self._feature(image, key)
            else:
                output, bits, times = self._remote(image, key)
            evaluation = self.evaluator.record(sample, output, reference)
            emit(
                {
                    "pipeline": key.pipeline,
                    "codec": key.codec,
                    "qp": key.qp,
                    "input": sample.id,
                    "bits": bits,
                    "pixels": pixels,
                    "times": {k: round(v, 6) for k, v in times.items()},
                    "eval": evaluation,
                }
            )

    def _params(self, key: PointKey):
        from fcm.codecs import CodecParams

        return CodecParams(key.qp, self.cfg.rate_control, self.cfg.gop, self.cfg.preset)  # type: ignore[arg-type]

    def _feature(self, image: np.ndarray, key: PointKey) -> tuple[Any, int, dict[str, float]]:
        from fcm import pipeline

        enc = pipeline.encode(image, self.model, key.codec, self._params(key), self.cfg.bit_depth)
        dec = pipeline.decode(enc.bitstream, self.model)
        times = {"front": enc.front_s, "pack": enc.pack_s, "encode": enc.codec_s, "decode": dec.codec_s,
                 "unpack": dec.unpack_s, "back": dec.back_s}
        return dec.output, enc.num_bits, times

    def _remote(self, image: np.ndarray, key: PointKey) -> tuple[Any, int, dict[str, float]]:
        from fcm.codecs.image import decode_rgb, encode_rgb

        t0 = time.perf_counter()
        encoded = encode_rgb(image, key.codec, self._params(key))
        t1 = time.perf_counter()
        decoded = decode_rgb(encoded)
        t2 = time.perf_counter()
        output = self.model.full(self.model.prepare(decoded))
        t3 = time.perf_counter()
        return output, 8 * encoded.num_bytes, {"encode": t1 - t0, "decode": t2 - t1, "infer": t3 - t2}


# ---------------------------------------------------------------- results file


def read_records(path: Path) -> list[dict[str, Any]]:
    """Records of a results file; a last line cut short by a kill is dropped (and the file repaired)."""
    if not path.is_file():
        return []
    lines = path.read_bytes().split(b"\n")
    records, good_bytes = [], 0
    for i, line in enumerate(lines):
        if not line.strip():
            good_bytes += len(line) + 1
            continue
        try:
            records.append(json.loads(line))
            good_bytes += len(line) + 1
        except json.JSONDecodeError:
            if i < len(lines) - 1 and any(l.strip() for l in lines[i + 1 :]):
                raise ConfigError(f"{path} line {i + 1} is not valid JSON: the results file is damaged") from None
            break  # a half-written last line: drop it
    size = path.stat().st_size
    if good_bytes < size:
        with open(path, "r+b") as f:
            f.truncate(min(good_bytes, size))
    return records


def _identity(resolved: dict[str, Any]) -> dict[str, Any]:
    return json.loads(json.dumps({k: resolved.get(k) for k in _IDENTITY_FIELDS}, default=str))


def _check_identity(cfg: SweepConfig, out: Path) -> None:
    """Refuse to mix records of different sweeps in one folder; remember this sweep's config there."""
    resolved = json.loads(json.dumps(cfg.resolved(), default=str))
    identity = _identity(resolved)
    path = out / SWEEP_FILE
    if path.is_file():
        previous = _identity(json.loads(path.read_text()))
        if previous != identity:
            changed = sorted(k for k in set(previous) | set(identity) if previous.get(k) != identity.get(k))
            raise ConfigError(
                f"{out} holds results of a different sweep (differs in {', '.join(changed)}); "
                "choose another output folder or delete it"
            )
    path.write_text(json.dumps(resolved, indent=2))


def load_config(out: Path) -> SweepConfig:
    """The config of the sweep whose results are in ``out``."""
    path = out / SWEEP_FILE
    if not path.is_file():
        raise ConfigError(f"{out} is not a sweep results folder (no {SWEEP_FILE})")
    raw = json.loads(path.read_text())
    raw["output"] = str(out.resolve())
    return SweepConfig.from_config(raw)


# ---------------------------------------------------------------- running


@dataclass
class SweepOutcome:
    points: list[OperatingPoint]
    reference: dict[str, float]
    records: list[dict[str, Any]]
    complete: bool
    new_records: int


_WORKER: Worker | None = None
_QUEUE: Any = None


def _init_worker(cfg: SweepConfig, q: Any, threads: int) -> None:
    global _WORKER, _QUEUE
    torch.set_num_threads(threads)
    _WORKER = Worker(cfg)
    _QUEUE = q


def _worker_run(index: int, keys: list[PointKey]) -> int:
    assert _WORKER is not None
    _WORKER.run_input(index, keys, _QUEUE.put)
    return len(keys)


def plan(cfg: SweepConfig, num_inputs: int, sample_ids: list[str], done: set[tuple]) -> list[tuple[int, list[PointKey]]]:
    keys = [PointKey(*REFERENCE)] + [
        PointKey(p, c, qp) for p in cfg.pipelines for c in cfg.codecs for qp in sorted(cfg.qps)
    ]
    tasks = []
    for i in range(num_inputs):
        missing = [k for k in keys if (k.pipeline, k.codec, k.qp, sample_ids[i]) not in done]
        if missing:
            tasks.append((i, missing))
    return tasks


def run_sweep(
    cfg: SweepConfig, jobs: int = 1, progress: bool = True, max_new_records: int | None = None
) -> SweepOutcome:
    """Run (or resume) a sweep. ``max_new_records`` stops after that many new records, as a kill would."""
    from tqdm import tqdm

    out = cfg.output
    out.mkdir(parents=True, exist_ok=True)
    _check_identity(cfg, out)
    results_path = out / RESULTS_FILE
    records = read_records(results_path)
    done = {record_key(r) for r in records}

    worker = Worker(cfg)  # also validates dataset and evaluator before any work
    n = min(len(worker.dataset), cfg.limit or len(worker.dataset))
    ids = [worker.dataset[i].id for i in range(n)]
    tasks = plan(cfg, n, ids, done)
    todo = sum(len(k) for _, k in tasks)
    total = todo + len([r for r in records if r["input"] in set(ids)])
    new = 0
    bar = tqdm(total=total, initial=total - todo, unit="pt", desc=f"sweep {cfg.name}", disable=not progress,
               dynamic_ncols=True)

    with open(results_path, "a", encoding="utf-8") as sink:

        def emit(record: dict[str, Any]) -> None:
            nonlocal new
            sink.write(json.dumps(record, separators=(",", ":")) + "\n")
            sink.flush()
            records.append(record)
            new += 1
            bar.update(1)
            if max_new_records is not None and new >= max_new_records:
                raise _Stop

        try:
            if jobs <= 1 or len(tasks) <= 1:
                for index, keys in tasks:
                    worker.run_input(index, keys, emit)
            else:
                _run_parallel(cfg, tasks, jobs, emit)
        except _Stop:
            pass
        finally:
            bar.close()

    points, reference = summarize(cfg, worker, records, ids)
    complete = not plan(cfg, n, ids, {record_key(r) for r in records})
    return SweepOutcome(points, reference, records, complete, new)


class _Stop(Exception):
    pass


def _run_parallel(cfg: SweepConfig, tasks: list[tuple[int, list[PointKey]]], jobs: int, emit) -> None:
    ctx = mp.get_context("spawn")  # fork after torch has started threads can deadlock
    q = ctx.Queue()
    threads = max(1, (os.cpu_count() or 1) // jobs)
    expected = sum(len(k) for _, k in tasks)
    received = 0
    with ctx.Pool(jobs, initializer=_init_worker, initargs=(cfg, q, threads)) as pool:
        pending = [pool.apply_async(_worker_run, (i, keys)) for i, keys in tasks]
        while received < expected:
            try:
                record = q.get(timeout=0.5)
            except queue_module.Empty:
                for p in pending:
                    if p.ready() and not p.successful():
                        p.get()  # re-raises the worker's exception here
                continue
            received += 1
            emit(record)
        for p in pending:
            p.get()


def summarize(
    cfg: SweepConfig, worker: Worker, records: list[dict[str, Any]], ids: list[str] | None = None
) -> tuple[list[OperatingPoint], dict[str, float]]:
    """Aggregate records into operating points (and the uncompressed reference metrics)."""
    from fcm.eval.evaluators import build_evaluator

    wanted = set(ids) if ids is not None else None
    groups: dict[tuple[str, str, int], list[dict[str, Any]]] = defaultdict(list)
    for r in records:
        if wanted is None or r["input"] in wanted:
            groups[(r["pipeline"], r["codec"], int(r["qp"]))].append(r)
    points: list[OperatingPoint] = []
    reference: dict[str, float] = {}
    for (pipeline, codec, qp), rs in sorted(groups.items()):
        ev = build_evaluator(cfg.evaluator, worker.dataset.task, worker.model.task, **worker.evaluator_options)
        ev.extend([r["eval"] for r in rs])
        metrics = ev.evaluate()
        if (pipeline, codec, qp) == REFERENCE:
            reference = metrics
            continue
        time_keys = sorted({k for r in rs for k in r["times"]})
        times = {k: float(np.mean([r["times"].get(k, 0.0) for r in rs])) for k in time_keys}
        points.append(
            OperatingPoint(
                dataset=worker.dataset.name,
                pipeline=pipeline,
                codec=codec,
                qp=qp,
                num_inputs=len(rs),
                bits=int(sum(r["bits"] for r in rs)),
                pixels=int(sum(r["pixels"] for r in rs)),
                metric_name=ev.primary,
                metric=metrics[ev.primary],
                metrics=metrics,
                times=times,
            )
        )
    return points, reference
