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


def resolve_model(model: str) -> tuple[ModelKind, str]:
    """Kind and store tag of a kind (``mlp`` → ``fraud-mlp:latest``) or of a stored tag
    (``fraud-mlp:v3``, ``fraud-distilbert``): how FRAUD_MODEL and FRAUD_CHALLENGER name models."""
    if model in STORE_NAMES:
        return model, store_tag(model)  # type: ignore[return-value]
    name, _, version = model.partition(":")
    for kind, store_name in STORE_NAMES.items():
        if name == store_name:
            return kind, f"{store_name}:{version or 'latest'}"
    raise ValueError(
        f"{model!r} is neither a model kind ({', '.join(MODEL_KINDS)}) nor a fraud model tag "
        f"({', '.join(n + ':<version>' for n in STORE_NAMES.values())})"
    )


def training_command(kind: str) -> str:
    """The command that creates the model of `kind` in the store."""
    return f"python -m training model={kind}   (or: make models)"
