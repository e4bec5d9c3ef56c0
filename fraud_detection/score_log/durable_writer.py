"""`DurableScoreLogWriter`: no answered decision is lost when a worker dies.

`submit` appends a request's rows to the worker's `ScoreJournal` (a memory-mapped file) before the
answer is sent, and to the same in-memory column lists the asynchronous writer keeps; the
writer thread inserts those lists, exactly as it does asynchronously, and records how far in
the journal they reach in the same transaction (``journal_progress``), then deletes committed
segments. The journal is read back only when memory cannot serve: after a failed write, or
past `max_pending_rows` (then the writer reads the records from the journal until it has
caught up), and when a killed worker's segments are replayed, exactly once, by whichever
worker takes its lock first: its restarted successor or a sibling, within `recover_every_s`.
Reading the journal back on every flush instead cost 13% more CPU per request (one
development run): decoding each record in Python holds the GIL for milliseconds per flush.

Two modes (``FRAUD_SCORE_LOG_DURABILITY``):

- ``journal``: the answer leaves once its rows are in the journal; they reach the database
  within `flush_interval_s`. Survives a killed worker and a restarted container whose
  monitoring folder is a kept volume; not the loss of the node (or of an in-memory folder).
- ``commit``: the answer also waits until its rows are committed to the database. Rows that
  arrive during a commit go in the next one (group commit), while the model scores the next
  batch. Survives the loss of the replica. While the database is down, answers wait for the
  journal only, and the rows are inserted when it is back.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import threading
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fraud_detection.score_log.database import ChallengerUpdate
from fraud_detection.score_log.database import ScoreColumns
from fraud_detection.score_log.database import ScoreDatabase
from fraud_detection.score_log.journal import DecodedRecords
from fraud_detection.score_log.journal import ScoreJournal
from fraud_detection.score_log.journal import encode_challenger
from fraud_detection.score_log.journal import encode_review
from fraud_detection.score_log.journal import encode_scores
from fraud_detection.score_log.journal import orphaned_owners
from fraud_detection.score_log.journal import read_records
from fraud_detection.score_log.journal import segments_of
from fraud_detection.score_log.writer import PendingScores
from fraud_detection.score_log.writer import ScoredBatch
from fraud_detection.score_log.writer import ScoreLogWriter
from fraud_detection.score_log.writer import review_values
from fraud_detection.score_log.writer import row_values

logger = logging.getLogger(__name__)

#: Most journal bytes read at once (a backlog from a long database outage is read in parts).
MAX_READ_BYTES = 16 << 20


class DurableScoreLogWriter(ScoreLogWriter):
    """A `ScoreLogWriter` whose queue is an on-disk journal under `journal_path`."""

    durable = True

    def __init__(
        self,
        database: ScoreDatabase,
        champion: str,
        challenger: str | None = None,
        *,
        journal_path: str | Path,
        wait_for_commit: bool = False,
        max_journal_bytes: int = 1 << 30,
        max_pending_rows: int = 100_000,
        max_rows_per_write: int = 20_000,
        flush_interval_s: float = 0.5,
        retry_after_s: float = 5.0,
        recover_every_s: float = 2.0,
        counters: Any = None,
        housekeeping: Callable[[], object] | None = None,
        housekeeping_every_s: float = 3600.0,
    ) -> None:
        self.journal = ScoreJournal(journal_path)
        self.wait_for_commit = wait_for_commit
        self.max_journal_bytes = max_journal_bytes
        self.max_rows_per_write = max_rows_per_write
        self.recover_every_s = recover_every_s
        # Counted rows go in one score_counts row per second, not one per group commit.
        self.count_every_s = 1.0 if wait_for_commit else 0.0
        self._read_seq = 0
        self._read_offset = 0
        self._committed = 0  # journal position up to which every row is in the database
        self._released = 0  # ... up to which waiting answers were let go
        self._degraded = False  # the database is failing: answers wait for the journal only
        self._waiters: deque[tuple[int, asyncio.Future[None]]] = deque()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._uncounted = 0
        self._counted_at = time.monotonic()
        self._forget: list[str] = []
        self._appended_rows = 0
        self._next_recovery = 0.0
        self._flush_lock = threading.Lock()
        self._spilled = False  # the memory copy was dropped: read the journal instead
        self._updates: list[ChallengerUpdate] = []
        super().__init__(
            database,
            champion,
            challenger,
            max_pending_rows=max_pending_rows,
            flush_interval_s=flush_interval_s,
            retry_after_s=retry_after_s,
            counters=counters,
            housekeeping=housekeeping,
            housekeeping_every_s=housekeeping_every_s,
        )

    # --- request path -------------------------------------------------------------------

    def submit(self, batch: ScoredBatch) -> asyncio.Future[None] | None:
        """Journal a request's rows; in ``commit`` mode, a future that is done once they are
        in the database (await it before answering). None: nothing to wait for."""
        n = len(batch.transaction_ids)
        if self.journal.end - self._committed > self.max_journal_bytes:
            self._drop(n)
            return None
        loop = asyncio.get_running_loop() if self.wait_for_commit else None
        self._loop = loop  # before the append: a commit that covers it can release it
        values = row_values(batch)
        record = encode_scores(
            batch.scored_at, self._champion_id, self._challenger_id, batch.transaction_ids, *values
        )
        review = review_values(batch, self._champion_id, self._challenger_id)
        if review is not None:  # in the same append: a kill keeps both records or neither
            record += encode_review(batch.scored_at, *review)
        error: OSError | None = None
        with self._lock:
            try:
                position = self.journal.append(record)
            except OSError as e:
                error = e
            else:
                self._appended_rows += n
                if self._spilled:
                    pass
                elif self._pending + n > self.max_pending_rows:
                    self._spill()
                else:
                    self._queue.add_values(
                        batch.transaction_ids, batch.scored_at, *values, review=review
                    )
                    self._pending += n
        if error is not None:  # a full disk: the answer goes on, the rows are counted lost
            self._drop(n)
            self._failed(error)  # (it takes the lock: not while holding it)
            return None
        if loop is None or self._degraded:
            return None
        future = loop.create_future()
        self._waiters.append((position, future))
        self._wake.set()
        return future

    def submit_challenger(self, batch: ScoredBatch) -> None:
        """Journal the shadow challenger's scores of rows `submit` recorded before."""
        p = batch.challenger_probabilities
        if p is None or self._challenger_id is None:
            return
        shadow = p == p  # not NaN
        if batch.by_challenger is not None:
            shadow &= ~batch.by_challenger  # the canary's rows carried theirs already
        rows = shadow.nonzero()[0]
        if not len(rows):
            return
        ids = [batch.transaction_ids[i] for i in rows]
        scores = p[rows]
        record = encode_challenger(batch.scored_at, self._challenger_id, ids, scores)
        error: OSError | None = None
        with self._lock:
            try:
                self.journal.append(record)
            except OSError as e:
                error = e
            if error is None and not self._spilled:
                at = batch.scored_at
                self._updates.extend(
                    (self._challenger_id, v, tid, at)
                    for tid, v in zip(ids, scores.tolist(), strict=True)
                )
        if error is not None:
            self._failed(error)

    def _spill(self) -> None:
        """(Under the lock.) Drop the memory copy: the writer reads the journal from what is
        committed until it has caught up."""
        self._spilled = True
        self._queue = PendingScores()
        self._updates = []
        self._pending = 0

    # --- writer thread ------------------------------------------------------------------

    def _run(self) -> None:
        while not self._stop.is_set():
            self._ensure_schema()
            self._recover_if_due()
            self.flush()
            if self.stats.last_error is not None:
                self._stop.wait(self.retry_after_s)
            elif self.wait_for_commit:
                self._wake.wait(self.flush_interval_s)
                self._wake.clear()
            else:
                self._stop.wait(self.flush_interval_s)

    def flush(self) -> int:
        """Write everything journalled so far; returns the rows written."""
        with self._flush_lock:  # the thread's, and a caller's (`close`, tests)
            if not self.stats.schema_ready:
                with self._lock:
                    self._spill()
                self._degrade()
                return 0
            written = self._flush_journal() if self._spilled else self._flush_memory()
            if self.stats.last_error is None:
                self._degraded = False
                self._release(self._committed)
            else:
                self._degrade()
            return written

    def _flush_memory(self) -> int:
        """Insert the rows queued in memory, with the journal position they reach."""
        with self._lock:
            spilled = self._spilled  # since the caller looked
            taken, self._queue = self._queue, PendingScores()
            updates, self._updates = self._updates, []
            self._pending = 0
            seq, end = self.journal.seq, self.journal.end
            # Appends hold this lock: each segment's readable end is where `taken` ends.
            progress = [self.journal.readable(s) for s in range(self._read_seq, seq + 1)]
        if spilled:  # (its queue was empty)
            return self._flush_journal()
        counted = self._count_now(len(taken))
        nothing = not (len(taken) or updates or seq > self._read_seq)
        if nothing and not self._forget and not counted:
            return 0
        try:
            self.database.write(
                taken.columns(self._champion_id, self._challenger_id),
                challenger_updates=updates,
                progress=[(path.name, stop) for path, stop, _ in progress],
                forget=self._forget,
                counted_rows=counted,
                review=taken.review,
            )
        except Exception as e:
            self._failed(e)
            with self._lock:  # read them back from the journal once the database is back
                self._spill()
            return 0
        self._after_write(len(taken), counted)
        self._committed = end
        for done in range(self._read_seq, seq):
            self.journal.delete(done)
            self._forget.append(progress[done - self._read_seq][0].name)
        self._read_seq, self._read_offset = seq, progress[-1][1]
        return len(taken)

    def _after_write(self, n_rows: int, counted: int) -> None:
        self._forget = []
        self._uncounted = 0 if counted else self._uncounted + n_rows
        if counted:
            self._counted_at = time.monotonic()
        self._wrote(n_rows)

    def _flush_journal(self) -> int:
        """Insert what the journal holds past the committed position (after a failure, or
        past `max_pending_rows`), then go back to the memory copy."""
        written = 0
        while True:
            path, stop, complete = self.journal.readable(self._read_seq)
            records = DecodedRecords()
            offset = self._read_offset
            if stop > offset:
                wanted = min(stop - offset, MAX_READ_BYTES)
                with path.open("rb") as f:
                    f.seek(offset)
                    data = f.read(wanted)
                consumed = read_records(data, records, self.max_rows_per_write)
                cut = wanted < stop - offset  # the read may end inside a record
                if consumed < len(data) and records.n_rows < self.max_rows_per_write and not cut:
                    # Cannot happen for records this process wrote whole; skip, counted.
                    logger.error("Score journal %s: corrupt record at byte %d", path, offset)
                    self.stats.corrupt_bytes += len(data) - consumed
                    consumed = len(data)
                offset += consumed
            finished = complete and offset >= stop
            counted = self._count_now(records.n_rows)
            # Nothing to write, unless rows committed earlier still await their count.
            nothing = not (
                records.n_rows or records.challenger_updates or records.review.n_rows or finished
            )
            if nothing and not self._forget and not counted:
                break
            try:
                self.database.write(
                    records.scores,
                    challenger_updates=records.challenger_updates,
                    progress=[(path.name, offset)],
                    forget=self._forget,
                    counted_rows=counted,
                    review=records.review,
                )
            except Exception as e:
                self._failed(e)
                return written
            self._after_write(records.n_rows, counted)
            self._read_offset = offset
            self._committed = self.journal.position(self._read_seq, offset)
            written += records.n_rows
            if finished:
                self.journal.delete(self._read_seq)
                self._forget.append(path.name)
                self._read_seq += 1
                self._read_offset = 0
            elif offset >= stop:
                break
        with self._lock:  # caught up with every append: back to the memory copy
            if self._committed == self.journal.end:
                self._spilled = False
        return written

    def _count_now(self, n_rows: int) -> int:
        """Rows to count in this write: all not yet counted, when a count is due."""
        due = time.monotonic() - self._counted_at >= self.count_every_s or self._stop.is_set()
        return self._uncounted + n_rows if due else 0

    def _wrote(self, n_rows: int) -> None:
        self.stats.written_rows += n_rows
        self.stats.pending_rows = self._appended_rows - self.stats.written_rows
        self.stats.last_write_at = time.time()
        if self.stats.last_error is not None:
            logger.info("Score log writes to %s resumed", self.database.url)
        self.stats.last_error = None
        if self._counters is not None and n_rows:
            self._counters.written.inc(n_rows)

    def _degrade(self) -> None:
        """The database is failing: let every waiting answer go (its rows are journalled,
        and will be inserted when the database is back)."""
        self._degraded = True
        self._release(self.journal.end)

    def _release(self, position: int) -> None:
        if position <= self._released or self._loop is None:
            return
        self._released = position
        # A closed event loop (RuntimeError) has nobody waiting any more.
        with contextlib.suppress(RuntimeError):
            self._loop.call_soon_threadsafe(self._release_waiters, position)

    def _release_waiters(self, position: int) -> None:
        """On the event loop: finish the futures of appends up to `position`."""
        waiters = self._waiters
        while waiters and waiters[0][0] <= position:
            future = waiters.popleft()[1]
            if not future.done():
                future.set_result(None)

    # --- recovery of dead workers' journals ---------------------------------------------

    def _recover_if_due(self) -> None:
        if not self.stats.schema_ready or time.monotonic() < self._next_recovery:
            return
        self._next_recovery = time.monotonic() + self.recover_every_s
        try:
            self.recover()
        except Exception as e:
            self._failed(e)

    def recover(self) -> int:
        """Replay the segments of every dead worker's journal; returns the rows inserted."""
        folder = self.journal.folder
        recovered = 0
        with self._flush_lock, orphaned_owners(folder, self.journal.owner) as owners:
            for owner in owners:
                for path in segments_of(folder, owner):
                    recovered += self._replay(path)
                (folder / f"{owner}.lock").unlink(missing_ok=True)
        if recovered:
            logger.warning("Score log: %d rows replayed from dead workers' journals", recovered)
        return recovered

    def _replay(self, path: Path) -> int:
        offset = self.database.journal_progress(path.name)
        data = memoryview(path.read_bytes())
        replayed = 0
        while offset < len(data):
            records = DecodedRecords()
            consumed = read_records(data[offset:], records, self.max_rows_per_write)
            if not consumed:
                rest = len(data) - offset - data[offset:].tobytes().count(0)
                if rest:  # a torn record (power loss): no answer waited for it
                    self.stats.corrupt_bytes += len(data) - offset
                    logger.error("Score journal %s: %d bytes unreadable", path, len(data) - offset)
                break
            offset += consumed
            self.database.write(
                records.scores,
                challenger_updates=records.challenger_updates,
                progress=[(path.name, offset)],
                counted_rows=records.n_rows,
                review=records.review,
            )
            replayed += records.n_rows
        path.unlink()
        self._forget.append(path.name)
        self.stats.recovered_rows += replayed
        if self._counters is not None and replayed:
            self._counters.recovered.inc(replayed)
        return replayed

    def close(self, timeout_s: float = 10.0) -> None:
        """Stop the thread after writing everything journalled; the journal is deleted when
        all of it is in the database, else left for the next worker to replay."""
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout_s)
        self._ensure_schema()
        self.flush()
        done = self.stats.schema_ready and self._committed == self.journal.end
        if done:
            own = [p.name for p in segments_of(self.journal.folder, self.journal.owner)]
            try:
                self.database.write(ScoreColumns.of_rows([]), forget=own + self._forget)
            except Exception as e:  # only bookkeeping rows would be left behind
                logger.warning("Score log: journal progress not cleared: %s", e)
        self.journal.close(delete=done)
        self.database.close()


def journal_folder(monitor_log_path: str | os.PathLike[str]) -> Path:
    """Where workers keep their score journals: under the monitoring folder."""
    return Path(monitor_log_path) / "score_journal"
