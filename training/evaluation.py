"""Metrics on held-out data and the decision-threshold rules."""

from __future__ import annotations

import numpy as np
from sklearn.metrics import average_precision_score
from sklearn.metrics import confusion_matrix
from sklearn.metrics import precision_recall_curve
from sklearn.metrics import roc_auc_score
from sklearn.metrics import roc_curve

from fraud_detection.model_card import Threshold
from fraud_detection.model_card import ThresholdRule


def recall_at_fpr(labels: np.ndarray, scores: np.ndarray, target_fpr: float) -> float:
    """Highest recall reachable while the false-positive rate stays <= `target_fpr`."""
    fpr, tpr, _ = roc_curve(labels, scores)
    return float(tpr[fpr <= target_fpr].max())


def choose_threshold(
    labels: np.ndarray, scores: np.ndarray, rule: ThresholdRule, target_fpr: float = 0.01
) -> Threshold:
    """Pick the decision threshold on validation scores.

    ``best_f1``: the score cut with the highest F1. ``recall_at_fpr``: the lowest cut whose
    false-positive rate is <= `target_fpr` (highest recall under that alarm budget).
    """
    if rule == "best_f1":
        precision, recall, cuts = precision_recall_curve(labels, scores)
        f1 = 2 * precision[:-1] * recall[:-1] / np.maximum(precision[:-1] + recall[:-1], 1e-12)
        return Threshold(rule=rule, value=float(cuts[int(np.argmax(f1))]))
    if rule == "recall_at_fpr":
        fpr, _, cuts = roc_curve(labels, scores)
        value = float(min(cuts[fpr <= target_fpr][-1], 1.0))
        return Threshold(rule=rule, value=value, target_fpr=target_fpr)
    raise ValueError(f"threshold rule {rule!r} is not one of 'best_f1', 'recall_at_fpr'")


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
