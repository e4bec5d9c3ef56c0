"""`ZeroDelayBatcher`: a lone request runs at once; requests that arrive meanwhile share a call."""

from __future__ import annotations

import asyncio
import threading

import numpy as np
import pytest

from fraud_detection.batching import QueueTimeoutError
from fraud_detection.batching import ZeroDelayBatcher


class GatedModel:
    """Sums each row; every call blocks until the test opens the gate, and is recorded."""

    def __init__(self) -> None:
        self.calls: list[int] = []
        self.started = threading.Event()
        self.gate = threading.Event()

    def __call__(self, features: np.ndarray) -> np.ndarray:
        self.calls.append(len(features))
        self.started.set()
        assert self.gate.wait(timeout=10), "the test never opened the gate"
        return features.sum(axis=1)


def rows(n: int, start: float) -> np.ndarray:
    return np.arange(start, start + 2 * n, dtype=np.float32).reshape(n, 2)


async def wait_for(event: threading.Event) -> None:
    assert await asyncio.to_thread(event.wait, 10), "the model was never called"


def test_an_idle_model_runs_a_lone_request_without_waiting_for_company() -> None:
    async def scenario() -> None:
        model = GatedModel()
        batcher = ZeroDelayBatcher(model, max_batch_rows=64, queue_timeout_s=60)
        lone = asyncio.ensure_future(batcher.submit(rows(1, 0)))
        # The model is called while the request is still the only one: nothing waits for more.
        await wait_for(model.started)
        assert model.calls == [1]
        model.gate.set()
        np.testing.assert_array_equal(await lone, [1.0])
        batcher.close()

    asyncio.run(scenario())


def test_requests_arriving_during_a_call_form_the_next_batch_and_keep_their_rows() -> None:
    async def scenario() -> None:
        model = GatedModel()
        batcher = ZeroDelayBatcher(model, max_batch_rows=64, queue_timeout_s=60)
        first = asyncio.ensure_future(batcher.submit(rows(1, 0)))
        await wait_for(model.started)
        inputs = [rows(n, 100 * i) for i, n in enumerate([2, 1, 3], start=1)]
        queued = [asyncio.ensure_future(batcher.submit(x)) for x in inputs]
        await asyncio.sleep(0)  # let them enqueue while the first call is still running
        model.gate.set()
        await first
        for x, answer in zip(inputs, await asyncio.gather(*queued), strict=True):
            np.testing.assert_array_equal(answer, x.sum(axis=1))
        assert model.calls == [1, 6], "the three queued requests must share one model call"
        batcher.close()

    asyncio.run(scenario())


def test_a_batch_stops_at_max_rows_and_a_bigger_request_is_split() -> None:
    async def scenario() -> None:
        model = GatedModel()
        model.gate.set()
        batcher = ZeroDelayBatcher(model, max_batch_rows=4, queue_timeout_s=60)
        sizes = [3, 3, 9, 1]
        answers = await asyncio.gather(*(batcher.submit(rows(n, 10 * n)) for n in sizes))
        assert [len(a) for a in answers] == sizes
        for n, answer in zip(sizes, answers, strict=True):
            np.testing.assert_array_equal(answer, rows(n, 10 * n).sum(axis=1))
        assert max(model.calls) <= 4 and sum(model.calls) == sum(sizes), model.calls
        model.calls.clear()
        np.testing.assert_array_equal(await batcher.submit(rows(9, 0)), rows(9, 0).sum(axis=1))
        assert model.calls == [4, 4, 1]
        batcher.close()

    asyncio.run(scenario())


def test_requests_queued_past_the_budget_fail_with_queue_timeout() -> None:
    async def scenario() -> None:
        model = GatedModel()
        batcher = ZeroDelayBatcher(model, max_batch_rows=64, queue_timeout_s=0.05)
        first = asyncio.ensure_future(batcher.submit(rows(1, 0)))
        await wait_for(model.started)
        late = asyncio.ensure_future(batcher.submit(rows(1, 5)))
        await asyncio.sleep(0.2)  # the running call outlasts the queued request's budget
        model.gate.set()
        await first
        with pytest.raises(QueueTimeoutError, match="FRAUD_MAX_LATENCY_MS"):
            await late
        assert model.calls == [1], "a timed-out request must not reach the model"
        batcher.close()

    asyncio.run(scenario())


def test_a_model_error_reaches_every_request_of_its_batch_and_the_next_batch_runs() -> None:
    calls: list[int] = []

    def flaky(features: np.ndarray) -> np.ndarray:
        calls.append(len(features))
        if len(calls) == 1:
            raise RuntimeError("model exploded")
        return features.sum(axis=1)

    async def scenario() -> None:
        batcher = ZeroDelayBatcher(flaky, max_batch_rows=64, queue_timeout_s=60)
        with pytest.raises(RuntimeError, match="model exploded"):
            await batcher.submit(rows(2, 0))
        np.testing.assert_array_equal(await batcher.submit(rows(1, 3)), [7.0])
        batcher.close()

    asyncio.run(scenario())
    assert calls == [2, 1]


def test_a_cancelled_request_is_skipped() -> None:
    async def scenario() -> None:
        model = GatedModel()
        batcher = ZeroDelayBatcher(model, max_batch_rows=64, queue_timeout_s=60)
        first = asyncio.ensure_future(batcher.submit(rows(1, 0)))
        await wait_for(model.started)
        gone = asyncio.ensure_future(batcher.submit(rows(5, 0)))
        kept = asyncio.ensure_future(batcher.submit(rows(2, 1)))
        await asyncio.sleep(0)
        gone.cancel()  # the client hung up while queued
        model.gate.set()
        await first
        np.testing.assert_array_equal(await kept, rows(2, 1).sum(axis=1))
        assert model.calls == [1, 2]
        batcher.close()

    asyncio.run(scenario())


def test_max_batch_rows_must_be_positive() -> None:
    with pytest.raises(ValueError, match="max_batch_rows"):
        ZeroDelayBatcher(np.sum, max_batch_rows=0, queue_timeout_s=1)
