"""The framework ceiling: a BentoML endpoint with `/predict`'s request and response shape.

Validation is the same (`Transaction`, 1..``FRAUD_MAX_ROWS`` rows); no model runs.
"""

from __future__ import annotations

from typing import Annotated

import bentoml
from bentoml.validators import ContentType
from pydantic import Field

from fraud_detection.api_models import Prediction
from fraud_detection.api_models import Transaction
from fraud_detection.api_models import transaction_ids
from fraud_detection.routing.transaction_ids import TransactionIdAssigner
from fraud_detection.settings import ServingSettings

settings = ServingSettings.from_env()


@bentoml.service(
    name="noop_ceiling",
    **settings.service_config(),
)
class NoopService:
    """Answers every row with a constant score (and its id, as the real service does)."""

    def __init__(self) -> None:
        self.ids = TransactionIdAssigner()

    @bentoml.api(route="/predict")
    def predict(
        self,
        transactions: Annotated[
            list[Transaction], Field(min_length=1, max_length=settings.max_rows)
        ],
    ) -> Annotated[list[Prediction], ContentType("application/json")]:
        ids = self.ids.complete(transaction_ids(transactions))
        return [
            Prediction(
                transaction_id=i,
                fraud_probability=0.0,
                is_fraud=False,
                model="noop",
                model_version="0",
            )
            for i in ids
        ]
