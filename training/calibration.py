"""Platt scaling fitted on validation logits and built into the network that is exported.

Class weighting (``trainer.class_weight_power``) helps the network rank frauds but inflates
its probabilities. A one-feature logistic regression on the validation logits maps them back
to frequencies; as a final affine layer it ships inside the ONNX graph, so the service needs
no extra step and the served probabilities are the calibrated ones.
"""

from __future__ import annotations

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from torch import nn

from fraud_detection.model_card import Calibration


class PlattScaledNetwork(nn.Module):
    """`network`'s logit mapped through ``slope * logit + intercept``."""

    def __init__(self, network: nn.Module, slope: float, intercept: float) -> None:
        super().__init__()
        self.network = network
        self.register_buffer("slope", torch.tensor(slope, dtype=torch.float32))
        self.register_buffer("intercept", torch.tensor(intercept, dtype=torch.float32))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.network(features) * self.slope + self.intercept


def fit_platt_scaling(logits: np.ndarray, labels: np.ndarray) -> Calibration:
    """Slope and intercept of the logistic regression of `labels` on `logits` (unpenalised)."""
    regression = LogisticRegression(C=1e6, max_iter=1000)
    regression.fit(np.asarray(logits, dtype=np.float64).reshape(-1, 1), labels)
    return Calibration(
        method="platt",
        slope=float(regression.coef_[0, 0]),
        intercept=float(regression.intercept_[0]),
    )


def calibrate(network: nn.Module, calibration: Calibration) -> nn.Module:
    """`network` with `calibration` applied to its logit (unchanged when the method is none)."""
    if calibration.method == "none":
        return network
    device = next(network.parameters()).device
    return PlattScaledNetwork(network, calibration.slope, calibration.intercept).to(device)
