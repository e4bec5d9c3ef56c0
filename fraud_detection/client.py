"""Score a pandas DataFrame against a running fraud service, in chunks."""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from http import HTTPStatus
from typing import TYPE_CHECKING
from typing import Any

import httpx
import pandas as pd
from bentoml.exceptions import BentoMLException

from fraud_detection.schema import FEATURE_NAMES

if TYPE_CHECKING:
    import bentoml


#: Statuses that mean "busy, try again": the service sheds load with 503 when overloaded.
RETRYABLE = frozenset({HTTPStatus.SERVICE_UNAVAILABLE, HTTPStatus.TOO_MANY_REQUESTS})
#: A balancer's answer when the replica it chose died mid-request: the rows may be scored.
RETRYABLE_WITH_IDS = frozenset({HTTPStatus.BAD_GATEWAY})
#: The connection could not be opened (refused, or no answer to the handshake): nothing was
#: sent, so nothing was scored.
NOT_SENT: tuple[type[httpx.TransportError], ...] = (httpx.ConnectError, httpx.ConnectTimeout)
#: The connection broke after the request went out (reset, or closed with no answer, as when
#: a replica dies): the rows may have been scored and logged.
MAYBE_SENT: tuple[type[httpx.TransportError], ...] = (
    httpx.ReadError,
    httpx.WriteError,
    httpx.RemoteProtocolError,
)


def predict_with_retry(
    client: bentoml.SyncHTTPClient,
    rows: list[dict[str, Any]],
    *,
    retries: int = 4,
    backoff_s: float = 0.2,
    sleep: Callable[[float], None] = time.sleep,
) -> list[dict[str, Any]]:
    """``POST /predict``, retrying what is safe to send again, with jittered exponential
    backoff; anything else raises, as does the last failure.

    Always retried: 503 and 429 (load shed: nothing scored) and a connection that could not be
    opened (nothing sent). Retried only when every row carries a ``transaction_id``: a
    connection cut after the request went out, and a balancer's 502, which mean a replica may
    have scored and logged the rows, then died before answering. Sent again, they are scored
    again under the same ids, and ``/performance`` judges each labelled id once. Without ids
    the service would log them again under new ids, and the caller would never learn the
    first ones. A read timeout is not retried: the replica may still be scoring.
    """
    resend_is_safe = all(row.get("transaction_id") for row in rows)
    for attempt in range(retries + 1):
        try:
            return client.predict(transactions=rows)
        except BentoMLException as e:
            retryable = e.error_code in RETRYABLE or (
                resend_is_safe and e.error_code in RETRYABLE_WITH_IDS
            )
            if not retryable or attempt == retries:
                raise
        except NOT_SENT:
            if attempt == retries:
                raise
        except MAYBE_SENT:
            if not resend_is_safe or attempt == retries:
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
    are retried up to `retries` times with backoff as `predict_with_retry` retries them: a
    connection cut mid-request (a replica dying) only when `frame` has a ``transaction_id``
    column; without one, that failure raises (no ids are made up here: the service's own
    would differ on each attempt).

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
