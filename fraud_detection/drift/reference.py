"""`ReferenceProfile`: what "no drift" looks like for one stored model."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from fraud_detection.catalog import CARD_FILE
from fraud_detection.catalog import REFERENCE_FILE
from fraud_detection.catalog import VALIDATION_SCORES_FILE
from fraud_detection.drift_log import SCORE_COLUMN
from fraud_detection.model_card import ModelCard
from fraud_detection.prevalence import genuine_weight
from fraud_detection.schema import FEATURE_NAMES
from fraud_detection.schema import TARGET_NAME
from fraud_detection.schema import check_feature_names

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ReferenceProfile:
    """Reference features and scores of a model, read from its model-store directory.

    - `features`: the training rows sampled at export (``reference.csv``), schema order.
    - `scores`: the model's scores on the validation split (``validation_scores.csv``).
      Scores on training rows are over-confident, so they are only the fallback for models
      saved before that file existed (`score_source` says which was used).
    - `threshold`: the model's decision threshold (``card.json``), for the fraud rate.
    """

    features: pd.DataFrame
    scores: np.ndarray
    threshold: float
    score_source: str
    labels: np.ndarray | None = None  # validation labels, when the score reference has them
    deployment_fraud_rate: float | None = None  # card.threshold.fraud_rate

    @classmethod
    def from_model_dir(cls, path: str | Path) -> ReferenceProfile:
        """Read the reference files of the stored model at `path`, checking their columns."""
        path = Path(path)
        card = ModelCard.from_json_file(path / CARD_FILE)
        try:
            rows = pd.read_csv(path / REFERENCE_FILE)
        except FileNotFoundError as e:
            raise ValueError(f"{path / REFERENCE_FILE} is missing; retrain the model") from e
        check_feature_names([c for c in rows.columns if c in FEATURE_NAMES], source=str(path))
        validation = path / VALIDATION_SCORES_FILE
        labels = None
        if validation.is_file():
            scored = pd.read_csv(validation)
            scores = scored[SCORE_COLUMN].to_numpy(dtype=np.float64)
            if TARGET_NAME in scored.columns:
                labels = scored[TARGET_NAME].to_numpy()
            source = VALIDATION_SCORES_FILE
        else:
            logger.warning(
                "%s has no %s; the score reference falls back to training-row scores, which "
                "are over-confident (retrain to fix)",
                path,
                VALIDATION_SCORES_FILE,
            )
            scores = rows[SCORE_COLUMN].to_numpy(dtype=np.float64)
            source = REFERENCE_FILE
        return cls(
            features=rows[list(FEATURE_NAMES)].astype(np.float64),
            scores=scores,
            threshold=card.threshold.value,
            score_source=source,
            labels=labels,
            deployment_fraud_rate=card.threshold.fraud_rate,
        )

    @property
    def fraud_rate(self) -> float:
        """Share of reference scores at or above the decision threshold.

        When the threshold was chosen for a production prevalence (``threshold.fraud_rate``,
        e.g. a model trained on the 2.2%-fraud real sample for 0.172% traffic), genuine rows
        are weighted to that prevalence, so normal traffic is not flagged as drift.
        """
        flagged = self.scores >= self.threshold
        if self.deployment_fraud_rate is None or self.labels is None:
            return float(np.mean(flagged))
        if not (np.any(self.labels == 1) and np.any(self.labels == 0)):
            return float(np.mean(flagged))
        weight = genuine_weight(self.labels, self.deployment_fraud_rate)
        weights = np.where(self.labels == 1, 1.0, weight)
        return float(np.sum(weights * flagged) / np.sum(weights))

    def to_frame(self, features: list[str]) -> pd.DataFrame:
        """Features and score as one frame for Evidently.

        The two samples differ in rows and length, so each column is padded with NaN to the
        longer one; Evidently drops NaN per column before every drift test.
        """
        n = max(len(self.features), len(self.scores))
        frame = self.features[features].reindex(range(n))
        frame[SCORE_COLUMN] = pd.Series(self.scores).reindex(range(n)).to_numpy()
        return frame
