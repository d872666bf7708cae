"""What is installed: ``fcm models`` and ``codecs``."""

from __future__ import annotations

import argparse
from typing import Any

from fcm.errors import FcmError


def cmd_models(args: argparse.Namespace) -> dict[str, Any]:
    from fcm.models import MODELS, get_model

    if args.nodes:
        from fcm.models.fx_split import node_names

        entry = MODELS.get(args.nodes)
        if not entry.any_node:
            raise FcmError(f"model {args.nodes!r} has named splits only: {', '.join(entry.splits)}")
        import torch

        net = getattr(get_model(args.nodes), "net", None)
        if not isinstance(net, torch.nn.Module):
            raise FcmError(f"model {args.nodes!r} exposes no torch module whose graph nodes could be listed")
        return {"model": args.nodes, "nodes": node_names(net)}
    out = {}
    for name in MODELS.names():
        entry = MODELS.get(name)
        out[name] = {
            "task": entry.task,
            "description": entry.description,
            "default_split": entry.default_split,
            "splits": {
                s.split: [{"name": t.name, "channels": t.channels, "stride": t.stride} for t in s.tensors]
                for s in entry.split_specs()
            },
            "any_graph_node": entry.any_node,
        }
    return out


def cmd_codecs(args: argparse.Namespace) -> dict[str, Any]:
    from fcm.codecs import codec_names, get_codec

    out = {}
    for name in codec_names():
        c = get_codec(name)
        out[name] = {
            "bit_depths": list(c.bit_depths),
            "qp_range": list(c.qp_range),
            "lossless": c.lossless,
            "block_qp_offsets": c.supports_block_qp_offsets,
        }
    return out


def register(sub: Any) -> None:
    """Add ``models``, ``codecs`` to the ``fcm`` subcommands."""
    p = sub.add_parser("models", help="list models and their split points")
    p.add_argument("--nodes", metavar="MODEL", default=None, help="list every graph node of MODEL usable as a split")
    p.set_defaults(func=cmd_models)

    p = sub.add_parser("codecs", help="list inner codecs")
    p.set_defaults(func=cmd_codecs)
