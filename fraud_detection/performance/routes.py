"""``POST /feedback`` (late labels in) and ``GET /performance`` (online metrics out).

Served by an ASGI middleware, like ``/predict``'s fast route, so the service controls each
answer: a bare JSON list of labels is accepted (as is ``{"labels": [...]}``), a bad item is a
400 naming it, and a database that is down is a 503 whose body says so (BentoML 1.4 replaces
the text of its own 5xx answers). `document_outcome_routes` adds both to the OpenAPI document.
"""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import dataclass
from typing import Annotated
from typing import Any
from urllib.parse import parse_qsl

from pydantic import BaseModel
from pydantic import ConfigDict
from pydantic import Field
from pydantic import TypeAdapter
from pydantic import ValidationError

from fraud_detection.http_guards import ASGIApp
from fraud_detection.http_guards import Receive
from fraud_detection.http_guards import Scope
from fraud_detection.http_guards import Send
from fraud_detection.http_guards import send_json
from fraud_detection.http_guards import send_json_bytes
from fraud_detection.performance.metrics import PerformanceMonitor
from fraud_detection.predict_route import read_body
from fraud_detection.review.models import REVIEWER_PATTERN
from fraud_detection.review.models import LabelSource
from fraud_detection.review.models import LeaseNote
from fraud_detection.review.queue import lease_notes
from fraud_detection.routing.shadow import ShadowScorer
from fraud_detection.routing.transaction_ids import TRANSACTION_ID_PATTERN
from fraud_detection.score_log.database import DatabaseUnavailable
from fraud_detection.score_log.database import Label
from fraud_detection.score_log.database import ScoreDatabase
from fraud_detection.score_log.database import now
from fraud_detection.score_log.database import redacted
from fraud_detection.score_log.writer import ScoreLogWriter

logger = logging.getLogger(__name__)

FEEDBACK_PATH = "/feedback"
PERFORMANCE_PATH = "/performance"
LABEL_SOURCES = ("analyst", "chargeback")


class Feedback(BaseModel):
    """The label of one scored transaction: 1 fraud (chargeback, confirmed), 0 genuine."""

    model_config = ConfigDict(extra="forbid")

    transaction_id: str = Field(pattern=TRANSACTION_ID_PATTERN, max_length=64)
    label: int = Field(strict=True, ge=0, le=1, description="1 = fraud, 0 = genuine")
    reviewer: str | None = Field(
        None, pattern=REVIEWER_PATTERN, max_length=64, description="Who decided (an analyst)"
    )
    source: LabelSource = Field(
        "chargeback", description="analyst: a review queue decision; chargeback: the default"
    )


def feedback_adapter(max_items: int) -> TypeAdapter[list[Feedback]]:
    """Validates a feedback body's list: 1 to `max_items` labels."""
    return TypeAdapter(Annotated[list[Feedback], Field(min_length=1, max_length=max_items)])


@dataclass
class Outcomes:
    """A worker's score database, log writer, shadow scorer and performance monitor."""

    database: ScoreDatabase
    score_log: ScoreLogWriter
    monitor: PerformanceMonitor
    shadow: ShadowScorer | None
    max_feedback_items: int

    def __post_init__(self) -> None:
        self.feedback_body = feedback_adapter(self.max_feedback_items)

    def record_feedback(self, items: list[Feedback]) -> dict[str, Any]:
        """Store every label (the last one wins for a repeated id), closing its review item.
        A label whose transaction the log does not hold yet (its score still on its way from
        a worker or a replica) is kept, and joins its score when that arrives; the answer
        counts those as unmatched. An analyst's label for an item not leased to them (or
        whose lease expired) is stored too, and noted."""
        labels = {
            item.transaction_id: Label(item.transaction_id, item.label, item.reviewer, item.source)
            for item in items
        }
        at = now()
        leases = self.database.upsert_labels(list(labels.values()), at)
        known = self.database.known_ids(list(labels))
        unmatched = [tid for tid in labels if tid not in known]
        notes = lease_notes(leases, {tid: label.reviewer for tid, label in labels.items()}, at)
        return {
            "received": len(items),
            "stored": len(labels),
            "unmatched": len(unmatched),
            "unmatched_ids": unmatched,
            "lease_notes": [note.model_dump() for note in notes],
        }

    def status(self) -> dict[str, Any]:
        """This worker's view of the score log (its own writer; the database is shared)."""
        return {
            "url": redacted(self.database.url),
            "score_log": self.score_log.stats.as_dict(),
            "shadow": None if self.shadow is None else vars(self.shadow.stats).copy(),
        }

    def performance(self, source: str | None = None) -> tuple[int, dict[str, Any]]:
        """The ``/performance`` status and document (on the labels of `source` only, when
        given: then the gauges are left as they are)."""
        try:
            if source is None:
                document = self.monitor.compute()
            else:
                document = self.monitor.performance.compute(source=source)
        except DatabaseUnavailable as e:
            return 503, {"database": {"status": "unavailable", "error": str(e), **self.status()}}
        return 200, {**document, "database": {"status": "ok", **self.status()}}


class FeedbackAnswer(BaseModel):
    """What ``POST /feedback`` did with the labels it received."""

    received: int
    stored: int = Field(description="Labels stored or overwritten (one per distinct id)")
    unmatched: int = Field(
        description="Labels whose transaction the score log does not hold yet: kept, and "
        "counted by /performance once the score arrives"
    )
    unmatched_ids: list[str]
    lease_notes: list[LeaseNote] = Field(
        description="Analyst labels for open review items that were not leased to their "
        "reviewer (or whose lease expired): stored all the same"
    )


def document_outcome_routes(document: dict[str, Any]) -> dict[str, Any]:
    """Add ``POST /feedback`` and ``GET /performance`` to the service's OpenAPI document
    (they are served by `OutcomeRoutes`, outside BentoML's API, which cannot document them)."""
    schemas = document.setdefault("components", {}).setdefault("schemas", {})
    for model in (Feedback, FeedbackAnswer):
        schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
        for name, definition in schema.pop("$defs", {}).items():
            schemas.setdefault(name, definition)
        schemas[model.__name__] = schema
    labels = {"type": "array", "minItems": 1, "items": {"$ref": "#/components/schemas/Feedback"}}
    error = {
        "content": {
            "application/json": {"schema": {"$ref": "#/components/schemas/InvalidArgument"}}
        }
    }
    unavailable = {
        "description": "The score database is unreachable (predictions go on)",
        "content": {"application/json": {"schema": {"type": "object"}}},
    }
    document.setdefault("paths", {})[FEEDBACK_PATH] = {
        "post": {
            "tags": ["Service APIs"],
            "summary": "Labels that arrived later (1 fraud, 0 genuine), by transaction id",
            "description": 'A list of labels, or {"labels": [...]}; at most '
            "FRAUD_FEEDBACK_MAX_ITEMS. Idempotent; a relabel overwrites. A label is never "
            "discarded: one whose score the log does not hold yet is kept, returned under "
            "unmatched_ids, and joins its score when that arrives.",
            "operationId": "feedback",
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": {
                        "schema": {
                            "anyOf": [
                                labels,
                                {
                                    "type": "object",
                                    "properties": {"labels": labels},
                                    "required": ["labels"],
                                    "additionalProperties": False,
                                },
                            ]
                        }
                    }
                },
            },
            "responses": {
                "200": {
                    "description": "Successful Response",
                    "content": {
                        "application/json": {
                            "schema": {"$ref": "#/components/schemas/FeedbackAnswer"}
                        }
                    },
                },
                "400": {"description": "Bad Request", **error},
                "503": unavailable,
            },
        }
    }
    document["paths"][PERFORMANCE_PATH] = {
        "get": {
            "tags": ["Service APIs"],
            "summary": "Champion and challenger on the trailing window of labelled transactions",
            "operationId": "performance",
            "parameters": [
                {
                    "name": "source",
                    "in": "query",
                    "description": "Judge on the labels of this source only (the window's "
                    "other labels left out); the gauges always count every label",
                    "schema": {"type": "string", "enum": list(LABEL_SOURCES)},
                }
            ],
            "responses": {
                "200": {
                    "description": "AUPRC, precision and recall at the threshold, expected cost, "
                    "label coverage and delay, per model; both on the same transactions",
                    "content": {"application/json": {"schema": {"type": "object"}}},
                },
                "400": {"description": "Bad Request", **error},
                "503": unavailable,
            },
        }
    }
    return document


class OutcomesSlot:
    """Filled by the service instance when a worker starts (None: score log off)."""

    outcomes: Outcomes | None = None


def _validation_error(e: ValidationError) -> bytes:
    return json.dumps(
        {
            "error": f"{e.error_count()} validation error(s) in the feedback body",
            "detail": e.errors(include_url=False, include_context=False, include_input=False),
        }
    ).encode()


class OutcomeRoutes:
    """ASGI middleware answering ``POST /feedback`` and ``GET /performance``."""

    def __init__(self, app: ASGIApp, slot: OutcomesSlot) -> None:
        self.app = app
        self.slot = slot

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] not in (FEEDBACK_PATH, PERFORMANCE_PATH):
            await self.app(scope, receive, send)
            return
        method = "POST" if scope["path"] == FEEDBACK_PATH else "GET"
        if scope["method"] != method and not (method == "GET" and scope["method"] == "HEAD"):
            await send_json(
                send, 405, f"{scope['path']} answers {method} only", [(b"allow", method.encode())]
            )
            return
        outcomes = self.slot.outcomes
        if outcomes is None:
            await send_json(
                send, 404, "the score log is off (FRAUD_SCORE_LOG=0): no feedback or performance"
            )
            return
        if method == "GET":
            query = dict(parse_qsl(scope.get("query_string", b"").decode("latin-1")))
            source = query.get("source")
            if source is not None and source not in LABEL_SOURCES:
                message = f"source must be one of {', '.join(LABEL_SOURCES)}, got {source!r}"
                error = {
                    "error": f"invalid query parameter 'source': {message}",
                    "detail": [{"loc": ["query", "source"], "msg": message, "type": "enum"}],
                }
                await send_json_bytes(send, 400, json.dumps(error).encode())
                return
            status, document = await asyncio.to_thread(outcomes.performance, source)
            await send_json_bytes(send, status, json.dumps(document).encode())
            return
        body, _ = await read_body(receive)
        try:
            parsed = json.loads(body)
        except (ValueError, RecursionError) as e:  # bad JSON, bad UTF-8, absurd nesting
            error = {"error": "the feedback body is not JSON", "detail": str(e)}
            await send_json_bytes(send, 400, json.dumps(error).encode())
            return
        if isinstance(parsed, dict) and set(parsed) == {"labels"}:
            parsed = parsed["labels"]
        try:
            items = outcomes.feedback_body.validate_python(parsed)
        except ValidationError as e:
            await send_json_bytes(send, 400, _validation_error(e))
            return
        try:
            answer = await asyncio.to_thread(outcomes.record_feedback, items)
        except DatabaseUnavailable as e:
            logger.warning("Feedback not stored: %s", e)
            await send_json(
                send,
                503,
                f"the score database is unavailable; resend later: {e}",
                [(b"retry-after", b"30")],
            )
            return
        await send_json_bytes(send, 200, json.dumps(answer).encode())
