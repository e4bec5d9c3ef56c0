"""Prometheus metrics of the drift detector, served on ``/metrics`` by BentoML.

BentoML serves prometheus_client in multiprocess mode (one file per worker, merged when
scraped), so each gauge declares how workers combine. The ``live*`` modes drop a worker's
values when it exits, so a restarted worker's stale verdict does not linger. Drift in any
worker is drift: the verdicts, shares and per-feature values use ``livemax``; rows in the
windows add up (``livesum``).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

from fraud_detection.drift.summary import DriftSummary


@dataclass(frozen=True)
class DriftMetrics:
    drift_detected: Any
    drift_share: Any
    feature_score: Any
    feature_drifted: Any
    prediction_score: Any
    fraud_rate: Any
    reference_fraud_rate: Any
    window_rows: Any
    last_run: Any
    run_seconds: Any
    runs: Any
    failures: Any

    def record(self, summary: DriftSummary) -> None:
        """Set the gauges from a worker's latest summary."""
        self.drift_detected.set(int(summary.drift_detected))
        self.drift_share.set(summary.drift_share)
        for feature in summary.features:
            self.feature_score.labels(feature=feature.feature).set(feature.score)
            self.feature_drifted.labels(feature=feature.feature).set(int(feature.drifted))
        self.prediction_score.set(summary.prediction.score.score)
        self.fraud_rate.set(summary.prediction.fraud_rate)
        self.reference_fraud_rate.set(summary.prediction.reference_fraud_rate)
        self.last_run.set(summary.computed_at.timestamp())
        self.run_seconds.set(summary.duration_seconds)


@functools.cache
def drift_metrics() -> DriftMetrics:
    """The metrics, created once per worker process.

    prometheus_client is imported here, not at module import: BentoML sets the multiprocess
    directory in each worker after the service module is imported.
    """
    from prometheus_client import Counter
    from prometheus_client import Gauge

    return DriftMetrics(
        drift_detected=Gauge(
            "fraud_drift_detected",
            "1 if the latest drift computation found drift (features or prediction)",
            multiprocess_mode="livemax",
        ),
        drift_share=Gauge(
            "fraud_drift_share",
            "Share of monitored features drifted in the latest window",
            multiprocess_mode="livemax",
        ),
        feature_score=Gauge(
            "fraud_drift_feature_score",
            "Evidently drift score per feature (normed Wasserstein distance by default)",
            ["feature"],
            multiprocess_mode="livemax",
        ),
        feature_drifted=Gauge(
            "fraud_drift_feature_drifted",
            "1 if the feature drifted in the latest window",
            ["feature"],
            multiprocess_mode="livemax",
        ),
        prediction_score=Gauge(
            "fraud_drift_prediction_score",
            "Evidently drift score of the fraud probability against validation scores",
            multiprocess_mode="livemax",
        ),
        fraud_rate=Gauge(
            "fraud_predicted_fraud_rate",
            "Share of the window's rows at or above the model's decision threshold",
            multiprocess_mode="livemax",
        ),
        reference_fraud_rate=Gauge(
            "fraud_reference_fraud_rate",
            "Share of validation rows at or above the model's decision threshold",
            multiprocess_mode="livemax",
        ),
        window_rows=Gauge(
            "fraud_drift_window_rows",
            "Rows in the drift windows now",
            multiprocess_mode="livesum",
        ),
        last_run=Gauge(
            "fraud_drift_last_run_timestamp_seconds",
            "Unix time of the latest drift computation",
            multiprocess_mode="livemax",
        ),
        run_seconds=Gauge(
            "fraud_drift_computation_seconds",
            "Duration of the latest drift computation",
            multiprocess_mode="livemax",
        ),
        runs=Counter("fraud_drift_computations", "Drift computations that succeeded"),
        failures=Counter(
            "fraud_drift_computation_failures",
            "Drift computations that failed (predictions continued)",
        ),
    )
