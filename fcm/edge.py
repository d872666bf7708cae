"""The edge half on one image: preprocessing and the front, timed, with the thread count pinned.

Its own module so that what needs only the front (offline RDO maps, the service's limits, sweeps) does not import the
coding pipeline (:mod:`fcm.pipeline` re-exports both names).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch

from fcm.models.base import Features, SplitModel
from fcm.numerics import DEFAULT_TORCH_THREADS
from fcm.numerics import torch_threads as pinned_threads


@dataclass(frozen=True)
class EdgeFeatures:
    """The edge half's output for one image, computed once and codable at any number of operating points."""

    features: Features
    input_size: tuple[int, int]
    front_s: float


def run_front(image: np.ndarray, model: SplitModel, torch_threads: int | None = DEFAULT_TORCH_THREADS) -> EdgeFeatures:
    """Run the edge half (preprocessing and front) on one RGB ``uint8`` image with ``torch_threads`` threads."""
    t0 = time.perf_counter()
    # inference: the models' halves are differentiable, coding needs no graph
    with torch.no_grad(), pinned_threads(torch_threads):
        features = model.front(model.prepare(image))
    features.check(model.spec)
    return EdgeFeatures(features, (int(image.shape[0]), int(image.shape[1])), time.perf_counter() - t0)
