"""KServe peer: a `kserve.Model` behind `kserve.ModelServer` (V1 protocol), one process.

    FRAUD_MODEL_DIR=bentos/models/fraud-mlp/<version> PYTHONPATH=. \
        .venv-peers/kserve/bin/python benchmarks/peers/kserve/server.py --port 8080

``POST /v1/models/fraud:predict`` takes our ``{"transactions": [...]}`` body (KServe's V1
handler parses the JSON, our pydantic rules validate it: 400 on bad input) and answers the
list of predictions. Readiness: ``GET /v1/models/fraud`` is 200 once the model is loaded.
No batching (KServe's Python server has none of its own), one uvicorn worker, gRPC off,
access and per-request latency logs off (our service ships with its access log off), bound to
127.0.0.1 (KServe hard-codes 0.0.0.0; patched).
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))  # the repo root

import kserve
import kserve.protocol.rest.server as rest_server
from kserve.errors import InvalidInput

from benchmarks.peers.common import REQUEST
from benchmarks.peers.common import Scorer
from benchmarks.peers.common import ValidationError
from benchmarks.peers.common import peer_args
from benchmarks.peers.common import validation_detail

MODEL_NAME = "fraud"


class FraudModel(kserve.Model):
    """Validates the body with our request model and scores it with our `OnnxScorer`."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.scorer: Scorer | None = None
        self.load()

    def load(self) -> bool:
        self.scorer = Scorer()
        self.ready = True
        return self.ready

    def predict(self, payload: Any, headers: dict[str, str] | None = None) -> Any:
        assert self.scorer is not None
        try:
            request = REQUEST.validate_python(payload)
        except ValidationError as e:
            raise InvalidInput(json.dumps(validation_detail(e)[:5])) from None
        return self.scorer.predict_rows(self.scorer.features(request))


def listen_on(host: str) -> None:
    """KServe's REST server hard-codes ``0.0.0.0``; bind it to `host` (loopback) instead."""
    init = rest_server.RESTServer.__init__

    def patched(self: Any, *args: Any, **kwargs: Any) -> None:
        init(self, *args, **kwargs)
        self.config.host = host

    rest_server.RESTServer.__init__ = patched  # type: ignore[method-assign]


def main() -> None:
    args = peer_args()
    listen_on(args.host)
    model = FraudModel(MODEL_NAME)
    server = kserve.ModelServer(
        http_port=args.port,
        workers=1,
        enable_grpc=False,
        enable_docs_url=False,
        enable_latency_logging=False,
    )
    # KServe configures logging in its constructor; after it, drop the per-request logs: the
    # access log and the two timing lines its TimingMiddleware logs for every request.
    logging.getLogger("uvicorn.access").disabled = True
    logging.getLogger("kserve.trace").disabled = True
    server.start([model])


if __name__ == "__main__":
    main()
