"""The drift-logging hook: every scored row's features and score, written for drift analysis.

`DriftHook` is the interface the service calls after each batch; `MonitorDriftLog` writes
the rows as JSON lines through `bentoml.monitor`. The online Evidently detector will be
another `DriftHook`, so the service does not change when it arrives.
"""

from __future__ import annotations

import logging
from typing import Protocol

import bentoml
import numpy as np

from fraud_detection.schema import FEATURE_NAMES

logger = logging.getLogger(__name__)

#: Name of the bentoml monitor; logs land in ``<log_path>/<MONITOR_NAME>/data/data.<worker>.log``.
MONITOR_NAME = "fraud_transactions"
SCORE_COLUMN = "fraud_probability"


class DriftHook(Protocol):
    """Receives every scored batch; must never raise into the prediction path."""

    def observe(self, features: np.ndarray, scores: np.ndarray) -> None: ...


class MonitorDriftLog:
    """Writes each row (30 features + score) to `bentoml.monitor`, one JSON line per row."""

    def __init__(self, monitor_name: str = MONITOR_NAME) -> None:
        self.monitor_name = monitor_name
        self.failures = 0

    def observe(self, features: np.ndarray, scores: np.ndarray) -> None:
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
