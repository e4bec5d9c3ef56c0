"""Answered means recorded, on a real ``bentoml serve``: workers SIGKILLed under load lose no
answered decision, and labels sent the moment their answers arrive are all kept and counted."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest

from benchmarks.durability import OneRowLoad
from benchmarks.durability import kill_workers
from benchmarks.durability import missing_from_log
from benchmarks.durability import worker_pids
from fraud_detection.schema import FEATURE_NAMES
from fraud_detection.score_log.database import open_database
from fraud_detection.settings import SCORE_DB_FILE
from tests.conftest import RunningServer
from tests.conftest import start_server
from training.data import generate_transactions


@pytest.fixture(scope="module")
def two_workers(
    trained_store: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningServer]:
    """Two workers on the default score log (SQLite, durability left at its default)."""
    running = start_server(
        trained_store,
        tmp_path_factory.mktemp("durability"),
        "mlp",
        FRAUD_WORKERS="2",
        FRAUD_PERFORMANCE_EVERY_SECONDS="1",
        FRAUD_PERFORMANCE_WINDOW_ROWS="100000",
        FRAUD_FEEDBACK_MAX_ITEMS="5000",
    )
    yield running
    running.server.stop()


def rows(n: int = 2000) -> np.ndarray:
    frame = generate_transactions(n, fraud_rate=0.02, seed=5)
    return frame.loc[:, list(FEATURE_NAMES)].to_numpy(np.float64)


def test_killed_workers_lose_no_answered_decision(two_workers: RunningServer) -> None:
    database = open_database(f"sqlite:///{two_workers.monitor_dir / SCORE_DB_FILE}")
    with OneRowLoad(two_workers.url, rows(), connections=16, prefix="kill") as load:
        events = kill_workers(two_workers.server, kills=2, every_s=2.0)
        time.sleep(2.0)
        outcome = load.stop()
    assert all(e["new_worker_after_s"] is not None for e in events), events
    assert len(worker_pids(two_workers.server)) == 2
    assert len(outcome.answered) > 1000, outcome.errors
    # Only requests in flight at a kill may fail (their connection is cut, nothing answered).
    assert sum(outcome.errors.values()) <= 16 * len(events), outcome.errors
    missing = missing_from_log(database, outcome.answered, timeout_s=20)
    assert missing == [], f"{len(missing)} answered ids not in the log, e.g. {missing[:3]}"
    status = httpx.get(f"{two_workers.url}/performance", timeout=30).json()["database"]
    assert status["status"] == "ok"


def test_labels_sent_as_the_answers_arrive_are_all_kept_and_counted(
    two_workers: RunningServer,
) -> None:
    url = two_workers.url
    frame = generate_transactions(2000, fraud_rate=0.02, seed=8)
    ids = [f"early-{i}" for i in range(len(frame))]
    transactions = frame.loc[:, list(FEATURE_NAMES)].to_dict(orient="records")
    for tid, row in zip(ids, transactions, strict=True):
        row["transaction_id"] = tid
    before = httpx.get(f"{url}/performance", timeout=30).json()["labelled"]
    with httpx.Client(base_url=url, timeout=30) as client:
        for start in range(0, len(ids), 500):
            answer = client.post(
                "/predict", json={"transactions": transactions[start : start + 500]}
            )
            assert answer.status_code == 200
        # At once: most scores are still in the workers' journals, not yet in the database.
        labels = [
            {"transaction_id": t, "label": int(y)} for t, y in zip(ids, frame["Class"], strict=True)
        ]
        stored = client.post("/feedback", json=labels).json()
    assert stored["received"] == stored["stored"] == len(ids)
    assert (
        0 <= stored["unmatched"] <= len(ids) and len(stored["unmatched_ids"]) == stored["unmatched"]
    )
    deadline = time.monotonic() + 20  # FRAUD_PERFORMANCE_EVERY_SECONDS=1, flushes every 0.5 s
    labelled = before
    while time.monotonic() < deadline and labelled < before + len(ids):
        time.sleep(0.5)
        labelled = httpx.get(f"{url}/performance", timeout=30).json()["labelled"]
    assert labelled == before + len(ids), "every early label joined its score"
    again = httpx.post(f"{url}/feedback", json=labels[:10]).json()
    assert again["unmatched"] == 0, "their scores are all in the log now"


def test_a_server_killed_whole_is_replayed_by_the_next_one_on_the_same_folder(
    trained_store: Path, tmp_path: Path
) -> None:
    """A container restarted with its monitoring volume: every process SIGKILLed at once
    (nothing flushes), then a new server on the same folder inserts what was journalled."""
    for name in ("first", "second"):
        (tmp_path / name).mkdir()
    first = start_server(trained_store, tmp_path / "first", "mlp", FRAUD_WORKERS="2")
    folder = first.monitor_dir
    database = open_database(f"sqlite:///{folder / SCORE_DB_FILE}")
    try:
        with OneRowLoad(first.url, rows(), connections=8, prefix="whole") as load:
            time.sleep(3.0)
            first.server.kill()  # arbiter and workers at once, mid-load
            outcome = load.stop()
    finally:
        first.server.stop()
    assert len(outcome.answered) > 100
    lost_before = len(missing_from_log(database, outcome.answered, timeout_s=0))
    assert lost_before > 0, "some answered rows were only in the journal when it died"
    second = start_server(
        trained_store, tmp_path / "second", "mlp", FRAUD_MONITOR_LOG_PATH=str(folder)
    )
    try:
        missing = missing_from_log(database, outcome.answered, timeout_s=20)
    finally:
        second.server.stop()
    assert missing == [], f"{len(missing)} of {lost_before} not replayed, e.g. {missing[:3]}"
    # Flagged rows' review rows were journalled with them, and replayed with them.
    with database.connection() as conn:
        cursor = conn.cursor()
        cursor.execute(
            "SELECT COUNT(DISTINCT s.transaction_id), COUNT(DISTINCT r.transaction_id) "
            "FROM scores s LEFT JOIN review_items r ON r.transaction_id = s.transaction_id "
            "WHERE s.flags % 2 = 1 OR s.probability >= 0.5"
        )
        flagged, kept = cursor.fetchone()
    assert kept == flagged, f"{flagged - kept} of {flagged} flagged rows lost their review row"
