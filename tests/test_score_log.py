"""The score log on real databases: SQLite files and a PostgreSQL 15 server started here."""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from fraud_detection.score_log.database import MIGRATIONS
from fraud_detection.score_log.database import SCHEMA_VERSION
from fraud_detection.score_log.database import DatabaseUnavailable
from fraud_detection.score_log.database import ScoreColumns
from fraud_detection.score_log.database import ScoreDatabase
from fraud_detection.score_log.database import SqliteScoreDatabase
from fraud_detection.score_log.database import open_database
from fraud_detection.score_log.database import redacted
from fraud_detection.score_log.database import score_row
from fraud_detection.score_log.database import statement_sizes
from fraud_detection.score_log.writer import ScoredBatch
from fraud_detection.score_log.writer import ScoreLogWriter
from harness.postgres_server import PostgresServer


def batch(ids: list[str], probabilities: list[float], **fields) -> ScoredBatch:
    p = np.array(probabilities, dtype=np.float32)
    return ScoredBatch(
        transaction_ids=ids,
        scored_at=fields.pop("scored_at", time.time()),
        probabilities=p,
        is_fraud=p >= 0.5,
        by_challenger=fields.pop("by_challenger", None),
        amounts=np.arange(len(ids), dtype=np.float32) + 1,
        **fields,
    )


def writer_for(database: ScoreDatabase, **options) -> ScoreLogWriter:
    return ScoreLogWriter(database, "fraud-mlp:v1", "fraud-distilbert:v2", **options)


def test_schema_is_created_then_migrations_are_idempotent(database: ScoreDatabase) -> None:
    assert database.migrate() == 0
    assert database.migrate() == SCHEMA_VERSION, "second start: nothing to do"
    assert database.scored_count(0) == 0


def test_a_version_1_database_is_migrated_with_its_rows_kept(database: ScoreDatabase) -> None:
    backend = "sqlite" if isinstance(database, SqliteScoreDatabase) else "postgresql"
    with database._connection() as conn:  # type: ignore[attr-defined]
        cursor = conn.cursor()
        cursor.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
        for statement in MIGRATIONS[0]:
            sql = statement if isinstance(statement, str) else statement.get(backend)
            if sql:
                cursor.execute(sql)
        cursor.execute("INSERT INTO schema_version VALUES (1)")
        conn.commit()
    database.register_models(["fraud-mlp:v0"])
    with database._connection() as conn:  # type: ignore[attr-defined]
        row = score_row("old-1", 1.0, "fraud-mlp:v0", 0.9, is_fraud=True, amount=12.0)
        marks = ", ".join([database.placeholder] * len(row))  # type: ignore[attr-defined]
        conn.cursor().execute(f"INSERT INTO scores VALUES ({marks})", row)
        conn.commit()
    assert database.migrate() == 1
    database.upsert_labels([("old-1", 1)], labelled_at=2.0)
    (kept,) = database.labelled_scores(0, 10)
    assert (kept.transaction_id, kept.model_version, kept.amount, kept.label) == (
        "old-1",
        "v0",
        12.0,
        1,
    )
    assert database.scored_count(0) == 0, "v2's per-flush counts start empty"


def migrate_at_once(databases: list[ScoreDatabase]) -> list[BaseException]:
    """`migrate` each of `databases` from its own thread, all at once; the errors raised."""
    errors: list[BaseException] = []

    def start(database: ScoreDatabase) -> None:
        try:
            database.migrate()
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=start, args=(d,)) for d in databases]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return errors


def test_several_workers_migrate_at_once_without_clashing(database: ScoreDatabase) -> None:
    assert not migrate_at_once([database] * 4)
    with database._connection() as conn:  # type: ignore[attr-defined]
        cursor = conn.cursor()
        cursor.execute("SELECT version FROM schema_version ORDER BY version")
        assert [r[0] for r in cursor.fetchall()] == list(range(1, SCHEMA_VERSION + 1))


def test_workers_racing_to_create_a_new_sqlite_file_all_start(tmp_path: Path) -> None:
    # Switching a fresh file to WAL answers "database is locked" at once, without SQLite's
    # busy timeout, to a worker that races another: about one start in fifteen failed.
    for attempt in range(40):
        path = tmp_path / f"scores-{attempt}.sqlite3"
        errors = migrate_at_once([SqliteScoreDatabase(path) for _ in range(4)])
        assert not errors, f"attempt {attempt}: {errors}"
        with sqlite3.connect(path) as conn:
            assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
            versions = [r[0] for r in conn.execute("SELECT version FROM schema_version")]
        assert sorted(versions) == list(range(1, SCHEMA_VERSION + 1))


def test_flushes_of_any_size_use_a_few_statement_texts() -> None:
    seen: set[int] = set()
    for n in range(3000):
        sizes = statement_sizes(n, 500)
        assert sum(sizes) == n and sizes == sorted(sizes, reverse=True)
        seen.update(sizes)
    assert seen == {500, 256, 128, 64, 32, 16, 8, 4, 2, 1}


def test_sqlite_keeps_every_row_of_flushes_of_many_sizes(tmp_path: Path) -> None:
    database = SqliteScoreDatabase(tmp_path / "scores.sqlite3")
    database.migrate()
    total = 0
    for n in (1, 499, 500, 501, 1234, 7):
        ids = [f"{n}-{i}" for i in range(n)]
        rows = [score_row(t, 100.0, "fraud-mlp:v1", 0.5) for t in ids]
        database.insert_scores(ScoreColumns.of_rows(rows))
        total += n
        assert database.known_ids(ids) == set(ids)
    assert database.scored_count(0) == total


def test_written_rows_join_their_labels_and_a_relabel_overwrites(database: ScoreDatabase) -> None:
    writer = writer_for(database, flush_interval_s=0.05)
    challenger_p = np.array([np.nan, 0.8, np.nan])
    writer.submit(
        batch(
            ["a", "b", "c"],
            [0.1, 0.7, 0.2],
            scored_at=100.0,
            by_challenger=np.array([False, True, False]),
            challenger_probabilities=challenger_p,
        )
    )
    writer.submit(batch(["a"], [0.3], scored_at=200.0))  # a client retry, scored again
    writer.close()
    assert writer.stats.written_rows == 4 and writer.stats.dropped_rows == 0
    assert database.known_ids(["a", "b", "zzz", "a"]) == {"a", "b"}
    database.upsert_labels([("a", 1), ("b", 0)], labelled_at=300.0)
    database.upsert_labels([("b", 1)], labelled_at=400.0)
    database.upsert_labels([("a", 1)], labelled_at=500.0)  # same label again: time kept
    rows = {r.transaction_id: r for r in database.labelled_scores(0, 10)}
    assert set(rows) == {"a", "b"}, "c has no label; a counts once"
    assert rows["a"].scored_at == 200.0 and rows["a"].probability == pytest.approx(0.3)
    assert (rows["a"].label, rows["a"].labelled_at) == (1, 300.0)
    assert (rows["b"].label, rows["b"].labelled_at) == (1, 400.0)
    assert (rows["b"].challenger, rows["b"].challenger_version) == ("fraud-distilbert", "v2")
    assert rows["b"].challenger_probability == pytest.approx(0.8)
    assert (rows["a"].model, rows["a"].model_version) == ("fraud-mlp", "v1")
    assert rows["a"].challenger is None and rows["a"].challenger_probability is None
    assert rows["b"].amount == 2.0
    assert database.scored_count(0) == 4, "rows written, a retry included"
    assert database.scored_count(time.time() + 1) == 0
    assert [r.transaction_id for r in database.labelled_scores(0, 1)] == ["a"], "newest first"


def test_sqlite_takes_writers_from_several_processes_in_wal_mode(tmp_path: Path) -> None:
    database = SqliteScoreDatabase(tmp_path / "scores.sqlite3")
    database.migrate()
    writers = [writer_for(SqliteScoreDatabase(database.path)) for _ in range(3)]
    for w, writer in enumerate(writers):
        for i in range(20):
            writer.submit(batch([f"w{w}-{i}-{j}" for j in range(50)], [0.1] * 50))
    for writer in writers:
        writer.close()
    assert database.scored_count(0) == 3 * 20 * 50
    with sqlite3.connect(database.path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_a_database_that_is_down_keeps_rows_queued_then_drops_and_counts_the_excess(
    tmp_path: Path,
) -> None:
    server = PostgresServer.create(tmp_path / "pg")
    database = open_database(server.url)
    writer = writer_for(database, max_pending_rows=100, flush_interval_s=0.05, retry_after_s=0.1)
    writer.submit(batch([f"before-{j}" for j in range(10)], [0.2] * 10))
    deadline = time.monotonic() + 10
    while writer.stats.written_rows < 10 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert writer.stats.written_rows == 10, "written on the connection the writer keeps"
    server.stop()  # that connection breaks: it is dropped, and a new one opened after
    for i in range(15):
        writer.submit(batch([f"t{i}-{j}" for j in range(10)], [0.2] * 10))
    assert writer.stats.dropped_rows == 50, "100 rows kept for later, the rest counted"
    deadline = time.monotonic() + 10
    while writer.stats.failed_writes == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert writer.stats.failed_writes >= 1 and "127.0.0.1" in (writer.stats.last_error or "")
    with pytest.raises(DatabaseUnavailable):
        database.scored_count(0)
    server.start()
    writer.retry_after_s = 0.05
    deadline = time.monotonic() + 20
    while writer.stats.written_rows < 110 and time.monotonic() < deadline:
        time.sleep(0.05)
    writer.close()
    assert writer.stats.written_rows == 110 and writer.stats.last_error is None
    assert len(database.known_ids([f"t{i}-{j}" for i in range(15) for j in range(10)])) == 100
    server.stop()


def test_a_flush_larger_than_one_statement_is_written_whole(database: ScoreDatabase) -> None:
    ids = [f"id-{i}" for i in range(1234)] + ["id-7"]  # an id repeated within one request
    writer = writer_for(database, flush_interval_s=60)
    writer.submit(batch(ids, [i / len(ids) for i in range(len(ids))], scored_at=50.0))
    writer.close()
    assert writer.stats.written_rows == 1235
    assert database.known_ids(ids) == set(ids)
    with database._connection() as conn:  # type: ignore[attr-defined]
        cursor = conn.cursor()
        cursor.execute("SELECT COUNT(*), MAX(probability), SUM(amount) FROM scores")
        count, top, amounts = cursor.fetchone()
    # SQLite keys rows by (id, time) and keeps the first of the repeat; PostgreSQL keeps both.
    assert count == (1234 if isinstance(database, SqliteScoreDatabase) else 1235)
    assert top == pytest.approx((count - 1) / 1235, rel=1e-6)
    assert amounts == sum(range(1, count + 1))


def test_database_urls_are_checked_and_passwords_never_shown() -> None:
    with pytest.raises(ValueError, match="sqlite:///<path> or postgresql://"):
        open_database("mysql://root:hunter2@db/fraud")
    assert (
        redacted("postgresql://app:hunter2@db:5432/fraud") == "postgresql://app:***@db:5432/fraud"
    )
    assert redacted("sqlite:////var/scores.db") == "sqlite:////var/scores.db"
