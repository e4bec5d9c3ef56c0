"""The seed-style baseline: FastAPI + PyTorch, one request at a time, no batching.

It serves the same architecture and size as the stored model (``FRAUD_MODEL``), rebuilt from
that model's card. The store keeps only the ONNX graph, so the weights here are freshly
initialised: the per-request work is the same, the scores are not meaningful. Run with
``uvicorn benchmarks.fastapi_baseline:app``.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Annotated

import bentoml
import numpy as np
import torch
from fastapi import Body
from fastapi import FastAPI
from hydra.utils import instantiate

from fraud_detection.api_models import Prediction
from fraud_detection.api_models import Transaction
from fraud_detection.api_models import transaction_ids
from fraud_detection.api_models import transactions_to_array
from fraud_detection.catalog import CARD_FILE
from fraud_detection.model_card import ModelCard
from fraud_detection.routing.transaction_ids import TransactionIdAssigner
from fraud_detection.settings import ServingSettings
from training.preprocessing import FeatureScaler


def load_network(settings: ServingSettings) -> tuple[torch.nn.Module, float, str]:
    """The stored model's architecture (weights freshly initialised), threshold and tag."""
    stored = bentoml.models.get(settings.model_tag)
    card = ModelCard.from_json_file(Path(stored.path) / CARD_FILE)
    scaler = FeatureScaler(
        tuple(card.preprocessing.log1p_features),
        np.array(card.preprocessing.mean),
        np.array(card.preprocessing.scale),
    )
    network = instantiate(
        card.training_config["model"]["network"], preprocessing=scaler.to_module()
    )
    return network.eval(), card.threshold.value, str(stored.tag)


settings = ServingSettings.from_env()
if settings.ort_threads > 0:
    torch.set_num_threads(settings.ort_threads)
network, threshold, tag = load_network(settings)
name, _, version = tag.partition(":")
# One request at a time, as a plain `def` endpoint over a shared model usually ends up.
lock = threading.Lock()
assigner = TransactionIdAssigner()
app = FastAPI(title="fraud baseline (FastAPI + PyTorch)")


@app.get("/readyz")
def readyz() -> dict[str, str]:
    return {"status": "ready"}


@app.post("/predict")
def predict(
    transactions: Annotated[list[Transaction], Body(embed=True, min_length=1)],
) -> list[Prediction]:
    features = torch.from_numpy(transactions_to_array(transactions))
    with lock, torch.inference_mode():
        scores = torch.sigmoid(network(features)).reshape(-1).numpy()
    ids = assigner.complete(transaction_ids(transactions))
    return [
        Prediction(
            transaction_id=i,
            fraud_probability=float(p),
            is_fraud=bool(p >= threshold),
            model=name,
            model_version=version,
        )
        for i, p in zip(ids, np.asarray(scores, dtype=np.float64), strict=True)
    ]
