"""Reweighting labelled rows to a fraud prevalence other than the sample's own.

Labelled samples (the real ULB sample has 2.2% frauds) over-represent fraud compared with
production traffic (0.172%). Threshold choice, quality metrics and the drift reference all
weight genuine rows by the same factor, defined once here.
"""

from __future__ import annotations

import numpy as np

#: Fraud prevalence of production traffic: the full ULB dataset's 492 frauds among 284,807
#: transactions (0.172%). Labelled samples are reweighted to it before AUPRC is compared.
PRODUCTION_FRAUD_RATE = 492 / 284_807


def genuine_weight(labels: np.ndarray, fraud_rate: float | None) -> float:
    """Weight of each genuine row that makes fraud prevalence `fraud_rate` (1.0 when None)."""
    if fraud_rate is None:
        return 1.0
    n_fraud = float(np.sum(labels == 1))
    n_genuine = float(np.sum(labels == 0))
    return (1.0 - fraud_rate) / fraud_rate * n_fraud / n_genuine
