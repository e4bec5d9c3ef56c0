"""`FraudDistilBert`: DistilBERT over one token per feature, classified on a CLS token."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn
from transformers import DistilBertConfig
from transformers import DistilBertModel

from fraud_detection.schema import N_FEATURES


def build_encoder(
    *,
    dim: int,
    n_layers: int,
    n_heads: int,
    hidden_dim: int,
    dropout: float,
    pretrained: str | None,
) -> DistilBertModel:
    """A fresh DistilBERT of the given size, or pretrained weights from a local directory.

    ``pretrained`` is loaded with ``local_files_only=True``: the bundle never downloads from a
    hub at run time; save a model with ``save_pretrained`` (or a hub snapshot) and point to it.
    """
    if pretrained:
        if not (Path(pretrained) / "config.json").is_file():
            raise FileNotFoundError(
                f"model.pretrained={pretrained}: not a directory saved with save_pretrained "
                "(config.json + weights). Hub ids are not downloaded; save the model locally first."
            )
        return DistilBertModel.from_pretrained(
            pretrained, local_files_only=True, attn_implementation="eager"
        )
    config = DistilBertConfig(
        dim=dim,
        n_layers=n_layers,
        n_heads=n_heads,
        hidden_dim=hidden_dim,
        dropout=dropout,
        attention_dropout=dropout,
        max_position_embeddings=N_FEATURES + 1,
    )
    # Eager attention exports to ONNX as plain MatMul/Softmax, the same on CPU and CUDA.
    config._attn_implementation = "eager"
    return DistilBertModel(config)


class FraudDistilBert(nn.Module):
    """Each scaled feature becomes a token ``value * w_i + b_i`` (learned ``w_i, b_i`` per
    feature); a learned CLS token is prepended, the sequence goes through DistilBERT via
    ``inputs_embeds`` (which adds position embeddings), and a linear head reads CLS."""

    def __init__(
        self,
        preprocessing: nn.Module,
        dim: int = 32,
        n_layers: int = 2,
        n_heads: int = 2,
        hidden_dim: int = 64,
        dropout: float = 0.1,
        pretrained: str | None = None,
    ) -> None:
        super().__init__()
        self.preprocessing = preprocessing
        self.encoder = build_encoder(
            dim=dim,
            n_layers=n_layers,
            n_heads=n_heads,
            hidden_dim=hidden_dim,
            dropout=dropout,
            pretrained=pretrained,
        )
        width = self.encoder.config.dim
        self.feature_weight = nn.Parameter(torch.randn(N_FEATURES, width) * 0.02)
        self.feature_bias = nn.Parameter(torch.zeros(N_FEATURES, width))
        self.cls_token = nn.Parameter(torch.randn(1, 1, width) * 0.02)
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(width, 1))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        scaled = self.preprocessing(features)
        tokens = scaled.unsqueeze(-1) * self.feature_weight + self.feature_bias
        cls = self.cls_token.expand(features.shape[0], -1, -1)
        hidden = self.encoder(inputs_embeds=torch.cat([cls, tokens], dim=1)).last_hidden_state
        return self.head(hidden[:, 0]).squeeze(-1)
