"""`OnlinePerformance`: how the champion and challenger do on labelled live transactions.

Fraud labels arrive days after the score. Joined with the score log, the labelled
transactions of a trailing window (newest `window_rows`, scored within `window_days`) give
each model's AUPRC, precision and recall at its own threshold, and its expected cost per
transaction under the card's cost rule; the window also says how many transactions have a
label (coverage), how long labels took (delay), and how many came from analysts (the review
queue) and from chargebacks; the document can be computed on one source's labels alone.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from fraud_detection.model_card import ModelCard
from fraud_detection.performance.config import PerformanceConfig
from fraud_detection.score_log.database import LabelledScore
from fraud_detection.score_log.database import ScoreDatabase

DAY_S = 86_400.0


@dataclass(frozen=True)
class CostRule:
    """A missed fraud costs its amount (or a constant); a false alarm costs a review."""

    missed_fraud_cost: str | float = "amount"
    false_alarm_cost: float = 5.0
    source: str = "default"

    @classmethod
    def of_card(cls, card: ModelCard) -> CostRule:
        """The card's costs when its threshold was chosen by cost, else the defaults."""
        t = card.threshold
        if t.rule == "min_expected_cost" and t.false_alarm_cost is not None:
            return cls(t.missed_fraud_cost or "amount", t.false_alarm_cost, "card")
        return cls()

    def per_transaction(
        self, labels: np.ndarray, flagged: np.ndarray, amounts: np.ndarray
    ) -> float:
        """Mean cost of the decisions `flagged` on transactions with `labels`."""
        missed = (labels == 1) & ~flagged
        false_alarms = (labels == 0) & flagged
        missed_cost = (
            float(amounts[missed].sum())
            if self.missed_fraud_cost == "amount"
            else float(self.missed_fraud_cost) * int(missed.sum())
        )
        return (missed_cost + self.false_alarm_cost * int(false_alarms.sum())) / len(labels)

    def describe(self) -> dict[str, Any]:
        return {
            "missed_fraud_cost": self.missed_fraud_cost,
            "false_alarm_cost": self.false_alarm_cost,
            "source": self.source,
        }


@dataclass(frozen=True)
class JudgedModel:
    """A model whose live scores are judged: who it is and what it promised on validation."""

    role: str  # "champion" or "challenger"
    name: str
    version: str
    threshold: float
    validation_recall: float | None
    cost_rule: CostRule

    @classmethod
    def of_card(cls, role: str, name: str, version: str, card: ModelCard) -> JudgedModel:
        return cls(
            role=role,
            name=name,
            version=version,
            threshold=card.threshold.value,
            validation_recall=card.validation_metrics.get("recall"),
            cost_rule=CostRule.of_card(card),
        )

    @property
    def tag(self) -> str:
        return f"{self.name}:{self.version}"


def _finite(x: float | None) -> float | None:
    return None if x is None or not math.isfinite(x) else x


def score_metrics(
    labels: np.ndarray,
    probabilities: np.ndarray,
    amounts: np.ndarray,
    threshold: float,
    cost_rule: CostRule,
) -> dict[str, Any]:
    """AUPRC, precision, recall and expected cost of one model's scores on labelled rows."""
    from sklearn.metrics import average_precision_score  # not on the request path

    n = len(labels)
    frauds = int(labels.sum())
    flagged = probabilities >= threshold
    true_positives = int((flagged & (labels == 1)).sum())
    return {
        "labelled": n,
        "frauds": frauds,
        # Undefined without both classes: None, never a made-up number.
        "auprc": float(average_precision_score(labels, probabilities)) if 0 < frauds < n else None,
        "precision": true_positives / int(flagged.sum()) if flagged.any() else None,
        "recall": true_positives / frauds if frauds else None,
        "flagged": int(flagged.sum()),
        "expected_cost_per_transaction": cost_rule.per_transaction(labels, flagged, amounts)
        if n
        else None,
    }


def _columns(rows: Sequence[LabelledScore], challenger: bool) -> tuple[np.ndarray, ...]:
    labels = np.array([r.label for r in rows], dtype=np.int64)
    amounts = np.array([r.amount for r in rows], dtype=np.float64)
    probabilities = np.array(
        [r.challenger_probability if challenger else r.probability for r in rows],
        dtype=np.float64,
    )
    return labels, probabilities, amounts


def rows_of(model: JudgedModel, rows: Sequence[LabelledScore]) -> list[LabelledScore]:
    """The rows `model` scored (as champion, or as challenger where it ran)."""
    if model.role == "champion":
        return [r for r in rows if r.model == model.name and r.model_version == model.version]
    return [
        r
        for r in rows
        if r.challenger == model.name
        and r.challenger_version == model.version
        and r.challenger_probability is not None
    ]


def judge(
    model: JudgedModel, rows: Sequence[LabelledScore], config: PerformanceConfig
) -> dict[str, Any]:
    """`score_metrics` of `model` on its rows, with the recall alert's verdict."""
    labels, probabilities, amounts = _columns(rows, challenger=model.role == "challenger")
    metrics = score_metrics(labels, probabilities, amounts, model.threshold, model.cost_rule)
    floor = (
        None
        if model.validation_recall is None
        else model.validation_recall - config.recall_alert_margin
    )
    enough = metrics["frauds"] >= config.recall_alert_min_frauds
    firing = bool(
        enough and floor is not None and metrics["recall"] is not None and metrics["recall"] < floor
    )
    return {
        "role": model.role,
        "model": model.tag,
        "threshold": model.threshold,
        **metrics,
        "validation_recall": model.validation_recall,
        "cost_rule": model.cost_rule.describe(),
        "recall_alert": {
            "firing": firing,
            "recall_floor": floor,
            "min_frauds": config.recall_alert_min_frauds,
            "enough_frauds": enough,
        },
    }


def paired_rows(
    champion: JudgedModel, challenger: JudgedModel, rows: Sequence[LabelledScore]
) -> list[LabelledScore]:
    """Rows both models scored: the champion answered and the challenger ran."""
    challenger_ids = {r.transaction_id for r in rows_of(challenger, rows)}
    return [r for r in rows_of(champion, rows) if r.transaction_id in challenger_ids]


def label_delay_days(rows: Sequence[LabelledScore]) -> dict[str, float | None]:
    """Median and 90th percentile of label time minus score time, in days."""
    if not rows:
        return {"median": None, "p90": None}
    delays = np.array([r.labelled_at - r.scored_at for r in rows]) / DAY_S
    return {"median": float(np.median(delays)), "p90": float(np.quantile(delays, 0.9))}


class OnlinePerformance:
    """Computes the ``/performance`` document from the score database."""

    def __init__(
        self,
        database: ScoreDatabase,
        champion: JudgedModel,
        challenger: JudgedModel | None,
        config: PerformanceConfig,
    ) -> None:
        self.database = database
        self.champion = champion
        self.challenger = challenger
        self.config = config
        # scikit-learn loads here, with the worker's start-up heap, which the service then
        # freezes out of the collector. Loaded at the first refresh instead, its ~100,000
        # objects were rescanned by every full collection (60 ms each, measured).
        import sklearn.metrics  # noqa: F401

    def window(self, now: float | None = None) -> tuple[list[LabelledScore], float]:
        """The window's labelled rows and the start of the span they cover."""
        now = time.time() if now is None else now
        since = now - self.config.window_days * DAY_S
        rows = self.database.labelled_scores(since, self.config.window_rows)
        if len(rows) == self.config.window_rows:  # the count bound the window, not the days
            since = min(r.scored_at for r in rows)
        return rows, since

    def compute(self, now: float | None = None, source: str | None = None) -> dict[str, Any]:
        """Per-model metrics, coverage and delay, on the window's labels of `source` (None:
        all). Raises `DatabaseUnavailable`."""
        rows, since = self.window(now)
        by_source = {"analyst": 0, "chargeback": 0}
        for row in rows:
            by_source[row.source] = by_source.get(row.source, 0) + 1
        if source is not None:
            rows = [r for r in rows if r.source == source]
        scored = self.database.scored_count(since)
        models = [self.champion] if self.challenger is None else [self.champion, self.challenger]
        document: dict[str, Any] = {
            "window": {
                "rows": self.config.window_rows,
                "days": self.config.window_days,
                "since": since,
            },
            "scored": scored,
            "source": source,
            "labelled": len(rows),
            "labels_by_source": by_source,
            "label_coverage": _finite(len(rows) / scored) if scored else None,
            "label_delay_days": label_delay_days(rows),
            "models": [judge(m, rows_of(m, rows), self.config) for m in models],
        }
        if self.challenger is not None:
            both = paired_rows(self.champion, self.challenger, rows)
            document["paired"] = {
                "labelled": len(both),
                "champion": judge(self.champion, both, self.config),
                "challenger": judge(self.challenger, both, self.config),
            }
        return document
