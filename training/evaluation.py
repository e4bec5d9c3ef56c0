"""Metrics on held-out data and the decision-threshold rules."""

from __future__ import annotations

from typing import Literal

import numpy as np
from sklearn.metrics import average_precision_score
from sklearn.metrics import confusion_matrix
from sklearn.metrics import precision_recall_curve
from sklearn.metrics import roc_auc_score
from sklearn.metrics import roc_curve

from fraud_detection.model_card import Threshold
from fraud_detection.model_card import ThresholdRule
from fraud_detection.prevalence import genuine_weight


def recall_at_fpr(labels: np.ndarray, scores: np.ndarray, target_fpr: float) -> float:
    """Highest recall reachable while the false-positive rate stays <= `target_fpr`."""
    fpr, tpr, _ = roc_curve(labels, scores)
    return float(tpr[fpr <= target_fpr].max())


def min_expected_cost_threshold(
    labels: np.ndarray,
    scores: np.ndarray,
    amounts: np.ndarray,
    *,
    missed_fraud_cost: Literal["amount"] | float = "amount",
    false_alarm_cost: float = 5.0,
    fraud_rate: float | None = None,
) -> Threshold:
    """The score cut with the lowest total cost on validation data, and that cost per row.

    A fraud scored below the cut costs its `Amount` (or the constant `missed_fraud_cost`); a
    genuine row at or above it costs `false_alarm_cost`. With `fraud_rate` set, genuine rows
    are weighted so that frauds make up that share, as in production traffic.
    """
    fraud_cost = (
        np.asarray(amounts, dtype=np.float64)
        if missed_fraud_cost == "amount"
        else np.full(len(labels), float(missed_fraud_cost))
    )
    weight = genuine_weight(labels, fraud_rate)
    order = np.argsort(-scores, kind="stable")
    sorted_scores, sorted_labels = scores[order], labels[order]
    # Cutting just below sorted_scores[k] flags rows 0..k; ties are flagged together.
    caught_value = np.cumsum(np.where(sorted_labels == 1, fraud_cost[order], 0.0))
    alarms = np.cumsum(np.where(sorted_labels == 0, weight, 0.0))
    last_of_tie = np.r_[sorted_scores[1:] != sorted_scores[:-1], True]
    cost = fraud_cost[labels == 1].sum() - caught_value + false_alarm_cost * alarms
    cost, cuts = cost[last_of_tie], sorted_scores[last_of_tie]
    flag_nothing = fraud_cost[labels == 1].sum()
    best = int(np.argmin(cost))
    value, best_cost = (float(cuts[best]), float(cost[best]))
    if flag_nothing <= best_cost:
        # The card caps thresholds at 1.0: a score saturated at exactly 1.0 is still flagged.
        value, best_cost = 1.0, float(flag_nothing)
    n_rows = float(np.sum(labels == 1)) + weight * float(np.sum(labels == 0))
    return Threshold(
        rule="min_expected_cost",
        value=min(value, 1.0),
        missed_fraud_cost=missed_fraud_cost,
        false_alarm_cost=false_alarm_cost,
        fraud_rate=fraud_rate,
        expected_cost_per_transaction=best_cost / n_rows,
    )


def choose_threshold(
    labels: np.ndarray,
    scores: np.ndarray,
    rule: ThresholdRule,
    target_fpr: float = 0.01,
    *,
    amounts: np.ndarray | None = None,
    missed_fraud_cost: Literal["amount"] | float = "amount",
    false_alarm_cost: float = 5.0,
    fraud_rate: float | None = None,
) -> Threshold:
    """Pick the decision threshold on validation scores.

    ``best_f1``: the score cut with the highest F1. ``recall_at_fpr``: the lowest cut whose
    false-positive rate is <= `target_fpr` (highest recall under that alarm budget).
    ``min_expected_cost``: see `min_expected_cost_threshold` (needs `amounts`).
    """
    if rule == "min_expected_cost":
        if amounts is None:
            raise ValueError("the min_expected_cost rule needs the transactions' amounts")
        return min_expected_cost_threshold(
            labels,
            scores,
            amounts,
            missed_fraud_cost=missed_fraud_cost,
            false_alarm_cost=false_alarm_cost,
            fraud_rate=fraud_rate,
        )
    if rule == "best_f1":
        precision, recall, cuts = precision_recall_curve(labels, scores)
        f1 = 2 * precision[:-1] * recall[:-1] / np.maximum(precision[:-1] + recall[:-1], 1e-12)
        return Threshold(rule=rule, value=float(cuts[int(np.argmax(f1))]))
    if rule == "recall_at_fpr":
        fpr, _, cuts = roc_curve(labels, scores)
        value = float(min(cuts[fpr <= target_fpr][-1], 1.0))
        return Threshold(rule=rule, value=value, target_fpr=target_fpr)
    raise ValueError(
        f"threshold rule {rule!r} is not one of 'best_f1', 'recall_at_fpr', 'min_expected_cost'"
    )


def evaluate(
    labels: np.ndarray, scores: np.ndarray, threshold: float
) -> tuple[dict[str, float], list[list[int]]]:
    """Ranking metrics plus precision/recall/F1 at `threshold`, and the confusion matrix."""
    predicted = scores >= threshold
    tn, fp, fn, tp = confusion_matrix(labels, predicted, labels=[0, 1]).ravel().tolist()
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    metrics = {
        "average_precision": float(average_precision_score(labels, scores)),
        "roc_auc": float(roc_auc_score(labels, scores)),
        "recall_at_1pct_fpr": recall_at_fpr(labels, scores, 0.01),
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "threshold": threshold,
        "prevalence": float(np.mean(labels)),
    }
    return metrics, [[tn, fp], [fn, tp]]
