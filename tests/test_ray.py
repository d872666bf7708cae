"""Sweeps on a Ray cluster: a local Ray instance started here runs the same work and writes the same records."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("ray", reason="the ray extra is not installed (pip install fcm[ray])")

from fcm.eval.config import SweepConfig
from fcm.eval.sweep import read_records, run_sweep


def _records(path):
    return sorted(json.dumps({k: v for k, v in r.items() if k != "times"}, sort_keys=True) for r in read_records(path))


def _ray_sweep(raw, out):
    """The sweep of config ``raw`` into ``out`` on a local Ray instance with two actors."""
    return run_sweep(SweepConfig.from_config({**raw, "output": str(out)}), jobs=2, progress=False, ray_address="local")


def test_ray_sweep_writes_the_records_of_a_local_sweep(tmp_path):
    import ray

    raw = {
        "dataset": {"kind": "embedded", "photos": ["rocket", "coffee"], "variants": 2},
        "model": "efficientnet_lite0",
        "codecs": ["x265"],
        "qps": [27, 37],
        "pipelines": ["feature", "remote"],
        "preset": "ultrafast",
        "bootstrap": 0,
    }
    local = run_sweep(SweepConfig.from_config({**raw, "output": str(tmp_path / "local")}), progress=False)
    try:
        on_ray = _ray_sweep(raw, tmp_path / "ray")
        assert on_ray.complete and on_ray.new_records == local.new_records == 4 * (1 + 2 * 2)
        assert _records(tmp_path / "ray" / "results.jsonl") == _records(tmp_path / "local" / "results.jsonl")
        # resuming a finished Ray sweep has nothing left to do
        cfg = SweepConfig.from_config({**raw, "output": str(tmp_path / "ray")})
        again = run_sweep(cfg, jobs=2, progress=False, ray_address="local")
        assert again.complete and again.new_records == 0
        # a node whose weights (or fcm, or codecs) differ from this machine's is refused before measuring
        from fcm.errors import FcmError
        from fcm.eval.ray_backend import node_identity, run_on_ray

        other = SweepConfig.from_config({**raw, "output": str(tmp_path / "other")})
        wrong = {**node_identity(other, "0000000000000000")}
        emitted: list = []
        with pytest.raises(FcmError, match="a Ray node differs from this machine in weights_tag"):
            run_on_ray(other, [(0, [])], "local", 2, emitted.append, wrong)
        assert emitted == []
    finally:
        ray.shutdown()


def test_ray_actors_killed_mid_sweep_are_restarted_and_the_records_are_unchanged(tmp_path, monkeypatch):
    """Every actor is killed as the first input's records arrive (one mid-input): Ray restarts them, the interrupted
    input runs again, and the results are those of a local sweep, each record once."""
    import ray

    from fcm.eval import ray_backend

    raw = {
        "dataset": {"kind": "embedded", "photos": ["rocket", "coffee", "chelsea"], "variants": 1},
        "model": "efficientnet_lite0",
        "codecs": ["x265"],
        "qps": [32],
        "pipelines": ["feature"],
        "preset": "ultrafast",
        "bootstrap": 0,
    }
    local = run_sweep(SweepConfig.from_config({**raw, "output": str(tmp_path / "local")}), progress=False)
    original = ray_backend.run_on_ray
    killed: list[str] = []

    def run_and_kill(cfg, tasks, address, jobs, emit, expected=None, run_id=None):
        def emit_and_kill(record):
            emit(record)
            if not killed:
                for i in range(jobs):
                    name = f"fcm-sweep-killtest-{i}"
                    ray.kill(ray.get_actor(name), no_restart=False)
                    killed.append(name)

        original(cfg, tasks, address, jobs, emit_and_kill, expected, run_id="killtest")

    monkeypatch.setattr(ray_backend, "run_on_ray", run_and_kill)
    try:
        on_ray = _ray_sweep(raw, tmp_path / "ray")
        assert killed == ["fcm-sweep-killtest-0", "fcm-sweep-killtest-1"]
        assert on_ray.complete and on_ray.new_records == local.new_records
        assert _records(tmp_path / "ray" / "results.jsonl") == _records(tmp_path / "local" / "results.jsonl")
    finally:
        ray.shutdown()
