"""The analysts' review queue: flagged rows keep their features through the score writers and
the journal, the queue leases each item to one reviewer, labels close items, on real SQLite
and PostgreSQL databases and a real ``bentoml serve`` (bearer token on)."""

from __future__ import annotations

import asyncio
import base64
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest

from fraud_detection.explanations import ModelExplainers
from fraud_detection.performance.config import PerformanceConfig
from fraud_detection.performance.online import CostRule
from fraud_detection.performance.online import JudgedModel
from fraud_detection.performance.online import OnlinePerformance
from fraud_detection.review.cursor import Position
from fraud_detection.review.queue import ReviewQueue
from fraud_detection.review.queue import lease_notes
from fraud_detection.review.routes import ReviewRoutes
from fraud_detection.review.routes import ReviewSlot
from fraud_detection.review.store import ReviewStore
from fraud_detection.routing.router import ChampionChallenger
from fraud_detection.routing.router import ServedModel
from fraud_detection.routing.router import TrafficShares
from fraud_detection.schema import FEATURE_NAMES
from fraud_detection.score_log.database import SCHEMA_VERSION
from fraud_detection.score_log.database import Label
from fraud_detection.score_log.database import ReviewColumns
from fraud_detection.score_log.database import ScoreColumns
from fraud_detection.score_log.database import ScoreDatabase
from fraud_detection.score_log.database import model_id
from fraud_detection.score_log.database import open_database
from fraud_detection.score_log.database import score_row
from fraud_detection.score_log.durable_writer import DurableScoreLogWriter
from fraud_detection.score_log.journal import DecodedRecords
from fraud_detection.score_log.journal import encode_review
from fraud_detection.score_log.journal import encode_scores
from fraud_detection.score_log.journal import read_records
from fraud_detection.score_log.writer import ReviewRows
from fraud_detection.score_log.writer import ScoredBatch
from fraud_detection.score_log.writer import ScoreLogWriter
from fraud_detection.score_log.writer import review_values
from fraud_detection.score_log.writer import row_values
from fraud_detection.settings import SCORE_DB_FILE
from fraud_detection.settings import ServingSettings
from tests.conftest import RunningServer
from tests.conftest import call_asgi
from tests.conftest import start_server
from training.data import generate_transactions

CHAMPION, CHALLENGER = "fraud-mlp:v1", "fraud-distilbert:v2"
ROOT = Path(__file__).resolve().parents[1]
LEASE_S = 300.0


# --- helpers -----------------------------------------------------------------------------


def rows_of(n: int, seed: int) -> np.ndarray:
    """`n` rows of the embedded generator, float32 as the service scores them."""
    frame = generate_transactions(n, fraud_rate=0.2, seed=seed)
    return frame.loc[:, list(FEATURE_NAMES)].to_numpy(np.float32)


def score_by_v1(features: np.ndarray) -> np.ndarray:
    """A model for the router: a fixed function of V1, spread over (0, 1)."""
    return (1.0 / (1.0 + np.exp(features[:, 1]))).astype(np.float32)


def router(writer: ScoreLogWriter, floor: float | None = 0.5, **options) -> ChampionChallenger:
    async def score(features: np.ndarray) -> np.ndarray:
        return score_by_v1(features)

    champion = ServedModel("fraud-mlp", "v1", 0.8, score)
    return ChampionChallenger(champion, score_log=writer, review_floor=floor, **options)


def review_rows(database: ScoreDatabase) -> dict[str, tuple]:
    """Every review row: id -> (scored_at, model_id, probability, amount, time, is_fraud,
    features as float64, labelled, leased_to, leased_until)."""
    with database.connection() as conn:
        cursor = conn.cursor()
        cursor.execute(
            "SELECT transaction_id, scored_at, model_id, probability, amount, time_feature, "
            "is_fraud, features, labelled, leased_to, leased_until FROM review_items"
        )
        found = cursor.fetchall()
    return {
        tid: (*rest[:6], np.frombuffer(bytes(rest[6]), "<f8"), *rest[7:]) for tid, *rest in found
    }


def keep(
    database: ScoreDatabase,
    ids: list[str],
    probabilities: list[float],
    scored_at: float | list[float] = 1000.0,
) -> None:
    """Score rows and their review rows, written as the writer writes them."""
    database.migrate()
    database.register_models([CHAMPION, CHALLENGER])
    times = scored_at if isinstance(scored_at, list) else [scored_at] * len(ids)
    review = ReviewColumns()
    for tid, p, at in zip(ids, probabilities, times, strict=True):
        features = np.arange(30, dtype="<f8") + p
        review.add([tid], at, [model_id(CHAMPION)], [p], [p >= 0.8], features.tobytes())
    scores = [
        score_row(t, at, CHAMPION, p, is_fraud=p >= 0.8)
        for t, p, at in zip(ids, probabilities, times, strict=True)
    ]
    database.write(ScoreColumns.of_rows(scores), review=review, counted_rows=len(ids))


def store_of(database: ScoreDatabase, lease_s: float = LEASE_S) -> ReviewStore:
    return ReviewStore(database, lease_s=lease_s, retention_s=30 * 86_400.0)


# --- keeping the features of flagged rows ------------------------------------------------


@pytest.mark.parametrize("durable", [False, True], ids=["async", "journal"])
def test_flagged_rows_keep_their_features_exactly_and_others_keep_nothing(
    database: ScoreDatabase, tmp_path: Path, durable: bool
) -> None:
    if durable:
        writer: ScoreLogWriter = DurableScoreLogWriter(
            database, CHAMPION, None, journal_path=tmp_path / "journal", flush_interval_s=60
        )
    else:
        writer = ScoreLogWriter(database, CHAMPION, None, flush_interval_s=60)
    features = rows_of(400, seed=3)
    ids = [f"k-{i}" for i in range(len(features))]
    route = router(writer)
    for start in range(0, len(ids), 50):
        asyncio.run(route.score(features[start : start + 50], ids[start : start + 50]))
    p = score_by_v1(features)
    flagged = p >= 0.5  # (the threshold, 0.8, is above the floor)
    assert 0 < flagged.sum() < len(ids), "the fixture has rows of both kinds"
    first = int(np.flatnonzero(flagged)[0])
    retried = features[first : first + 1].copy()
    retried[0, -1] += 1.0  # a client's retry, its amount changed: kept again, not stored
    asyncio.run(route.score(retried, [ids[first]]))
    writer.close()
    kept = review_rows(database)
    assert set(kept) == {t for t, f in zip(ids, flagged, strict=True) if f}
    for i in np.flatnonzero(flagged):
        _, model, probability, amount, time_, is_fraud, values, labelled, to, until = kept[ids[i]]
        assert values.tobytes() == features[i].astype("<f8").tobytes(), "exactly as scored"
        assert probability == float(p[i]) and is_fraud == int(p[i] >= 0.8)
        assert (amount, time_) == (float(features[i, -1]), float(features[i, 0]))
        assert model == model_id(CHAMPION) and (labelled, to, until) == (0, None, None)
    assert kept[ids[first]][3] == float(features[first, -1]), "a retried id keeps its first row"


def test_a_canary_row_is_kept_with_the_challenger_that_decided_it(tmp_path: Path) -> None:
    database = open_database(f"sqlite:///{tmp_path / 'scores.sqlite3'}")
    writer = ScoreLogWriter(database, CHAMPION, CHALLENGER, flush_interval_s=60)

    async def low(features: np.ndarray) -> np.ndarray:
        return np.full(len(features), 0.1, np.float32)

    async def high(features: np.ndarray) -> np.ndarray:
        return np.full(len(features), 0.9, np.float32)

    route = ChampionChallenger(
        ServedModel("fraud-mlp", "v1", 0.5, low),
        challenger=ServedModel("fraud-distilbert", "v2", 0.5, high),
        shares=TrafficShares(canary=1.0),
        score_log=writer,
        review_floor=0.5,
    )
    asyncio.run(route.score(rows_of(3, seed=1), ["c-0", "c-1", "c-2"]))
    writer.close()
    kept = review_rows(database)
    assert set(kept) == {"c-0", "c-1", "c-2"}, "the challenger decided fraud on each"
    assert {row[1] for row in kept.values()} == {model_id(CHALLENGER)}
    assert {row[2] for row in kept.values()} == {float(np.float32(0.9))}, "its probability"


def test_with_the_queue_off_nothing_is_kept(tmp_path: Path) -> None:
    database = open_database(f"sqlite:///{tmp_path / 'scores.sqlite3'}")
    writer = ScoreLogWriter(database, CHAMPION, None, flush_interval_s=60)
    asyncio.run(router(writer, floor=None).score(rows_of(200, seed=4), None))
    writer.close()
    assert database.scored_count(0) == 200 and review_rows(database) == {}
    assert ServingSettings.from_env({"FRAUD_REVIEW": "0"}).review.enabled is False
    with pytest.raises(ValueError, match="FRAUD_REVIEW_MIN_PROBABILITY"):
        ServingSettings.from_env({"FRAUD_REVIEW_MIN_PROBABILITY": "1.5"})

    async def app(scope, receive, send) -> None:
        raise AssertionError("answered by the route")

    slot = ReviewSlot()
    slot.off = "the review queue is off (FRAUD_REVIEW=0)"
    for path in ("/review", "/review/t-1"):
        status, body, _ = call_asgi(ReviewRoutes(app, slot), path=path, method="GET")
        assert status == 404 and b"review queue is off" in body


def test_review_records_read_back_from_the_journal() -> None:
    features = rows_of(3, seed=2)
    p = np.array([0.2, 0.7, 0.95], np.float32)
    review = ReviewRows(np.array([1, 2]), features[[1, 2]])
    batch = ScoredBatch(["a", "b", "c"], 7.5, p, p >= 0.8, None, features[:, -1], None, review)
    values = review_values(batch, 11, None)
    assert values is not None and values.transaction_ids == ["b", "c"]
    data = encode_scores(7.5, 11, None, batch.transaction_ids, *row_values(batch))
    data += encode_review(7.5, *values)
    records = DecodedRecords()
    assert read_records(data, records, max_rows=100) == len(data)
    r = records.review
    assert r.transaction_id == ["b", "c"] and r.model_id == [11, 11] and r.scored_at == [7.5] * 2
    assert r.is_fraud == [False, True]
    assert [np.frombuffer(f, "<f8").tolist() for f in r.features] == (
        features[[1, 2]].astype(np.float64).tolist()
    )
    first = r.parameters()[0]
    assert first[4:6] == (float(features[1, -1]), float(features[1, 0])), "amount, time"


KILLED_CHILD = textwrap.dedent(
    """
    import sys, time
    import numpy as np
    from fraud_detection.score_log.database import open_database
    from fraud_detection.score_log.durable_writer import DurableScoreLogWriter
    from fraud_detection.score_log.writer import ReviewRows, ScoredBatch

    url, folder, n, flushed = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    writer = DurableScoreLogWriter(
        open_database(url), "fraud-mlp:v1", None, journal_path=folder, flush_interval_s=3600
    )
    writer.journal.segment_bytes = 4000
    deadline = time.monotonic() + 60
    while not writer.stats.schema_ready and time.monotonic() < deadline:
        time.sleep(0.05)
    for i in range(n):
        p = np.array([0.1, 0.9])
        features = np.full((1, 30), float(i))
        review = ReviewRows(np.array([1]), features)
        writer.submit(
            ScoredBatch([f"k{i}-0", f"k{i}-1"], time.time(), p, p > 0.5, None, p, None, review)
        )
        if i == flushed:
            writer.flush()
    print("journalled", flush=True)
    time.sleep(3600)
    """
)


def test_review_rows_of_a_killed_process_are_replayed_exactly_once(
    database: ScoreDatabase, tmp_path: Path
) -> None:
    folder = tmp_path / "journal"
    database.migrate()
    child = subprocess.Popen(
        [sys.executable, "-c", KILLED_CHILD, database.url, str(folder), "200", "80"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert child.stdout is not None and child.stdout.readline().strip() == b"journalled"
    before = len(review_rows(database))
    assert 0 < before < 200, "part of it written before the kill"
    sibling = DurableScoreLogWriter(
        database, CHAMPION, None, journal_path=folder, flush_interval_s=60, recover_every_s=3600
    )
    assert sibling.recover() == 0, "a live worker's journal is not touched"
    child.send_signal(signal.SIGKILL)
    child.wait(10)
    assert sibling.recover() > 0
    sibling.close()
    kept = review_rows(database)
    assert set(kept) == {f"k{i}-1" for i in range(200)}, "every kept row, none twice"
    assert all(kept[f"k{i}-1"][6].tolist() == [float(i)] * 30 for i in range(200))


# --- the queue: leases, cursor, labels, purge --------------------------------------------


def test_the_schema_is_at_version_4_with_the_queue_tables(database: ScoreDatabase) -> None:
    assert database.migrate() == 0 and SCHEMA_VERSION == 4
    keep(database, ["m-1"], [0.9])
    assert database.upsert_labels([("m-1", 1)], 2000.0) == {}, "a chargeback: no lease notes"
    (row,) = database.labelled_scores(0, 10)
    assert row.source == "chargeback"


def test_pages_follow_the_cursor_in_both_orders_and_lease_each_item(
    database: ScoreDatabase,
) -> None:
    ids = [f"p-{i:02d}" for i in range(25)]
    probabilities = [0.5 + (i % 7) / 20 for i in range(25)]  # ties: ordered by id
    keep(database, ids, probabilities, [1000.0 + (i % 5) for i in range(25)])
    store = store_of(database)
    for order, key in (("risk", probabilities), ("newest", [1000.0 + (i % 5) for i in range(25)])):
        expected = sorted(ids, key=lambda t: (-key[ids.index(t)], t))
        seen: list[str] = []
        after = None
        while True:  # the reviewer's own leases stay open to them
            page = store.lease_page("ann", order=order, limit=7, after=after, now=5000.0)
            seen += [item.transaction_id for item in page.items]
            assert all(i.leased_until == 5000.0 + LEASE_S for i in page.items)
            if len(page.items) < 7:
                break
            last = page.items[-1]
            after = Position(order, last.key(order), last.transaction_id)
        assert seen == expected, order
    third = store.lease_page("bob", now=5001.0)
    assert third.items == [] and third.open == 0, "ann holds every item"
    assert store.lease_page("ann", limit=1, now=5001.0).open == 25


def test_an_item_scored_by_a_model_not_served_here_says_why_it_is_not_explained(
    database: ScoreDatabase,
) -> None:
    keep(database, ["u-1"], [0.75])
    queue = ReviewQueue(store_of(database), ModelExplainers({}).records)
    item = queue.item("u-1", "ann", now=2000.0)
    assert item is not None and item.explanation is None
    assert item.explanation_unavailable == f"scored by {CHAMPION}, which this worker does not serve"
    assert list(item.features.values()) == (np.arange(30) + 0.75).tolist()
    assert item.lease is not None and item.lease.yours and item.lease.until == 2000.0 + LEASE_S
    assert (item.model, item.age_seconds, item.label) == (CHAMPION, 1000.0, None)
    assert queue.item("u-2", "ann") is None


def test_a_malformed_or_mismatched_cursor_is_refused() -> None:
    good = Position("risk", 0.75, "t-1").encode()
    assert Position.decode(good, "risk") == Position("risk", 0.75, "t-1")
    huge = base64.urlsafe_b64encode(b'["risk",1' + b"0" * 309 + b',"a"]').decode()  # > float
    newline = base64.urlsafe_b64encode(b'["risk",1,"a\\n"]').decode()
    for bad in ("x", "!!!!", good[:-3], base64.urlsafe_b64encode(b'["risk",1]').decode(),
                huge, newline):  # fmt: skip
        with pytest.raises(ValueError, match="not a cursor"):
            Position.decode(bad, "risk")
    with pytest.raises(ValueError, match="order=risk, not order=newest"):
        Position.decode(good, "newest")


def test_an_expired_lease_returns_the_item_to_the_queue(database: ScoreDatabase) -> None:
    keep(database, ["e-1", "e-2"], [0.9, 0.6])
    store = store_of(database, lease_s=60.0)
    first = store.lease_page("ann", limit=1, now=1000.0)
    assert [i.transaction_id for i in first.items] == ["e-1"] and first.open == 2
    assert [i.transaction_id for i in store.lease_page("bob", now=1030.0).items] == ["e-2"]
    assert store.lease_page("bob", now=1030.0).open == 1, "e-1 is ann's"
    later = store.lease_page("bob", now=1061.0)
    assert [i.transaction_id for i in later.items] == ["e-1", "e-2"], "ann's lease ran out"
    opened = store.open_item("e-1", "ann", now=1062.0)
    assert opened is not None and opened.item.leased_to == "bob", "ann cannot take it back"
    assert store.open_item("e-9", "ann") is None


def test_labels_close_items_note_leases_overwrite_and_count(database: ScoreDatabase) -> None:
    keep(database, ["l-1", "l-2", "l-3", "l-4"], [0.9, 0.8, 0.7, 0.6])
    store = store_of(database, lease_s=60.0)
    now = time.time()
    for tid, reviewer in (("l-1", "ann"), ("l-2", "ann"), ("l-3", "bob")):
        store.open_item(tid, reviewer, now=now - 100 if tid == "l-2" else now)
    labels = [
        Label("l-1", 1, "ann", "analyst"),  # her own lease: no note
        Label("l-2", 0, "ann", "analyst"),  # her lease expired
        Label("l-3", 1, "ann", "analyst"),  # bob's
        Label("l-4", 1, "ann", "analyst"),  # never leased
        Label("l-5", 1, "ann", "analyst"),  # not a review item: nothing to say
    ]
    leases = database.upsert_labels(labels, now)
    reviewers = {label.transaction_id: label.reviewer for label in labels}
    notes = {n.transaction_id: n.note for n in lease_notes(leases, reviewers, now)}
    assert notes == {"l-2": "lease expired", "l-3": "leased to bob", "l-4": "not leased"}
    kept = review_rows(database)
    assert all(kept[t][7:] == (1, None, None) for t in ("l-1", "l-2", "l-3", "l-4"))
    assert store.lease_page("cat", now=now).items == [], "a label from anyone closes an item"
    # A relabel overwrites label, time, reviewer and source; nothing is stored twice.
    database.upsert_labels([Label("l-1", 0, None, "chargeback")], now + 5)
    database.upsert_labels([Label("l-1", 0, "bob", "analyst")], now + 9)  # same label: kept
    opened = store.open_item("l-1", "ann", now=now + 10)
    assert opened is not None and opened.label is not None
    assert (opened.label.label, opened.label.source, opened.label.labelled_at) == (
        0,
        "chargeback",
        now + 5,
    )
    with database.connection() as conn:
        cursor = conn.cursor()
        cursor.execute("SELECT COUNT(*) FROM labels WHERE transaction_id = 'l-1'")
        assert cursor.fetchone()[0] == 1
    page = store.lease_page("cat", now=now + 10)
    assert page.reviewed_today == 4, "l-2 to l-5: analyst labels (l-1's is a chargeback's now)"


def test_a_label_that_came_before_its_review_row_closes_it(database: ScoreDatabase) -> None:
    database.migrate()
    database.upsert_labels([Label("early", 1, "ann", "analyst")], 500.0)
    keep(database, ["early"], [0.95])
    assert review_rows(database)["early"][7] == 1
    assert store_of(database).lease_page("ann").items == []


def test_purge_drops_rows_past_the_retention(database: ScoreDatabase) -> None:
    day = 86_400.0
    keep(database, ["old", "new"], [0.9, 0.9], [1000.0, 1000.0 + 29 * day])
    store = store_of(database)
    assert store.purge(now=1000.0 + 30 * day + 1) == 1
    assert set(review_rows(database)) == {"new"}
    assert database.known_ids(["old"]) == {"old"}, "its score row stays"


def test_concurrent_reviewers_never_get_the_same_item(database: ScoreDatabase) -> None:
    """Eight reviewers, each with its own connection pool (as workers have), page through
    the queue at once: every item goes to exactly one of them."""
    ids = [f"c-{i:03d}" for i in range(240)]
    keep(database, ids, [0.5 + (i % 50) / 100 for i in range(240)])
    got: dict[str, list[str]] = {}
    errors: list[BaseException] = []
    start = threading.Barrier(8)

    def work(name: str, order: str) -> None:
        store = store_of(open_database(database.url))
        mine: list[str] = []
        after = None
        try:
            start.wait()
            while True:
                page = store.lease_page(name, limit=5, order=order, after=after)
                if not page.items:
                    break
                mine += [item.transaction_id for item in page.items]
                last = page.items[-1]
                after = Position(order, last.key(order), last.transaction_id)
        except BaseException as e:
            errors.append(e)
        got[name] = mine

    threads = [
        threading.Thread(target=work, args=(f"rev-{k}", ("risk", "newest")[k % 2]))
        for k in range(8)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors
    everything = [tid for mine in got.values() for tid in mine]
    assert len(everything) == len(set(everything)) == len(ids), "each item to one reviewer"
    assert sum(1 for mine in got.values() if mine) > 1, "the work was shared"


def test_performance_splits_by_label_source(database: ScoreDatabase) -> None:
    ids = [f"s-{i}" for i in range(40)]
    keep(database, ids, [0.9 if i % 2 else 0.2 for i in range(40)], time.time())
    labels = [Label(t, i % 2, "ann" if i < 10 else None, "analyst" if i < 10 else "chargeback")
              for i, t in enumerate(ids)]  # fmt: skip
    database.upsert_labels(labels, time.time())
    model = JudgedModel("champion", "fraud-mlp", "v1", 0.5, 0.9, CostRule())
    performance = OnlinePerformance(database, model, None, PerformanceConfig())
    whole = performance.compute()
    analyst = performance.compute(source="analyst")
    assert (
        whole["labels_by_source"]
        == analyst["labels_by_source"]
        == {
            "analyst": 10,
            "chargeback": 30,
        }
    )
    assert (whole["labelled"], analyst["labelled"], analyst["source"]) == (40, 10, "analyst")
    assert analyst["models"][0]["frauds"] == 5


# --- a real server -----------------------------------------------------------------------

TOKEN = "review-s3cret"
SERVED_LEASE_S = 6.0


@pytest.fixture(scope="module")
def served(
    trained_store: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningServer]:
    """Two workers on the default SQLite score log, a bearer token, short leases."""
    running = start_server(
        trained_store,
        tmp_path_factory.mktemp("review"),
        "mlp",
        FRAUD_WORKERS="2",
        FRAUD_API_TOKEN=TOKEN,
        FRAUD_REVIEW_LEASE_SECONDS=str(SERVED_LEASE_S),
        FRAUD_PERFORMANCE_WINDOW_ROWS="100000",
    )
    yield running
    running.server.stop()


@pytest.fixture
def api(served: RunningServer) -> Iterator[httpx.Client]:
    headers = {"authorization": f"Bearer {TOKEN}"}
    with httpx.Client(base_url=served.url, headers=headers, timeout=120) as client:
        yield client


def scored_rows(api: httpx.Client, prefix: str, n: int, seed: int) -> tuple[list[dict], list[dict]]:
    """Score `n` generated rows with ids ``<prefix>-<i>``; (the rows sent, the answers)."""
    frame = generate_transactions(n, fraud_rate=0.3, seed=seed)
    rows = frame.loc[:, list(FEATURE_NAMES)].to_dict(orient="records")
    for i, row in enumerate(rows):
        row["transaction_id"] = f"{prefix}-{i}"
    answer = api.post("/predict", json={"transactions": rows})
    assert answer.status_code == 200, answer.text
    return rows, answer.json()


def flagged(answers: list[dict]) -> list[str]:
    return [a["transaction_id"] for a in answers if a["is_fraud"] or a["fraud_probability"] >= 0.5]


def wait_for_item(api: httpx.Client, tid: str, reviewer: str = "ann") -> dict:
    deadline = time.monotonic() + 30
    while True:
        answer = api.get(f"/review/{tid}", params={"reviewer": reviewer})
        if answer.status_code == 200 or time.monotonic() > deadline:
            assert answer.status_code == 200, answer.text
            return answer.json()
        time.sleep(0.2)


def test_served_item_has_its_features_as_scored_and_the_explanation_of_explain(
    api: httpx.Client,
) -> None:
    rows, answers = scored_rows(api, "x", 60, seed=21)
    kept = flagged(answers)
    assert 0 < len(kept) < len(rows), "the fixture has rows of both kinds"
    tid = kept[0]
    item = wait_for_item(api, tid)
    row = rows[int(tid.split("-")[1])]
    sent = np.array([row[c] for c in FEATURE_NAMES], np.float32).astype(np.float64)
    assert list(item["features"]) == list(FEATURE_NAMES)
    assert np.array_equal(np.array(list(item["features"].values())), sent), "exactly as scored"
    answer = next(a for a in answers if a["transaction_id"] == tid)
    assert item["probability"] == answer["fraud_probability"]
    assert item["model"] == f"{answer['model']}:{answer['model_version']}"
    assert (item["amount"], item["time"]) == (sent[-1], sent[0])
    (explained,) = api.post("/explain", json={"transactions": [row]}).json()
    assert item["explanation"] == explained and item["explanation_unavailable"] is None
    assert item["label"] is None and item["lease"]["yours"] and item["lease"]["reviewer"] == "ann"
    for tid in set(a["transaction_id"] for a in answers) - set(kept):
        assert api.get(f"/review/{tid}", params={"reviewer": "ann"}).status_code == 404


def test_served_queue_refuses_bad_input_naming_the_field(api: httpx.Client) -> None:
    def loc(path: str, **params: str) -> list:
        answer = api.get(path, params=params)
        assert answer.status_code == 400, (path, params, answer.text)
        return answer.json()["detail"][0]["loc"]

    assert loc("/review", reviewer="ann", cursor="not-a-cursor") == ["query", "cursor"]
    huge = base64.urlsafe_b64encode(b'["risk",1' + b"0" * 309 + b',"a"]').decode()
    assert loc("/review", reviewer="ann", cursor=huge) == ["query", "cursor"]
    assert loc("/review/x-1%0A", reviewer="ann") == ["path", "transaction_id"]
    assert api.head("/review", params={"reviewer": "ann"}).status_code == 405
    newest = Position("newest", 1.0, "t").encode()
    assert loc("/review", reviewer="ann", cursor=newest) == ["query", "cursor"], "wrong order"
    assert loc("/review", reviewer="ann", order="oldest") == ["query", "order"]
    assert loc("/review", reviewer="ann", limit="0") == ["query", "limit"]
    assert loc("/review", reviewer="ann", limit="101") == ["query", "limit"]
    assert loc("/review") == ["query", "reviewer"]
    assert loc("/review", reviewer="a b") == ["query", "reviewer"]
    assert loc("/review/x-1") == ["query", "reviewer"]
    assert loc("/review/a%20b", reviewer="ann") == ["path", "transaction_id"]
    assert loc("/performance", source="auditor") == ["query", "source"]
    unknown = api.get("/review/never-scored", params={"reviewer": "ann"})
    assert unknown.status_code == 404 and "never-scored" in unknown.json()["error"]
    assert api.post("/review", json={}).status_code == 405
    assert api.get("/readyz").status_code == 200, "the service stays up"


def test_served_routes_need_the_bearer_token(served: RunningServer) -> None:
    for path in ("/review?reviewer=ann", "/review/x-1?reviewer=ann"):
        answer = httpx.get(f"{served.url}{path}")
        assert answer.status_code == 401, path
        wrong = httpx.get(f"{served.url}{path}", headers={"authorization": "Bearer nope"})
        assert wrong.status_code == 401, path


def test_served_reviewers_working_at_once_never_hold_the_same_item(api: httpx.Client) -> None:
    _, answers = scored_rows(api, "q", 400, seed=22)
    kept = flagged(answers)
    wait_for_item(api, kept[-1])
    seen: list[tuple[str, str, float]] = []  # (id, reviewer, leased_until)
    errors: list[str] = []
    barrier = threading.Barrier(4)

    def work(name: str, order: str) -> None:
        with httpx.Client(base_url=api.base_url, headers=api.headers, timeout=60) as client:
            barrier.wait()
            params = {"reviewer": name, "limit": 10, "order": order}
            while True:
                answer = client.get("/review", params=params)
                if answer.status_code != 200:
                    errors.append(answer.text)
                    return
                page = answer.json()
                seen.extend((i["transaction_id"], name, i["leased_until"]) for i in page["items"])
                if page["next_cursor"] is None:
                    return
                params["cursor"] = page["next_cursor"]

    threads = [
        threading.Thread(target=work, args=(f"analyst-{k}", ("risk", "newest")[k % 2]))
        for k in range(4)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors[:3]
    assert len({s[0] for s in seen}) > 20
    # Two reviewers held one item at once iff their leases' ends are less than a lease apart
    # (each lease starts SERVED_LEASE_S before its end, on the server's clock).
    by_id: dict[str, list[tuple[str, float]]] = {}
    for tid, name, until in seen:
        by_id.setdefault(tid, []).append((name, until))
    clashes = [
        (tid, a, b)
        for tid, held in by_id.items()
        for a in held
        for b in held
        if a[0] < b[0] and abs(a[1] - b[1]) < SERVED_LEASE_S
    ]
    assert clashes == [], clashes[:3]


def test_served_lease_expiry_labels_notes_and_performance_by_source(
    api: httpx.Client, served: RunningServer
) -> None:
    rows, answers = scored_rows(api, "n", 80, seed=23)
    kept = flagged(answers)
    assert len(kept) >= 4
    mine, bobs, expired, other = kept[:4]
    for tid in kept:
        wait_for_item(api, tid, reviewer="bob" if tid == bobs else "ann")
    time.sleep(SERVED_LEASE_S + 0.5)  # every lease above ran out ...
    assert wait_for_item(api, mine)["lease"]["yours"], "... and ann opens hers again"
    assert wait_for_item(api, bobs, "bob")["lease"]["reviewer"] == "bob"
    page = api.get("/review", params={"reviewer": "cat", "limit": 100, "order": "newest"}).json()
    listed = {i["transaction_id"] for i in page["items"]}
    assert expired in listed and other in listed, "expired leases are back in the queue"
    assert mine not in listed and bobs not in listed
    before = api.get("/performance").json()["labels_by_source"]
    labels = [
        {"transaction_id": mine, "label": 1, "reviewer": "ann", "source": "analyst"},
        {"transaction_id": bobs, "label": 1, "reviewer": "ann", "source": "analyst"},
        {"transaction_id": expired, "label": 0, "reviewer": "ann", "source": "analyst"},
    ]
    stored = api.post("/feedback", json=labels).json()
    assert stored["stored"] == 3 and stored["unmatched"] == 0
    notes = {n["transaction_id"]: n["note"] for n in stored["lease_notes"]}
    assert notes == {bobs: "leased to bob", expired: "leased to cat"}
    relabel = api.post("/feedback", json=[{**labels[0], "label": 0}]).json()
    assert relabel["stored"] == 1 and relabel["lease_notes"] == [], "closed: nothing to note"
    item = wait_for_item(api, mine)
    assert item["label"]["label"] == 0 and item["label"]["source"] == "analyst"
    assert item["lease"] is None and item["label"]["reviewer"] == "ann"
    api.post("/feedback", json=[{"transaction_id": other, "label": 1}])  # a chargeback
    after = api.get("/performance").json()
    assert after["labels_by_source"]["analyst"] == before["analyst"] + 3
    assert after["labels_by_source"]["chargeback"] == before["chargeback"] + 1
    analyst = api.get("/performance", params={"source": "analyst"}).json()
    assert analyst["labelled"] == after["labels_by_source"]["analyst"]
    assert analyst["source"] == "analyst"
    assert api.get("/review", params={"reviewer": "cat"}).json()["reviewed_today"] >= 3
    retry = next(r for r in rows if r["transaction_id"] == expired)
    assert api.post("/predict", json={"transactions": [retry]}).status_code == 200
    time.sleep(1.5)  # the journal's rows reach the database every 0.5 s
    assert wait_for_item(api, expired)["label"]["label"] == 0, "the retry reopens nothing"
    database = open_database(f"sqlite:///{served.monitor_dir / SCORE_DB_FILE}")
    with database.connection() as conn:
        cursor = conn.cursor()
        cursor.execute(
            "SELECT COUNT(*), COUNT(DISTINCT transaction_id) FROM review_items "
            "WHERE transaction_id LIKE 'n-%'"
        )
        total, distinct = cursor.fetchone()
    assert total == distinct == len(kept), "nothing stored twice"
