"""Prometheus gauges of online performance, refreshed by a thread in each worker.

Every worker reads the same database, so workers agree and ``livemax`` merges them; the score
log's counters add up across workers.
"""

from __future__ import annotations

import functools
import logging
import math
import threading
import time
from dataclasses import dataclass
from typing import Any

from fraud_detection.performance.online import OnlinePerformance

logger = logging.getLogger(__name__)

#: Gauge name → key of a model's entry in the ``/performance`` document.
MODEL_GAUGES = {
    "fraud_online_auprc": ("auprc", "AUPRC on the window's labelled transactions"),
    "fraud_online_precision": ("precision", "Precision at the model's threshold"),
    "fraud_online_recall": ("recall", "Recall at the model's threshold"),
    "fraud_online_expected_cost": (
        "expected_cost_per_transaction",
        "Expected cost per labelled transaction under the card's cost rule",
    ),
    "fraud_online_labelled_frauds": ("frauds", "Labelled frauds in the window"),
    "fraud_online_labelled": ("labelled", "Labelled transactions in the window"),
    "fraud_online_validation_recall": ("validation_recall", "Recall the card promised"),
}


@dataclass(frozen=True)
class PerformanceMetrics:
    model_gauges: dict[str, Any]
    recall_alert: Any
    label_coverage: Any
    database_up: Any
    last_run: Any
    written: Any
    dropped: Any
    failures: Any
    recovered: Any

    def record(self, document: dict[str, Any]) -> None:
        """Set the gauges from a ``/performance`` document."""
        for entry in document["models"]:
            labels = {"role": entry["role"], "model": entry["model"]}
            for name, (key, _) in MODEL_GAUGES.items():
                value = entry[key]
                self.model_gauges[name].labels(**labels).set(math.nan if value is None else value)
            self.recall_alert.labels(**labels).set(int(entry["recall_alert"]["firing"]))
        coverage = document["label_coverage"]
        self.label_coverage.set(math.nan if coverage is None else coverage)
        self.database_up.set(1)
        self.last_run.set(time.time())


@functools.cache
def performance_metrics() -> PerformanceMetrics:
    """The metrics, created once per worker (after BentoML set the multiprocess directory)."""
    from prometheus_client import Counter
    from prometheus_client import Gauge

    def gauge(name: str, doc: str, labels: tuple[str, ...] = ()) -> Any:
        return Gauge(name, doc, list(labels), multiprocess_mode="livemax")

    return PerformanceMetrics(
        model_gauges={
            name: gauge(name, doc, ("role", "model")) for name, (_, doc) in MODEL_GAUGES.items()
        },
        recall_alert=gauge(
            "fraud_online_recall_alert",
            "1 when recall at the threshold is below validation recall minus the margin, "
            "with enough labelled frauds",
            ("role", "model"),
        ),
        label_coverage=gauge(
            "fraud_online_label_coverage", "Share of the window's transactions with a label"
        ),
        database_up=gauge("fraud_score_db_up", "1 if the last read of the score database worked"),
        last_run=gauge(
            "fraud_online_performance_last_run_timestamp_seconds",
            "Unix time of the latest online performance computation",
        ),
        written=Counter("fraud_score_log_written_rows", "Score rows written to the database"),
        dropped=Counter(
            "fraud_score_log_dropped_rows", "Score rows dropped because the write queue was full"
        ),
        failures=Counter(
            "fraud_score_log_write_failures", "Failed score-log writes (rows kept and retried)"
        ),
        recovered=Counter(
            "fraud_score_log_recovered_rows",
            "Score rows replayed into the database from dead workers' journals",
        ),
    )


class PerformanceMonitor:
    """Recomputes online performance every `every_seconds` and sets the gauges."""

    def __init__(self, performance: OnlinePerformance, every_seconds: float) -> None:
        self.performance = performance
        self.every_seconds = every_seconds
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="performance", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        # At once, so every gauge (and its labels) is on /metrics from the worker's start.
        self.refresh()
        while not self._stop.wait(self.every_seconds):
            self.refresh()

    def compute(self) -> dict[str, Any]:
        """One computation, its gauges set; a failure sets ``fraud_score_db_up`` to 0 and
        propagates."""
        metrics = performance_metrics()
        try:
            document = self.performance.compute()
        except Exception:
            metrics.database_up.set(0)
            raise
        metrics.record(document)
        return document

    def refresh(self) -> dict[str, Any] | None:
        """`compute` for the timer: None (logged) when it fails."""
        try:
            return self.compute()
        except Exception as e:
            logger.warning("Online performance computation failed: %s", e)
            return None

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
