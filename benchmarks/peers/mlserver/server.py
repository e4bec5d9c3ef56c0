"""MLServer peer: a custom runtime (`MLModel`) with a custom REST handler, one process.

    FRAUD_MODEL_DIR=bentos/models/fraud-mlp/<version> PYTHONPATH=. \
        .venv-peers/mlserver/bin/python benchmarks/peers/mlserver/server.py --port 8080

``POST /predict`` (an MLServer ``@custom_handler``) takes our ``{"transactions": [...]}`` body,
validates it with our pydantic rules (422 on bad input) and answers the list of predictions.
Readiness: ``GET /v2/models/fraud/ready``. ``parallel_workers=0``: inference runs in the
server process itself, no inference worker pool; no adaptive batching (``max_batch_size``
0), metrics server off, gzip off, access log off (``debug=False``); gRPC listens on a second
free loopback port because MLServer always starts it.
"""

from __future__ import annotations

import asyncio
import socket
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))  # the repo root

from fastapi import Request
from mlserver import MLModel
from mlserver import MLServer
from mlserver.handlers import custom_handler
from mlserver.rest.responses import Response
from mlserver.settings import ModelSettings
from mlserver.settings import Settings

from benchmarks.peers.common import Scorer
from benchmarks.peers.common import ValidationError
from benchmarks.peers.common import peer_args
from benchmarks.peers.common import validation_detail

MODEL_NAME = "fraud"


class FraudRuntime(MLModel):
    """Our scorer as an MLServer runtime; the JSON API lives in a custom REST handler."""

    async def load(self) -> bool:
        self.scorer = Scorer()
        return True

    @custom_handler(rest_path="/predict")
    async def predict_transactions(self, request: Request) -> Response:
        body = await request.body()
        try:
            rows = self.scorer.predict_json(body)
        except ValidationError as e:
            return Response({"detail": validation_detail(e)[:5]}, status_code=422)
        return Response(rows)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> None:
    args = peer_args()
    settings = Settings(
        host=args.host,
        http_port=args.port,
        grpc_port=free_port(),
        parallel_workers=0,
        metrics_endpoint=None,
        debug=False,
        gzip_enabled=False,
        load_models_at_startup=False,
    )
    model = ModelSettings(name=MODEL_NAME, implementation=FraudRuntime)
    asyncio.run(MLServer(settings).start([model]))


if __name__ == "__main__":
    main()
