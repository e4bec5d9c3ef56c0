"""`FastPredictRoute` as an ASGI app: valid bodies answered, everything else passed on intact."""

from __future__ import annotations

import json

import numpy as np

from fraud_detection.api_models import EXAMPLE_TRANSACTION
from fraud_detection.batching import QueueTimeoutError
from fraud_detection.predict_route import SERVER_ERROR
from fraud_detection.predict_route import FastPredictRoute
from fraud_detection.predict_route import PredictHandler
from fraud_detection.predict_route import PredictHandlerSlot
from fraud_detection.request_codec import PredictionEncoder
from fraud_detection.request_codec import TransactionDecoder
from fraud_detection.routing.router import ChampionChallenger
from fraud_detection.routing.router import ServedModel
from tests.conftest import call_asgi
from tests.conftest import read_body

GOOD = json.dumps(
    {"transactions": [EXAMPLE_TRANSACTION, {**EXAMPLE_TRANSACTION, "transaction_id": "card-7"}]}
).encode()


class Downstream:
    """Stands for BentoML's app: records what reached it and answers 299."""

    def __init__(self) -> None:
        self.bodies: list[bytes] = []

    async def __call__(self, scope, receive, send) -> None:
        self.bodies.append(await read_body(receive))
        await send({"type": "http.response.start", "status": 299, "headers": []})
        await send({"type": "http.response.body", "body": b"downstream"})


def handler(score) -> PredictHandler:
    """The route's handler around the real router, with `score` as the champion's batcher."""
    router = ChampionChallenger(ServedModel("fraud-mlp", "v1", 0.5, score))
    return PredictHandler(
        decoder=TransactionDecoder(max_rows=10),
        score=router.score,
        encoder=PredictionEncoder("fraud-mlp", "v1"),
        server_header=b"test",
    )


def call(app, body: bytes, *, method: str = "POST", chunks: int = 1) -> tuple[int, bytes, dict]:
    """`body` sent to `app` in `chunks` nearly equal parts."""
    size = -(-len(body) // chunks) if body else 1
    parts = [body[i : i + size] for i in range(0, len(body), size)] or [b""]
    return call_asgi(app, method=method, chunks=parts)


def test_a_valid_body_is_scored_and_answered_without_reaching_downstream() -> None:
    seen: list[np.ndarray] = []

    async def score(features: np.ndarray) -> np.ndarray:
        seen.append(features)
        return np.array([0.25, 0.75], dtype=np.float32)

    slot, downstream = PredictHandlerSlot(), Downstream()
    slot.attach(handler(score))
    status, body, headers = call(FastPredictRoute(downstream, slot), GOOD, chunks=3)
    assert status == 200 and headers[b"server"] == b"test"
    answer = json.loads(body)
    assert [(r["fraud_probability"], r["is_fraud"]) for r in answer] == [
        (0.25, False),
        (0.75, True),
    ]
    assert answer[1]["transaction_id"] == "card-7", "the caller's id is echoed"
    assert answer[0]["transaction_id"].startswith("tx-"), "a missing id is assigned"
    assert seen[0].shape == (2, 30) and not downstream.bodies


def test_refused_bodies_other_methods_and_an_empty_slot_reach_downstream_intact() -> None:
    async def score(features: np.ndarray) -> np.ndarray:
        raise AssertionError("nothing here may be scored")

    slot, downstream = PredictHandlerSlot(), Downstream()
    route = FastPredictRoute(downstream, slot)
    assert call(route, GOOD)[0] == 299, "no handler attached yet: BentoML answers"
    slot.attach(handler(score))
    bad = json.dumps({"transactions": [{**EXAMPLE_TRANSACTION, "V1": "1.5"}]}).encode()
    assert call(route, bad, chunks=4)[:2] == (299, b"downstream")
    assert call(route, b"", method="GET")[0] == 299
    assert downstream.bodies == [GOOD, bad, b""], "bodies are replayed byte for byte"


def test_a_queue_timeout_is_a_503_to_retry_and_a_model_error_a_500() -> None:
    async def busy(features: np.ndarray) -> np.ndarray:
        raise QueueTimeoutError("queued 2s")

    async def broken(features: np.ndarray) -> np.ndarray:
        raise RuntimeError("model exploded")

    slot = PredictHandlerSlot()
    slot.attach(handler(busy))
    status, body, headers = call(FastPredictRoute(Downstream(), slot), GOOD)
    assert status == 503 and headers[b"retry-after"] == b"1" and b"queued 2s" in body
    slot.attach(handler(broken))
    status, body, _ = call(FastPredictRoute(Downstream(), slot), GOOD)
    assert status == 500 and json.loads(body) == SERVER_ERROR
