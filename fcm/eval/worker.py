"""One process's measuring: the model, dataset, evaluator and pipelines a sweep's worker holds, and the records it
emits per input (:class:`Worker`). The local pool (:mod:`fcm.eval.sweep`) and the Ray actors
(:mod:`fcm.eval.ray_backend`) both run it; neither imports the other for it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from fcm.edge import EdgeFeatures
from fcm.errors import ConfigError
from fcm.eval.config import SweepConfig
from fcm.eval.pipelines import InputContext, Measurement
from fcm.models.cost import ComputeCost
from fcm.numerics import torch_threads

#: the (pipeline, codec, qp) of the uncompressed reference inference
REFERENCE = ("uncompressed", "none", 0)
#: the ``pipeline`` of the record that says an input was skipped (its image could not be read), and why
SKIPPED = "skipped"


@dataclass(frozen=True)
class PointKey:
    pipeline: str
    codec: str
    qp: int


class Worker:
    """Everything one process needs to measure points: model, dataset, evaluator, codecs."""

    def __init__(self, cfg: SweepConfig) -> None:
        from fcm.data import build_dataset
        from fcm.eval.evaluators import build_evaluator
        from fcm.models import get_model

        self.cfg = cfg
        self.model = get_model(cfg.model, cfg.split, cfg.weights, cfg.sha256, **cfg.model_options)
        self.dataset = build_dataset(cfg.dataset, self.model.categories)
        self.evaluator = build_evaluator(
            cfg.evaluator,
            self.model.task,
            self.dataset.task,
            annotations=self.dataset.annotations,
            where=f"dataset {self.dataset.name!r}",
        )
        self.pipelines = {p.label: p for p in cfg.pipelines}
        #: MACs and parameters counted once per (what, input size): they depend on nothing else
        self._costs: dict[Any, ComputeCost] = {}
        self._last_edge: tuple[int, EdgeFeatures] | None = None

    def run_input(self, index: int, keys: list[PointKey], emit) -> None:
        """Measure ``keys`` on input ``index``; call ``emit(record)`` as each one finishes.

        An unreadable image raises a ConfigError, or with ``skip_unreadable`` emits one skip record instead.
        """
        sample = self.dataset[index]
        try:
            image = sample.image()
        except (OSError, ValueError) as e:  # PIL's errors are OSErrors, fcm's ConfigError a ValueError
            reason = " ".join(str(e).split())  # one line
            if not self.cfg.skip_unreadable:
                raise ConfigError(
                    f"input {sample.id}: {reason}; to leave unreadable inputs out of the sweep, set "
                    "skip_unreadable: true in the config"
                ) from e
            emit({"pipeline": SKIPPED, "codec": REFERENCE[1], "qp": REFERENCE[2], "input": sample.id, "reason": reason})
            return
        from fcm.codecs import codec_threads

        # the config's threads while measuring, in whichever process does it; the caller's settings come back after
        with torch_threads(self.cfg.torch_threads), codec_threads(self.cfg.codec_threads):
            self._measure(index, sample, image, keys, emit)

    def _edge_of(self, index: int) -> EdgeFeatures:
        """The front's output on input ``index`` (for pipelines reusing another input's work, e.g. a GOP key)."""
        from fcm.edge import run_front

        if self._last_edge is None or self._last_edge[0] != index:
            self._last_edge = (index, run_front(self.dataset[index].image(), self.model, torch_threads=None))
        return self._last_edge[1]

    def _measure(self, index: int, sample: Any, image: np.ndarray, keys: list[PointKey], emit) -> None:
        self.evaluator.reset()  # records go to ``emit``; the evaluator keeps none across inputs
        pixels = int(image.shape[0] * image.shape[1])
        t0 = time.perf_counter()
        with torch.no_grad():
            reference = self.model.full(self.model.prepare(image))
        ref_time = time.perf_counter() - t0
        # the front runs once per input, however many operating points of however many pipelines use it
        ctx = InputContext(image, self.model, index=index, load_edge=self._edge_of, _costs=self._costs)
        for key in keys:
            if (key.pipeline, key.codec, key.qp) == REFERENCE:
                m = Measurement(reference, 0, 0, {"infer": ref_time})
            else:
                pipeline = self.pipelines[key.pipeline]
                m = pipeline.measure(ctx, key.codec, self.cfg.codec_params(key.qp), self.cfg.bit_depth)
            evaluation = self.evaluator.process(sample, m.output, reference)
            emit(
                {
                    "pipeline": key.pipeline,
                    "codec": key.codec,
                    "qp": key.qp,
                    "input": sample.id,
                    "bits": m.bits,
                    "payload_bits": m.payload_bits,
                    "pixels": pixels,
                    "times": {k: round(v, 6) for k, v in m.times.items()},
                    "edge": {"macs": m.edge_macs, "params": m.edge_params},  # what the edge computes before coding
                    "eval": evaluation,
                    **({"feature_psnr": round(m.feature_psnr, 6)} if m.feature_psnr is not None else {}),
                }
            )
