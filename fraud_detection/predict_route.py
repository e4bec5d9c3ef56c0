"""`FastPredictRoute`: ``POST /predict`` served in one ASGI step, inside BentoML's middleware.

BentoML's route builds a pydantic model per row, re-validates the returned list to serialise
it, and sets up a request context: most of a worker's time for a one-row request (py-spy,
README Performance). This middleware answers valid bodies itself: msgspec parses and checks
the body (`TransactionDecoder`), the service's batcher scores it, and the answer is encoded
once. Everything else reaches BentoML unchanged: any body the decoder refuses (so clients get
pydantic's field-by-field 400), other methods and paths, and requests that arrive before the
service instance has attached its scorer. BentoML's metrics, timeout and concurrency
middlewares stay outside it, so ``/metrics`` still counts every request.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from fraud_detection.batching import QueueTimeoutError
from fraud_detection.http_guards import ASGIApp
from fraud_detection.http_guards import Message
from fraud_detection.http_guards import Receive
from fraud_detection.http_guards import Scope
from fraud_detection.http_guards import Send
from fraud_detection.http_guards import send_json
from fraud_detection.http_guards import send_json_bytes
from fraud_detection.request_codec import PredictionEncoder
from fraud_detection.request_codec import TransactionDecoder
from fraud_detection.routing.router import RoutedScores

logger = logging.getLogger(__name__)

#: BentoML's own body for an unexpected server error, so clients see one shape.
SERVER_ERROR = {"error": "An unexpected error has occurred, please check the server log."}


@dataclass(frozen=True)
class PredictHandler:
    """What the route needs from the service instance: parse, score, encode."""

    decoder: TransactionDecoder
    score: Callable[[np.ndarray, list[str | None]], Awaitable[RoutedScores]]
    encoder: PredictionEncoder
    server_header: bytes


class PredictHandlerSlot:
    """Filled by the service instance when a worker starts; read by the route per request."""

    def __init__(self) -> None:
        self.handler: PredictHandler | None = None

    def attach(self, handler: PredictHandler) -> None:
        self.handler = handler

    def detach(self) -> None:
        self.handler = None


async def read_body(receive: Receive) -> tuple[bytes, list[Message]]:
    """The whole request body, and the messages it came in (to replay them downstream)."""
    messages: list[Message] = []
    chunks: list[bytes] = []
    while True:
        message = await receive()
        messages.append(message)
        if message["type"] != "http.request":
            break
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    return b"".join(chunks), messages


class FastPredictRoute:
    """Serves valid ``POST`` bodies on `path` with the attached `PredictHandler`."""

    def __init__(self, app: ASGIApp, slot: PredictHandlerSlot, path: str = "/predict") -> None:
        self.app = app
        self.slot = slot
        self.path = path

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        handler = self.slot.handler
        if (
            handler is None
            or scope["type"] != "http"
            or scope["path"] != self.path
            or scope["method"] != "POST"
        ):
            await self.app(scope, receive, send)
            return
        body, messages = await read_body(receive)
        decoded = handler.decoder.decode(body) if messages[-1]["type"] == "http.request" else None
        if decoded is None:

            async def replay() -> Message:
                return messages.pop(0) if messages else await receive()

            await self.app(scope, replay, send)
            return
        try:
            scored = await handler.score(decoded.features, decoded.transaction_ids)
        except QueueTimeoutError as e:
            await send_json(send, 503, f"busy: {e}; retry shortly", [(b"retry-after", b"1")])
            return
        except Exception:
            logger.exception("Scoring failed on %s", self.path)
            await send_json_bytes(
                send, 500, json.dumps(SERVER_ERROR).encode(), [(b"server", handler.server_header)]
            )
            return
        await send_json_bytes(
            send, 200, handler.encoder.encode(scored), [(b"server", handler.server_header)]
        )
