"""A sweep killed with SIGKILL mid-way (a real process, a real kill) resumes and ends with the records of an
uninterrupted run."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

CONFIG = {
    "name": "kill",
    "dataset": {"kind": "embedded", "photos": ["coffee", "rocket"], "variants": 3},
    "model": "efficientnet_lite0",
    "split": "stage5",
    "codecs": ["x265"],
    "qps": [26, 34, 42],
    "pipelines": ["feature", "remote"],
    "evaluator": "fidelity",
    "preset": "ultrafast",
}
TOTAL = 6 * (1 + 2 * 3)


def _sweep(config: Path, env=None) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "fcm.cli", "sweep", str(config), "--no-progress"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )


def _records(out: Path) -> list[str]:
    lines = (out / "results.jsonl").read_text().splitlines()
    return sorted(
        json.dumps({k: v for k, v in json.loads(line).items() if k != "times"}, sort_keys=True) for line in lines
    )


def test_sigkill_then_resume(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "2"}
    configs = {}
    for name in ("killed", "straight"):
        cfg = {**CONFIG, "output": str(tmp_path / name)}
        configs[name] = tmp_path / f"{name}.yaml"
        configs[name].write_text(yaml.safe_dump(cfg))

    proc = _sweep(configs["killed"], env)
    results = tmp_path / "killed" / "results.jsonl"
    deadline = time.time() + 240
    while time.time() < deadline:
        if results.is_file() and len(results.read_text().splitlines()) >= 10:
            break
        if proc.poll() is not None:
            pytest.fail(f"sweep ended before it could be killed: {proc.stderr.read().decode()[-2000:]}")
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    done_before = len(results.read_text().splitlines())
    assert 10 <= done_before < TOTAL

    resumed = _sweep(configs["killed"], env)
    out, err = resumed.communicate(timeout=600)
    assert resumed.returncode == 0, err.decode()[-2000:]
    summary = json.loads(out)
    assert summary["complete"] and summary["records"] == TOTAL and summary["new_records"] == TOTAL - done_before

    straight = _sweep(configs["straight"], env)
    out, err = straight.communicate(timeout=600)
    assert straight.returncode == 0, err.decode()[-2000:]
    assert _records(tmp_path / "killed") == _records(tmp_path / "straight")


def _children(pid: int) -> list[int]:
    kids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            kids.append(int(stat.parent.name))
    return kids


def _parallel_sweep_with_records(tmp_path: Path, records: int) -> tuple[subprocess.Popen, Path]:
    """Start ``fcm sweep --jobs 2`` on CONFIG and return once ``records`` records are written (and the file)."""
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump({**CONFIG, "output": str(tmp_path / "out")}))
    proc = subprocess.Popen(
        [sys.executable, "-m", "fcm.cli", "sweep", str(config), "--no-progress", "--jobs", "2"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    results = tmp_path / "out" / "results.jsonl"
    deadline = time.time() + 240
    while time.time() < deadline and not (results.is_file() and results.read_text().count("\n") >= records):
        assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
        time.sleep(0.05)
    return proc, results


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="needs /proc to find the worker processes")
def test_a_dead_worker_stops_the_sweep_with_a_clear_error(tmp_path):
    """SIGKILL one worker of a --jobs 2 sweep: the parent must not hang; it exits 2, naming the problem."""
    proc, results = _parallel_sweep_with_records(tmp_path, 3)
    workers = [p for p in _children(proc.pid) if "spawn" in Path(f"/proc/{p}/cmdline").read_text(errors="replace")]
    workers = [p for p in workers if "resource_tracker" not in Path(f"/proc/{p}/cmdline").read_text(errors="replace")]
    assert workers, "no worker processes found"
    os.kill(workers[0], signal.SIGKILL)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 2
    assert "worker process died" in err.decode()
    assert len(results.read_text().splitlines()) >= 3  # what was finished is kept


def _alive(pid: int) -> bool:
    """True while ``pid`` runs (a zombie waiting for its new parent to reap it has ended)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="needs /proc to find the worker processes")
def test_sigkill_of_the_sweep_ends_its_workers(tmp_path):
    """SIGKILL the parent of a --jobs 2 sweep: its workers (each holding a model) and multiprocessing's resource
    tracker must not outlive it."""
    proc, _ = _parallel_sweep_with_records(tmp_path, 2)
    children = {p: Path(f"/proc/{p}/cmdline").read_text(errors="replace") for p in _children(proc.pid)}
    workers = [p for p, cmd in children.items() if "spawn_main" in cmd]
    tracker = [p for p, cmd in children.items() if "resource_tracker" in cmd]
    assert len(workers) == 2 and len(tracker) == 1, f"expected 2 workers and a resource tracker: {children}"
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    deadline = time.time() + 10
    while time.time() < deadline and any(_alive(p) for p in children):
        time.sleep(0.1)
    survivors = [p for p in children if _alive(p)]
    for p in survivors:  # do not leave them behind for the rest of the test session
        os.kill(p, signal.SIGKILL)
    assert not survivors, f"processes outlived the killed sweep: {survivors}"
