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
from fraud_detection.routing.router import RoutedScores
from fraud_detection.routing.transaction_ids import TRANSACTION_ID_MAX_LENGTH
from fraud_detection.routing.transaction_ids import TRANSACTION_ID_PATTERN
from fraud_detection.schema import FEATURE_NAMES
from fraud_detection.schema import NON_NEGATIVE_FEATURES


def _feature_type(name: str) -> Any:
    low = 0.0 if name in NON_NEGATIVE_FEATURES else -FEATURE_LIMIT
    # msgspec's float refuses strings and booleans, and a range check refuses inf and NaN.
    return Annotated[float, msgspec.Meta(ge=low, le=FEATURE_LIMIT)]


_TransactionId = Annotated[
    str, msgspec.Meta(max_length=TRANSACTION_ID_MAX_LENGTH, pattern=TRANSACTION_ID_PATTERN)
]

_TransactionRow = msgspec.defstruct(
    "TransactionRow",
    [
        *((name, _feature_type(name)) for name in FEATURE_NAMES),
        ("transaction_id", _TransactionId | None, None),
    ],
    forbid_unknown_fields=True,
)
_N = len(FEATURE_NAMES)


class DecodedTransactions(msgspec.Struct, frozen=True):
    """A valid body: features in schema order and the callers' ids (None where absent)."""

    features: np.ndarray
    transaction_ids: list[str | None]


class TransactionDecoder:
    """Parses and checks a ``{"transactions": [...]}`` body in one pass."""

    def __init__(self, max_rows: int) -> None:
        rows = Annotated[list[_TransactionRow], msgspec.Meta(min_length=1, max_length=max_rows)]
        request = msgspec.defstruct("PredictRequest", [("transactions", rows)])
        self._decoder = msgspec.json.Decoder(request)

    def decode(self, body: bytes) -> DecodedTransactions | None:
        """The ``(n, 30)`` float32 features and the ids, or None when the body breaks a rule."""
        try:
            rows = self._decoder.decode(body).transactions
        except msgspec.DecodeError:  # ValidationError is a DecodeError
            return None
        values = [msgspec.structs.astuple(r) for r in rows]
        return DecodedTransactions(
            features=np.array([v[:_N] for v in values], dtype=np.float32),
            transaction_ids=[v[_N] for v in values],
        )


class PredictionEncoder:
    """Encodes routed scores as the JSON list of `fraud_detection.api_models.Prediction`."""

    def __init__(
        self,
        model: str,
        model_version: str,
        challenger: str | None = None,
        challenger_version: str | None = None,
    ) -> None:
        self.model = model
        self.model_version = model_version
        self.challenger = challenger
        self.challenger_version = challenger_version
        self._encode = msgspec.json.Encoder().encode

    def records(self, scored: RoutedScores) -> list[dict[str, Any]]:
        """One prediction object per transaction, in order: id, probability, decision, model."""
        rows = zip(
            scored.transaction_ids,
            scored.probabilities.tolist(),
            scored.is_fraud.tolist(),
            strict=True,
        )
        model, version = self.model, self.model_version
        if scored.by_challenger is None or not scored.by_challenger.any():
            return [
                {
                    "transaction_id": i,
                    "fraud_probability": p,
                    "is_fraud": f,
                    "model": model,
                    "model_version": version,
                }
                for i, p, f in rows
            ]
        return [
            {
                "transaction_id": i,
                "fraud_probability": p,
                "is_fraud": f,
                "model": self.challenger if c else model,
                "model_version": self.challenger_version if c else version,
            }
            for (i, p, f), c in zip(rows, scored.by_challenger.tolist(), strict=True)
        ]

    def encode(self, scored: RoutedScores) -> bytes:
        """`records` as the JSON body of the answer."""
        return self._encode(self.records(scored))
