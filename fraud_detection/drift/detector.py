"""`DriftDetector`: an Evidently 0.7 drift report of a window of rows against a reference.

The online monitor and the offline ``python -m training.drift`` command both call
`DriftDetector.run`, so a summary served by the API and one computed from the monitor logs
mean the same thing.
"""

from __future__ import annotations

import datetime as dt
import time
from dataclasses import dataclass
from typing import Any

import evidently
import numpy as np
import pandas as pd
from evidently import DataDefinition
from evidently import Dataset
from evidently import Report
from evidently.legacy.calculations.stattests.registry import get_registered_stattest
from evidently.legacy.core import ColumnType
from evidently.metrics import ValueDrift
from evidently.presets import DataDriftPreset
from scipy.stats import binomtest

from fraud_detection.drift.config import DriftConfig
from fraud_detection.drift.reference import ReferenceProfile
from fraud_detection.drift.summary import DriftSummary
from fraud_detection.drift.summary import FeatureDrift
from fraud_detection.drift.summary import PredictionDrift
from fraud_detection.drift_log import SCORE_COLUMN
from fraud_detection.schema import FEATURE_NAMES


@dataclass(frozen=True)
class DriftRun:
    """A computation's typed summary and the Evidently snapshot behind it (for the HTML)."""

    summary: DriftSummary
    snapshot: Any  # evidently.core.report.Snapshot

    def html(self) -> str:
        """The Evidently report as a standalone HTML page (its JavaScript inlined)."""
        return self.snapshot.get_html_str(as_iframe=False)


class DriftDetector:
    """Runs ``Report([DataDriftPreset(...), ValueDrift(score)])`` (Evidently 0.7.23).

    Every monitored feature and the score use one stattest (`DriftConfig.method`, default
    normed Wasserstein with threshold 0.1). The explicit choice matters: Evidently's default
    picks a K-S test (p < 0.05) for references of at most 1,000 rows, which over 29 features
    flags some feature in most in-distribution windows. The window is drifted when at least
    `min_drifted_features` features drift (passed to Evidently as its ``drift_share``) or the
    prediction drifts: score distribution, or a binomial test of the predicted fraud rate at
    the model's threshold against the reference rate.
    """

    def __init__(self, reference: ReferenceProfile, config: DriftConfig, *, model: str) -> None:
        try:
            get_registered_stattest(config.method, ColumnType.Numerical)
        except ValueError as e:
            raise ValueError(f"FRAUD_DRIFT_METHOD={config.method!r}: {e}") from e
        self.reference = reference
        self.config = config
        self.model = model
        self._features = config.features
        columns = [*self._features, SCORE_COLUMN]
        self._definition = DataDefinition(numerical_columns=columns)
        self._reference = Dataset.from_pandas(
            reference.to_frame(self._features), data_definition=self._definition
        )

    def run(
        self, features: np.ndarray, scores: np.ndarray, *, worker: int = 0, rows_seen: int = 0
    ) -> DriftRun:
        """Drift of the rows `features` ``(n, 30)`` (schema order) and `scores` ``(n,)``."""
        started = time.perf_counter()
        frame = pd.DataFrame(np.asarray(features, dtype=np.float64), columns=list(FEATURE_NAMES))
        frame = frame[self._features]
        frame[SCORE_COLUMN] = np.asarray(scores, dtype=np.float64)
        report = Report(
            [
                DataDriftPreset(
                    columns=self._features,
                    method=self.config.method,
                    threshold=self.config.threshold,
                    drift_share=self.config.min_drifted_features / len(self._features),
                ),
                ValueDrift(
                    column=SCORE_COLUMN, method=self.config.method, threshold=self.config.threshold
                ),
            ],
            include_tests=True,  # the per-column tests carry Evidently's drifted verdicts
        )
        snapshot = report.run(
            Dataset.from_pandas(frame, data_definition=self._definition), self._reference
        )
        columns = column_results(snapshot.dict())
        feature_results = [columns[f] for f in self._features]
        drifted = [f.feature for f in feature_results if f.drifted]
        prediction = self._prediction_drift(columns[SCORE_COLUMN], np.asarray(scores))
        summary = DriftSummary(
            model=self.model,
            worker=worker,
            computed_at=dt.datetime.now(dt.UTC),
            duration_seconds=round(time.perf_counter() - started, 3),
            window_rows=len(frame),
            rows_seen=max(rows_seen, len(frame)),
            reference_rows=len(self.reference.features),
            features=feature_results,
            drifted_features=drifted,
            drift_share=len(drifted) / len(feature_results),
            min_drifted_features=self.config.min_drifted_features,
            prediction=prediction,
            drift_detected=len(drifted) >= self.config.min_drifted_features
            or prediction.drift_detected,
            evidently_version=evidently.__version__,
        )
        return DriftRun(summary=summary, snapshot=snapshot)

    def run_frame(self, frame: pd.DataFrame, **kwargs: Any) -> DriftRun:
        """`run` on a frame holding the 30 features and the score column (e.g. a monitor log)."""
        missing = [c for c in (*FEATURE_NAMES, SCORE_COLUMN) if c not in frame.columns]
        if missing:
            raise ValueError(f"the rows lack columns {missing}")
        return self.run(
            frame[list(FEATURE_NAMES)].to_numpy(), frame[SCORE_COLUMN].to_numpy(), **kwargs
        )

    def _prediction_drift(self, score: FeatureDrift, scores: np.ndarray) -> PredictionDrift:
        threshold = self.reference.threshold
        n_reference = len(self.reference.scores)
        # Keep the reference rate off 0 and 1: a binomial test against p=0 rejects any fraud.
        reference_rate = min(
            max(self.reference.fraud_rate, 0.5 / n_reference), 1 - 0.5 / n_reference
        )
        frauds = int(np.sum(scores >= threshold))
        p_value = float(binomtest(frauds, len(scores), reference_rate).pvalue)
        rate_drifted = p_value < self.config.fraud_rate_alpha
        return PredictionDrift(
            score=score,
            reference_source=self.reference.score_source,
            decision_threshold=threshold,
            fraud_rate=frauds / len(scores),
            reference_fraud_rate=self.reference.fraud_rate,
            fraud_rate_p_value=p_value,
            fraud_rate_drifted=rate_drifted,
            drift_detected=score.drifted or rate_drifted,
        )


def column_results(snapshot: dict[str, Any]) -> dict[str, FeatureDrift]:
    """Per-column score, method and drifted flag from an Evidently 0.7 snapshot's ``dict()``.

    The score is the ``ValueDrift`` metric's value; the verdict is its test (``FAIL`` =
    drifted), so the direction of each method (distance or p-value) stays Evidently's.
    """
    failed = {
        test["metric_config"]["params"]["column"]
        for test in snapshot["tests"]
        if test["metric_config"]["params"].get("type") == "evidently:metric_v2:ValueDrift"
        and test["status"] == "FAIL"
    }
    results = {}
    for metric in snapshot["metrics"]:
        config = metric["config"]
        if config.get("type") != "evidently:metric_v2:ValueDrift":
            continue
        column = config["column"]
        results[column] = FeatureDrift(
            feature=column,
            method=config["method"],
            score=float(metric["value"]),
            threshold=float(config["threshold"]),
            drifted=column in failed,
        )
    return results
