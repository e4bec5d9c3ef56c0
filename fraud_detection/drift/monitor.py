"""`DriftMonitor`: the online drift hook. Collects rows per worker; a thread judges drift.

A computation is `DriftDetector.summarize`: Evidently's stattest numbers without its report,
about 20 ms for a 5,000-row window on one core (``python -m benchmarks.drift``), so a daemon
thread runs it every `DriftConfig.every_rows` rows or `every_seconds`, and a verdict follows
shifted traffic within seconds. The Evidently report (plotly figures, seconds of CPU) is never
built here: the thread publishes the summary and the window it judged, and ``/drift/report``
builds the report from that window when someone asks. `DriftConfig.max_cpu_share` still caps
the thread's share of the worker's time. `observe` on the request path is one deque append
(the thread moves the batches into the window, all of them in one copy); it never raises.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from pathlib import Path

import numpy as np

from fraud_detection.drift.config import DriftConfig
from fraud_detection.drift.detector import DriftDetector
from fraud_detection.drift.metrics import drift_metrics
from fraud_detection.drift.results_dir import ResultsDirectory
from fraud_detection.drift.summary import DriftSummary
from fraud_detection.drift.window import DriftWindow
from fraud_detection.drift_log import current_worker

logger = logging.getLogger(__name__)


class DriftMonitor:
    """A `DriftHook` that keeps a window of recent rows and computes drift in the background.

    Each computation's summary sets the Prometheus gauges and is written, with the window it
    judged, to `results`. A failing computation (or write) is logged and counted in
    ``fraud_drift_computation_failures_total``; the worker goes on serving and retries at the
    next trigger.
    """

    def __init__(
        self,
        detector: DriftDetector,
        results: ResultsDirectory,
        *,
        worker: int = 1,
        poll_seconds: float = 0.25,
    ) -> None:
        self.detector = detector
        self.config = detector.config
        self.results = results
        self.worker = worker
        self.window = DriftWindow(self.config.window_rows)
        try:  # a restarted worker must not serve its predecessor's verdict (emptyDir survives)
            results.clear(worker)
        except OSError:
            logger.warning("Could not remove old drift results of worker %d", worker)
        self.failures = 0
        self.runs = 0
        self.last_summary: DriftSummary | None = None
        self.observe_errors = 0
        self._arrived: collections.deque[tuple[np.ndarray, np.ndarray]] = collections.deque()
        self._poll_seconds = poll_seconds
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="drift-detector", daemon=True)
        self._thread.start()

    @classmethod
    def for_model(
        cls, model_dir: str | Path, model: str, config: DriftConfig, results_dir: str | Path
    ) -> DriftMonitor:
        """The monitor of the stored model at `model_dir`, in this worker."""
        return cls(
            DriftDetector.for_model(model_dir, config, model=model),
            ResultsDirectory(results_dir),
            worker=current_worker(),
        )

    def observe(self, features: np.ndarray, scores: np.ndarray) -> None:
        # deque.append is atomic under the GIL: the request path takes no lock and copies
        # nothing; the thread empties the deque every `poll_seconds`.
        self._arrived.append((features, scores))

    def collect(self) -> None:
        """Move the batches observed so far into the window, as one block."""
        batches = []
        while self._arrived:
            batches.append(self._arrived.popleft())
        if not batches:
            return
        try:
            self.window.append(
                np.concatenate([features for features, _ in batches]),
                np.concatenate([scores for _, scores in batches]),
            )
        except Exception:  # one malformed batch: keep the others, count it
            for features, scores in batches:
                try:
                    self.window.append(features, scores)
                except Exception:
                    self.observe_errors += 1
                    if self.observe_errors == 1:
                        logger.exception(
                            "Drift window refused a batch; counting further ones quietly"
                        )

    def close(self, timeout: float = 5.0) -> None:
        """Stop the background thread (a computation under way finishes first)."""
        self._stop.set()
        self._thread.join(timeout)

    def _loop(self) -> None:
        last_seen = 0
        last_time = time.monotonic()
        not_before = 0.0
        while not self._stop.wait(self._poll_seconds):
            self.collect()
            now = time.monotonic()
            new_rows = self.window.seen - last_seen
            due = new_rows >= self.config.every_rows or (
                new_rows > 0 and now - last_time >= self.config.every_seconds
            )
            if not due or now < not_before or self.window.rows < self.config.min_rows:
                continue
            started = time.monotonic()
            last_seen = self.compute_once()
            last_time = time.monotonic()
            spent = last_time - started
            not_before = last_time + spent * (1 / self.config.max_cpu_share - 1)

    def compute_once(self) -> int:
        """Judge the window now; returns the rows seen at the snapshot. Never raises."""
        self.collect()
        features, scores, seen = self.window.snapshot()
        metrics = drift_metrics()
        metrics.window_rows.set(len(scores))
        try:
            summary = self.detector.summarize(features, scores, worker=self.worker, rows_seen=seen)
            metrics.record(summary)
            self.results.write(summary, features, scores)
        except Exception:
            self.failures += 1
            metrics.failures.inc()
            logger.exception(
                "Drift computation failed (%d failures so far); predictions continue",
                self.failures,
            )
            return seen
        metrics.runs.inc()
        self.runs += 1
        self.last_summary = summary
        if summary.drift_detected:
            logger.warning(
                "Drift detected over %d rows: features %s, prediction drift %s",
                summary.window_rows,
                summary.drifted_features,
                summary.prediction.drift_detected,
            )
        return seen
