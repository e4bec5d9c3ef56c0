"""`Draining` in-process, with a real SIGTERM to this process (the end-to-end drain behind
HAProxy is in test_replicas.py)."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import Iterator

import pytest

from fraud_detection.draining import Draining
from fraud_detection.settings import ServingSettings
from tests.conftest import call_asgi


async def answer_ok(scope, receive, send) -> None:
    if scope["type"] == "lifespan":
        return
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"app"})


@pytest.fixture
def sigterm_handler() -> Iterator[list[float]]:
    """A stand-in for uvicorn's SIGTERM handler: records when it is called; restored after."""
    calls: list[float] = []
    original = signal.signal(signal.SIGTERM, lambda *_: calls.append(time.monotonic()))
    yield calls
    signal.signal(signal.SIGTERM, original)


def test_readyz_answers_503_only_while_draining() -> None:
    draining = Draining(answer_ok, seconds=5)
    assert call_asgi(draining, path="/readyz", method="GET")[0] == 200
    draining.draining_since = time.monotonic()
    status, body, _ = call_asgi(draining, path="/readyz", method="GET")
    assert status == 503 and b"draining" in body
    assert call_asgi(draining, path="/predict")[:2] == (200, b"app"), "requests still served"
    assert call_asgi(draining, path="/livez", method="GET")[0] == 200, "alive while draining"


async def readyz(app: Draining) -> int:
    """The status `app` answers ``GET /readyz`` with, inside the running loop."""
    sent: list[dict] = []

    async def send(message: dict) -> None:
        sent.append(message)

    await app({"type": "http", "path": "/readyz", "method": "GET"}, None, send)
    return sent[0]["status"]


def test_sigterm_reaches_the_server_only_after_the_drain(sigterm_handler: list[float]) -> None:
    draining = Draining(answer_ok, seconds=0.5)

    async def serve() -> tuple[int, int, float]:
        await draining({"type": "lifespan"}, None, None)  # the worker's start: handler in
        signalled = time.monotonic()
        os.kill(os.getpid(), signal.SIGTERM)
        os.kill(os.getpid(), signal.SIGTERM)  # the arbiter's forwarded copy: ignored
        await asyncio.sleep(0.1)
        during = await readyz(draining)
        calls_during = len(sigterm_handler)
        await asyncio.sleep(0.7)
        assert calls_during == 0, "the server got the signal before the drain ended"
        return during, len(sigterm_handler), signalled

    during, calls, signalled = asyncio.run(serve())
    assert during == 503
    assert calls == 1 and 0.5 <= sigterm_handler[0] - signalled < 0.7


def test_no_drain_leaves_the_signal_alone(sigterm_handler: list[float]) -> None:
    asyncio.run(Draining(answer_ok, seconds=0)({"type": "lifespan"}, None, None))
    os.kill(os.getpid(), signal.SIGTERM)
    assert len(sigterm_handler) == 1


def test_drain_seconds_setting() -> None:
    assert ServingSettings.from_env({}).drain_seconds == 0.0
    assert ServingSettings.from_env({"FRAUD_DRAIN_SECONDS": "4.5"}).drain_seconds == 4.5
    with pytest.raises(ValueError, match="FRAUD_DRAIN_SECONDS must be >= 0"):
        ServingSettings.from_env({"FRAUD_DRAIN_SECONDS": "-1"})
