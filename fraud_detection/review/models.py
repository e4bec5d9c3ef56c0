"""What ``GET /review`` and ``GET /review/{transaction_id}`` take and answer (pydantic)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel
from pydantic import ConfigDict
from pydantic import Field

from fraud_detection.api_models import Explanation

#: A reviewer's name: what the console sends, safe in logs and URLs as it is.
REVIEWER_PATTERN = r"^[A-Za-z0-9_.@-]{1,64}$"
#: Label sources: an analyst working the review queue, or a chargeback (the default).
LabelSource = Literal["analyst", "chargeback"]
QueueOrder = Literal["risk", "newest"]

Reviewer = Field(
    pattern=REVIEWER_PATTERN,
    max_length=64,
    description="Who works the queue: 1 to 64 of A-Z a-z 0-9 _ . @ -",
)


class PageQuery(BaseModel):
    """``GET /review``'s query."""

    model_config = ConfigDict(extra="ignore")

    reviewer: str = Reviewer
    limit: int = Field(20, ge=1, le=100, description="Items per page")
    order: QueueOrder = Field(
        "risk", description="risk: highest probability first; newest: latest scored first"
    )
    cursor: str | None = Field(
        None, max_length=512, description="next_cursor of the previous page (opaque)"
    )


class ItemQuery(BaseModel):
    """``GET /review/{transaction_id}``'s query."""

    model_config = ConfigDict(extra="ignore")

    reviewer: str = Reviewer


class ReviewItem(BaseModel):
    """One transaction kept for review, as the queue lists it."""

    model_config = ConfigDict(protected_namespaces=())

    transaction_id: str
    scored_at: float = Field(description="Unix time the transaction was scored")
    age_seconds: float = Field(description="Seconds since it was scored")
    probability: float = Field(description="The fraud probability served")
    amount: float
    time: float = Field(description="The transaction's Time feature")
    model: str = Field(description="Tag (name:version) of the model that decided")
    is_fraud: bool = Field(description="The decision served")
    leased_until: float | None = Field(
        description="Unix time the current lease ends (null: not leased)"
    )


class ReviewPage(BaseModel):
    """A page of open items, each now leased to the reviewer who asked."""

    items: list[ReviewItem]
    next_cursor: str | None = Field(description="Pass as cursor for the next page; null: none")
    open: int = Field(
        description="Items with no label that are not leased to another reviewer right now"
    )
    reviewed_today: int = Field(description="Analyst labels stored since 00:00 UTC")


class ReviewLabel(BaseModel):
    """The label an item has."""

    label: int = Field(description="1 fraud, 0 genuine")
    reviewer: str | None
    source: LabelSource
    labelled_at: float


class ReviewLease(BaseModel):
    """Who works on an item, until when."""

    reviewer: str
    until: float
    yours: bool = Field(description="Leased to the reviewer who asked")


class ReviewItemDetail(ReviewItem):
    """An item with what it was scored on, why, and its label and lease."""

    features: dict[str, float] = Field(description="The 30 features exactly as scored")
    explanation: Explanation | None = Field(
        description="What POST /explain answers for this row, by the model that scored it"
    )
    explanation_unavailable: str | None = Field(
        None, description="Why explanation is null (the model is not served here, ...)"
    )
    label: ReviewLabel | None
    lease: ReviewLease | None = Field(description="null once labelled, or never leased")


class LeaseNote(BaseModel):
    """An analyst's label that arrived without a valid lease of their own (stored anyway)."""

    transaction_id: str
    note: str = Field(description='"lease expired", "leased to <reviewer>" or "not leased"')
