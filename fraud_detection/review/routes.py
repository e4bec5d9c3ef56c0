"""``GET /review`` and ``GET /review/{transaction_id}``: the analysts' queue over HTTP.

Served by an ASGI middleware, like ``/feedback`` (`fraud_detection.performance.routes`), so
the service controls each answer: a bad query parameter is a 400 naming it, an unknown id a
404, a database that is down a 503 saying so. `document_review_routes` adds both to the
OpenAPI document, so clients and the fuzzer see them.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from typing import Any
from urllib.parse import parse_qsl

from pydantic import BaseModel
from pydantic import ValidationError

from fraud_detection.http_guards import ASGIApp
from fraud_detection.http_guards import Receive
from fraud_detection.http_guards import Scope
from fraud_detection.http_guards import Send
from fraud_detection.http_guards import send_json_bytes
from fraud_detection.review.cursor import CursorError
from fraud_detection.review.models import REVIEWER_PATTERN
from fraud_detection.review.models import ItemQuery
from fraud_detection.review.models import PageQuery
from fraud_detection.review.models import ReviewItemDetail
from fraud_detection.review.models import ReviewPage
from fraud_detection.review.queue import ReviewQueue
from fraud_detection.routing.transaction_ids import TRANSACTION_ID_PATTERN
from fraud_detection.score_log.database import DatabaseUnavailable

logger = logging.getLogger(__name__)

REVIEW_PATH = "/review"
_ID = re.compile(TRANSACTION_ID_PATTERN)


class ReviewSlot:
    """Filled by the service instance when a worker starts; `off` says why it is not."""

    queue: ReviewQueue | None = None
    off: str = "the review queue is not ready yet"


def _error(message: str, detail: Any = None) -> bytes:
    return json.dumps({"error": message, "detail": message if detail is None else detail}).encode()


def _bad_field(location: str, name: str, message: str, kind: str = "value_error") -> bytes:
    return _error(
        f"invalid {location} parameter {name!r}: {message}",
        [{"loc": [location, name], "msg": message, "type": kind}],
    )


def _parse(model: type[BaseModel], scope: Scope) -> tuple[Any, bytes | None]:
    """`model` from the query string (a repeated name: its first value), or a 400 body."""
    params: dict[str, str] = {}
    try:
        pairs = parse_qsl(scope.get("query_string", b"").decode(), keep_blank_values=True)
    except UnicodeDecodeError:
        return None, _error("the query string is not UTF-8")
    for name, value in pairs:
        params.setdefault(name, value)
    try:
        return model.model_validate(params), None
    except ValidationError as e:
        errors = e.errors(include_url=False, include_context=False, include_input=False)
        detail = [{**error, "loc": ["query", *error["loc"]]} for error in errors]
        names = ", ".join(sorted({str(error["loc"][0]) for error in errors}))
        return None, _error(f"invalid query parameter(s): {names}", detail)


class ReviewRoutes:
    """ASGI middleware answering ``GET /review`` and ``GET /review/{transaction_id}``."""

    def __init__(self, app: ASGIApp, slot: ReviewSlot) -> None:
        self.app = app
        self.slot = slot

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if scope["type"] != "http" or not (
            path == REVIEW_PATH or path.startswith(f"{REVIEW_PATH}/")
        ):
            await self.app(scope, receive, send)
            return
        if scope["method"] != "GET":  # a HEAD would lease items nobody sees
            await send_json_bytes(
                send, 405, _error(f"{path} answers GET only"), [(b"allow", b"GET")]
            )
            return
        queue = self.slot.queue
        if queue is None:
            await send_json_bytes(send, 404, _error(self.slot.off))
            return
        if path == REVIEW_PATH:
            await self._page(queue, scope, send)
        else:
            await self._item(queue, path.removeprefix(f"{REVIEW_PATH}/"), scope, send)

    async def _page(self, queue: ReviewQueue, scope: Scope, send: Send) -> None:
        query, error = _parse(PageQuery, scope)
        if error is not None:
            await send_json_bytes(send, 400, error)
            return
        try:
            page = await asyncio.to_thread(queue.page, query)
        except CursorError as e:
            await send_json_bytes(send, 400, _bad_field("query", "cursor", str(e)))
            return
        except DatabaseUnavailable as e:
            await self._unavailable(send, e)
            return
        await send_json_bytes(send, 200, page.model_dump_json().encode())

    async def _item(
        self, queue: ReviewQueue, transaction_id: str, scope: Scope, send: Send
    ) -> None:
        if not _ID.fullmatch(transaction_id):
            await send_json_bytes(
                send,
                400,
                _bad_field(
                    "path",
                    "transaction_id",
                    "a transaction id is 1 to 64 visible ASCII characters, no spaces",
                    "string_pattern_mismatch",
                ),
            )
            return
        query, error = _parse(ItemQuery, scope)
        if error is not None:
            await send_json_bytes(send, 400, error)
            return
        try:
            detail = await asyncio.to_thread(queue.item, transaction_id, query.reviewer)
        except DatabaseUnavailable as e:
            await self._unavailable(send, e)
            return
        if detail is None:
            message = (
                f"no review item {transaction_id!r}: never kept for review (not flagged), "
                "purged after the retention, or not yet written by the score log"
            )
            await send_json_bytes(send, 404, _error(message))
            return
        await send_json_bytes(send, 200, detail.model_dump_json().encode())

    @staticmethod
    async def _unavailable(send: Send, error: DatabaseUnavailable) -> None:
        logger.warning("Review queue unavailable: %s", error)
        await send_json_bytes(
            send,
            503,
            _error(f"the score database is unavailable; retry later: {error}"),
            [(b"retry-after", b"30")],
        )


def document_review_routes(document: dict[str, Any]) -> dict[str, Any]:
    """Add ``GET /review`` and ``GET /review/{transaction_id}`` to the OpenAPI document."""
    schemas = document.setdefault("components", {}).setdefault("schemas", {})
    for model in (ReviewPage, ReviewItemDetail):
        schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
        for name, definition in schema.pop("$defs", {}).items():
            schemas.setdefault(name, definition)
        schemas[model.__name__] = schema

    def answer(description: str, ref: str) -> dict[str, Any]:
        return {
            "description": description,
            "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{ref}"}}},
        }

    failure = {
        "type": "object",
        "required": ["error"],
        "properties": {"error": {"type": "string"}, "detail": {"type": "string"}},
    }

    reviewer = {
        "name": "reviewer",
        "in": "query",
        "required": True,
        "description": "Who works the queue; items shown are leased to them",
        "schema": {"type": "string", "pattern": REVIEWER_PATTERN, "maxLength": 64},
    }

    def failed(description: str) -> dict[str, Any]:
        return {"description": description, "content": {"application/json": {"schema": failure}}}

    errors = {
        "400": answer("A bad parameter, named in detail[].loc", "InvalidArgument"),
        "404": failed("The review queue is off (FRAUD_REVIEW=0 or FRAUD_SCORE_LOG=0)"),
        "503": failed("The score database is unreachable (predictions go on)"),
    }
    paths = document.setdefault("paths", {})
    paths[REVIEW_PATH] = {
        "get": {
            "tags": ["Service APIs"],
            "summary": "Open review items, riskiest or newest first, leased to the reviewer",
            "description": "Items kept for review (decided fraud, or a probability at or above "
            "FRAUD_REVIEW_MIN_PROBABILITY) with no label yet and not leased to another "
            "reviewer. The items returned are leased to `reviewer` for "
            "FRAUD_REVIEW_LEASE_SECONDS, so two reviewers never get the same item; a label "
            "through POST /feedback closes an item. Pass next_cursor as cursor for the next "
            "page.",
            "operationId": "review_queue",
            "parameters": [
                reviewer,
                {
                    "name": "limit",
                    "in": "query",
                    "schema": {"type": "integer", "minimum": 1, "maximum": 100, "default": 20},
                },
                {
                    "name": "order",
                    "in": "query",
                    "schema": {"type": "string", "enum": ["risk", "newest"], "default": "risk"},
                },
                {
                    "name": "cursor",
                    "in": "query",
                    "description": "next_cursor of the previous page (opaque)",
                    "schema": {"type": "string", "maxLength": 512},
                },
            ],
            "responses": {"200": answer("A page of items, now yours", "ReviewPage"), **errors},
        }
    }
    paths[f"{REVIEW_PATH}/{{transaction_id}}"] = {
        "get": {
            "tags": ["Service APIs"],
            "summary": "A review item with its features, explanation, label and lease",
            "description": "The 30 features exactly as scored, and the explanation POST "
            "/explain gives for them by the model that scored the item. Opening an open item "
            "that is unleased (or yours) leases it to `reviewer`.",
            "operationId": "review_item",
            "parameters": [
                {
                    "name": "transaction_id",
                    "in": "path",
                    "required": True,
                    "schema": {"type": "string", "pattern": TRANSACTION_ID_PATTERN},
                },
                reviewer,
            ],
            "responses": {
                "200": answer("The item", "ReviewItemDetail"),
                **errors,
                "404": failed("No such review item, or the review queue is off"),
            },
        }
    }
    return document
