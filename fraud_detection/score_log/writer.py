"""`ScoreLogWriter`: writes scored transactions to the database off the request path.

The request path only appends a batch of columns to a bounded in-memory queue (`submit`, no
I/O, no lock held for long). A writer thread turns queued batches into rows and inserts them
every `flush_interval_s`, in one transaction. When the database is slow or down, batches stay
queued and are retried; once the queue holds `max_pending_rows`, new rows are dropped and
counted instead of delaying a prediction.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from typing import NamedTuple

import numpy as np

from fraud_detection.score_log.database import BY_CHALLENGER
from fraud_detection.score_log.database import IS_FRAUD
from fraud_detection.score_log.database import ScoreDatabase
from fraud_detection.score_log.database import ScoreRow
from fraud_detection.score_log.database import model_id

logger = logging.getLogger(__name__)


class ScoredBatch(NamedTuple):
    """The scores of one request, as columns: all the request path builds (a tuple, no rows)."""

    transaction_ids: list[str]
    scored_at: float
    probabilities: np.ndarray  # the champion's
    is_fraud: np.ndarray  # the decision served
    by_challenger: np.ndarray | None  # True: the canary's challenger decided
    amounts: np.ndarray
    challenger_probabilities: np.ndarray | None = None  # NaN: the challenger did not run


def score_rows(
    batches: list[ScoredBatch], champion_id: int, challenger_id: int | None
) -> tuple[Iterator[ScoreRow], int]:
    """The ``scores`` rows of `batches` (an iterator, built column by column) and their count."""
    ids = [i for b in batches for i in b.transaction_ids]
    n = len(ids)
    scored_at = np.repeat([b.scored_at for b in batches], [len(b.transaction_ids) for b in batches])
    flags = np.concatenate([b.is_fraud for b in batches]).astype(np.int64) * IS_FRAUD
    if any(b.by_challenger is not None for b in batches):
        flags += BY_CHALLENGER * np.concatenate(
            [
                np.zeros(len(b.transaction_ids), bool)
                if b.by_challenger is None
                else b.by_challenger
                for b in batches
            ]
        )
    challenger_p: Iterator[float | None] = itertools.repeat(None, n)
    challenger_ids: Iterator[int | None] = itertools.repeat(None, n)
    if any(b.challenger_probabilities is not None for b in batches):
        values = np.concatenate(
            [
                np.full(len(b.transaction_ids), np.nan)
                if b.challenger_probabilities is None
                else b.challenger_probabilities
                for b in batches
            ]
        ).tolist()
        challenger_p = iter([None if v != v else v for v in values])  # NaN: did not run
        challenger_ids = iter([None if v != v else challenger_id for v in values])
    rows = zip(
        ids,
        scored_at.tolist(),
        itertools.repeat(champion_id, n),
        np.concatenate([b.probabilities for b in batches]).tolist(),
        flags.tolist(),
        np.concatenate([b.amounts for b in batches]).tolist(),
        challenger_ids,
        challenger_p,
        strict=True,
    )
    return rows, n


@dataclass
class WriterStats:
    """What the writer has done since the worker started (also Prometheus counters)."""

    written_rows: int = 0
    dropped_rows: int = 0
    failed_writes: int = 0
    pending_rows: int = 0
    last_error: str | None = None
    last_error_at: float | None = None
    last_write_at: float | None = None
    schema_ready: bool = False

    def as_dict(self) -> dict[str, Any]:
        return {
            "written_rows": self.written_rows,
            "dropped_rows": self.dropped_rows,
            "failed_writes": self.failed_writes,
            "pending_rows": self.pending_rows,
            "last_error": self.last_error,
            "last_error_at": self.last_error_at,
            "last_write_at": self.last_write_at,
        }


class ScoreLogWriter:
    """Queues `ScoredBatch` objects and inserts them from one background thread.

    `champion` and `challenger` are the model tags the rows are scored by.
    """

    def __init__(
        self,
        database: ScoreDatabase,
        champion: str,
        challenger: str | None = None,
        *,
        max_pending_rows: int = 100_000,
        flush_interval_s: float = 0.5,
        retry_after_s: float = 5.0,
        counters: Any = None,
    ) -> None:
        self.database = database
        self.models = [champion] if challenger is None else [champion, challenger]
        self._champion_id = model_id(champion)
        self._challenger_id = None if challenger is None else model_id(challenger)
        self.max_pending_rows = max_pending_rows
        self.flush_interval_s = flush_interval_s
        self.retry_after_s = retry_after_s
        self.stats = WriterStats()
        self._counters = counters
        self._queue: deque[ScoredBatch] = deque()
        self._pending = 0
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        # Migrate at start-up, so /performance works from the first request; a database that
        # is down is retried from the thread while predictions go on.
        self._ensure_schema()
        self._thread = threading.Thread(target=self._run, name="score-log", daemon=True)
        self._thread.start()

    def submit(self, batch: ScoredBatch) -> None:
        """Queue a batch for writing; drops it (and counts it) when the queue is full."""
        n = len(batch.transaction_ids)
        with self._lock:
            if self._pending + n > self.max_pending_rows:
                self.stats.dropped_rows += n
                if self._counters is not None:
                    self._counters.dropped.inc(n)
                return
            self._queue.append(batch)
            self._pending += n

    def _take(self) -> list[ScoredBatch]:
        with self._lock:
            batches = list(self._queue)
            self._queue.clear()
            return batches

    def _requeue(self, batches: list[ScoredBatch]) -> None:
        with self._lock:
            self._queue.extendleft(reversed(batches))

    def _run(self) -> None:
        while not self._stop.is_set():
            self._ensure_schema()
            self.flush()
            delay = self.flush_interval_s if self.stats.last_error is None else self.retry_after_s
            self._wake.wait(delay)
            self._wake.clear()

    def _ensure_schema(self) -> None:
        if self.stats.schema_ready:
            return
        try:
            found = self.database.migrate()
            self.database.register_models(self.models)
        except Exception as e:  # DatabaseUnavailable, or anything: never kill the thread
            self._failed(e)
            return
        self.stats.schema_ready = True
        logger.info("Score log schema ready in %s (was version %d)", self.database.url, found)

    def flush(self) -> int:
        """Write everything queued now; returns the rows written (0 on failure, kept queued)."""
        if not self.stats.schema_ready:
            return 0
        batches = self._take()
        if not batches:
            return 0
        rows, n = score_rows(batches, self._champion_id, self._challenger_id)
        try:
            self.database.insert_scores(rows, n)
        except Exception as e:
            self._requeue(batches)
            self._failed(e)
            return 0
        with self._lock:
            self._pending -= n
            self.stats.pending_rows = self._pending
        self.stats.written_rows += n
        self.stats.last_write_at = time.time()
        if self.stats.last_error is not None:
            logger.info("Score log writes to %s resumed", self.database.url)
        self.stats.last_error = None
        if self._counters is not None:
            self._counters.written.inc(n)
        return n

    def _failed(self, error: Exception) -> None:
        if self.stats.last_error is None:
            logger.warning("Score log write failed (predictions continue): %s", error)
        self.stats.failed_writes += 1
        self.stats.last_error = str(error)
        self.stats.last_error_at = time.time()
        with self._lock:
            self.stats.pending_rows = self._pending
        if self._counters is not None:
            self._counters.failures.inc()

    def close(self, timeout_s: float = 10.0) -> None:
        """Stop the thread after a last write of what is queued."""
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout_s)
        self._ensure_schema()
        self.flush()
