"""Learning from data: ``fcm train`` (wrappers) and ``rdo-weights`` (fixed wrapper-aware maps)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from fcm.cli.args import add_threads_arg, positive
from fcm.errors import FcmError


def cmd_train(args: argparse.Namespace) -> dict[str, Any]:
    from fcm.train.config import TrainConfig
    from fcm.train.loop import train

    overrides: dict[str, Any] = {"checkpoint": args.output} if args.output else {}
    if args.steps is not None:
        overrides["steps"] = args.steps
    if args.torch_threads is not None:
        overrides["torch_threads"] = args.torch_threads
    cfg = TrainConfig.from_yaml(args.config, overrides)
    return train(cfg, progress=False if args.no_progress else None).summary()


def cmd_rdo_weights(args: argparse.Namespace) -> dict[str, Any]:
    import numpy as np

    from fcm.rdo.config import RdoWeightsConfig

    if Path(args.output).exists() and not args.overwrite:  # before any work: a remake never replaces a shipped map
        raise FcmError(f"{args.output} exists: pass --overwrite to replace it, or write elsewhere (e.g. under runs/)")
    cfg = RdoWeightsConfig.from_yaml(args.config)
    from dataclasses import replace

    if args.limit is not None:
        cfg = replace(cfg, limit=args.limit)
    if args.torch_threads is not None:
        cfg = replace(cfg, torch_threads=args.torch_threads)
    fixed = cfg.run(progress=not args.no_progress)
    path = fixed.save(args.output)
    ident = fixed.identity
    return {
        "output": str(path),
        "model": ident["model"],
        "split": ident["split"],
        "wrapper": ident["wrapper"],
        "target": ident["target"],
        "frames": ident["frames"],
        "frame": f"{ident['layout']['frame_width']}x{ident['layout']['frame_height']}",
        "weight_percentiles": {
            str(q): round(float(v), 4)
            for q, v in zip((1, 50, 99), np.percentile(fixed.weights, [1, 50, 99]), strict=True)
        },
    }


def register(sub: Any) -> None:
    """Add ``train``, ``rdo-weights`` to the ``fcm`` subcommands."""
    p = sub.add_parser("train", help="train (or resume) a learned wrapper end to end through a codec, from YAML")
    p.add_argument("config", help="training YAML (e.g. configs/train_wrapped.yaml)")
    p.add_argument("--steps", type=positive, default=None, help="override the config's step count")
    p.add_argument("--output", default=None, help="override the config's checkpoint path")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_threads_arg(p, from_config=True)
    p.set_defaults(func=cmd_train, resumable=True, config_threads=True)

    p = sub.add_parser("rdo-weights", help="average wrapper-aware weights over a dataset into a fixed map (.npz)")
    p.add_argument("config", help="rdo-weights YAML (e.g. configs/rdo_weights.yaml)")
    p.add_argument("-o", "--output", required=True, help="the .npz map to write (e.g. runs/rdo/map.npz)")
    p.add_argument("--overwrite", action="store_true", help="replace --output if it exists")
    p.add_argument("--limit", type=positive, default=None, help="use only the first N inputs")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_threads_arg(p, from_config=True)
    p.set_defaults(func=cmd_rdo_weights, config_threads=True)
