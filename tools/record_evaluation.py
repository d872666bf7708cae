"""Write a wrapper's (or a wrapper family's) test-split figures into its file, from the sweep that measured them.

    python tools/record_evaluation.py checkpoints/efficientnet_lite0_stage4_family.pt \\
        --sweep runs/readme/family_photos --label 'wrapped[family]'

The sweep folder (``fcm sweep``) must be finished, on the photo **test** split (a source no training or tuning
touched, :mod:`fcm.data.photos`), and its curve ``--label`` must have run this very file (the weights tag is
checked). The file's ``evaluation`` gains a ``test`` entry: the sweep's name, dataset, inputs, codec, preset and git
revision, the curve's BD-rate against the anchor on top-1 agreement and on ``kl_db`` with their 95 % intervals, and
the best top-1 agreement of the curve and of the anchor (a BD figure the report could not compute is recorded as
``null`` with the report's reason). Nothing else in the file changes, so its weights tag stays.
Prints the entry as JSON.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from fcm.errors import ConfigError, FcmError  # noqa: E402


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise ConfigError(f"{path.parent} is not a finished fcm sweep folder ({path.name}: {e})") from e
    if not isinstance(data, dict):
        raise ConfigError(f"{path} is not a JSON object")
    return data


def _bd_entry(rows: list[dict[str, Any]], test: str, anchor: str, what: str) -> dict[str, Any]:
    for row in rows:
        if row.get("test") == test and row.get("anchor") == anchor:
            if row.get("bd_rate") is None:  # the report's reason is recorded, not a made-up figure
                return {"bd_rate": None, "reason": row.get("rate_error") or row.get("note") or "not computed"}
            ci = row.get("bd_rate_ci") or {}
            if ci.get("lo") is None or ci.get("hi") is None:
                return {"bd_rate": float(row["bd_rate"]), "ci95": None, "reason": "the report has no interval"}
            return {"bd_rate": float(row["bd_rate"]), "ci95": [float(ci["lo"]), float(ci["hi"])]}
    raise ConfigError(f"the sweep's report has no {what} BD row of {test} against {anchor}")


def evaluation_entry(folder: Path, label: str, weights_tag: str) -> dict[str, Any]:
    """The ``evaluation["test"]`` entry of the curve ``label`` of the sweep in ``folder``, whose wrapper file must
    hash to ``weights_tag``; a :class:`ConfigError` says what is wrong with the folder (a malformed file too)."""
    manifest = _read_json(folder / "manifest.json")
    report = _read_json(folder / "report.json")
    try:
        return _entry(folder, manifest, report, label, weights_tag)
    except (AttributeError, KeyError, TypeError, ValueError) as e:
        raise ConfigError(
            f"{folder}: manifest.json or report.json is not what fcm sweep writes ({type(e).__name__}: {e})"
        ) from None


def _entry(
    folder: Path, manifest: dict[str, Any], report: dict[str, Any], label: str, weights_tag: str
) -> dict[str, Any]:
    config = manifest.get("config") or {}
    dataset = config.get("dataset") or {}
    if dataset.get("kind") != "photos" or dataset.get("split") != "test":
        raise ConfigError(
            f"{folder} ran on {dataset!r}, not the photo test split: a checkpoint states figures measured on data "
            "no training or tuning touched"
        )
    pipelines = config.get("pipelines") or {}
    if label not in pipelines:
        raise ConfigError(f"{folder} has no pipeline {label!r}; it has {', '.join(pipelines)}")
    if pipelines[label].get("weights_tag") != weights_tag:
        raise ConfigError(
            f"{folder}'s {label} ran weights {pipelines[label].get('weights_tag')}, not this file's {weights_tag}"
        )
    if not manifest.get("finished"):
        raise ConfigError(f"{folder} is not finished (rerun its fcm sweep to complete it)")
    codecs = config.get("codecs") or []
    if not isinstance(codecs, list) or len(codecs) != 1:
        raise ConfigError(f"{folder} ran {len(codecs)} codecs; record from a sweep of one")
    anchor = str(config.get("anchor") or report.get("anchor"))
    test = f"{label}/{codecs[0]}"
    points = report.get("points") or []
    if "top1_agreement" not in str(report.get("metric")) and not any(
        "top1_agreement" in (p.get("metrics") or {}) for p in points
    ):
        raise ConfigError(f"{folder} is not a classifier's fidelity sweep (no top-1 agreement)")
    own = [p for p in points if p.get("pipeline") == label]
    curve = [p["metrics"]["top1_agreement"] for p in own]
    anchor_curve = [p["metrics"]["top1_agreement"] for p in points if f"{p.get('pipeline')}/{p.get('codec')}" == anchor]
    if not curve or not anchor_curve:
        raise ConfigError(f"{folder}'s report lacks top-1 agreement points of {test} or {anchor}")
    smooth = report.get("bd_smooth") or {}
    return {
        "sweep": config.get("name"),
        "dataset": dataset,
        "inputs": max(int(p["num_inputs"]) for p in own),
        "codec": codecs[0],
        "preset": config.get("preset"),
        "git_revision": manifest.get("git_revision"),
        "anchor": anchor,
        "top1_agreement": _bd_entry(report.get("bd") or [], test, anchor, "top-1 agreement"),
        "kl_db": _bd_entry((smooth.get("kl_db") or {}).get("bd") or [], test, anchor, "kl_db"),
        "best_top1_agreement": max(curve),
        "anchor_best_top1_agreement": max(anchor_curve),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("checkpoint", help="a wrapper checkpoint or a wrapper family file")
    ap.add_argument("--sweep", required=True, help="the finished test-split sweep folder that ran it")
    ap.add_argument("--label", required=True, help="its pipeline label in that sweep, e.g. 'wrapped[family]'")
    args = ap.parse_args(argv)

    from fcm.models import get_model
    from fcm.torch_files import save_mapping
    from fcm.wrappers import is_family_file, load_wrapper_or_family, read_checkpoint
    from fcm.wrappers.family import read_family

    path = Path(args.checkpoint)
    data = read_family(path) if is_family_file(path) else read_checkpoint(path)  # format and keys checked

    # the file's weights must hash to the tag it states before the sweep's tag is compared with it
    load_wrapper_or_family(path, get_model(str(data.get("model")), split=str(data.get("split"))))
    entry = evaluation_entry(Path(args.sweep), args.label, str(data.get("weights_tag")))
    fmt = data.pop("format")
    data["evaluation"] = {**dict(data.get("evaluation") or {}), "test": entry}
    save_mapping(path, fmt, data)
    print(json.dumps(entry, indent=2))
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except FcmError as e:
        print(f"record_evaluation: error: {e}", file=sys.stderr)
        sys.exit(2)
