"""The durable score log: the journal's records, a killed process's rows replayed exactly once,
and commit-before-answer, on real SQLite files and a real PostgreSQL server."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np

from fraud_detection.score_log.database import ScoreDatabase
from fraud_detection.score_log.database import open_database
from fraud_detection.score_log.durable_writer import DurableScoreLogWriter
from fraud_detection.score_log.journal import DecodedRecords
from fraud_detection.score_log.journal import ScoreJournal
from fraud_detection.score_log.journal import encode_challenger
from fraud_detection.score_log.journal import encode_scores
from fraud_detection.score_log.journal import orphaned_owners
from fraud_detection.score_log.journal import read_records
from fraud_detection.score_log.writer import ScoredBatch
from fraud_detection.score_log.writer import row_values
from harness.postgres_server import PostgresServer
from tests.test_score_log import batch

CHAMPION, CHALLENGER = "fraud-mlp:v1", "fraud-distilbert:v2"
ROOT = Path(__file__).resolve().parents[1]


def durable_writer(database: ScoreDatabase, folder: Path, **options) -> DurableScoreLogWriter:
    return DurableScoreLogWriter(database, CHAMPION, CHALLENGER, journal_path=folder, **options)


def count_rows(database: ScoreDatabase) -> tuple[int, int]:
    """(score rows, distinct ids) in the database."""
    with database._connection() as conn:
        cursor = conn.cursor()
        cursor.execute("SELECT COUNT(*), COUNT(DISTINCT transaction_id) FROM scores")
        total, distinct = cursor.fetchone()
    return int(total), int(distinct)


def test_records_read_back_as_written_and_a_torn_tail_is_left_unread() -> None:
    scored = ScoredBatch(
        ["a", "b", "c"],
        12.5,
        np.array([0.1, 0.9, 0.4], dtype=np.float32),
        np.array([False, True, False]),
        np.array([False, True, False]),
        np.array([1.0, 2.0, 3.0]),
        np.array([np.nan, 0.75, np.nan]),
    )
    data = encode_scores(12.5, 7, 9, scored.transaction_ids, *row_values(scored))
    data += encode_challenger(12.5, 9, ["c"], np.array([0.25]))
    records = DecodedRecords()
    assert read_records(data, records, max_rows=100) == len(data)
    s = records.scores
    assert s.transaction_id == ["a", "b", "c"] and s.scored_at == [12.5] * 3
    assert s.model_id == [7] * 3 and s.flags == [0, 3, 0] and s.amount == [1.0, 2.0, 3.0]
    np.testing.assert_allclose(s.probability, [0.1, 0.9, 0.4], rtol=1e-7)
    assert s.challenger_id == [None, 9, None] and s.challenger_probability == [None, 0.75, None]
    assert records.challenger_updates == [(9, 0.25, "c", 12.5)]
    first = len(data) - len(encode_challenger(12.5, 9, ["c"], np.array([0.25])))
    for cut in (1, 7, 20):  # a record cut anywhere is not read, nor anything after it
        torn = DecodedRecords()
        assert read_records(data[:-cut], torn, max_rows=100) == first
        assert torn.n_rows == 3 and not torn.challenger_updates
    corrupt = bytearray(data)
    corrupt[first + 12] ^= 0xFF  # a flipped bit in the second record's payload
    assert read_records(bytes(corrupt), DecodedRecords(), max_rows=100) == first


def test_rows_and_shadow_scores_reach_the_database_through_the_journal(
    database: ScoreDatabase, tmp_path: Path
) -> None:
    writer = durable_writer(database, tmp_path / "journal", flush_interval_s=60)
    writer.journal.segment_bytes = 300  # a few records per segment: rotation and deletion
    scored = []
    for i in range(40):
        b = batch([f"t{i}-{j}" for j in range(3)], [0.2, 0.6, 0.9], scored_at=100.0 + i)
        assert writer.submit(b) is None, "journal mode: nothing for the answer to wait for"
        scored.append(b)
        if i % 7 == 0:
            writer.flush()
    shadow = scored[5]._replace(challenger_probabilities=np.array([np.nan, 0.33, np.nan]))
    writer.submit_challenger(shadow)
    writer.flush()
    assert count_rows(database) == (120, 120)
    assert writer.stats.written_rows == 120 and writer.stats.pending_rows == 0
    assert len(list((tmp_path / "journal").glob("*.seg"))) <= 2, "committed segments deleted"
    labelled = {"t5-1": 1, "t0-0": 0}
    database.upsert_labels(list(labelled.items()), 200.0)
    rows = {r.transaction_id: r for r in database.labelled_scores(0, 10)}
    assert rows["t5-1"].challenger == "fraud-distilbert" and rows["t5-1"].challenger_probability
    assert rows["t0-0"].challenger is None
    assert database.scored_count(0) == 120
    writer.close()
    assert not list((tmp_path / "journal").iterdir()), "a clean stop leaves no journal"


CHILD = textwrap.dedent(
    """
    import sys, time
    import numpy as np
    from fraud_detection.score_log.database import open_database
    from fraud_detection.score_log.durable_writer import DurableScoreLogWriter
    from fraud_detection.score_log.writer import ScoredBatch

    url, folder, n, flushed = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    writer = DurableScoreLogWriter(
        open_database(url), "fraud-mlp:v1", None, journal_path=folder, flush_interval_s=3600
    )
    writer.journal.segment_bytes = 2000
    deadline = time.monotonic() + 60
    while not writer.stats.schema_ready and time.monotonic() < deadline:
        time.sleep(0.05)  # a flush before the schema is ready writes nothing (a loaded machine)
    for i in range(n):
        p = np.array([0.1, 0.7])
        writer.submit(ScoredBatch([f"k{i}-0", f"k{i}-1"], time.time(), p, p > 0.5, None, p, None))
        if i == flushed:
            writer.flush()  # some rows reach the database before the kill, some do not
    print("journalled", flush=True)
    time.sleep(3600)
    """
)


def test_a_killed_process_rows_are_replayed_exactly_once_by_a_sibling(
    database: ScoreDatabase, tmp_path: Path
) -> None:
    folder = tmp_path / "journal"
    database.migrate()
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, database.url, str(folder), "300", "120"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert child.stdout is not None and child.stdout.readline().strip() == b"journalled"
    assert 0 < count_rows(database)[0] < 600, "part of it written before the kill"
    sibling = durable_writer(database, folder, flush_interval_s=60, recover_every_s=3600)
    assert sibling.recover() == 0, "a live worker's journal is not touched"
    child.send_signal(signal.SIGKILL)
    child.wait(10)
    recovered = sibling.recover()
    assert 0 < recovered < 600
    assert count_rows(database) == (600, 600), "every row once, none twice"
    assert database.scored_count(0) == 600, "coverage counts each row once"
    assert sibling.recover() == 0, "a second pass finds nothing left"
    sibling.close()
    assert not list(folder.iterdir()), "the dead worker's files are gone"


def test_a_new_journal_is_never_taken_for_a_dead_one(tmp_path: Path) -> None:
    journal = ScoreJournal(tmp_path)
    assert sorted(p.suffix for p in tmp_path.iterdir()) == [".lock", ".seg"]
    with orphaned_owners(tmp_path, "a-sibling") as owners:
        assert owners == [], "the lock was renamed into place already held"
    journal.close(delete=False)  # the process lives on, its lock released: as if it died
    with orphaned_owners(tmp_path, "a-sibling") as owners:
        assert owners == [journal.owner]


def test_commit_mode_answers_wait_for_the_database(tmp_path: Path) -> None:
    server = PostgresServer.create(tmp_path / "pg")
    database = open_database(server.url)
    writer = durable_writer(database, tmp_path / "journal", wait_for_commit=True, retry_after_s=0.1)

    async def answer(ids: list[str]) -> float:
        receipt = writer.submit(batch(ids, [0.3] * len(ids)))
        if receipt is not None:
            await asyncio.wait_for(receipt, 10)
        return time.monotonic()

    async def burst(prefix: str, n: int) -> list[str]:
        groups = [[f"{prefix}{i}-{j}" for j in range(2)] for i in range(n)]
        await asyncio.gather(*(answer(g) for g in groups))
        return [i for g in groups for i in g]

    try:
        ids = asyncio.run(burst("up", 50))
        # Each answer waited for its commit: every id is in the database when it returns.
        assert len(database.known_ids(ids)) == 100
        server.stop()
        down = asyncio.run(burst("down", 20))  # answers go on, on the journal alone
        assert writer.stats.failed_writes >= 1
        server.start()
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and len(database.known_ids(down)) < 40:
            time.sleep(0.1)
        assert len(database.known_ids(down)) == 40, "written when the database came back"
        assert count_rows(database) == (140, 140)
    finally:
        writer.close()
        server.stop()


def test_a_full_journal_drops_and_counts_rows_instead_of_failing_answers(
    tmp_path: Path,
) -> None:
    database = open_database(f"sqlite:///{tmp_path / 'scores.sqlite3'}")
    writer = durable_writer(database, tmp_path / "journal", flush_interval_s=60)
    writer.max_journal_bytes = 500
    for i in range(20):
        writer.submit(batch([f"f{i}"], [0.4]))
    assert writer.stats.dropped_rows > 0
    kept = 20 - writer.stats.dropped_rows
    writer.close()
    assert count_rows(database) == (kept, kept)


def test_scored_batch_fields_are_all_journalled() -> None:
    """A field added to ScoredBatch must be added to the journal's record too."""
    assert ScoredBatch._fields == (
        "transaction_ids",
        "scored_at",
        "probabilities",
        "is_fraud",
        "by_challenger",
        "amounts",
        "challenger_probabilities",
        "review",  # a REVIEW record (test_review_queue.py)
    )


def test_past_the_memory_bound_rows_are_read_back_from_the_journal(
    database: ScoreDatabase, tmp_path: Path
) -> None:
    writer = durable_writer(database, tmp_path / "journal", flush_interval_s=60, max_pending_rows=5)
    for i in range(20):
        writer.submit(batch([f"m{i}"], [0.4]))
    assert writer._spilled, "over the bound: the memory copy is dropped"
    writer.flush()  # (the writer's thread may have flushed first)
    assert count_rows(database) == (20, 20) and not writer._spilled, "read back, then memory"
    for i in range(3):
        writer.submit(batch([f"n{i}"], [0.4]))
    assert not writer._spilled and len(writer._queue) == 3
    writer.flush()
    assert count_rows(database) == (23, 23) and writer.stats.dropped_rows == 0
    writer.close()


FULL_DISK_CHILD = textwrap.dedent(
    """
    import resource, signal, sys, time
    import numpy as np
    from fraud_detection.score_log.database import open_database
    from fraud_detection.score_log.durable_writer import DurableScoreLogWriter
    from fraud_detection.score_log.writer import ScoredBatch

    url, folder = sys.argv[1], sys.argv[2]
    writer = DurableScoreLogWriter(
        open_database(url), "fraud-mlp:v1", None, journal_path=folder, flush_interval_s=3600
    )
    # No file may grow past 64 KiB from here on, and the next segments want 128 KiB: once
    # the current one is full, there is no room for a new one, as on a full disk.
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (65536, resource.RLIM_INFINITY))
    writer.journal.segment_bytes = 131072
    answered = 0
    for i in range(120_000):
        p = np.array([0.1])
        writer.submit(ScoredBatch([f"d{i}"], time.time(), p, p > 0.5, None, p, None))
        answered += 1
    resource.setrlimit(resource.RLIMIT_FSIZE, (resource.RLIM_INFINITY,) * 2)  # space again
    writer.flush()
    stats = writer.stats
    print(answered, stats.dropped_rows, stats.written_rows, stats.failed_writes)
    """
)


def test_a_full_disk_drops_and_counts_rows_and_never_fails_a_request(tmp_path: Path) -> None:
    """Segments are reserved up front: a disk that fills fails the reservation (counted),
    never a write into a mapped page (SIGBUS would kill the worker)."""
    done = subprocess.run(
        [sys.executable, "-c", FULL_DISK_CHILD, f"sqlite:///{tmp_path / 'db' / 's.db'}",
         str(tmp_path / "journal")],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    answered, dropped, written, failures = map(int, done.stdout.split())
    assert answered == 120_000 and 0 < dropped < answered and failures >= 1
    assert written == answered - dropped, "every row journalled reached the database"
