"""The drift-logging hook: every scored row's features and score, written for drift analysis.

`DriftHook` is the interface the service calls after each batch. `MonitorDriftLog` hands the
rows to a background thread that writes them as JSON lines through `bentoml.monitor`, so
logging never delays or fails a prediction. The online Evidently detector will be another
`DriftHook`, so the service does not change when it arrives.
"""

from __future__ import annotations

import logging
import queue
import threading
from typing import Protocol

import bentoml
import numpy as np

from fraud_detection.schema import FEATURE_NAMES

logger = logging.getLogger(__name__)

#: Name of the bentoml monitor; logs land in ``<log_path>/<MONITOR_NAME>/data/data.<worker>.log``.
MONITOR_NAME = "fraud_transactions"
SCORE_COLUMN = "fraud_probability"


class DriftHook(Protocol):
    """Receives every scored batch; must never raise into, or block, the prediction path."""

    def observe(self, features: np.ndarray, scores: np.ndarray) -> None: ...

    def close(self) -> None: ...


class MonitorDriftLog:
    """Writes each row (30 features + score) to `bentoml.monitor`, one JSON line per row.

    `observe` only enqueues; a daemon thread merges whatever batches are waiting into one
    monitor record. When more than `max_pending_batches` wait (the disk cannot keep up),
    new batches are dropped from the log and counted in `dropped_rows`; predictions are
    never held back.
    """

    def __init__(self, monitor_name: str = MONITOR_NAME, max_pending_batches: int = 10_000) -> None:
        self.monitor_name = monitor_name
        self.failures = 0
        self.dropped_rows = 0
        self.written_rows = 0
        self._pending: queue.Queue[tuple[np.ndarray, np.ndarray] | None] = queue.Queue(
            maxsize=max_pending_batches
        )
        self._writer = threading.Thread(target=self._drain, name="drift-log", daemon=True)
        self._writer.start()

    def observe(self, features: np.ndarray, scores: np.ndarray) -> None:
        try:
            self._pending.put_nowait((features, scores))
        except queue.Full:
            self.dropped_rows += len(scores)
            if self.dropped_rows == len(scores):  # warn once, then count
                logger.warning("Drift log backlog full: rows are dropped from the log")

    def close(self, timeout: float = 10.0) -> None:
        """Write what is queued, then stop the writer thread."""
        self._pending.put(None)
        self._writer.join(timeout)

    def _drain(self) -> None:
        while True:
            item = self._pending.get()
            batches = [item]
            while item is not None:
                try:
                    item = self._pending.get_nowait()
                except queue.Empty:
                    break
                batches.append(item)
            rows = [b for b in batches if b is not None]
            if rows:
                self._write(
                    np.concatenate([f for f, _ in rows]), np.concatenate([s for _, s in rows])
                )
            if batches[-1] is None:
                return

    def _write(self, features: np.ndarray, scores: np.ndarray) -> None:
        try:
            with bentoml.monitor(self.monitor_name) as monitor:
                for column, name in enumerate(FEATURE_NAMES):
                    monitor.log_batch(
                        features[:, column].tolist(),
                        name=name,
                        role="feature",
                        data_type="numerical",
                    )
                monitor.log_batch(
                    scores.tolist(), name=SCORE_COLUMN, role="prediction", data_type="numerical"
                )
            self.written_rows += len(scores)
        except Exception:
            # A broken log sink must not turn a scored request into an error.
            self.failures += 1
            logger.exception(
                "Drift log failed (%d failures so far); predictions continue", self.failures
            )


class NoDriftLog:
    """The hook when drift logging is switched off (``FRAUD_DRIFT_LOG=0``)."""

    def observe(self, features: np.ndarray, scores: np.ndarray) -> None:
        return None

    def close(self) -> None:
        return None
