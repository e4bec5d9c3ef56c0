"""`ReviewQueue`: the answers of ``GET /review`` and ``GET /review/{transaction_id}``.

Joins what `ReviewStore` reads with the explanation of the model that scored the item (the
same object ``POST /explain`` answers), and turns lease notes for ``POST /feedback``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from collections.abc import Mapping
from typing import Any

import numpy as np

from fraud_detection.explanations import ExplanationsUnavailable
from fraud_detection.review.cursor import Position
from fraud_detection.review.models import LeaseNote
from fraud_detection.review.models import PageQuery
from fraud_detection.review.models import ReviewItem
from fraud_detection.review.models import ReviewItemDetail
from fraud_detection.review.models import ReviewLabel
from fraud_detection.review.models import ReviewLease
from fraud_detection.review.models import ReviewPage
from fraud_detection.review.store import QueueItem
from fraud_detection.review.store import ReviewStore
from fraud_detection.schema import FEATURE_NAMES
from fraud_detection.score_log.database import Lease

logger = logging.getLogger(__name__)

#: Explains rows scored by a model tag: `fraud_detection.explanations.ModelExplainers.records`
#: (KeyError: the model is not served here).
Explain = Callable[[str, np.ndarray, list[str]], list[dict[str, Any]]]


class ReviewQueue:
    """The review queue of a worker: its store, and the explainers of the models it serves."""

    def __init__(self, store: ReviewStore, explain: Explain) -> None:
        self.store = store
        self.explain = explain

    def page(self, query: PageQuery, now: float | None = None) -> ReviewPage:
        """The next page of open items, leased to ``query.reviewer``. Raises ValueError (a
        malformed cursor) and `DatabaseUnavailable`."""
        after = None if query.cursor is None else Position.decode(query.cursor, query.order)
        now = time.time() if now is None else now
        page = self.store.lease_page(
            query.reviewer, order=query.order, limit=query.limit, after=after, now=now
        )
        last = page.items[-1] if len(page.items) == query.limit else None
        return ReviewPage(
            items=[ReviewItem(**_item_fields(item, now)) for item in page.items],
            next_cursor=None
            if last is None
            else Position(query.order, last.key(query.order), last.transaction_id).encode(),
            open=page.open,
            reviewed_today=page.reviewed_today,
        )

    def item(
        self, transaction_id: str, reviewer: str, now: float | None = None
    ) -> ReviewItemDetail | None:
        """The item with its features, explanation, label and lease (None: unknown id).

        Explained first, then leased: the lease runs from when the reviewer sees the item
        (a worker's first explanation loads shap, seconds), and is decided on its state then.
        """
        scored = self.store.scored_with(transaction_id)
        if scored is None:
            return None
        model, features = scored
        explanation, unavailable = self._explanation(model, transaction_id, features)
        now = time.time() if now is None else now
        opened = self.store.open_item(transaction_id, reviewer, now)
        if opened is None:  # purged meanwhile
            return None
        item = opened.item
        lease = None
        if not opened.labelled and item.leased_to is not None and item.leased_until is not None:
            lease = ReviewLease(
                reviewer=item.leased_to, until=item.leased_until, yours=item.leased_to == reviewer
            )
        label = opened.label
        return ReviewItemDetail(
            **_item_fields(item, now),
            features=dict(zip(FEATURE_NAMES, opened.features.tolist(), strict=True)),
            explanation=explanation,
            explanation_unavailable=unavailable,
            label=None if label is None else ReviewLabel(**vars(label)),
            lease=lease,
        )

    def _explanation(
        self, model: str, transaction_id: str, features: np.ndarray
    ) -> tuple[dict[str, Any] | None, str | None]:
        try:
            (record,) = self.explain(model, features.reshape(1, -1), [transaction_id])
        except KeyError:
            return None, f"scored by {model}, which this worker does not serve"
        except ExplanationsUnavailable as e:
            return None, str(e)
        return record, None


def _item_fields(item: QueueItem, now: float) -> dict[str, Any]:
    return {
        "transaction_id": item.transaction_id,
        "scored_at": item.scored_at,
        "age_seconds": max(0.0, now - item.scored_at),
        "probability": item.probability,
        "amount": item.amount,
        "time": item.time,
        "model": item.model,
        "is_fraud": item.is_fraud,
        "leased_until": item.leased_until,
    }


def lease_notes(
    leases: Mapping[str, Lease], reviewers: Mapping[str, str | None], now: float
) -> list[LeaseNote]:
    """For each analyst label that closed an open item (`leases`: the item's lease then),
    a note unless the labelling reviewer held an unexpired lease on it."""
    notes = []
    for tid, (leased_to, until) in leases.items():
        reviewer = reviewers.get(tid)
        if leased_to is None or until is None:
            note = "not leased"
        elif until <= now:
            note = "lease expired"
        elif leased_to != reviewer:
            note = f"leased to {leased_to}"
        else:
            continue
        notes.append(LeaseNote(transaction_id=tid, note=note))
    return notes
