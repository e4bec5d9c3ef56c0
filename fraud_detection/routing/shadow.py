"""`ShadowScorer`: the challenger scores a share of traffic on its own thread, off the response.

A request's scored batch, with the features of its shadow-sampled rows, is queued here
instead of going straight to the score log. The thread scores the queued rows with the
challenger in one call, fills in their challenger probabilities and hands the batch to the
score log. The queue is bounded: when the challenger falls behind, batches go to the log
without a challenger score and are counted as skipped, so the shadow never slows serving.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from fraud_detection.score_log.writer import ScoredBatch

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class _ShadowJob:
    batch: ScoredBatch
    rows: np.ndarray  # indices of the sampled rows in the batch
    features: np.ndarray  # their features


@dataclass
class ShadowStats:
    scored_rows: int = 0
    skipped_rows: int = 0
    failed_calls: int = 0
    last_error: str | None = None


class ShadowScorer:
    """Scores sampled rows with `predict` (the challenger) and passes batches to `publish`."""

    def __init__(
        self,
        predict: Callable[[np.ndarray], np.ndarray],
        publish: Callable[[ScoredBatch], None],
        *,
        max_pending_rows: int = 4096,
        max_call_rows: int = 1024,
    ) -> None:
        self.predict = predict
        self.publish = publish
        self.max_pending_rows = max_pending_rows
        self.max_call_rows = max_call_rows
        self.stats = ShadowStats()
        self._queue: deque[_ShadowJob] = deque()
        self._pending = 0
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="shadow", daemon=True)
        self._thread.start()

    def submit(self, batch: ScoredBatch, rows: np.ndarray, features: np.ndarray) -> None:
        """Queue `batch` with its sampled `rows` (and their `features`) for the challenger."""
        with self._lock:
            if self._pending + len(rows) > self.max_pending_rows:
                self.stats.skipped_rows += len(rows)
                full = True
            else:
                self._queue.append(_ShadowJob(batch, rows, features))
                self._pending += len(rows)
                full = False
        if full:
            self.publish(batch)
        else:
            self._wake.set()

    def _take(self) -> list[_ShadowJob]:
        jobs: list[_ShadowJob] = []
        rows = 0
        with self._lock:
            while self._queue and (
                not jobs or rows + len(self._queue[0].rows) <= self.max_call_rows
            ):
                job = self._queue.popleft()
                jobs.append(job)
                rows += len(job.rows)
            self._pending -= rows
        return jobs

    def _run(self) -> None:
        while True:
            jobs = self._take()
            if not jobs:
                if self._stop.is_set():
                    return
                self._wake.wait(0.5)
                self._wake.clear()
                continue
            self._score(jobs)

    def _score(self, jobs: list[_ShadowJob]) -> None:
        features = np.concatenate([job.features for job in jobs])
        try:
            scores = self.predict(features)
        except Exception as e:  # a broken challenger must not lose the champion's log rows
            self.stats.failed_calls += 1
            if self.stats.last_error is None:
                logger.warning("Challenger scoring failed (champion unaffected): %s", e)
            self.stats.last_error = str(e)
            for job in jobs:
                self.publish(job.batch)
            return
        self.stats.scored_rows += len(features)
        start = 0
        for job in jobs:
            end = start + len(job.rows)
            challenger_p = (
                np.full(len(job.batch.transaction_ids), np.nan)
                if job.batch.challenger_probabilities is None
                else job.batch.challenger_probabilities.copy()
            )
            challenger_p[job.rows] = scores[start:end]
            self.publish(job.batch._replace(challenger_probabilities=challenger_p))
            start = end

    def close(self, timeout_s: float = 10.0) -> None:
        """Score what is queued, then stop the thread."""
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout_s)
