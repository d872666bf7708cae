"""MOTA / IDF1 of the uncompressed detector on labelled clips: the reference a tracking video sweep's curves approach
(``configs/video_tracking.yaml``; video sweeps score labelled clips against ground truth, so they carry no
uncompressed point of their own). Prints JSON: per clip and the mean over clips (what a sweep's point averages).

    python tools/uncompressed_tracking.py shapes:11:40 shapes:12:40 shapes:13:40
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path
from types import SimpleNamespace


def main() -> None:
    import torch

    from fcm.eval.evaluators import build_evaluator
    from fcm.models import get_model
    from fcm.video.sources import open_source

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("sequences", nargs="+", help="labelled clips, shapes:SEED[:FRAMES[:SIZE]]")
    parser.add_argument("--model", default="faster_rcnn_lite0_fpn", help="a detector (default faster_rcnn_lite0_fpn)")
    args = parser.parse_args()
    model = get_model(args.model)
    per_clip = {}
    with tempfile.TemporaryDirectory() as tmp:
        for seq in args.sequences:
            src = open_source(seq, None, None)
            path = Path(tmp) / "gt.json"
            path.write_text(json.dumps(src.ground_truth()))
            evaluator = build_evaluator("mot", model.task, "detection", annotations=path)
            with torch.no_grad():
                for i, frame in enumerate(src.frames()):
                    evaluator.process(
                        SimpleNamespace(id=f"{seq}#{i}", image_id=i + 1), model.full(model.prepare(frame))
                    )
            per_clip[seq] = {"frames": i + 1, **evaluator.evaluate()}
    frames = sum(c["frames"] for c in per_clip.values())
    names = [k for k in next(iter(per_clip.values())) if k != "frames"]
    mean = {k: sum(c[k] * c["frames"] for c in per_clip.values()) / frames for k in names}
    print(json.dumps({"model": args.model, "clips": per_clip, "frame_weighted_mean": mean}, indent=2))


if __name__ == "__main__":
    main()
