"""Ray Serve peer: one replica of a deployment, with or without ``@serve.batch``.

    FRAUD_MODEL_DIR=bentos/models/fraud-mlp/<version> PYTHONPATH=. \
        .venv-peers/rayserve/bin/python benchmarks/peers/rayserve/server.py --port 8080 [--batching]

Starts a local Ray instance (2 CPUs, no dashboard), Serve's HTTP proxy on 127.0.0.1:--port
and one replica at route ``/predict``. ``POST /predict`` takes our ``{"transactions": [...]}``
body, validates it with our pydantic rules in the replica (422 on bad input) and answers the
list of predictions; ``GET /predict`` answers 200 once the replica is up (the readiness check).
``--batching`` sends each request's rows through a ``@serve.batch`` method that merges up to
``--max-batch-size`` requests (waiting at most ``--batch-wait-ms``) into one ONNX call.
``max_ongoing_requests=100`` per replica (Ray's default is 5, which would cap a batch at 5),
access logs off, Ray's workers at niceness 0 (Ray's default is 15).
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))  # the repo root

import numpy as np
import ray
from ray import serve
from ray.serve.schema import LoggingConfig
from starlette.requests import Request
from starlette.responses import JSONResponse

from benchmarks.peers.common import REQUEST
from benchmarks.peers.common import Scorer
from benchmarks.peers.common import ValidationError
from benchmarks.peers.common import peer_args
from benchmarks.peers.common import validation_detail

MAX_ONGOING_REQUESTS = 100
NO_ACCESS_LOG = LoggingConfig(enable_access_log=False, log_level="WARNING")


@serve.deployment(
    num_replicas=1,
    max_ongoing_requests=MAX_ONGOING_REQUESTS,
    logging_config=NO_ACCESS_LOG,
)
class FraudDeployment:
    """Validates with our request model and scores with our `OnnxScorer`."""

    def __init__(self, batching: bool, max_batch_size: int, batch_wait_s: float) -> None:
        self.scorer = Scorer()
        self.batching = batching
        self.score_batch.set_max_batch_size(max_batch_size)
        self.score_batch.set_batch_wait_timeout_s(batch_wait_s)

    @serve.batch(max_batch_size=64, batch_wait_timeout_s=0.005)
    async def score_batch(self, requests: list[np.ndarray]) -> list[np.ndarray]:
        scores = self.scorer.onnx.predict_proba(np.concatenate(requests))
        return np.split(scores, np.cumsum([len(r) for r in requests])[:-1])

    async def __call__(self, request: Request) -> Any:
        if request.method == "GET":
            return JSONResponse({"ready": True})
        try:
            body = REQUEST.validate_json(await request.body())
        except ValidationError as e:
            return JSONResponse({"detail": validation_detail(e)[:5]}, status_code=422)
        features = self.scorer.features(body)
        if self.batching:
            scores = await self.score_batch(features)
        else:
            scores = self.scorer.onnx.predict_proba(features)
        return JSONResponse(self.scorer.rows(scores))


def main() -> None:
    args = peer_args(batching=True)
    # Ray starts its worker processes (Serve's proxy and replica among them) at niceness 15:
    # on a machine whose cores the load generator shares, they would yield to it. 0, as every
    # other server here runs, and as Ray's own job manager sets for job drivers.
    os.environ.setdefault("RAY_worker_niceness", "0")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    serve.start(http_options={"host": args.host, "port": args.port}, logging_config=NO_ACCESS_LOG)
    serve.run(
        FraudDeployment.bind(args.batching, args.max_batch_size, args.batch_wait_ms / 1000),
        name="fraud",
        route_prefix="/predict",
    )
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    stop.wait()
    # ray.shutdown() stops the local instance this driver started; a graceful serve.shutdown()
    # first can hang once SIGTERM has reached Ray's own processes in our process group.
    done = threading.Thread(target=ray.shutdown, daemon=True)
    done.start()
    done.join(timeout=15)


if __name__ == "__main__":
    main()
