"""What every peer server shares: the request model, the scorer and the response rows.

Imported inside each peer's own virtual environment (``.venv-peers/<name>``), so it needs only
numpy, onnxruntime and pydantic, like `fraud_detection.scorer` and `fraud_detection.api_models`.
Scoring, ONNX Runtime session options (one intra-op thread, spinning off) and validation are
therefore the ones our BentoML service uses; only the framework around them differs.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated
from typing import Any

from pydantic import BaseModel
from pydantic import ConfigDict
from pydantic import Field
from pydantic import TypeAdapter
from pydantic import ValidationError

from fraud_detection.api_models import Transaction
from fraud_detection.api_models import transactions_to_array
from fraud_detection.scorer import OnnxScorer

__all__ = ["REQUEST", "FraudRequest", "Scorer", "ValidationError", "peer_args"]

#: Most transactions in one request, as ``FRAUD_MAX_ROWS``' default in our service.
MAX_ROWS = 10_000
#: Environment variable naming the model-store directory (``bentos/models/fraud-mlp/<version>``).
MODEL_DIR_ENV = "FRAUD_MODEL_DIR"


class FraudRequest(BaseModel):
    """``{"transactions": [...]}``: the body of our ``POST /predict``, same field rules."""

    model_config = ConfigDict(extra="forbid")

    transactions: Annotated[list[Transaction], Field(min_length=1, max_length=MAX_ROWS)]


REQUEST = TypeAdapter(FraudRequest)


class Scorer:
    """The stored model, loaded with our `OnnxScorer`, answering rows like our service."""

    def __init__(self, model_dir: str | Path | None = None) -> None:
        model_dir = Path(model_dir or os.environ[MODEL_DIR_ENV])
        self.onnx = OnnxScorer.from_directory(model_dir, intra_op_threads=1)
        # BentoML store layout: <home>/models/<name>/<version>/, the tag our service reports.
        self.model_name = model_dir.parent.name
        self.model_version = model_dir.name

    def features(self, request: FraudRequest) -> Any:
        """``(n, 30)`` float32 rows of a validated request."""
        return transactions_to_array(request.transactions)

    def predict_rows(self, features: Any) -> list[dict[str, Any]]:
        """One prediction dict per row of `features`, in order."""
        return self.rows(self.onnx.predict_proba(features))

    def rows(self, scores: Sequence[float] | Any) -> list[dict[str, Any]]:
        threshold = self.onnx.threshold
        return [
            {
                "fraud_probability": float(p),
                "is_fraud": bool(p >= threshold),
                "model": self.model_name,
                "model_version": self.model_version,
            }
            for p in scores
        ]

    def predict_json(self, body: bytes | str) -> list[dict[str, Any]]:
        """Validate a raw JSON body and score it; raises `ValidationError` on bad input."""
        return self.predict_rows(self.features(REQUEST.validate_json(body)))


def validation_detail(error: ValidationError) -> list[dict[str, Any]]:
    """A JSON-safe summary of a validation error for a 4xx body."""
    return [
        {"loc": [str(p) for p in e["loc"]], "msg": e["msg"], "type": e["type"]}
        for e in error.errors(include_url=False, include_input=False)
    ]


def peer_args(argv: Sequence[str] | None = None, *, batching: bool = False) -> argparse.Namespace:
    """``--port`` (required) and, for frameworks that batch, ``--batching/--max-batch-size``."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    if batching:
        parser.add_argument("--batching", action="store_true")
        parser.add_argument("--max-batch-size", type=int, default=64)
        parser.add_argument("--batch-wait-ms", type=float, default=5.0)
    return parser.parse_args(argv)
