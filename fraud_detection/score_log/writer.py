"""`ScoreLogWriter`: writes scored transactions to the database off the request path.

The request path only appends a batch of columns to a bounded in-memory queue (`submit`, no
I/O, no lock held for long). A writer thread turns queued batches into rows and inserts them
every `flush_interval_s`, in one transaction. When the database is slow or down, batches stay
queued and are retried; once the queue holds `max_pending_rows`, new rows are dropped and
counted instead of delaying a prediction.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Any

import numpy as np

from fraud_detection.score_log.database import DatabaseUnavailable
from fraud_detection.score_log.database import ScoreDatabase
from fraud_detection.score_log.database import ScoreRow

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ScoredBatch:
    """The scores of one request, as columns (rows are built on the writer thread)."""

    transaction_ids: list[str]
    scored_at: float
    model: str
    model_version: str
    probabilities: np.ndarray
    is_fraud: np.ndarray
    served_by_challenger: np.ndarray | None
    amounts: np.ndarray
    challenger: str | None = None
    challenger_version: str | None = None
    challenger_probabilities: np.ndarray | None = None  # NaN: the challenger did not run

    def __len__(self) -> int:
        return len(self.transaction_ids)

    def rows(self) -> list[ScoreRow]:
        """The ``scores`` rows of this batch."""
        n = len(self)
        served = (
            ["champion"] * n
            if self.served_by_challenger is None
            else np.where(self.served_by_challenger, "challenger", "champion").tolist()
        )
        if self.challenger_probabilities is None:
            challenger_p: list[float | None] = [None] * n
            challenger = [None] * n
            version = [None] * n
        else:
            ran = ~np.isnan(self.challenger_probabilities)
            challenger_p = [
                p if r else None
                for p, r in zip(self.challenger_probabilities.tolist(), ran.tolist(), strict=True)
            ]
            challenger = [self.challenger if r else None for r in ran.tolist()]
            version = [self.challenger_version if r else None for r in ran.tolist()]
        return list(
            zip(
                self.transaction_ids,
                [self.scored_at] * n,
                [self.model] * n,
                [self.model_version] * n,
                self.probabilities.tolist(),
                self.is_fraud.tolist(),
                served,
                self.amounts.tolist(),
                challenger,
                version,
                challenger_p,
                strict=True,
            )
        )


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
    """Queues `ScoredBatch` objects and inserts them from one background thread."""

    def __init__(
        self,
        database: ScoreDatabase,
        *,
        max_pending_rows: int = 100_000,
        flush_interval_s: float = 0.5,
        retry_after_s: float = 5.0,
        counters: Any = None,
    ) -> None:
        self.database = database
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
        n = len(batch)
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
        except DatabaseUnavailable as e:
            self._failed(e)
            return
        except Exception as e:  # never let a bad database kill the thread
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
        rows = [row for batch in batches for row in batch.rows()]
        try:
            self.database.insert_scores(rows)
        except Exception as e:
            self._requeue(batches)
            self._failed(e)
            return 0
        with self._lock:
            self._pending -= len(rows)
            self.stats.pending_rows = self._pending
        self.stats.written_rows += len(rows)
        self.stats.last_write_at = time.time()
        if self.stats.last_error is not None:
            logger.info("Score log writes to %s resumed", self.database.url)
        self.stats.last_error = None
        if self._counters is not None:
            self._counters.written.inc(len(rows))
        return len(rows)

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
