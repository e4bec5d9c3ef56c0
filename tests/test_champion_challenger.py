"""Champion and challenger on a real server: replayed rows, late labels, online metrics.

The replay uses the ULB real sample when it is on this machine (``FRAUD_REAL_SAMPLE``, or
``../shared/data/creditcard_real_sample.csv.gz``), else rows of the embedded generator.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import bentoml
import httpx
import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import average_precision_score

from fraud_detection.api_models import EXAMPLE_TRANSACTION
from fraud_detection.client import score_frame
from fraud_detection.routing.transaction_ids import traffic_buckets
from fraud_detection.schema import FEATURE_NAMES
from fraud_detection.scorer import OnnxScorer
from fraud_detection.settings import SCORE_DB_FILE
from harness.postgres_server import PostgresServer
from tests.conftest import REPO
from tests.conftest import RunningServer
from tests.conftest import start_server
from training.data import generate_transactions

REAL_SAMPLE = Path(
    os.environ.get(
        "FRAUD_REAL_SAMPLE", REPO.parent / "shared" / "data" / "creditcard_real_sample.csv.gz"
    )
)
SHADOW_SHARE = 0.25


def replay_rows() -> pd.DataFrame:
    if REAL_SAMPLE.is_file():
        frame = pd.read_csv(REAL_SAMPLE)
    else:
        frame = generate_transactions(6000, fraud_rate=0.01, seed=11)
    frame = frame.reset_index(drop=True)
    frame["transaction_id"] = [f"replay-{i}" for i in range(len(frame))]
    return frame


def stored_scorer(home: Path, name: str) -> OnnxScorer:
    (folder,) = (home / "models" / name).glob("*/")
    return OnnxScorer.from_directory(folder)


def auprc_bounds(y: np.ndarray, scores: np.ndarray, atol: float) -> tuple[float, float]:
    """The lowest and highest AUPRC of any scores within `atol` of `scores`.

    AUPRC only falls when a fraud's score falls or a legitimate row's rises, so the extremes
    are every fraud moved down by `atol` and every other row up, then the reverse. Near 1.0,
    float32 probabilities tie in runs; a 1e-6 change reorders a tie and moves AUPRC by 1e-4.
    """
    shift = np.where(y == 1, atol, -atol)
    low = average_precision_score(y, scores - shift)
    return float(low), float(average_precision_score(y, scores + shift))


def scored(url: str) -> int:
    """Transactions in the score log, as ``/performance`` counts them (-1: not answering)."""
    answer = httpx.get(f"{url}/performance", timeout=30)
    return answer.json()["scored"] if answer.status_code == 200 else -1


def challenger_scored(log: Path) -> set[str]:
    """Ids whose challenger score is in the SQLite score log."""
    with contextlib.closing(sqlite3.connect(log)) as conn:
        query = "SELECT transaction_id FROM scores WHERE challenger_probability IS NOT NULL"
        return {tid for (tid,) in conn.execute(query)}


def wait_for(condition, timeout: float = 60.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.25)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture(scope="module")
def sqlite_server(
    trained_store: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningServer]:
    """Two workers sharing the default SQLite score log, DistilBERT in shadow."""
    running = start_server(
        trained_store,
        tmp_path_factory.mktemp("champion_sqlite"),
        "mlp",
        FRAUD_WORKERS="2",
        FRAUD_CHALLENGER="distilbert",
        FRAUD_SHADOW_SHARE=str(SHADOW_SHARE),
        FRAUD_PERFORMANCE_WINDOW_ROWS="100000",
        FRAUD_FEEDBACK_MAX_ITEMS="5000",
        FRAUD_PERFORMANCE_EVERY_SECONDS="1",
    )
    yield running
    running.server.stop()


def test_replayed_rows_with_their_labels_give_the_offline_auprc(
    sqlite_server: RunningServer, trained_store: Path
) -> None:
    frame = replay_rows()
    with bentoml.SyncHTTPClient(sqlite_server.url, server_ready_timeout=30) as client:
        answers = score_frame(client, frame, chunk_size=500)
    assert answers["transaction_id"].tolist() == frame["transaction_id"].tolist()
    url = sqlite_server.url
    wait_for(
        lambda: scored(url) == len(frame),
        what="every score in the log",
    )
    labels = [
        {"transaction_id": t, "label": int(y)}
        for t, y in zip(frame["transaction_id"], frame["Class"], strict=True)
    ]
    for start in range(0, len(labels), 5000):
        answer = httpx.post(f"{url}/feedback", json=labels[start : start + 5000]).json()
        assert answer["unmatched"] == 0 and answer["stored"] == len(labels[start : start + 5000])
    document = httpx.get(f"{url}/performance").json()
    champion, challenger = document["models"]
    assert document["labelled"] == len(frame) and document["label_coverage"] == 1.0

    features = frame.loc[:, list(FEATURE_NAMES)].to_numpy(np.float32)
    y = frame["Class"].to_numpy()
    mlp = stored_scorer(trained_store, "fraud-mlp")
    offline = mlp.predict_proba(features).astype(np.float64)
    # Served scores went through batches of other sizes: equal to float32 rounding.
    np.testing.assert_allclose(answers["fraud_probability"], offline, rtol=0, atol=1e-6)
    low, high = auprc_bounds(y, offline, atol=1e-6)
    assert low - 1e-12 <= champion["auprc"] <= high + 1e-12
    # On the scores the service returned, the online AUPRC is the offline one exactly.
    served = answers["fraud_probability"].to_numpy()
    assert champion["auprc"] == pytest.approx(average_precision_score(y, served), abs=1e-12)
    flagged = served >= mlp.threshold
    assert champion["recall"] == pytest.approx(flagged[y == 1].mean(), abs=1e-12)
    assert champion["frauds"] == y.sum() and champion["flagged"] == flagged.sum()

    # The shadow skips sampled rows when the challenger falls behind (it never slows serving;
    # on a loaded machine it does): judge it on the rows it scored, as the log holds them, once
    # its queue has drained, and require they are only sampled rows and most of them.
    sampled = traffic_buckets(frame["transaction_id"].tolist()) < SHADOW_SHARE
    log = sqlite_server.monitor_dir / SCORE_DB_FILE
    counts: list[int] = []
    wait_for(lambda: counts.append(len(challenger_scored(log))) or counts[-3:] == [counts[-1]] * 3,
             what="the shadow's queue to drain")  # fmt: skip
    shadowed = frame["transaction_id"].isin(challenger_scored(log)).to_numpy()
    assert not (shadowed & ~sampled).any() and shadowed.sum() >= 0.5 * sampled.sum()
    document = httpx.get(f"{url}/performance").json()
    champion, challenger = document["models"]
    distilbert = stored_scorer(trained_store, "fraud-distilbert")
    challenger_offline = distilbert.predict_proba(features[shadowed]).astype(np.float64)
    assert challenger["labelled"] == shadowed.sum() and challenger["frauds"] == y[shadowed].sum()
    low, high = auprc_bounds(y[shadowed], challenger_offline, atol=1e-6)
    assert low - 1e-12 <= challenger["auprc"] <= high + 1e-12
    assert document["paired"]["labelled"] == shadowed.sum()
    assert document["paired"]["champion"]["auprc"] == pytest.approx(
        average_precision_score(y[shadowed], served[shadowed]), abs=1e-12
    )

    metrics = httpx.get(f"{url}/metrics").text
    assert f'fraud_online_labelled{{model="{champion["model"]}",role="champion"}} {len(frame)}' in (
        metrics.replace(".0\n", "\n")
    )


def test_ids_and_labels_are_checked_item_by_item(sqlite_server: RunningServer) -> None:
    url = sqlite_server.url
    with bentoml.SyncHTTPClient(url, server_ready_timeout=30) as client:
        (mine, assigned) = client.predict(
            transactions=[{**EXAMPLE_TRANSACTION, "transaction_id": "ok-1"}, EXAMPLE_TRANSACTION]
        )
    assert mine["transaction_id"] == "ok-1" and assigned["transaction_id"] != "ok-1"
    spaced = {**EXAMPLE_TRANSACTION, "transaction_id": "a b"}
    bad = httpx.post(f"{url}/predict", json={"transactions": [EXAMPLE_TRANSACTION, spaced]})
    assert bad.status_code == 400
    assert bad.json()["detail"][0]["loc"] == ["transactions", 1, "transaction_id"]

    wait_for(lambda: httpx.post(f"{url}/feedback", json=[{"transaction_id": "ok-1", "label": 1}])
             .json()["unmatched"] == 0, what="ok-1 in the log")  # fmt: skip
    wrapped = {
        "labels": [{"transaction_id": "ok-1", "label": 0}, {"transaction_id": "ghost", "label": 1}]
    }
    both = httpx.post(f"{url}/feedback", json=wrapped).json()
    assert both == {
        "received": 2,
        "stored": 2,
        "unmatched": 1,
        "unmatched_ids": ["ghost"],
        "lease_notes": [],
    }
    for body, loc in (
        ([{"transaction_id": "ok-1", "label": 2}], [0, "label"]),
        ([{"transaction_id": "ok-1", "label": True}], [0, "label"]),
        ([{"transaction_id": "ok-1", "label": 1}, {"transaction_id": "", "label": 1}],
         [1, "transaction_id"]),
        ([{"transaction_id": "ok-1", "label": 1, "extra": 1}], [0, "extra"]),
        ([{"transaction_id": "ok-1", "label": 1, "source": "auditor"}], [0, "source"]),
        ([{"transaction_id": "ok-1", "label": 1, "reviewer": "a b"}], [0, "reviewer"]),
    ):  # fmt: skip
        answer = httpx.post(f"{url}/feedback", json=body)
        assert answer.status_code == 400, body
        assert answer.json()["detail"][0]["loc"] == loc
    oversize = [{"transaction_id": "ok-1", "label": 1}] * 5001
    answer = httpx.post(f"{url}/feedback", json=oversize)
    assert answer.status_code == 400 and answer.json()["detail"][0]["type"] == "too_long"
    assert httpx.post(f"{url}/feedback", content=b"{not json").status_code == 400
    assert httpx.post(f"{url}/feedback", json=[]).status_code == 400
    assert httpx.get(f"{url}/feedback").status_code == 405
    assert httpx.get(f"{url}/readyz").status_code == 200, "the service stays up"


def test_predictions_continue_while_postgresql_is_down_and_the_log_catches_up(
    trained_store: Path, tmp_path: Path
) -> None:
    database = PostgresServer.create(tmp_path / "pg")
    running = start_server(
        trained_store,
        tmp_path,
        "mlp",
        FRAUD_DB_URL=database.url,
        FRAUD_PERFORMANCE_EVERY_SECONDS="1",
    )
    url = running.url
    rows = [{**EXAMPLE_TRANSACTION, "transaction_id": f"pg-{i}"} for i in range(50)]
    try:
        assert httpx.post(f"{url}/predict", json={"transactions": rows[:25]}).status_code == 200
        wait_for(lambda: scored(url) == 25, what="25 rows")
        database.stop()
        answer = httpx.post(f"{url}/predict", json={"transactions": rows[25:]}, timeout=10)
        assert answer.status_code == 200 and len(answer.json()) == 25, "predictions go on"
        down = httpx.get(f"{url}/performance", timeout=30)
        assert down.status_code == 503 and down.json()["database"]["status"] == "unavailable"
        assert down.json()["database"]["url"] == database.url
        feedback = httpx.post(f"{url}/feedback", json=[{"transaction_id": "pg-1", "label": 1}])
        assert feedback.status_code == 503 and "unavailable" in feedback.json()["detail"]
        wait_for(lambda: "fraud_score_db_up 0.0" in httpx.get(f"{url}/metrics").text,
                 what="the db-up gauge at 0")  # fmt: skip
        wait_for(
            lambda: (
                "fraud_score_log_write_failures_total 0.0" not in httpx.get(f"{url}/metrics").text
            ),
            what="a counted write failure",
        )
        database.start()
        wait_for(
            lambda: (
                httpx.get(f"{url}/performance").status_code == 200
                and httpx.get(f"{url}/performance").json()["scored"] == 50
            ),
            timeout=90,
            what="the queued rows written after the restart",
        )
        status = httpx.get(f"{url}/performance").json()["database"]
        assert status["status"] == "ok" and status["score_log"]["dropped_rows"] == 0
    finally:
        running.server.stop()
        database.stop()
