"""Bearer auth and the body-size limit: the ASGI middlewares alone, then on a real server."""

from __future__ import annotations

import asyncio
import datetime as dt
import gc
import json
import re
import time
from pathlib import Path

import httpx
import pytest
from bentoml._internal.server.http.traffic import TimeoutMiddleware as BentoTimeoutMiddleware

from fraud_detection.drift_log import DriftLogFiles
from fraud_detection.http_guards import BearerAuth
from fraud_detection.http_guards import BodySizeLimit
from fraud_detection.http_guards import InFlightLimit
from fraud_detection.http_guards import RequestTimeout
from fraud_detection.http_guards import RetryAfterOn503
from fraud_detection.settings import ServingSettings
from tests.conftest import call_asgi as call
from tests.conftest import read_body
from training.data import generate_transactions


async def echo_body(scope, receive, send) -> None:
    body = await read_body(receive)
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": body})


def test_body_limit_refuses_declared_and_streamed_bodies_before_the_app() -> None:
    app = BodySizeLimit(echo_body, max_bytes=10)
    status, body, _ = call(app, headers=[(b"content-length", b"11")], chunks=[b"x" * 11])
    assert status == 413 and b"FRAUD_MAX_BODY_BYTES" in body
    status, _, _ = call(app, chunks=[b"x" * 6, b"x" * 6])  # chunked, no length
    assert status == 413
    assert call(app, chunks=[b"abc", b"defg"])[:2] == (200, b"abcdefg"), "replayed intact"
    assert call(app, headers=[(b"content-length", b"7")], chunks=[b"abcdefg"])[0] == 200
    status, body, _ = call(app, headers=[(b"content-length", b"-1")])
    assert status == 400 and b"Content-Length" in body


def test_bearer_auth_gives_one_answer_to_every_failure() -> None:
    app = BearerAuth(echo_body, token="s3cret", public_paths=frozenset({"/readyz"}))
    refusals = [
        call(app),
        call(app, headers=[(b"authorization", b"Bearer wrong")]),
        call(app, headers=[(b"authorization", b"Basic s3cret")]),
        call(app, headers=[(b"authorization", b"Bearer s3cret ")]),
    ]
    assert {(status, body) for status, body, _ in refusals} == {
        (401, b'{"detail": "missing or invalid bearer token"}')
    }
    assert all(headers[b"www-authenticate"] == b"Bearer" for _, _, headers in refusals)
    assert call(app, headers=[(b"authorization", b"Bearer s3cret")])[0] == 200
    assert call(app, path="/readyz")[0] == 200


def test_token_comes_from_env_or_a_mounted_file_and_never_from_repr(tmp_path: Path) -> None:
    secret = tmp_path / "token"
    secret.write_text("from-file\n")
    assert ServingSettings.from_env({"FRAUD_API_TOKEN_FILE": str(secret)}).api_token == "from-file"
    settings = ServingSettings.from_env({"FRAUD_API_TOKEN": "from-env"})
    assert settings.api_token == "from-env" and "from-env" not in repr(settings)
    with pytest.raises(ValueError, match="FRAUD_API_TOKEN_FILE"):
        ServingSettings.from_env({"FRAUD_API_TOKEN_FILE": str(tmp_path / "missing")})
    with pytest.raises(ValueError, match="empty"):
        ServingSettings.from_env({"FRAUD_API_TOKEN": " "})
    assert ServingSettings.from_env({"FRAUD_PUBLIC_PATHS": "/livez, /metrics"}).public_paths == {
        "/livez",
        "/metrics",
    }


def test_real_server_with_auth_and_a_small_body_limit(trained_store: Path, tmp_path: Path) -> None:
    from tests.conftest import start_server

    running = start_server(
        trained_store, tmp_path, "mlp", FRAUD_API_TOKEN="s3cret", FRAUD_MAX_BODY_BYTES="4000"
    )
    rows = json.loads(
        generate_transactions(20, seed=4).drop(columns="Class").to_json(orient="records")
    )
    auth = {"Authorization": "Bearer s3cret"}
    try:
        url = f"{running.url}/predict"
        assert httpx.post(url, json={"transactions": rows[:1]}, timeout=10).status_code == 401
        ok = httpx.post(url, json={"transactions": rows[:1]}, headers=auth, timeout=10)
        assert ok.status_code == 200, ok.text
        big = httpx.post(url, json={"transactions": rows}, headers=auth, timeout=10)
        assert big.status_code == 413 and "FRAUD_MAX_BODY_BYTES" in big.json()["detail"]
        body = json.dumps({"transactions": rows}).encode()
        streamed = httpx.post(
            url,
            content=(body[i : i + 1000] for i in range(0, len(body), 1000)),
            headers={**auth, "Content-Type": "application/json"},
            timeout=10,
        )
        assert streamed.status_code == 413
        assert httpx.get(f"{running.url}/readyz", timeout=10).status_code == 200, "public"
        assert httpx.get(f"{running.url}/metrics", timeout=10).status_code == 200, "public"
        again = httpx.post(url, json={"transactions": rows[:2]}, headers=auth, timeout=10)
        assert again.status_code == 200 and len(again.json()) == 2, "still serving"
    finally:
        running.server.stop()
    assert "s3cret" not in running.log(), "the token must not reach the logs"


def test_503_answers_carry_retry_after() -> None:
    async def busy(scope, receive, send) -> None:
        await send({"type": "http.response.start", "status": 503, "headers": []})
        await send({"type": "http.response.body", "body": b"busy"})

    status, _, headers = call(RetryAfterOn503(busy))
    assert status == 503 and headers[b"retry-after"] == b"1"
    assert b"retry-after" not in call(RetryAfterOn503(echo_body))[2], "only on 503"


def unwritable_log_dir(tmp_path: Path) -> Path:
    """A drift-log path under a regular file, so no directory can be made there."""
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("a file where the drift-log directory should be")
    return blocker / "monitoring"


def full_disk_log_dir(tmp_path: Path) -> Path:
    """A drift-log path whose data file is /dev/full: every write fails with ENOSPC."""
    if not Path("/dev/full").exists():
        pytest.skip("/dev/full is not available on this platform")
    files = DriftLogFiles.under(tmp_path / "monitoring")
    files.prepare()
    today = dt.datetime.now(dt.UTC).date()
    for day in (today, today + dt.timedelta(days=1)):  # a test running across midnight
        files.path(1, day).symlink_to("/dev/full")  # worker 1's data file
    return tmp_path / "monitoring"


@pytest.mark.parametrize("make_log_dir", [unwritable_log_dir, full_disk_log_dir])
def test_failing_drift_log_leaves_predictions_working_and_is_counted(
    trained_store: Path, tmp_path: Path, make_log_dir
) -> None:
    from tests.conftest import start_server

    running = start_server(
        trained_store, tmp_path, "mlp", FRAUD_MONITOR_LOG_PATH=str(make_log_dir(tmp_path))
    )
    rows = json.loads(
        generate_transactions(5, seed=5).drop(columns="Class").to_json(orient="records")
    )
    try:
        for _ in range(3):
            response = httpx.post(f"{running.url}/predict", json={"transactions": rows}, timeout=10)
            assert response.status_code == 200 and len(response.json()) == 5
        deadline = time.monotonic() + 10
        failures = 0.0
        while time.monotonic() < deadline and failures == 0:
            metrics = httpx.get(f"{running.url}/metrics", timeout=10).text
            found = re.findall(
                r"^fraud_drift_log_failures_total(?:\{[^}]*\})? (\S+)$", metrics, re.M
            )
            failures = sum(float(v) for v in found)
            time.sleep(0.3)
        assert failures >= 1, "failed drift-log writes are counted on /metrics"
        again = httpx.post(f"{running.url}/predict", json={"transactions": rows}, timeout=10)
        assert again.status_code == 200, "still serving after the failures"
    finally:
        running.server.stop()


def test_in_flight_limit_sheds_with_503_at_once_and_recovers() -> None:
    release = asyncio.Event()

    async def slow(scope, receive, send) -> None:
        await release.wait()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    limit = InFlightLimit(slow, max_in_flight=2)

    async def request() -> tuple[int, dict]:
        sent: list[dict] = []

        async def send(message):
            sent.append(message)

        async def receive():
            return {"type": "http.request", "body": b"", "more_body": False}

        await limit({"type": "http", "path": "/predict", "headers": []}, receive, send)
        return sent[0]["status"], dict(sent[0]["headers"])

    async def scenario() -> list[tuple[int, dict]]:
        held = [asyncio.create_task(request()) for _ in range(2)]
        await asyncio.sleep(0.01)
        shed = await asyncio.wait_for(request(), timeout=1)  # answered without waiting
        release.set()
        done = await asyncio.gather(*held)
        after = await request()  # capacity is back
        return [shed, *done, after]

    shed, first, second, after = asyncio.run(scenario())
    assert shed[0] == 503 and shed[1][b"retry-after"] == b"1"
    assert (first[0], second[0], after[0]) == (200, 200, 200)
    assert limit.in_flight == 0 and limit.shed == 1


def live_timers() -> list[asyncio.TimerHandle]:
    return [o for o in gc.get_objects() if isinstance(o, asyncio.TimerHandle) and not o.cancelled()]


def test_request_timeout_answers_504_for_a_slow_app_and_passes_fast_ones() -> None:
    async def slow(scope, receive, send) -> None:
        await asyncio.sleep(5)
        await echo_body(scope, receive, send)

    status, body, _ = call(RequestTimeout(slow, timeout=0.05))
    assert status == 504 and b"0.05 s" in body
    assert call(RequestTimeout(echo_body, timeout=5), chunks=[b"ok"])[:2] == (200, b"ok")


def timers_left_after_hundred_requests(middleware) -> int:
    """Timers still scheduled after 100 requests through `middleware` (60 s timeout)."""

    async def hundred_requests() -> int:
        app = middleware(echo_body, timeout=60)

        async def receive():
            return {"type": "http.request", "body": b"x", "more_body": False}

        async def send(message) -> None:
            return None

        for _ in range(100):
            await app({"type": "http", "path": "/predict", "headers": []}, receive, send)
        return len(live_timers())

    return asyncio.run(hundred_requests())


def test_request_timeout_leaves_no_timer_behind() -> None:
    assert timers_left_after_hundred_requests(RequestTimeout) == 0


def test_bentoml_timeout_middleware_still_leaks_a_timer_per_request() -> None:
    """Why `install_request_timeout` exists. When this fails, BentoML has fixed the leak of
    its TimeoutMiddleware (1.4.40: a 60 s timer per request): drop our replacement."""
    left = timers_left_after_hundred_requests(BentoTimeoutMiddleware)
    assert left > 0, "BentoML's TimeoutMiddleware no longer leaks timers: drop RequestTimeout"


def test_a_served_request_past_the_timeout_gets_504_and_the_server_stays_up(
    trained_store: Path, tmp_path: Path
) -> None:
    """Through `bentoml serve`: `install_request_timeout` put RequestTimeout in BentoML's app
    (its answer names the limit, BentoML's own would not)."""
    from tests.conftest import start_server

    server = start_server(trained_store, tmp_path, "mlp", FRAUD_REQUEST_TIMEOUT_S="0.2")
    try:
        rows = generate_transactions(100, seed=3).drop(columns=["Class"])
        # The first /explain imports SHAP and explains 100 rows: well past 0.2 s.
        slow = httpx.post(
            f"{server.url}/explain", json={"transactions": rows.to_dict("records")}, timeout=60
        )
        assert slow.status_code == 504, slow.text
        assert "not answered within 0.2 s" in slow.text
        quick = httpx.post(
            f"{server.url}/predict", json={"transactions": rows.head(1).to_dict("records")}
        )
        assert quick.status_code == 200
    finally:
        server.server.stop()
