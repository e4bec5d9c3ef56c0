"""SIGTERM drains: requests already accepted are answered and logged before the server exits."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from pathlib import Path

import httpx

from fraud_detection.drift_log import DriftLogFiles
from tests.conftest import start_server
from training.data import generate_transactions

ROWS_PER_REQUEST = 10_000
REQUESTS = 6


def test_sigterm_lets_in_flight_requests_finish(trained_store: Path, tmp_path: Path) -> None:
    # DistilBERT on 10,000-row requests: each takes long enough to still be in flight at SIGTERM.
    running = start_server(
        trained_store,
        tmp_path,
        "distilbert",
        FRAUD_MAX_BATCH_SIZE=str(ROWS_PER_REQUEST),
        FRAUD_MAX_LATENCY_MS="120000",
    )
    rows = json.loads(
        generate_transactions(ROWS_PER_REQUEST, seed=11)
        .drop(columns="Class")
        .to_json(orient="records")
    )
    body = json.dumps({"transactions": rows})
    answers: list[tuple[int | str, int, float]] = []

    def post() -> None:
        try:
            r = httpx.post(
                f"{running.url}/predict",
                content=body,
                headers={"content-type": "application/json"},
                timeout=120,
            )
            answers.append((r.status_code, len(r.json()), time.monotonic()))
        except httpx.HTTPError as e:
            answers.append((type(e).__name__, 0, time.monotonic()))

    threads = [threading.Thread(target=post) for _ in range(REQUESTS)]
    for t in threads:
        t.start()
    time.sleep(2.0)  # let the server read them all (the six take about 5 s to score)
    # As in a container: only the main process (PID 1 there) gets the signal.
    terminated_at = time.monotonic()
    os.kill(running.server.process.pid, signal.SIGTERM)
    for t in threads:
        t.join(timeout=180)
    exit_code = running.server.process.wait(timeout=60)

    assert [(status, n) for status, n, _ in answers] == [(200, ROWS_PER_REQUEST)] * REQUESTS
    assert any(done > terminated_at for _, _, done in answers), (
        "no request was still in flight at SIGTERM; the test did not test draining"
    )
    assert exit_code == 0, running.log()[-3000:]
    # The drift log's shutdown hook wrote every answered row before the worker exited.
    assert len(DriftLogFiles.under(running.monitor_dir).read()) == ROWS_PER_REQUEST * REQUESTS
