"""`ZeroDelayBatcher`: dynamic batching that never holds a request waiting for company.

An idle model runs what is queued at once; requests that arrive while it runs form the next
batch (Triton's dynamic batcher with a zero queue delay). Under load, batches grow by
themselves to the number of requests that arrived during one model call; a lone request, after
a burst or not, goes straight to the model.
"""

from __future__ import annotations

import asyncio
import collections
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np


class QueueTimeoutError(RuntimeError):
    """A request waited longer than the batcher's queue budget; the caller should retry."""


@dataclass
class _Pending:
    features: np.ndarray
    future: asyncio.Future[np.ndarray]
    enqueued: float


class ZeroDelayBatcher:
    """Merges concurrent `submit` calls into one call of `infer`, run on one worker thread.

    `infer` maps an ``(n, k)`` array to ``n`` scores. A batch takes queued requests in
    arrival order until it holds `max_batch_rows` rows; a larger request is split into
    chunks of that size, so no model call (and no GPU allocation) exceeds it.
    A request still queued after `queue_timeout_s` fails with `QueueTimeoutError` instead of
    running late. Use from one event loop.
    """

    def __init__(
        self,
        infer: Callable[[np.ndarray], np.ndarray],
        *,
        max_batch_rows: int,
        queue_timeout_s: float,
    ) -> None:
        if max_batch_rows < 1:
            raise ValueError(f"max_batch_rows must be >= 1, got {max_batch_rows}")
        self.infer = infer
        self.max_batch_rows = max_batch_rows
        self.queue_timeout_s = queue_timeout_s
        # One thread: model calls never overlap, and the event loop keeps parsing requests
        # while ONNX Runtime runs without the GIL.
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="model")
        self._queue: collections.deque[_Pending] = collections.deque()
        self._draining = False
        self._drain_task: asyncio.Task[None] | None = None  # a reference keeps it alive

    async def submit(self, features: np.ndarray) -> np.ndarray:
        """Scores of `features`, computed in the next batch the model runs."""
        if len(features) > self.max_batch_rows:
            step = self.max_batch_rows
            chunks = [features[i : i + step] for i in range(0, len(features), step)]
            return np.concatenate(await asyncio.gather(*(self.submit(c) for c in chunks)))
        loop = asyncio.get_running_loop()
        pending = _Pending(features, loop.create_future(), time.monotonic())
        self._queue.append(pending)
        if not self._draining:
            self._draining = True
            self._drain_task = loop.create_task(self._drain())
        return await pending.future

    async def _drain(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while self._queue:
                batch = self._next_batch()
                if not batch:
                    continue
                features = (
                    batch[0].features
                    if len(batch) == 1
                    else np.concatenate([p.features for p in batch])
                )
                try:
                    scores = await loop.run_in_executor(self._executor, self.infer, features)
                except Exception as e:  # the model failed: every request in the batch learns why
                    for p in batch:
                        if not p.future.done():
                            p.future.set_exception(e)
                    continue
                start = 0
                for p in batch:
                    end = start + len(p.features)
                    if not p.future.done():  # its client may have gone away
                        p.future.set_result(scores[start:end])
                    start = end
        finally:
            self._draining = False

    def _next_batch(self) -> list[_Pending]:
        deadline = time.monotonic() - self.queue_timeout_s
        batch: list[_Pending] = []
        rows = 0
        while self._queue:
            head = self._queue[0]
            if head.future.done():  # cancelled while queued
                self._queue.popleft()
                continue
            if head.enqueued < deadline:
                self._queue.popleft()
                head.future.set_exception(
                    QueueTimeoutError(
                        f"queued {time.monotonic() - head.enqueued:.3f}s, over the "
                        f"{self.queue_timeout_s:.3f}s budget (FRAUD_MAX_LATENCY_MS)"
                    )
                )
                continue
            if batch and rows + len(head.features) > self.max_batch_rows:
                break
            batch.append(self._queue.popleft())
            rows += len(head.features)
        return batch

    def close(self) -> None:
        """Stop the worker thread once the running batch (if any) is done."""
        self._executor.shutdown(wait=True)
