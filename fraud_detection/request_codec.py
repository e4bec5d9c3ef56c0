"""The ``/predict`` wire format on the hot path: JSON body → float32 array → JSON answer.

`TransactionDecoder` applies the rules of `fraud_detection.api_models` (strict finite floats,
the same ranges, every field required, extra fields forbidden, 1 to `max_rows` rows) with
msgspec, which checks them while it parses, without building a pydantic model per row. It
only says yes or no: a body it refuses goes to the pydantic request model, whose error list
(each field named) the client receives. So the accepted set can only be narrower than
pydantic's, never wider, and every error message stays pydantic's; a property test holds the
two to the same answers.
"""

from __future__ import annotations

from typing import Annotated
from typing import Any

import msgspec
import numpy as np

from fraud_detection.api_models import FEATURE_LIMIT
from fraud_detection.schema import FEATURE_NAMES
from fraud_detection.schema import NON_NEGATIVE_FEATURES


def _feature_type(name: str) -> Any:
    low = 0.0 if name in NON_NEGATIVE_FEATURES else -FEATURE_LIMIT
    # msgspec's float refuses strings and booleans, and a range check refuses inf and NaN.
    return Annotated[float, msgspec.Meta(ge=low, le=FEATURE_LIMIT)]


_TransactionRow = msgspec.defstruct(
    "TransactionRow",
    [(name, _feature_type(name)) for name in FEATURE_NAMES],
    forbid_unknown_fields=True,
)


class TransactionDecoder:
    """Parses and checks a ``{"transactions": [...]}`` body in one pass."""

    def __init__(self, max_rows: int) -> None:
        rows = Annotated[list[_TransactionRow], msgspec.Meta(min_length=1, max_length=max_rows)]
        request = msgspec.defstruct("PredictRequest", [("transactions", rows)])
        self._decoder = msgspec.json.Decoder(request)

    def decode(self, body: bytes) -> np.ndarray | None:
        """The ``(n, 30)`` float32 features in schema order, or None when the body breaks a rule."""
        try:
            rows = self._decoder.decode(body).transactions
        except msgspec.DecodeError:  # ValidationError is a DecodeError
            return None
        return np.array([msgspec.structs.astuple(r) for r in rows], dtype=np.float32)


class PredictionEncoder:
    """Encodes scores as the JSON list of `fraud_detection.api_models.Prediction` objects."""

    def __init__(self, threshold: float, model: str, model_version: str) -> None:
        self.threshold = threshold
        self.model = model
        self.model_version = model_version
        self._encode = msgspec.json.Encoder().encode

    def records(self, scores: np.ndarray) -> list[dict[str, Any]]:
        """One prediction object per score, in order: probability, decision, model."""
        model, version = self.model, self.model_version
        is_fraud = (scores >= self.threshold).tolist()
        return [
            {"fraud_probability": p, "is_fraud": f, "model": model, "model_version": version}
            for p, f in zip(scores.tolist(), is_fraud, strict=True)
        ]

    def encode(self, scores: np.ndarray) -> bytes:
        """`records` as the JSON body of the answer."""
        return self._encode(self.records(scores))
