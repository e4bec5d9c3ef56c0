"""Request and response models of the HTTP API, derived from the feature schema."""

from __future__ import annotations

from operator import attrgetter
from typing import TYPE_CHECKING
from typing import Any

import numpy as np
from pydantic import BaseModel
from pydantic import ConfigDict
from pydantic import Field
from pydantic import create_model

from fraud_detection.routing.transaction_ids import TRANSACTION_ID_MAX_LENGTH
from fraud_detection.routing.transaction_ids import TRANSACTION_ID_PATTERN
from fraud_detection.schema import FEATURE_NAMES
from fraud_detection.schema import NON_NEGATIVE_FEATURES

#: Largest accepted magnitude: scoring runs in float32, and no real feature comes near it.
FEATURE_LIMIT = 1e9

#: An ordinary-looking transaction, used as the OpenAPI example of `POST /predict`.
EXAMPLE_TRANSACTION: dict[str, float] = {
    "Time": 40000.0,
    **{f"V{i}": 0.0 for i in range(1, 29)},
    "Amount": 42.5,
}


def _feature_field(name: str) -> Any:
    # strict: no "1.5" strings and no booleans; allow_inf_nan: NaN/inf are rejected, not scored.
    return (
        float,
        Field(
            strict=True,
            allow_inf_nan=False,
            ge=0.0 if name in NON_NEGATIVE_FEATURES else -FEATURE_LIMIT,
            le=FEATURE_LIMIT,
            description=f"{name}: finite number, "
            + ("0" if name in NON_NEGATIVE_FEATURES else "-1e9")
            + " to 1e9",
        ),
    )


if TYPE_CHECKING:

    class Transaction(BaseModel):
        """One card transaction: the 30 features of the ULB schema, every field required."""

else:
    Transaction = create_model(
        "Transaction",
        __config__=ConfigDict(extra="forbid"),
        __doc__="One card transaction: the 30 features of the ULB schema, every field required.",
        **{name: _feature_field(name) for name in FEATURE_NAMES},
        transaction_id=(
            str | None,
            Field(
                None,
                max_length=TRANSACTION_ID_MAX_LENGTH,
                pattern=TRANSACTION_ID_PATTERN,
                description="Your id for the transaction (1-64 visible ASCII characters, no "
                "spaces), echoed in the result and used by POST /feedback; assigned when absent",
            ),
        ),
    )


class Prediction(BaseModel):
    """Score of one transaction, in the order of the request."""

    model_config = ConfigDict(protected_namespaces=())

    transaction_id: str = Field(description="The request's id, or the one the service assigned")
    fraud_probability: float = Field(ge=0.0, le=1.0)
    is_fraud: bool = Field(description="fraud_probability >= the model's stored threshold")
    model: str = Field(
        description="Model-store name of the model that decided: the champion, or the "
        "challenger for a canary transaction"
    )
    model_version: str


class Reason(BaseModel):
    """One feature's part in a score: its value, a typical value, and its signed contribution."""

    feature: str
    value: float
    typical_value: float = Field(description="Median of the feature over the model's reference")
    contribution: float = Field(description="Shapley value on the logit; > 0 pushes toward fraud")


class Explanation(Prediction):
    """A score with its Shapley attributions: ``base_value + sum(shap_values) == logit``."""

    logit: float = Field(description="log(p / (1 - p)) of fraud_probability, from the graph")
    base_value: float = Field(description="Mean logit over the explanation's background rows")
    shap_values: dict[str, float] = Field(description="One Shapley value per feature")
    reasons: list[Reason] = Field(description="Largest |contribution| first")


_feature_values = attrgetter(*FEATURE_NAMES)


def transactions_to_array(transactions: list[Transaction]) -> np.ndarray:
    """Stack validated transactions into a float32 ``(n, 30)`` array in schema order."""
    return np.array([_feature_values(t) for t in transactions], dtype=np.float32).reshape(
        len(transactions), len(FEATURE_NAMES)
    )


def transaction_ids(transactions: list[Transaction]) -> list[str | None]:
    """The callers' ids, None where a transaction came without one."""
    return [t.transaction_id for t in transactions]  # type: ignore[attr-defined]
