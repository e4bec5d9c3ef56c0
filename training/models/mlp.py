"""`FraudMLP`: a feed-forward network over the 30 scaled features."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from fraud_detection.schema import N_FEATURES


class FraudMLP(nn.Module):
    """Raw features -> scaling -> [Linear, GELU, Dropout] * len(hidden_sizes) -> fraud logit."""

    def __init__(
        self,
        preprocessing: nn.Module,
        hidden_sizes: Sequence[int] = (128, 64),
        dropout: float = 0.1,
    ) -> None:
        super().__init__()
        self.preprocessing = preprocessing
        layers: list[nn.Module] = []
        width = N_FEATURES
        for size in hidden_sizes:
            layers += [nn.Linear(width, size), nn.GELU(), nn.Dropout(dropout)]
            width = size
        layers.append(nn.Linear(width, 1))
        self.network = nn.Sequential(*layers)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.network(self.preprocessing(features)).squeeze(-1)
