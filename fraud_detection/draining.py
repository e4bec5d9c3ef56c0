"""`Draining`: after SIGTERM, ``/readyz`` answers 503 for a while before the worker stops.

BentoML 1.4 stops accepting at once on SIGTERM. Its HTTP worker is a uvicorn server whose
signal handler only sets ``should_exit``; the next tick (0.1 s) starts ``Server.shutdown``,
which first closes the listening socket, then waits for the requests in flight and runs the
``on_shutdown`` hooks. The circus arbiter keeps its own copy of that socket open until the
worker exits, so connections made meanwhile are queued, never served, and reset at the end.
``/readyz`` never answers 503: a balancer health-checking it sees a timeout, and keeps
sending requests into the queue until its check gives up.

This middleware stands in front of uvicorn's SIGTERM handler: at the signal, ``/readyz``
turns 503 at once while every other request is still served, and only after `seconds` does
uvicorn get the signal and shut down as before. The balancer takes the replica out of its
pool first; Kubernetes' preStop sleep gives the same pause from outside the process.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import threading
import time
from collections.abc import Callable
from types import FrameType
from typing import Any

from fraud_detection.http_guards import ASGIApp
from fraud_detection.http_guards import Receive
from fraud_detection.http_guards import Scope
from fraud_detection.http_guards import Send
from fraud_detection.http_guards import send_json

logger = logging.getLogger(__name__)

READYZ_PATH = "/readyz"


class Draining:
    """Answers ``GET /readyz`` 503 for `seconds` after SIGTERM, then lets shutdown begin.

    The handler goes in when the worker's lifespan starts, after uvicorn has installed its
    own (``Server.capture_signals``), which it then calls. `seconds` <= 0 leaves the signal
    to uvicorn. A second SIGTERM during the drain is ignored (one sent to every process, on
    top of the one the arbiter forwards). SIGINT (Ctrl+C) still stops at once.
    """

    def __init__(self, app: ASGIApp, seconds: float, readyz_path: str = READYZ_PATH) -> None:
        self.app = app
        self.seconds = seconds
        self.readyz_path = readyz_path
        self.draining_since: float | None = None
        self._installed = False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            self._take_over_sigterm()
        elif self.draining_since is not None and scope.get("path") == self.readyz_path:
            await send_json(send, 503, "draining: this replica is shutting down")
            return
        await self.app(scope, receive, send)

    def _take_over_sigterm(self) -> None:
        # Signal handlers can only be set from the main thread (uvicorn's loop runs there).
        if self._installed or self.seconds <= 0:
            return
        if threading.current_thread() is not threading.main_thread():
            logger.warning("Not in the main thread: SIGTERM is not drained")
            return
        self._installed = True
        loop = asyncio.get_running_loop()
        previous = signal.getsignal(signal.SIGTERM)

        def on_sigterm(signum: int, frame: FrameType | None) -> None:
            if self.draining_since is None:
                self.draining_since = time.monotonic()
                # Logging and timers belong to the loop, not to a signal handler.
                loop.call_soon_threadsafe(self._drain, loop, previous, signum)

        signal.signal(signal.SIGTERM, on_sigterm)

    def _drain(self, loop: asyncio.AbstractEventLoop, previous: Any, signum: int) -> None:
        logger.warning("SIGTERM: /readyz answers 503 for %.1f s, then shutdown", self.seconds)
        loop.call_later(self.seconds, hand_over, previous, signum)


def hand_over(previous: Callable[[int, FrameType | None], Any] | int | None, signum: int) -> None:
    """Deliver `signum` to the handler that was there before `Draining`'s."""
    if callable(previous):
        previous(signum, None)
    else:  # the default action (or none): restore it, and signal again
        signal.signal(signum, previous if previous is not None else signal.SIG_DFL)
        signal.raise_signal(signum)
