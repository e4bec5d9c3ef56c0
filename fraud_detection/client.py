"""Score a pandas DataFrame against a running fraud service, in chunks."""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from http import HTTPStatus
from typing import TYPE_CHECKING
from typing import Any

import pandas as pd
from bentoml.exceptions import BentoMLException

from fraud_detection.schema import FEATURE_NAMES

if TYPE_CHECKING:
    import bentoml


#: Statuses that mean "busy, try again": the service sheds load with 503 when overloaded.
RETRYABLE = frozenset({HTTPStatus.SERVICE_UNAVAILABLE, HTTPStatus.TOO_MANY_REQUESTS})


def predict_with_retry(
    client: bentoml.SyncHTTPClient,
    rows: list[dict[str, float]],
    *,
    retries: int = 4,
    backoff_s: float = 0.2,
    sleep: Callable[[float], None] = time.sleep,
) -> list[dict[str, Any]]:
    """``POST /predict``, retrying 503/429 with jittered exponential backoff; others raise."""
    for attempt in range(retries + 1):
        try:
            return client.predict(transactions=rows)
        except BentoMLException as e:
            if e.error_code not in RETRYABLE or attempt == retries:
                raise
            sleep(backoff_s * 2**attempt * (1 + random.random()))
    raise AssertionError("unreachable")


def score_frame(
    client: bentoml.SyncHTTPClient,
    frame: pd.DataFrame,
    *,
    chunk_size: int = 1000,
    retries: int = 4,
) -> pd.DataFrame:
    """Score every row of `frame` through ``POST /predict``; other columns are ignored, except
    ``transaction_id``, which is sent (so labels can be fed back to ``POST /feedback``).

    Returns a frame with the same index and the columns ``transaction_id`` (yours, or the
    service's), ``fraud_probability``, ``is_fraud``, ``model`` and ``model_version``. Chunks
    answered 503 (overload) are retried up to `retries` times with backoff.

    >>> with bentoml.SyncHTTPClient("http://localhost:3000") as client:  # doctest: +SKIP
    ...     scores = score_frame(client, transactions)
    """
    missing = [c for c in FEATURE_NAMES if c not in frame.columns]
    if missing:
        raise ValueError(f"frame lacks feature columns {missing}")
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    sent = frame.loc[:, list(FEATURE_NAMES)].astype(float)
    if "transaction_id" in frame.columns:
        sent["transaction_id"] = frame["transaction_id"].astype(str)
    results: list[dict[str, Any]] = []
    for start in range(0, len(sent), chunk_size):
        chunk = sent.iloc[start : start + chunk_size].to_dict(orient="records")
        results.extend(predict_with_retry(client, chunk, retries=retries))
    return pd.DataFrame(
        results,
        index=frame.index,
        columns=["transaction_id", "fraud_probability", "is_fraud", "model", "model_version"],
    )
