"""`DriftDetector`: drift of a window of rows against a reference, by Evidently 0.7's method.

Two ways to the same numbers. `DriftDetector.summarize` calls Evidently's registered stattest
on each column directly (as its ``ValueDrift`` metric does, after the same cleaning) and the
binomial test on the fraud rate: about 20 ms for a 5,000-row window, so the online monitor can
run it every few seconds. `DriftDetector.run` builds the full Evidently ``Report`` (plotly
figures included, seconds of CPU): the HTML of ``/drift/report`` and the offline
``python -m training.drift`` command. A test holds the two summaries equal.
"""

from __future__ import annotations

import datetime as dt
import importlib.metadata
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy.stats import binomtest

from fraud_detection.drift.config import DriftConfig
from fraud_detection.drift.reference import ReferenceProfile
from fraud_detection.drift.summary import DriftSummary
from fraud_detection.drift.summary import FeatureDrift
from fraud_detection.drift.summary import PredictionDrift
from fraud_detection.drift.wasserstein import SortedReference
from fraud_detection.drift_log import SCORE_COLUMN
from fraud_detection.schema import FEATURE_NAMES

#: Evidently's name of the default stattest (normed Wasserstein distance).
WASSERSTEIN = "wasserstein"
EVIDENTLY_VERSION = importlib.metadata.version("evidently")


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

    Evidently (with plotly, about 200 MB) is imported only for `run` and for methods other
    than the default, so a worker that only summarises never loads it.
    """

    def __init__(self, reference: ReferenceProfile, config: DriftConfig, *, model: str) -> None:
        self._stattest: Any = None
        self._sorted_reference: SortedReference | None = None
        if config.method != WASSERSTEIN:
            from evidently.legacy.calculations.stattests.registry import get_registered_stattest
            from evidently.legacy.core import ColumnType

            try:
                self._stattest = get_registered_stattest(config.method, ColumnType.Numerical)
            except ValueError as e:
                raise ValueError(f"FRAUD_DRIFT_METHOD={config.method!r}: {e}") from e
        self.reference = reference
        self.config = config
        self.model = model
        self._features = config.features
        self._columns = [*self._features, SCORE_COLUMN]
        self._reference_frame = reference.to_frame(self._features)
        self._reference_columns = {c: finite(self._reference_frame[c]) for c in self._columns}
        if config.method == WASSERSTEIN:
            # The default method's scores without Evidently, pandas or re-sorting the reference.
            self._sorted_reference = SortedReference(
                {c: v.to_numpy() for c, v in self._reference_columns.items()}
            )

    @classmethod
    def for_model(cls, model_dir: str | Path, config: DriftConfig, *, model: str) -> DriftDetector:
        """The detector of the stored model at `model_dir` (its reference files)."""
        return cls(ReferenceProfile.from_model_dir(model_dir), config, model=model)

    def summarize(
        self, features: np.ndarray, scores: np.ndarray, *, worker: int = 0, rows_seen: int = 0
    ) -> DriftSummary:
        """`run`'s summary without the report: Evidently's stattest on each column, directly."""
        started = time.perf_counter()
        threshold = self.config.threshold
        if self._sorted_reference is not None:
            rows = np.asarray(features, dtype=np.float64)
            current = dict(zip(FEATURE_NAMES, rows.T, strict=True))
            current[SCORE_COLUMN] = np.asarray(scores, dtype=np.float64)
            results = {
                column: (score, score >= threshold)  # Evidently's rule for this method
                for column, score in self._sorted_reference.normed_distances(current).items()
            }
        else:
            from evidently.legacy.core import ColumnType

            frame = self._current_frame(features, scores)
            results = {}
            for column, reference in self._reference_columns.items():
                result = self._stattest(
                    reference, finite(frame[column]), ColumnType.Numerical, threshold
                )
                results[column] = (result.drift_score, result.drifted)
        columns = {
            column: FeatureDrift(
                feature=column,
                method=self.config.method,
                score=float(score),
                threshold=threshold,
                drifted=bool(drifted),
            )
            for column, (score, drifted) in results.items()
        }
        return self._summary(columns, scores, started, worker=worker, rows_seen=rows_seen)

    def run(
        self, features: np.ndarray, scores: np.ndarray, *, worker: int = 0, rows_seen: int = 0
    ) -> DriftRun:
        """Drift of the rows `features` ``(n, 30)`` (schema order) and `scores` ``(n,)``."""
        from evidently import DataDefinition
        from evidently import Dataset
        from evidently import Report
        from evidently.metrics import ValueDrift
        from evidently.presets import DataDriftPreset

        started = time.perf_counter()
        frame = self._current_frame(features, scores)
        definition = DataDefinition(numerical_columns=self._columns)
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
            Dataset.from_pandas(frame, data_definition=definition),
            Dataset.from_pandas(self._reference_frame, data_definition=definition),
        )
        summary = self._summary(
            column_results(snapshot.dict()), scores, started, worker=worker, rows_seen=rows_seen
        )
        return DriftRun(summary=summary, snapshot=snapshot)

    def _current_frame(self, features: np.ndarray, scores: np.ndarray) -> pd.DataFrame:
        frame = pd.DataFrame(np.asarray(features, dtype=np.float64), columns=list(FEATURE_NAMES))
        frame = frame[self._features]
        frame[SCORE_COLUMN] = np.asarray(scores, dtype=np.float64)
        return frame

    def _summary(
        self,
        columns: dict[str, FeatureDrift],
        scores: np.ndarray,
        started: float,
        *,
        worker: int,
        rows_seen: int,
    ) -> DriftSummary:
        feature_results = [columns[f] for f in self._features]
        drifted = [f.feature for f in feature_results if f.drifted]
        prediction = self._prediction_drift(columns[SCORE_COLUMN], np.asarray(scores))
        return DriftSummary(
            model=self.model,
            worker=worker,
            computed_at=dt.datetime.now(dt.UTC),
            duration_seconds=round(time.perf_counter() - started, 4),
            window_rows=len(scores),
            rows_seen=max(rows_seen, len(scores)),
            reference_rows=len(self.reference.features),
            features=feature_results,
            drifted_features=drifted,
            drift_share=len(drifted) / len(feature_results),
            min_drifted_features=self.config.min_drifted_features,
            prediction=prediction,
            drift_detected=len(drifted) >= self.config.min_drifted_features
            or prediction.drift_detected,
            evidently_version=EVIDENTLY_VERSION,
        )

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


def finite(column: pd.Series) -> pd.Series:
    """The column without NaN and infinities, as Evidently cleans it before a stattest."""
    return column.replace([-np.inf, np.inf], np.nan).dropna()


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
