"""Build a rate-adaptive wrapper family (fcm.wrappers.family) from validation sweeps: choose each variant's QP band.

    python tools/make_family.py --validation runs/family_validation_embedded runs/family_validation_photos \\
        --variants feature wrapped[full] wrapped[cr40] --output checkpoints/NAME.family.pt

``--validation``: sweep folders (``fcm sweep``) on **validation** data only — never the data a figure is reported
on — that ran every variant over the same QP grid with one codec. ``--variants``: pipeline labels in rate order,
from the one for the highest rates (``feature``: plain coding, no wrapper) to the one for the lowest; each wrapped
label's checkpoint is the one its sweep used (the weights tag is checked against the sweep's). The curves are pooled
over the folders (bits over pixels; KL weighted by inputs) and the bands chosen by
:func:`fcm.eval.family_bands.choose_bands` on ``kl_db``. The family file records the choice, the validation
folders and figures in its ``selection``; prints a JSON summary.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from fcm.errors import ConfigError
from fcm.eval.family_bands import choose_bands, pooled_curve


def _read_sweep(folder: Path) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    try:
        sweep = json.loads((folder / "sweep.json").read_text())
        report = json.loads((folder / "report.json").read_text())
    except (OSError, ValueError) as e:
        raise ConfigError(f"{folder} is not a finished fcm sweep folder ({e})") from e
    return sweep, report["points"]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--validation", nargs="+", required=True, metavar="FOLDER", help="validation sweep folders")
    ap.add_argument("--variants", nargs="+", required=True, metavar="LABEL", help="pipeline labels, in rate order")
    ap.add_argument("--output", required=True, help="the family file to write")
    ap.add_argument("--qp-max", type=int, default=51, help="the highest QP the family serves (x265: 51)")
    ap.add_argument("--tolerance", type=float, default=0.1, help="kl_db the family may fall short of plain's best")
    args = ap.parse_args(argv)

    from fcm.models import get_model
    from fcm.wrappers import FamilyVariant, WrapperFamily, load_wrapper, save_family

    plain = "feature"
    if plain not in args.variants:
        raise ConfigError("--variants must include 'feature' (plain coding, the family's top band)")
    pooled: dict[str, list[dict[str, Any]]] = {label: [] for label in args.variants}
    checkpoints: dict[str, tuple[str, str]] = {}
    model_split: set[tuple[str, str]] = set()
    codecs: set[str] = set()
    for folder in map(Path, args.validation):
        sweep, points = _read_sweep(folder)
        if sweep["dataset"].get("split") == "test":
            raise ConfigError(f"{folder} is a sweep of the test split: bands are chosen on validation data only")
        model_split.add((sweep["model"], sweep["split"]))
        for label in args.variants:
            section = sweep["pipelines"].get(label)
            if section is None:
                raise ConfigError(f"{folder} has no pipeline {label!r} (it has {sorted(sweep['pipelines'])})")
            if label != plain:
                ref = (section["checkpoint"], section["weights_tag"])
                if checkpoints.setdefault(label, ref)[1] != ref[1]:
                    raise ConfigError(
                        f"{label!r} ran with other weights in {folder} ({ref[1]}, not {checkpoints[label][1]})"
                    )
            for p in points:
                if p["pipeline"] == label:
                    codecs.add(p["codec"])
                    pooled[label].append(
                        {
                            "qp": p["qp"],
                            "bits": p["bits"],
                            "pixels": p["pixels"],
                            "num_inputs": p["num_inputs"],
                            "mean_kl": p["metrics"]["mean_kl"],
                        }
                    )
    if len(model_split) != 1 or len(codecs) != 1:
        raise ConfigError(f"the validation sweeps must share one model/split and one codec, got {model_split} {codecs}")
    curves = {label: pooled_curve(points) for label, points in pooled.items()}
    choice = choose_bands(curves, args.variants, plain, qp_max=args.qp_max, tolerance=args.tolerance)

    ((model_name, split),) = model_split
    model = get_model(model_name, split)
    variants = []
    for label, lo, hi in choice.bands:
        wrapper = None
        training: dict[str, Any] = {}
        if label != plain:
            path, tag = checkpoints[label]
            wrapper = load_wrapper(path, model)
            if wrapper.weights_tag != tag:
                raise ConfigError(f"{path} changed since its validation sweep (weights {wrapper.weights_tag} ≠ {tag})")
            from fcm.wrappers import read_checkpoint

            training = dict(read_checkpoint(path).get("training") or {})
        name = "plain" if label == plain else (label[label.index("[") + 1 : -1] if "[" in label else label)
        variants.append(FamilyVariant(name, lo, hi, wrapper, training))
    family = WrapperFamily(variants)
    selection = {
        "method": "fcm.eval.family_bands.choose_bands on kl_db (lowest validation BD-rate against plain coding)",
        "validation": [str(Path(f).resolve()) for f in args.validation],
        "codec": codecs.pop(),
        "validation_bd_rate_kl_db": choice.bd_rate,
        "grid": {k: list(v) for k, v in choice.grid.items()},
        "curves": {k: {str(q): list(v) for q, v in c.items()} for k, c in curves.items()},
        "candidates": choice.candidates,
    }
    tag = save_family(args.output, family, model, selection=selection)
    json.dump(
        {
            "family": args.output,
            "weights_tag": tag,
            "bands": choice.bands,
            "validation_bd_rate_kl_db": round(choice.bd_rate, 2),
        },
        sys.stdout,
        indent=2,
    )
    print()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
