"""LitServe peer: a `LitAPI` served by `LitServer`, with or without LitServe's batching.

    FRAUD_MODEL_DIR=bentos/models/fraud-mlp/<version> PYTHONPATH=. \
        .venv-peers/litserve/bin/python benchmarks/peers/litserve/server.py --port 8080 [--batching]

``POST /predict`` takes our ``{"transactions": [...]}`` body. LitServe hands the pydantic
annotation of ``decode_request`` to FastAPI, so the API server process validates the body with
our request model (422 on bad input) before queueing it. One API server process and one
inference worker process (``workers_per_device=1`` on CPU); ``--batching`` merges up to
``--max-batch-size`` queued requests (waiting at most ``--batch-wait-ms``) into one ONNX call.
Readiness: ``GET /health``. Log level warning (no access log).
"""

# No `from __future__ import annotations` here: FastAPI must see `FraudRequest` itself in
# decode_request's signature, which LitServe copies into an endpoint of its own module.

import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))  # the repo root

import litserve as ls
import numpy as np

from benchmarks.peers.common import FraudRequest
from benchmarks.peers.common import Scorer
from benchmarks.peers.common import peer_args


class FraudAPI(ls.LitAPI):
    """decode: rows of one request; predict: their scores; encode: prediction dicts."""

    def setup(self, device: str) -> None:
        self.scorer = Scorer()

    def decode_request(self, request: FraudRequest) -> np.ndarray:
        return self.scorer.features(request)

    def predict(self, x: np.ndarray) -> np.ndarray:
        return self.scorer.onnx.predict_proba(x)

    def encode_response(self, output: np.ndarray) -> list[dict[str, Any]]:
        return self.scorer.rows(output)


class BatchedFraudAPI(FraudAPI):
    """The same, with the rows of up to ``max_batch_size`` requests scored in one ONNX call."""

    def batch(self, inputs: list[np.ndarray]) -> tuple[np.ndarray, list[int]]:
        return np.concatenate(inputs), [len(i) for i in inputs]

    def predict(self, x: tuple[np.ndarray, list[int]]) -> tuple[np.ndarray, list[int]]:  # type: ignore[override]
        rows, sizes = x
        return self.scorer.onnx.predict_proba(rows), sizes

    def unbatch(self, output: tuple[np.ndarray, list[int]]) -> list[np.ndarray]:
        scores, sizes = output
        return np.split(scores, np.cumsum(sizes)[:-1])


def main() -> None:
    args = peer_args(batching=True)
    api = (
        BatchedFraudAPI(max_batch_size=args.max_batch_size, batch_timeout=args.batch_wait_ms / 1000)
        if args.batching
        else FraudAPI()
    )
    server = ls.LitServer(api, accelerator="cpu", devices=1, workers_per_device=1)
    server.run(
        host=args.host,
        port=args.port,
        num_api_servers=1,
        log_level="warning",
        generate_client_file=False,
    )


if __name__ == "__main__":
    main()
