"""The run manifest every sweep writes next to its records: what a reader needs to trust and repeat the run."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

MANIFEST_FILE = "manifest.json"


def git_revision() -> str | None:
    """The commit fcm runs from (``+dirty`` with local changes); ``None`` outside a git checkout."""
    here = Path(__file__).resolve().parent

    def git(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["git", *args], cwd=here, capture_output=True, text=True, timeout=5, check=False)

    try:
        out = git("rev-parse", "HEAD")
        dirty = git("status", "--porcelain")
    except (OSError, subprocess.SubprocessError):
        return None
    if out.returncode != 0:
        return None
    return out.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")


def run_manifest(
    config: dict[str, Any], torch_threads: int, jobs: int, codec_threads: dict[str, int] | None = None
) -> dict[str, Any]:
    """The manifest of a run of ``config`` (plain data) started now: versions, machine, threads and CPU kernels."""
    from fcm import __version__
    from fcm.numerics import cpu_name, numerics_record, package_versions

    numerics = numerics_record(torch_threads)
    if codec_threads is not None:
        numerics["codec_threads"] = dict(codec_threads)
    return {
        "config": json.loads(json.dumps(config, default=str)),
        "fcm_version": __version__,
        "git_revision": git_revision(),
        "python": sys.version.split()[0],
        "packages": package_versions(),
        "cpu": cpu_name(),
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
        "jobs": jobs,
        "numerics": numerics,
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def finish(manifest: dict[str, Any], folder: Path, t0: float, new_records: int, **more: Any) -> None:
    """Stamp ``manifest`` with the end of the run (``t0`` from :func:`time.perf_counter`) and write it to ``folder``."""
    manifest["finished"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    manifest["wall_seconds_this_run"] = round(time.perf_counter() - t0, 2)
    manifest["new_records_this_run"] = new_records
    manifest.update(more)
    (folder / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2))
