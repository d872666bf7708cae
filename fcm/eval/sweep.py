"""Resumable rate–accuracy sweeps: every (pipeline, codec, QP) on every input, one JSON line per finished point.

Results live in ``<output>/results.jsonl``. Each finished (pipeline, codec, QP, input) record is appended and
flushed as soon as it exists, so a killed sweep loses at most the points in flight; running the same config again
skips what is done. ``jobs > 1`` runs inputs in worker processes (each loads the model once), which send records
back to the parent, the only writer of the file. The first record of every input is its uncompressed reference
(``pipeline = "uncompressed"``), which fidelity evaluators compare against and the report shows as a line.

Records depend only on the config and the software: model inference runs with the config's ``torch_threads`` in
every process, whatever ``--jobs`` and the core count, and a folder refuses to resume with another value. An input
whose image cannot be read stops the sweep, or with ``skip_unreadable`` is recorded by one ``pipeline = "skipped"``
line (its id and the reason), so every later run, with any ``--jobs``, leaves the same inputs out.

Just over 500 lines: the results store (records, crash repair, lock, identity) and the two local schedulers share
the store's invariants; the worker's measuring is :mod:`fcm.eval.worker`, Ray :mod:`fcm.eval.ray_backend`.
"""

from __future__ import annotations

import contextlib
import json
import multiprocessing as mp
import os
import queue as queue_module
import signal
import sys
import threading
import time
import warnings
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from fcm.errors import ConfigError, FcmError, worker_death_message
from fcm.eval.config import SweepConfig
from fcm.eval.points import InputSamples, OperatingPoint, apply_link
from fcm.eval.worker import REFERENCE, SKIPPED, PointKey, Worker

__all__ = ["REFERENCE", "SKIPPED", "PointKey", "Worker", "run_sweep", "summarize"]

RESULTS_FILE = "results.jsonl"
SWEEP_FILE = "sweep.json"
LOCK_FILE = ".lock"
#: config fields that change what a record means; a results folder only resumes a sweep that agrees on them
#: (``skip_unreadable`` is not one: it changes which inputs count, and skip records only count while it is on)
_IDENTITY_FIELDS = (
    "dataset",
    "model",
    "split",
    "weights",
    "weights_tag",
    "evaluator",
    "bit_depth",
    "preset",
    "rate_control",
    "gop",
    "model_options",
    "pipeline_identity",
    "torch_threads",
    "codec_threads",
    "codec_identity",
)


def record_key(r: dict[str, Any]) -> tuple[str, str, int, str]:
    return (r["pipeline"], r["codec"], int(r["qp"]), r["input"])


def skipped_inputs(cfg: SweepConfig, records: list[dict[str, Any]]) -> dict[str, str]:
    """``{input id: reason}`` of the inputs this sweep leaves out: with ``skip_unreadable``, those whose image could
    not be read (a skip record) and that were never measured (no reference record)."""
    if not cfg.skip_unreadable:
        return {}
    measured = {r["input"] for r in records if record_key(r)[:3] == REFERENCE}
    return {r["input"]: r["reason"] for r in records if r["pipeline"] == SKIPPED and r["input"] not in measured}


def skipped_list(cfg: SweepConfig, records: list[dict[str, Any]], ids: list[str]) -> list[dict[str, str]]:
    """The skipped inputs among ``ids``, in input order, as ``{"input", "reason"}`` (for manifests and reports)."""
    skipped = skipped_inputs(cfg, records)
    return [{"input": i, "reason": skipped[i]} for i in ids if i in skipped]


# ---------------------------------------------------------------- results file


def read_records(path: Path, repair: bool = False) -> list[dict[str, Any]]:
    """Records of a results file, one per (pipeline, codec, QP, input) (a repeated key keeps its last record).

    A last line cut short by a kill is ignored; with ``repair`` (only under the folder's lock, before appending) it
    is removed and a missing final newline restored. A damaged line anywhere else is an error.
    """
    if not path.is_file():
        return []
    data = path.read_bytes()
    lines = data.split(b"\n")
    records: dict[tuple, dict[str, Any]] = {}
    keep = 0
    for i, line in enumerate(lines):
        last = i == len(lines) - 1
        if line.strip():
            try:
                record = json.loads(line)
                records[record_key(record)] = record
            except (json.JSONDecodeError, KeyError, TypeError, ValueError):
                if last:
                    break  # half-written by a kill: drop it
                raise ConfigError(f"{path} line {i + 1} is not a valid record: the results file is damaged") from None
        keep += len(line) + (0 if last else 1)
    if not repair:
        return list(records.values())
    if keep < len(data):
        with open(path, "r+b") as f:
            f.truncate(keep)
    if keep and not data[:keep].endswith(b"\n"):
        with open(path, "ab") as f:
            f.write(b"\n")
    return list(records.values())


@contextmanager
def exclusive_folder(out: Path) -> Iterator[None]:
    """Hold a lock on the results folder, so two sweeps never append to one file."""
    try:
        import fcntl
    except ImportError:  # not POSIX: no lock
        yield
        return
    with open(out / LOCK_FILE, "w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ConfigError(f"another sweep is writing to {out}; wait for it or choose another output") from None
        except OSError as e:  # a file system without locks: go on unprotected, but say so
            warnings.warn(f"cannot lock {out} ({e}); do not run two sweeps into it at once", stacklevel=3)
        yield


def _identity(resolved: dict[str, Any]) -> dict[str, Any]:
    return json.loads(json.dumps({k: resolved.get(k) for k in _IDENTITY_FIELDS}, default=str))


def _check_identity(cfg: SweepConfig, out: Path, weights_tag: str, merge: bool = False) -> None:
    """Refuse to mix records of different sweeps in one folder; remember this sweep's config there.

    The weights' checksum tag counts too: another file at the same path is another sweep. A sweep of another name
    (another config) is refused even when its settings agree, unless ``merge``: its report would replace the
    folder's own.
    """
    stored_form = {
        **cfg.resolved(),
        "weights_tag": weights_tag,
        "pipeline_identity": cfg.pipeline_identity(),
        "codec_identity": cfg.codec_identity(),
    }
    resolved = json.loads(json.dumps(stored_form, default=str))
    identity = _identity(resolved)
    path = out / SWEEP_FILE
    if path.is_file():
        stored = json.loads(path.read_text())
        previous = _identity(stored)
        if "weights_tag" not in stored:  # written before fcm recorded it: nothing to compare
            previous["weights_tag"] = identity["weights_tag"]
        # a sweep may add (or leave out) pipelines; the ones both runs name must agree
        before, now = previous.pop("pipeline_identity") or {}, identity.pop("pipeline_identity")
        # likewise codecs; a folder written before fcm recorded codec threads ran x265 with its own (output-neutral)
        # pool and had no other threaded encoder, so it agrees with any count
        threads_before, threads_now = previous.pop("codec_threads") or {}, identity.pop("codec_threads") or {}
        codecs_before, codecs_now = previous.pop("codec_identity") or {}, identity.pop("codec_identity") or {}
        changed = sorted(k for k in set(previous) | set(identity) if previous.get(k) != identity.get(k))
        changed += [
            f"pipeline_identity of {label!r}" for label in sorted(set(before) & set(now)) if before[label] != now[label]
        ]
        changed += [  # an external codec's command lines (a folder written before fcm recorded them agrees)
            f"codec_identity of {name!r}"
            for name in sorted(set(codecs_before) & set(codecs_now))
            if codecs_before[name] != codecs_now[name]
        ]
        changed += [
            f"codec_threads of {name!r}"
            for name in sorted(set(threads_before) & set(threads_now))
            if threads_before[name] != threads_now[name]
        ]
        other_name = "name" in stored and stored["name"] != cfg.name
        if changed:
            whose = f"of sweep {stored['name']!r} " if other_name else "of a different sweep "
            raise ConfigError(
                f"{out} holds results {whose}(differs in {', '.join(changed)}); "
                "choose another output folder or delete it"
            )
        if other_name and not merge:  # same settings: the points could join that folder, if the user says so
            raise ConfigError(
                f"{out} holds the results of sweep {stored['name']!r}, not of this config's sweep {cfg.name!r}: "
                "choose another --output, or pass --merge to add this sweep's points to that folder"
            )
        if merge and "name" in stored:  # the folder stays the sweep that made it: its name titles the report
            resolved["name"] = stored["name"]
        resolved["pipeline_identity"] = {**before, **now}
        resolved["codec_threads"] = {**threads_before, **threads_now}
        resolved["codec_identity"] = {**codecs_before, **codecs_now}
    path.write_text(json.dumps(resolved, indent=2))


def load_config(out: Path) -> SweepConfig:
    """The config of the sweep whose results are in ``out``."""
    path = out / SWEEP_FILE
    if not path.is_file():
        raise ConfigError(f"{out} is not a sweep results folder (no {SWEEP_FILE})")
    raw = json.loads(path.read_text())
    raw.pop("weights_tag", None)
    raw.pop("pipeline_identity", None)
    raw.pop("codec_identity", None)
    codecs = [c for key in ("codecs", "optional_codecs") if isinstance(raw.get(key), list) for c in raw[key]]
    threads = raw.get("codec_threads")
    if isinstance(threads, dict):  # the merged record of every run may name codecs this config no longer runs
        raw["codec_threads"] = {k: v for k, v in threads.items() if k in codecs}
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
    #: inputs left out because their image could not be read: ``{"input": id, "reason": one line}``
    skipped: list[dict[str, str]]
    #: the folder's sweep name: the config's, or with ``merge`` the name of the sweep that made the folder
    name: str = ""


_WORKER: Worker | None = None
_QUEUE: Any = None


_WORKER_ERROR: BaseException | None = None


def exit_with_parent(parent_pid: int) -> None:
    """End this worker when the sweep process dies, even by SIGKILL, rather than leave it idle holding a model."""
    if sys.platform.startswith("linux"):
        import ctypes

        pr_set_pdeathsig = 1
        # the kernel kills this process when its parent exits; where it cannot, the watchdog below still does
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGKILL)
    if os.getppid() != parent_pid:  # the parent died before this process could ask
        os._exit(1)

    def watch() -> None:  # elsewhere (and as a second line on Linux): an orphan gets a new parent id
        while os.getppid() == parent_pid:
            time.sleep(1.0)
        os._exit(1)

    threading.Thread(target=watch, name="fcm-parent-watchdog", daemon=True).start()


def _init_worker(cfg: SweepConfig, q: Any, parent_pid: int, codec_files: list[str]) -> None:
    """Build this process's Worker; a failure is kept and raised by the first task, so the parent sees the cause
    (an exception in a pool initializer would only show up as a dead process)."""
    global _WORKER, _QUEUE, _WORKER_ERROR
    exit_with_parent(parent_pid)
    _QUEUE = q
    try:
        from fcm.codecs.user_codecs import load_codec_file

        for path in codec_files:
            load_codec_file(path)
        _WORKER = Worker(cfg)
    except Exception as e:
        _WORKER_ERROR = e


def _worker_run(index: int, keys: list[PointKey]) -> int:
    """Run one input in a worker; returns how many records it sent (one, if the input was skipped)."""
    if _WORKER_ERROR is not None:
        raise _WORKER_ERROR
    assert _WORKER is not None
    sent = 0

    def send(record: dict[str, Any]) -> None:
        nonlocal sent
        _QUEUE.put(record)
        sent += 1

    _WORKER.run_input(index, keys, send)
    return sent


def plan(
    cfg: SweepConfig, sample_ids: list[str], done: set[tuple], skipped: dict[str, str] | None = None
) -> list[tuple[int, list[PointKey]]]:
    """``(input index, keys still to measure)`` for every input with work left (``skipped`` inputs have none)."""
    keys = [PointKey(*REFERENCE)] + [
        PointKey(p.label, c, qp) for p in cfg.pipelines for c in cfg.codecs for qp in sorted(p.qps)
    ]
    tasks = []
    for i, sample_id in enumerate(sample_ids):
        if skipped and sample_id in skipped:
            continue
        missing = [k for k in keys if (k.pipeline, k.codec, k.qp, sample_id) not in done]
        if missing:
            tasks.append((i, missing))
    return tasks


def input_ids(cfg: SweepConfig, worker: Worker) -> list[str]:
    """Ids of the inputs a sweep covers (the first ``limit`` of its dataset)."""
    n = min(len(worker.dataset), cfg.limit or len(worker.dataset))
    return [worker.dataset[i].id for i in range(n)]


def run_sweep(
    cfg: SweepConfig,
    jobs: int = 1,
    progress: bool = True,
    max_new_records: int | None = None,
    ray_address: str | None = None,
    merge: bool = False,
) -> SweepOutcome:
    """Run (or resume) a sweep. ``max_new_records`` stops after that many new records, as a kill would.
    ``ray_address`` runs the inputs on a Ray cluster instead of local processes (:mod:`fcm.eval.ray_backend`).
    A folder made by a sweep of another name is refused unless ``merge`` (its identity must agree all the same)."""
    worker = Worker(cfg)  # builds model, dataset and evaluator: every config error surfaces before any file is written
    out = cfg.output
    out.mkdir(parents=True, exist_ok=True)
    with exclusive_folder(out):
        _check_identity(cfg, out, worker.model.weights_tag, merge)
        return _run_locked(cfg, worker, jobs, progress, max_new_records, ray_address)


def _run_locked(
    cfg: SweepConfig,
    worker: Worker,
    jobs: int,
    progress: bool,
    max_new_records: int | None,
    ray_address: str | None = None,
) -> SweepOutcome:
    from tqdm import tqdm

    results_path = cfg.output / RESULTS_FILE
    records = read_records(results_path, repair=True)
    ids = input_ids(cfg, worker)
    tasks = plan(cfg, ids, {record_key(r) for r in records}, skipped_inputs(cfg, records))
    todo = sum(len(k) for _, k in tasks)
    wanted = set(ids)
    total = todo + sum(r["input"] in wanted for r in records)
    new = 0
    bar = tqdm(
        total=total, initial=total - todo, unit="pt", desc=f"sweep {cfg.name}", disable=not progress, dynamic_ncols=True
    )

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
            if ray_address is not None and tasks:
                from fcm.eval.ray_backend import node_identity, run_on_ray

                run_on_ray(cfg, tasks, ray_address, jobs, emit, node_identity(cfg, worker.model.weights_tag))
            elif jobs <= 1 or len(tasks) <= 1:
                for index, keys in tasks:
                    worker.run_input(index, keys, emit)
            else:
                _run_parallel(cfg, tasks, jobs, emit)
        except _Stop:
            pass
        finally:
            bar.close()

    points, reference = summarize(cfg, worker, records, ids)
    complete = not plan(cfg, ids, {record_key(r) for r in records}, skipped_inputs(cfg, records))
    name = json.loads((cfg.output / SWEEP_FILE).read_text()).get("name", cfg.name)
    return SweepOutcome(points, reference, records, complete, new, skipped_list(cfg, records, ids), name)


class _Stop(Exception):
    pass


def _run_parallel(cfg: SweepConfig, tasks: list[tuple[int, list[PointKey]]], jobs: int, emit) -> None:
    """Run tasks in ``jobs`` worker processes; records come back through a queue and are emitted by this process.

    A worker's exception is re-raised here; a worker that dies (crash, out of memory) stops the sweep with an
    FcmError. Either way every record received so far has been written.
    """
    from concurrent.futures import ProcessPoolExecutor
    from concurrent.futures.process import BrokenProcessPool

    ctx = mp.get_context("spawn")  # fork after torch has started threads can deadlock
    q = ctx.Queue()
    planned = [len(k) for _, k in tasks]
    expected = sum(planned)
    received = idle_after_done = 0
    from fcm.codecs.user_codecs import loaded_files

    pool = ProcessPoolExecutor(
        jobs, mp_context=ctx, initializer=_init_worker, initargs=(cfg, q, os.getpid(), loaded_files())
    )
    try:
        futures = [pool.submit(_worker_run, i, keys) for i, keys in tasks]
        while received < expected:
            try:
                record = q.get(timeout=0.5)
            except queue_module.Empty:
                for f in futures:
                    exc = f.exception() if f.done() else None
                    if exc is None:
                        continue
                    if isinstance(exc, BrokenProcessPool):
                        raise FcmError(
                            f"{worker_death_message('sweep')}; the records finished so far are saved: run the "
                            "sweep again to resume"
                        ) from exc
                    raise exc  # noqa: B904 - keeps the worker's remote traceback as its cause
                # a skipped input sends one record instead of its planned ones
                expected = sum(f.result() if f.done() else n for f, n in zip(futures, planned, strict=True))
                idle_after_done = idle_after_done + 1 if all(f.done() for f in futures) else 0
                if idle_after_done > 20:
                    raise FcmError(f"sweep workers finished but sent {received} of {expected} records") from None
                continue
            received += 1
            emit(record)
    except BaseException:
        stop_pool(pool)
        raise
    pool.shutdown(wait=True)


def stop_pool(pool: Any) -> None:
    """Stop a process pool now (an error or Ctrl-C): cancel what has not started and end the running workers,
    rather than wait for their points to finish."""
    for process in list((getattr(pool, "_processes", None) or {}).values()):
        process.terminate()
    pool.shutdown(wait=False, cancel_futures=True)


def smooth_values(ev: Any, records: list[dict[str, Any]]) -> dict[str, tuple[np.ndarray, str]]:
    """Per-input values of the evaluator's smooth measures that every record of a point carries (older records, or
    pipelines without split tensors, lack some)."""
    out = {}
    for m in ev.smooth_measures:
        values = [(r["eval"] if m.source == "eval" else r).get(m.key) for r in records]
        if values and all(isinstance(v, (int, float)) for v in values):
            out[m.name] = (np.array(values, dtype=np.float64), m.link)
    return out


def summarize(
    cfg: SweepConfig, worker: Worker, records: list[dict[str, Any]], ids: list[str]
) -> tuple[list[OperatingPoint], dict[str, float]]:
    """Aggregate the records of inputs ``ids`` into operating points (and the uncompressed reference metrics)."""
    skipped = skipped_inputs(cfg, records)
    order = {i: n for n, i in enumerate(ids) if i not in skipped}
    groups: dict[tuple[str, str, int], list[dict[str, Any]]] = defaultdict(list)
    for r in records:
        if r["input"] in order and r["pipeline"] != SKIPPED:
            groups[(r["pipeline"], r["codec"], int(r["qp"]))].append(r)
    points: list[OperatingPoint] = []
    reference: dict[str, float] = {}
    ev = worker.evaluator  # reused: building one again would reread e.g. a COCO annotation file per point
    for (pipeline, codec, qp), rs in sorted(groups.items()):
        rs.sort(key=lambda r: order[r["input"]])  # in input order, not arrival order: sums round the same way
        ev.reset()
        ev.extend([r["eval"] for r in rs])
        metrics = ev.evaluate()
        if (pipeline, codec, qp) == REFERENCE:
            reference = metrics
            continue
        time_keys = sorted({k for r in rs for k in r["times"]})
        times = {k: float(np.mean([r["times"].get(k, 0.0) for r in rs])) for k in time_keys}
        extra = smooth_values(ev, rs)
        metrics = {**metrics, **{name: float(apply_link(link, np.mean(v))) for name, (v, link) in extra.items()}}
        samples = InputSamples(
            ids=tuple(r["input"] for r in rs),
            bits=np.array([r["bits"] for r in rs], dtype=np.int64),
            pixels=np.array([r["pixels"] for r in rs], dtype=np.int64),
            scores=(scores := ev.input_scores([r["eval"] for r in rs])),
            statistic=None if scores is not None else ev.input_statistic([r["eval"] for r in rs]),
            extra=extra,
        )
        edge = [r.get("edge", {}) for r in rs]  # records written before fcm measured edge cost have none
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
                edge_macs=float(np.mean([e["macs"] for e in edge])) if all(edge) else None,
                edge_params=int(max(e["params"] for e in edge)) if all(edge) else None,
                samples=samples,
            )
        )
    return points, reference
