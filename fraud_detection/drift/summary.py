"""`DriftSummary`: the typed result of one drift computation, and the merge across workers."""

from __future__ import annotations

import datetime as dt

from pydantic import BaseModel
from pydantic import ConfigDict
from pydantic import Field


class FeatureDrift(BaseModel):
    """Evidently's verdict on one column of the window against the reference."""

    model_config = ConfigDict(frozen=True)

    feature: str
    method: str = Field(description="Evidently stattest, e.g. wasserstein (normed distance).")
    score: float = Field(description="The stattest's score: a distance, or a p-value for tests.")
    threshold: float
    drifted: bool


class PredictionDrift(BaseModel):
    """Drift of the model's output: score distribution and predicted fraud rate."""

    model_config = ConfigDict(frozen=True)

    score: FeatureDrift = Field(description="Window scores against the validation scores.")
    reference_source: str = Field(description="File the reference scores come from.")
    decision_threshold: float
    fraud_rate: float = Field(description="Share of window rows at or above the threshold.")
    reference_fraud_rate: float
    fraud_rate_p_value: float = Field(description="Two-sided binomial test of the window rate.")
    fraud_rate_drifted: bool
    drift_detected: bool = Field(description="Score drift or a fraud-rate change.")


class DriftSummary(BaseModel):
    """One worker's latest computation over its window."""

    model_config = ConfigDict(frozen=True, protected_namespaces=())

    model: str = Field(description="Tag of the model whose reference was used.")
    worker: int
    computed_at: dt.datetime
    duration_seconds: float
    window_rows: int
    rows_seen: int = Field(description="Rows the worker has scored since it started.")
    reference_rows: int
    features: list[FeatureDrift]
    drifted_features: list[str]
    drift_share: float = Field(description="Share of monitored features that drifted.")
    min_drifted_features: int
    prediction: PredictionDrift
    drift_detected: bool = Field(
        description="At least min_drifted_features features drifted, or the prediction did."
    )
    evidently_version: str


class MergedDriftSummary(BaseModel):
    """All live workers' latest summaries; drift anywhere is drift (as ``max`` in PromQL)."""

    model_config = ConfigDict(frozen=True)

    drift_detected: bool
    drift_share: float = Field(description="Largest share among the workers.")
    drifted_features: list[str] = Field(description="Features drifted in any worker.")
    prediction_drift_detected: bool
    window_rows: int = Field(description="Rows in all workers' windows together.")
    workers: list[DriftSummary]

    @classmethod
    def from_workers(cls, summaries: list[DriftSummary]) -> MergedDriftSummary:
        drifted = {f for s in summaries for f in s.drifted_features}
        order = [f.feature for f in summaries[0].features] if summaries else []
        return cls(
            drift_detected=any(s.drift_detected for s in summaries),
            drift_share=max((s.drift_share for s in summaries), default=0.0),
            drifted_features=[f for f in order if f in drifted],
            prediction_drift_detected=any(s.prediction.drift_detected for s in summaries),
            window_rows=sum(s.window_rows for s in summaries),
            workers=sorted(summaries, key=lambda s: s.worker),
        )
