"""Model names in the BentoML store, shared by training (writer) and the service (reader)."""

from __future__ import annotations

from typing import Literal
from typing import get_args

ModelKind = Literal["mlp", "distilbert"]
MODEL_KINDS: tuple[ModelKind, ...] = get_args(ModelKind)

#: BentoML model-store name of each model kind.
STORE_NAMES: dict[ModelKind, str] = {"mlp": "fraud-mlp", "distilbert": "fraud-distilbert"}

#: Files every stored fraud model holds (ONNX + JSON + CSVs; never pickle).
ONNX_FILE = "model.onnx"
CARD_FILE = "card.json"
REFERENCE_FILE = "reference.csv"
#: The model's scores (and labels) on the validation split: the prediction-drift reference.
VALIDATION_SCORES_FILE = "validation_scores.csv"


def store_tag(kind: str, version: str = "latest") -> str:
    """BentoML tag of the model of `kind`, e.g. ``fraud-mlp:latest``."""
    if kind not in STORE_NAMES:
        raise ValueError(f"Unknown model kind {kind!r}; choose one of {list(MODEL_KINDS)}")
    return f"{STORE_NAMES[kind]}:{version}"  # type: ignore[index]


def training_command(kind: str) -> str:
    """The command that creates the model of `kind` in the store."""
    return f"python -m training model={kind}   (or: make models)"
