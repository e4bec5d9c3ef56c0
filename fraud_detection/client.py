"""Score a pandas DataFrame against a running fraud service, in chunks."""

from __future__ import annotations

from typing import TYPE_CHECKING
from typing import Any

import pandas as pd

from fraud_detection.schema import FEATURE_NAMES

if TYPE_CHECKING:
    import bentoml


def score_frame(
    client: bentoml.SyncHTTPClient, frame: pd.DataFrame, *, chunk_size: int = 1000
) -> pd.DataFrame:
    """Score every row of `frame` (extra columns are ignored) through ``POST /predict``.

    Returns a frame with the same index and the columns ``fraud_probability``,
    ``is_fraud``, ``model`` and ``model_version``.

    >>> with bentoml.SyncHTTPClient("http://localhost:3000") as client:  # doctest: +SKIP
    ...     scores = score_frame(client, transactions)
    """
    missing = [c for c in FEATURE_NAMES if c not in frame.columns]
    if missing:
        raise ValueError(f"frame lacks feature columns {missing}")
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    features = frame.loc[:, list(FEATURE_NAMES)].astype(float)
    results: list[dict[str, Any]] = []
    for start in range(0, len(features), chunk_size):
        chunk = features.iloc[start : start + chunk_size].to_dict(orient="records")
        results.extend(client.predict(transactions=chunk))
    return pd.DataFrame(
        results,
        index=frame.index,
        columns=["fraud_probability", "is_fraud", "model", "model_version"],
    )
