"""ASGI middlewares in front of the service: bearer-token auth and a request-body size limit.

Both answer with JSON ``{"detail": ...}`` like the rest of the API, before any parsing.
"""

from __future__ import annotations

import asyncio
import hmac
import json
from collections.abc import Awaitable
from collections.abc import Callable
from collections.abc import MutableMapping
from typing import Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


async def send_json(
    send: Send,
    status: int,
    detail: str,
    headers: list[tuple[bytes, bytes]] = (),  # type: ignore[assignment]
) -> None:
    """Answer ``{"detail": detail}`` with `status`."""
    await send_json_bytes(send, status, json.dumps({"detail": detail}).encode(), headers)


async def send_json_bytes(
    send: Send,
    status: int,
    body: bytes,
    headers: list[tuple[bytes, bytes]] = (),  # type: ignore[assignment]
) -> None:
    """Answer an already encoded JSON `body` with `status` and extra `headers`."""
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                *(headers or []),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


def header(scope: Scope, name: bytes) -> bytes | None:
    return next((v for k, v in scope.get("headers", []) if k.lower() == name), None)


class BearerAuth:
    """Requires ``Authorization: Bearer <token>`` except on `public_paths` and paths under
    `public_prefixes` (the console's own files, which hold no data).

    The comparison is constant-time, and every refusal gets the same 401 body, so a caller
    learns nothing about which part was wrong.
    """

    def __init__(
        self,
        app: ASGIApp,
        token: str,
        public_paths: frozenset[str],
        public_prefixes: tuple[str, ...] = (),
    ) -> None:
        if not token:
            raise ValueError("BearerAuth needs a non-empty token")
        self.app = app
        self.expected = f"Bearer {token}".encode()
        self.public_paths = public_paths
        self.public_prefixes = public_prefixes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] != "http"
            or scope["path"] in self.public_paths
            or scope["path"].startswith(self.public_prefixes)
        ):
            await self.app(scope, receive, send)
            return
        supplied = header(scope, b"authorization") or b""
        if not hmac.compare_digest(supplied, self.expected):
            await send_json(
                send, 401, "missing or invalid bearer token", [(b"www-authenticate", b"Bearer")]
            )
            return
        await self.app(scope, receive, send)


class BodySizeLimit:
    """Answers 413 to request bodies over `max_bytes`, declared or streamed, before parsing."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    def too_large(self, size: str) -> str:
        return f"request body is {size}; the limit is {self.max_bytes} bytes (FRAUD_MAX_BODY_BYTES)"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = header(scope, b"content-length")
        if declared is not None:
            if not declared.isdigit():
                await send_json(send, 400, f"invalid Content-Length header {declared.decode()!r}")
                return
            if int(declared) > self.max_bytes:
                await send_json(send, 413, self.too_large(f"{int(declared)} bytes"))
                return
            await self.app(scope, receive, send)
            return
        # No length declared (chunked): read up to the limit, then replay what was read.
        messages: list[Message] = []
        received = 0
        while True:
            message = await receive()
            messages.append(message)
            if message["type"] != "http.request":
                break
            received += len(message.get("body", b""))
            if received > self.max_bytes:
                await send_json(send, 413, self.too_large(f"over {self.max_bytes} bytes"))
                return
            if not message.get("more_body", False):
                break

        async def replay() -> Message:
            return messages.pop(0) if messages else await receive()

        await self.app(scope, replay, send)


class RetryAfterOn503:
    """Adds ``Retry-After`` to the app's 503 answers (the batcher shedding load), so clients
    back off instead of retrying at once."""

    def __init__(self, app: ASGIApp, seconds: int = 1) -> None:
        self.app = app
        self.value = str(seconds).encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_retry_after(message: Message) -> None:
            if message["type"] == "http.response.start" and message["status"] == 503:
                headers = [
                    (k, v) for k, v in message.get("headers", []) if k.lower() != b"retry-after"
                ]
                message = {**message, "headers": [*headers, (b"retry-after", self.value)]}
            await send(message)

        await self.app(scope, receive, send_with_retry_after)


#: What a 400 really carries: pydantic's error list (``loc`` names the row and field), or text.
ERROR_DETAIL_SCHEMA: dict[str, Any] = {
    "title": "Error Detail",
    "anyOf": [
        {"type": "string"},
        {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["loc", "msg", "type"],
                "properties": {
                    "loc": {"type": "array", "items": {"type": ["string", "integer"]}},
                    "msg": {"type": "string"},
                    "type": {"type": "string"},
                },
            },
        },
    ],
}


def correct_openapi(document: dict[str, Any]) -> dict[str, Any]:
    """BentoML 1.4.40 documents a 400's ``detail`` as a string; validation errors send a list."""
    invalid = document.get("components", {}).get("schemas", {}).get("InvalidArgument")
    if invalid is not None:
        invalid.setdefault("properties", {})["detail"] = ERROR_DETAIL_SCHEMA
    return document


class OpenAPICorrection:
    """Serves ``/docs.json`` with `correct` (by default `correct_openapi`) applied, so clients
    and schema-based testers see the error bodies the service actually returns."""

    def __init__(
        self,
        app: ASGIApp,
        path: str = "/docs.json",
        correct: Callable[[dict[str, Any]], dict[str, Any]] = correct_openapi,
    ) -> None:
        self.app = app
        self.path = path
        self.correct = correct

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != self.path:
            await self.app(scope, receive, send)
            return
        start: Message = {}
        chunks: list[bytes] = []

        async def capture(message: Message) -> None:
            nonlocal start
            if message["type"] == "http.response.start":
                start = message
            else:
                chunks.append(message.get("body", b""))

        await self.app(scope, receive, capture)
        body = b"".join(chunks)
        if start.get("status") == 200:
            body = json.dumps(self.correct(json.loads(body))).encode()
        headers = [(k, v) for k, v in start.get("headers", []) if k.lower() != b"content-length"]
        await send({**start, "headers": [*headers, (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})


class JsonBodyOnly:
    """Answers 415 to a POST whose Content-Type is not JSON, before BentoML picks a parser
    (a multipart type without a boundary made BentoML 1.4.40 answer 500). A request with no
    Content-Type is read as JSON."""

    def __init__(self, app: ASGIApp, paths: frozenset[str] = frozenset({"/predict"})) -> None:
        self.app = app
        self.paths = paths

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST" and scope["path"] in self.paths:
            raw = header(scope, b"content-type")
            media_type = (raw or b"application/json").split(b";")[0].strip().lower()
            if media_type != b"application/json":
                shown = (raw or b"").decode("latin-1")
                await send_json(
                    send, 415, f"Content-Type {shown!r} is not accepted: send application/json"
                )
                return
        await self.app(scope, receive, send)


class InFlightLimit:
    """Sheds load: beyond `max_in_flight` concurrent requests on `paths`, answers 503 with
    ``Retry-After`` at once instead of queueing them until they time out."""

    def __init__(
        self,
        app: ASGIApp,
        max_in_flight: int,
        paths: frozenset[str] = frozenset({"/predict"}),
        retry_after_s: int = 1,
    ) -> None:
        self.app = app
        self.max_in_flight = max_in_flight
        self.paths = paths
        self.retry_after = str(retry_after_s).encode()
        self.in_flight = 0
        self.shed = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] not in self.paths:
            await self.app(scope, receive, send)
            return
        if self.in_flight >= self.max_in_flight:
            self.shed += 1
            await send_json(
                send,
                503,
                f"busy: {self.in_flight} requests in flight (FRAUD_MAX_IN_FLIGHT); retry shortly",
                [(b"retry-after", self.retry_after)],
            )
            return
        self.in_flight += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.in_flight -= 1


class RequestTimeout:
    """Answers 504 to a request not answered within `timeout` seconds, and cancels its work.

    A drop-in for BentoML 1.4.40's ``TimeoutMiddleware`` (same arguments), which never
    cancels its per-request timer: each request left a timer and a future alive for the
    whole timeout (60,000 of them at 2,000 req/s and 30 s), and the collector's full passes
    over them reached 160 ms, the service's p99 (README Performance). `asyncio.timeout`
    cancels its timer when the request ends.
    """

    def __init__(self, app: ASGIApp, timeout: float) -> None:
        if timeout <= 0:
            raise ValueError(f"RequestTimeout needs a timeout > 0, got {timeout}")
        self.app = app
        self.seconds = timeout

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            async with asyncio.timeout(self.seconds):
                await self.app(scope, receive, tracking_send)
        except TimeoutError:
            if not started:
                await send_json(send, 504, f"not answered within {self.seconds:g} s")


def install_request_timeout() -> None:
    """Make BentoML build `RequestTimeout` where it builds its own ``TimeoutMiddleware``.

    BentoML adds its timeout middleware whenever ``traffic.timeout`` is set, and its
    configuration refuses to unset it; it looks the class up in its module each time it
    builds an app, so replacing the module's name is enough. Call before the app is built.
    """
    from bentoml._internal.server.http import traffic

    traffic.TimeoutMiddleware = RequestTimeout  # type: ignore[misc,assignment]
