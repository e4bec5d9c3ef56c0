"""`FeatureScaler`: scaling fitted on the training split, applied inside every model.

The scaling is a torch module in front of each network, so the exported ONNX graph takes
raw features and the service cannot apply a different transform from training.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from fraud_detection.model_card import Preprocessing
from fraud_detection.schema import FEATURE_NAMES

#: Heavy-tailed, non-negative features that are log1p-transformed before standardising.
LOG1P_FEATURES: tuple[str, ...] = ("Amount",)


@dataclass(frozen=True)
class FeatureScaler:
    """log1p on `log1p_features`, then (x - mean) / scale per feature, in schema order."""

    log1p_features: tuple[str, ...]
    mean: np.ndarray
    scale: np.ndarray

    @classmethod
    def fit(
        cls, train_features: np.ndarray, log1p_features: tuple[str, ...] = LOG1P_FEATURES
    ) -> FeatureScaler:
        """Learn mean and scale from the training split only."""
        mask = np.array([name in log1p_features for name in FEATURE_NAMES])
        x = train_features.astype(np.float64).copy()
        x[:, mask] = np.log1p(x[:, mask])
        scale = x.std(axis=0)
        # The models compute in float32: a spread below its resolution is a constant feature
        # (dividing by it would underflow to 0 and give NaN), so it is only centred.
        constant = scale < np.finfo(np.float32).eps
        return cls(log1p_features, x.mean(axis=0), np.where(constant, 1.0, scale))

    def to_card(self) -> Preprocessing:
        return Preprocessing(
            log1p_features=list(self.log1p_features),
            mean=self.mean.tolist(),
            scale=self.scale.tolist(),
        )

    def to_module(self) -> ScaleFeatures:
        return ScaleFeatures(self)


class ScaleFeatures(nn.Module):
    """Torch form of a fitted `FeatureScaler` (buffers, no parameters)."""

    def __init__(self, scaler: FeatureScaler) -> None:
        super().__init__()
        mask = torch.tensor([name in scaler.log1p_features for name in FEATURE_NAMES])
        self.register_buffer("log1p_mask", mask)
        self.register_buffer("mean", torch.tensor(scaler.mean, dtype=torch.float32))
        self.register_buffer("scale", torch.tensor(scaler.scale, dtype=torch.float32))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        # relu keeps log1p defined on the columns whose result torch.where discards.
        x = torch.where(self.log1p_mask, torch.log1p(torch.relu(features)), features)
        return (x - self.mean) / self.scale
