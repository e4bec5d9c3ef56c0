"""Locust user for ``POST /predict``; run by `benchmarks.serving`, or by hand:

    BENCH_BODIES=bodies.jsonl locust -f benchmarks/locustfile.py --host http://127.0.0.1:3000

`BENCH_BODIES` is a file of request bodies, one per line (`RequestMix.save`). Each user cycles
through them from its own offset, so the mix of rows per request is the file's. `BENCH_PATH`
(default ``/predict``) is the route posted to: peer frameworks (`benchmarks.peers`) differ.
Not a test module: pytest never collects it (see ``[tool.pytest.ini_options]``).
"""

from __future__ import annotations

import itertools
import os
import random
from pathlib import Path

from locust import FastHttpUser
from locust import constant
from locust import task

BODIES = Path(os.environ["BENCH_BODIES"]).read_bytes().split(b"\n")
HEADERS = {"Content-Type": "application/json"}
PATH = os.environ.get("BENCH_PATH", "/predict")


class FraudClient(FastHttpUser):
    """A closed-loop client: sends the next request as soon as the last one is answered."""

    wait_time = constant(0)

    def on_start(self) -> None:
        start = random.randrange(len(BODIES))
        self.bodies = itertools.islice(itertools.cycle(BODIES), start, None)

    @task
    def predict(self) -> None:
        with self.client.post(
            PATH, data=next(self.bodies), headers=HEADERS, catch_response=True
        ) as response:
            if response.status_code != 200:
                # One failure name per status code, so the runner can count them.
                response.failure(f"HTTP {response.status_code}")
