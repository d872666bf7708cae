"""A sweep's results depend on its config and the software, not on --jobs, the core count or the caller's threads."""

import json
import os

import pytest
import torch
from test_sweep_kill import _records  # the results file's records without timings, sorted

from fcm.errors import ConfigError
from fcm.eval.config import SweepConfig
from fcm.eval.sweep import RESULTS_FILE, run_sweep


def _raw(out, **kw) -> dict:
    return {
        "name": "det",
        "dataset": {"kind": "embedded", "photos": ["chelsea", "coffee"], "variants": 2},
        "model": "efficientnet_lite0",
        "split": "stage4",
        "codecs": ["x265"],
        "qps": [27, 37],
        "pipelines": ["feature", "remote"],
        "evaluator": "fidelity",
        "preset": "fast",
        "output": str(out),
        **kw,
    }


def _points(outcome) -> list[tuple]:
    return [(p.curve, p.qp, p.num_inputs, p.bits, p.metrics) for p in outcome.points]


def test_jobs_1_and_jobs_2_write_identical_results(tmp_path):
    """Before torch_threads, jobs=1 ran with the caller's thread count and each of N workers with cores/N threads:
    float sums rounded differently, and fidelity metrics (and sometimes bitstream sizes) changed."""
    callers = (os.cpu_count() or 1) // 2 + 2  # differs from what any jobs-derived count would give
    before = torch.get_num_threads()
    torch.set_num_threads(callers)
    try:
        serial = run_sweep(SweepConfig.from_config(_raw(tmp_path / "j1")), jobs=1, progress=False)
        assert torch.get_num_threads() == callers  # the sweep gives the caller its own setting back
    finally:
        torch.set_num_threads(before)
    parallel = run_sweep(SweepConfig.from_config(_raw(tmp_path / "j2")), jobs=2, progress=False)
    assert serial.complete and parallel.complete and len(serial.records) == 4 * (1 + 2 * 2)
    assert _records(tmp_path / "j1") == _records(tmp_path / "j2")
    assert _points(serial) == _points(parallel)


def test_a_resume_with_other_torch_threads_is_refused(tmp_path):
    raw = _raw(tmp_path / "out", qps=[37], pipelines=["feature"])
    assert run_sweep(SweepConfig.from_config(raw), progress=False, max_new_records=2).new_records == 2
    with pytest.raises(ConfigError, match=r"differs in torch_threads\)"):
        run_sweep(SweepConfig.from_config({**raw, "torch_threads": 2}), progress=False)
    assert len((tmp_path / "out" / RESULTS_FILE).read_text().splitlines()) == 2  # nothing mixed in
    stored = json.loads((tmp_path / "out" / "sweep.json").read_text())
    assert stored["torch_threads"] == 1


def test_torch_threads_must_be_positive(tmp_path):
    with pytest.raises(ConfigError, match="torch_threads must be a positive integer, got 0"):
        SweepConfig.from_config(_raw(tmp_path, torch_threads=0))
