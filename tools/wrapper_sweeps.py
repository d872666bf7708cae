"""What the wrapper benchmarks share (tools/bench_surrogates.py, tools/lambda_sweep.py): their evaluation datasets and
the one sweep they run — EfficientNet-Lite0 ``stage4``, x265 ``medium``, fidelity evaluation, anchor ``feature/x265``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

#: the test split of fcm.data.photos (reporting only), its validation split (tuning) and the embedded set
DATASETS: dict[str, dict[str, str]] = {
    "test": {"kind": "photos", "split": "test"},
    "validation": {"kind": "photos", "split": "validation"},
    "embedded": {"kind": "embedded"},
}


def sweep_against_feature(
    name: str, dataset: str, pipelines: dict[str, dict[str, Any]], output: Path, jobs: int, limit: int | None = None
) -> dict[str, Any]:
    """Run (or resume) and report the sweep of ``pipelines`` on ``DATASETS[dataset]`` into ``output``; returns
    :func:`fcm.eval.run.run_and_report`'s summary."""
    from fcm.eval.config import SweepConfig
    from fcm.eval.run import run_and_report

    sweep = SweepConfig.from_config(
        {
            "name": name,
            "dataset": DATASETS[dataset],
            "model": "efficientnet_lite0",
            "split": "stage4",
            "codecs": ["x265"],
            "pipelines": pipelines,
            "evaluator": "fidelity",
            "preset": "medium",
            "anchor": "feature/x265",
            "output": str(output),
            "limit": limit,
        }
    )
    return run_and_report(sweep, jobs=jobs, progress=False)
