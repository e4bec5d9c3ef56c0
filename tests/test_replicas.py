"""Three real replicas (``bentoml serve``) sharing a real PostgreSQL, behind a real HAProxy that
health-checks ``/readyz``: labels through the balancer, the console through it, a replica
SIGKILLed under load, and one drained by SIGTERM (`benchmarks.replicas`)."""

from __future__ import annotations

import re
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import bentoml
import httpx
import pytest

from benchmarks.replicas import ReplicaSet
from benchmarks.replicas import drain_under_load
from benchmarks.replicas import haproxy_binary
from benchmarks.replicas import kill_under_load
from benchmarks.replicas import transactions
from fraud_detection.client import predict_with_retry
from fraud_detection.schema import FEATURE_NAMES

if haproxy_binary() is None:
    pytest.skip("HAProxy is not installed (apt-get install haproxy)", allow_module_level=True)

DRAIN_SECONDS = 3


@pytest.fixture(scope="module")
def replica_set(
    trained_store: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ReplicaSet]:
    with ReplicaSet.start(
        tmp_path_factory.mktemp("replicas"),
        trained_store,
        durability="commit",
        env={
            "FRAUD_PERFORMANCE_EVERY_SECONDS": "1",
            "FRAUD_DRAIN_SECONDS": str(DRAIN_SECONDS),
        },
    ) as started:
        yield started


def wait_for(condition: Any, timeout: float = 30.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.5)


def judged(document: dict[str, Any]) -> dict[str, Any]:
    """What every replica must agree on in ``/performance`` (not its window's start, which is
    "now" minus the window, nor its own writer's status)."""
    return {k: v for k, v in document.items() if k not in ("window", "database")}


def test_labels_sent_through_the_balancer_reach_the_log_every_replica_reads(
    replica_set: ReplicaSet,
) -> None:
    frame = transactions(None, 300, seed=3)
    rows = frame[list(FEATURE_NAMES)].to_dict(orient="records")
    ids = [f"fb-{i}" for i in range(len(rows))]
    before = {
        r.name: httpx.get(f"{r.url}/performance").json()["labelled"] for r in replica_set.replicas
    }
    sent_before = {n: int(s["stot"]) for n, s in replica_set.server_stats().items()}
    with bentoml.SyncHTTPClient(replica_set.url, server_ready_timeout=30) as client:
        for start in range(0, len(rows), 10):
            chunk = [
                {**row, "transaction_id": tid}
                for row, tid in zip(rows[start : start + 10], ids[start : start + 10], strict=True)
            ]
            predict_with_retry(client, chunk)
    labels = [
        {"transaction_id": tid, "label": int(y)} for tid, y in zip(ids, frame["Class"], strict=True)
    ]
    for start in range(0, len(labels), 30):  # ten requests: each replica stores some
        answer = httpx.post(f"{replica_set.url}/feedback", json=labels[start : start + 30])
        assert answer.status_code == 200 and answer.json()["stored"] == 30, answer.text
    sent = {n: int(s["stot"]) - sent_before[n] for n, s in replica_set.server_stats().items()}
    assert all(n >= 5 for n in sent.values()), f"round robin spreads the requests: {sent}"

    def documents() -> dict[str, dict[str, Any]]:
        return {r.name: httpx.get(f"{r.url}/performance").json() for r in replica_set.replicas}

    wait_for(
        lambda: all(d["labelled"] - before[name] == len(labels) for name, d in documents().items()),
        what="each replica's /performance, read directly, to count the 300 labels",
    )

    def disagreements() -> list[str]:
        first, *others = (judged(d) for d in documents().values())
        assert first["models"][0]["labelled"] >= len(labels)
        return [k for other in others for k in first if other.get(k) != first[k]]

    # Each replica reads the shared log when asked; a flush landing between two reads may
    # differ for a moment, so agreement is awaited, and what still differs is named.
    last: list[str] = []

    def agree() -> bool:
        last[:] = disagreements()
        return not last

    try:
        wait_for(agree, what="the replicas to judge the same log")
    except AssertionError as e:
        raise AssertionError(f"{e}; they still differ in {sorted(set(last))}") from None
    assert not last


def test_the_console_works_through_the_balancer(replica_set: ReplicaSet) -> None:
    root = httpx.get(f"{replica_set.url}/")
    assert root.status_code == 307 and root.headers["location"] == "/ui/"
    page = httpx.get(f"{replica_set.url}/ui/")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    assets = re.findall(r'(?:src|href)="([\w.]+\.(?:js|css))"', page.text)
    assert sorted(assets) == ["console.css", "console.js", "plotly.min.js"]
    for asset in [*assets, "config.json"]:
        answer = httpx.get(f"{replica_set.url}/ui/{asset}")
        assert answer.status_code == 200 and answer.content, asset


def test_the_console_scores_in_a_browser_through_the_balancer(replica_set: ReplicaSet) -> None:
    sync_api = pytest.importorskip("playwright.sync_api")
    chromium = shutil.which("chromium") or "/usr/bin/chromium"
    if not Path(chromium).exists():
        pytest.skip("Debian's chromium is not installed (apt-get install chromium)")
    failed: list[str] = []
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        try:
            page = browser.new_page()
            page.set_default_timeout(60_000)
            page.on("response", lambda r: failed.append(r.url) if r.status >= 400 else None)
            page.goto(f"{replica_set.url}/")
            assert page.url == f"{replica_set.url}/ui/"
            page.wait_for_selector("body[data-ready='1']")
            page.fill("#field-V14", "-6.5")
            page.click("#score-submit")
            page.wait_for_selector("#score-result:not([hidden])")
            assert 0.0 <= float(page.text_content("#score-probability")) <= 1.0
        finally:
            browser.close()
    assert failed == []


def test_a_replica_killed_under_load_loses_no_answered_decision(
    replica_set: ReplicaSet,
) -> None:
    frame = transactions(None, 5000, seed=5)
    result = kill_under_load(replica_set, frame, kills=1, seconds=12, threads=4)
    assert result["errors_seen_by_callers"] == 0, result["error_examples"]
    assert result["answered"] > 200, result
    # Commit before answer: every id a caller got back is already in PostgreSQL.
    assert result["missing_from_log_at_stop"] == 0, result["missing_examples"]
    assert result["missing_from_log"] == 0, result["missing_examples"]
    assert result["feedback"]["stored"] == result["unique_labelled_ids"]
    assert result["feedback"]["unmatched"] == 0
    # A retried id may be scored twice; /performance judges each labelled id once.
    assert result["labelled_by_performance"] == result["unique_labelled_ids"], result


def test_a_draining_replica_leaves_the_pool_before_it_stops_answering(
    replica_set: ReplicaSet,
) -> None:
    frame = transactions(None, 5000, seed=9)
    result = drain_under_load(replica_set, frame, replica_set.replicas[1])
    at = result["seconds_after_sigterm"]
    assert result["errors_seen_by_callers"] == 0, result["error_examples"]
    assert result["exit_code"] == 0
    # Out of HAProxy's pool because /readyz said 503, not because the port went dead ...
    assert result["haproxy_check"] == {"status": "L7STS", "code": "503"}, result
    # ... well before the replica stopped answering, which the drain delays.
    assert at["down"] < at["unanswered"] <= at["refused"], at
    assert at["unanswered"] >= DRAIN_SECONDS * 0.9, at
