"""Micro-batching of back-half calls: streams for the same served model that arrive within a short window run the
cloud half as one batch.

A request decodes its stream up to the split on its own (codec, unpack, post-wrapper), then hands its features to a
:class:`BackHalfBatcher`. The first features for a model open a window of ``max_wait_s`` (the latency cap: no request
waits longer than that for company); the window closes early once ``max_batch`` features are waiting, or as soon as
no other request is still on its way (decoding its stream up to the split: see :meth:`BackHalfBatcher.arriving`), so
a lone request never waits.

Features are batched only with others of the same tensor shapes and the same side information the back half reads,
so every stream gets exactly the computation its own shapes call for. Which side information must match is the
model's to say (:attr:`~fcm.models.SplitModel.back_meta`): a classifier reads none, so streams of any input size
share a batch; a detector reads its image sizes.

A batched convolution may round differently from a single one (BLAS blocks the work by batch size): outputs agree
with an unbatched decode to float precision, not bit for bit. Leave batching off (``max_batch`` 1) where bit-exact
answers across load levels matter more than throughput.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Hashable, Iterator
from dataclasses import dataclass, field
from typing import Any

import torch

from fcm.models import Features

#: runs ``fn(items)`` off the event loop (in a worker thread, under the server's concurrency gate)
Runner = Callable[[Callable[[], list[Any]]], Awaitable[list[Any]]]


def signature(features: Features, meta_keys: tuple[str, ...] | None = None) -> Hashable:
    """What must be equal for two streams' features to share a batch: tensor names and shapes, and the side
    information the back half reads (``meta_keys``, a model's ``back_meta``; ``None``: all of it)."""
    shapes = tuple((name, tuple(t.shape[1:]), str(t.dtype)) for name, t in features.tensors.items())
    keys = sorted(features.meta) if meta_keys is None else sorted(meta_keys)
    meta = tuple((k, tuple(features.meta.get(k, ()))) for k in keys)
    return shapes, meta


def stack(batch: list[Features]) -> Features:
    """One :class:`Features` holding every item of ``batch`` (same signature) along the batch dimension."""
    if len(batch) == 1:
        return batch[0]
    tensors = type(batch[0].tensors)((name, torch.cat([f.tensors[name] for f in batch])) for name in batch[0].tensors)
    return Features(tensors, dict(batch[0].meta))


def unstack(output: Any, sizes: list[int]) -> list[Any]:
    """Split a back half's batched output into one output per item (``sizes``: each item's batch size), in the form
    the model's ``describe`` takes: a tensor's rows, or a list of per-image records (detections)."""
    if isinstance(output, torch.Tensor):
        return list(output.split(sizes))
    if isinstance(output, (list, tuple)):
        if len(output) != sum(sizes):
            raise ValueError(f"the back half returned {len(output)} records for a batch of {sum(sizes)}")
        parts, start = [], 0
        for n in sizes:
            parts.append(list(output[start : start + n]))
            start += n
        return parts
    raise TypeError(f"cannot split a batched back-half output of type {type(output).__name__}")


@dataclass
class _Window:
    items: list[tuple[Features, asyncio.Future[Any]]] = field(default_factory=list)
    full: asyncio.Event = field(default_factory=asyncio.Event)


class BackHalfBatcher:
    """Collects back-half calls per model for up to ``max_wait_s`` or ``max_batch`` calls, then runs them batched.

    ``process(model_key, features)`` (called in a worker thread through ``runner``) must return one result per
    features, in order: an output, or an exception to raise in that caller alone.
    """

    def __init__(
        self,
        max_batch: int,
        max_wait_s: float,
        process: Callable[[Hashable, list[Features]], list[Any]],
        runner: Runner,
    ) -> None:
        if max_batch < 1 or max_wait_s < 0:
            raise ValueError("max_batch must be positive and max_wait_s non-negative")
        self.max_batch = max_batch
        self.max_wait_s = max_wait_s
        self._process = process
        self._run = runner
        self._windows: dict[Hashable, _Window] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._arriving = 0
        #: sizes of the batches run so far (for metrics and tests)
        self.on_batch: Callable[[int], None] = lambda n: None

    @contextlib.contextmanager
    def arriving(self) -> Iterator[None]:
        """Around a request's work before :meth:`submit` (decoding up to the split): open windows wait for such
        requests (up to the cap) and close at once when there are none."""
        self._arriving += 1
        try:
            yield
        finally:
            self._arriving -= 1
            if self._arriving == 0:
                for window in self._windows.values():
                    window.full.set()

    async def submit(self, model_key: Hashable, features: Features, meta_keys: tuple[str, ...] | None = None) -> Any:
        """The back half's result for ``features`` (or its exception), once its batch has run; ``meta_keys``: the
        side information the model's back half reads (see :func:`signature`)."""
        key = (model_key, signature(features, meta_keys))
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        window = self._windows.get(key)
        if window is None:
            window = self._windows[key] = _Window()
            task = asyncio.get_running_loop().create_task(self._close_later(key, window))
            self._tasks.add(task)  # the loop keeps only weak references to tasks
            task.add_done_callback(self._tasks.discard)
        window.items.append((features, future))
        if len(window.items) >= self.max_batch or self._arriving == 0:
            window.full.set()
        return await future

    async def _close_later(self, key: tuple[Hashable, Hashable], window: _Window) -> None:
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(window.full.wait(), self.max_wait_s)
        if self._windows.get(key) is window:
            del self._windows[key]  # later arrivals open a new window while this one runs
        items = window.items
        try:
            for start in range(0, len(items), self.max_batch):
                await self._run_batch(key[0], items[start : start + self.max_batch])
        finally:  # nothing a batch does may leave a caller waiting forever
            for _, future in items:
                if not future.done():
                    future.set_exception(RuntimeError("the back-half batch did not complete"))

    async def _run_batch(self, model_key: Hashable, items: list[tuple[Features, asyncio.Future[Any]]]) -> None:
        batch = [f for f, _ in items]
        try:
            results = await self._run(lambda: self._process(model_key, batch))
            self.on_batch(len(batch))
        except Exception as e:
            if len(items) == 1:
                results = [e]
            else:  # one stream's features must not fail the others: each runs alone and keeps its own error
                for item in items:
                    await self._run_batch(model_key, [item])
                return
        for (_, future), result in zip(items, results, strict=True):
            if future.done():  # the caller went away
                continue
            if isinstance(result, BaseException):
                future.set_exception(result)
            else:
                future.set_result(result)
