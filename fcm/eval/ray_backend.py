"""Sweeps on a Ray cluster: the same per-input work as local worker processes, run by Ray actors.

``fcm sweep CONFIG --ray ADDRESS --jobs N`` (``pip install fcm[ray]``): ``ADDRESS`` is a cluster address (``auto``,
``ray://head:10001``, ``HOST:PORT``) or ``local`` (start a Ray instance on this machine with ``N`` CPUs); ``N``
actors (at most the cluster's CPUs) run at once. Each
actor builds one :class:`~fcm.eval.sweep.Worker` (model, dataset, evaluator) and measures whole inputs; the records of
an input come back to this process, which alone writes ``results.jsonl`` — so resuming, identities and reports are
exactly those of a local sweep, and the records are the same (every record depends only on the config and its input;
``torch_threads`` and ``codec_threads`` are fixed by the config).

Every node needs fcm installed and the dataset, weights and codec files at the same paths.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from fcm.errors import ConfigError, FcmError

if TYPE_CHECKING:
    from fcm.eval.config import SweepConfig
    from fcm.eval.worker import PointKey


#: times an actor is restarted (on its node or another) after its process or node dies; its input is retried
ACTOR_RESTARTS = 3


def _actor_class() -> Any:
    import ray

    # a restarted actor rebuilds its Worker and runs the interrupted input again: every record depends only on the
    # config and the input, and no record of an unfinished input was emitted, so a retry cannot duplicate or differ
    @ray.remote(num_cpus=1, max_restarts=ACTOR_RESTARTS, max_task_retries=ACTOR_RESTARTS)
    class SweepActor:
        def __init__(self, cfg: SweepConfig, codec_files: list[str]) -> None:
            from fcm.codecs.user_codecs import load_codec_file
            from fcm.eval.worker import Worker

            for path in codec_files:
                load_codec_file(path)
            self.worker = Worker(cfg)
            self.identity = node_identity(cfg, self.worker.model.weights_tag)

        def describe(self) -> dict[str, Any]:
            return self.identity

        def run(self, index: int, keys: list[PointKey]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
            records: list[dict[str, Any]] = []
            self.worker.run_input(index, keys, records.append)
            return self.identity, records  # a restarted actor may live on another node: checked with every input

    return SweepActor


def node_identity(cfg: SweepConfig, weights_tag: str) -> dict[str, Any]:
    """What must be the same on every node for its records to be this sweep's: fcm's version, the model's weights
    (by tag: another file at the same path is another model) and each codec's identity (external binaries, configs)."""
    from fcm import __version__

    return {"fcm": __version__, "weights_tag": weights_tag, "codecs": cfg.codec_identity()}


def _check_identity(found: dict[str, Any], expected: dict[str, Any] | None) -> None:
    if expected is not None and found != expected:
        differs = sorted(k for k in expected if found.get(k) != expected.get(k))
        raise FcmError(
            f"a Ray node differs from this machine in {', '.join(differs)} ({found} vs {expected}): its "
            "records would not be this sweep's; install the same fcm, weights and codecs on every node"
        )


def connect(address: str, jobs: int) -> int:
    """Join the cluster at ``address`` (or start a local instance for ``"local"``); the number of actors to use:
    ``jobs``, at most the cluster's CPUs."""
    try:
        import ray
    except ImportError as e:
        raise ConfigError("--ray needs Ray: pip install fcm[ray]") from e
    if not ray.is_initialized():
        if address == "local":
            # address="local": a new instance here, even where RAY_ADDRESS or a running cluster would be joined
            ray.init(address="local", num_cpus=jobs, include_dashboard=False, log_to_driver=False)
        else:
            try:
                ray.init(address=address, include_dashboard=False, log_to_driver=False)
            except ConnectionError as e:
                raise ConfigError(f"cannot reach a Ray cluster at {address!r}: {e}") from e
    cpus = int(ray.cluster_resources().get("CPU", 1))
    return max(1, min(jobs, cpus))


def run_on_ray(
    cfg: SweepConfig,
    tasks: list[tuple[int, list[PointKey]]],
    address: str,
    jobs: int,
    emit: Callable[[dict[str, Any]], None],
    expected: dict[str, Any] | None = None,
    run_id: str | None = None,
) -> None:
    """Measure ``tasks`` on Ray actors, emitting each input's records as it completes (in completion order, as a
    local parallel sweep does; reports sort records by input). ``expected`` is this process's
    :func:`node_identity`: an actor whose node differs (other weights at the same path, another fcm or codec build)
    stops the sweep before it measures anything, and so does a restarted actor on such a node before its records
    are kept. Actors are named ``fcm-sweep-RUNID-I`` (``run_id``: random unless given); a dead actor is restarted up
    to :data:`ACTOR_RESTARTS` times and its input run again."""
    import uuid

    import ray

    from fcm.codecs.user_codecs import loaded_files

    actors_wanted = connect(address, jobs)
    actor_cls = _actor_class()
    run_id = run_id or uuid.uuid4().hex[:12]
    actors = [
        actor_cls.options(name=f"fcm-sweep-{run_id}-{i}").remote(cfg, loaded_files())
        for i in range(min(actors_wanted, len(tasks)))
    ]
    pending: dict[Any, Any] = {}
    queue = list(tasks)
    try:
        try:
            identities = ray.get([a.describe.remote() for a in actors])
        except ray.exceptions.RayActorError as e:
            raise FcmError(f"a Ray sweep actor could not start (model, data or codec files on its node?): {e}") from e
        for found in identities:
            _check_identity(found, expected)
        for actor in actors:  # one input in flight per actor; the next goes to whichever finishes first
            if queue:
                index, keys = queue.pop(0)
                pending[actor.run.remote(index, keys)] = actor
        while pending:
            done, _ = ray.wait(list(pending), num_returns=1)
            ref = done[0]
            actor = pending.pop(ref)
            try:
                found, records = ray.get(ref)
            except ray.exceptions.RayActorError as e:
                raise FcmError(
                    f"a Ray sweep actor died more than {ACTOR_RESTARTS} times or could not restart ({e}); the records "
                    "finished so far are saved: run the sweep again to resume"
                ) from e
            except ray.exceptions.RayTaskError as e:
                cause = e.as_instanceof_cause()
                raise cause from None
            _check_identity(found, expected)
            for record in records:
                emit(record)
            if queue:
                index, keys = queue.pop(0)
                pending[actor.run.remote(index, keys)] = actor
            else:  # idle for good: give its CPU back, so a restarting actor elsewhere can be placed
                ray.kill(actor)
    finally:
        for actor in actors:
            ray.kill(actor)
