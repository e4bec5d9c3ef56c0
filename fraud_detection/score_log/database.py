"""`ScoreDatabase`: where scored transactions and their late labels live (SQLite or PostgreSQL).

Three tables: ``scores`` (one row per scored transaction: id, time, champion and its
probability, the decision served, which model served it, and the challenger's probability
when one ran), ``labels`` (one row per labelled transaction, with who labelled it and where
the label came from; a relabel overwrites) and ``review_items`` (the transactions kept for
the analysts' review queue, with the 30 features they were scored on; see
`fraud_detection.review`). Times are Unix seconds. The schema is versioned in
``schema_version`` and migrated forward when a worker first connects; several workers may
connect at once, so migrations take a lock (SQLite ``BEGIN IMMEDIATE``, a PostgreSQL
advisory lock).
"""

from __future__ import annotations

import contextlib
import functools
import select
import sqlite3
import threading
import time
import zlib
from collections.abc import Iterable
from collections.abc import Iterator
from collections.abc import Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from dataclasses import field
from pathlib import Path
from typing import Any
from typing import NamedTuple
from typing import Protocol

import msgspec
import numpy as np

from fraud_detection.schema import FEATURE_NAMES
from fraud_detection.schema import N_FEATURES

#: Columns of ``scores`` in the order `ScoreDatabase.insert_scores` takes them. Slim on
#: purpose: a row costs the serving worker's CPU, so models are small integer ids (`model_id`)
#: and the decision and who served it are bits of `flags` (`IS_FRAUD`, `BY_CHALLENGER`).
SCORE_COLUMNS = (
    "transaction_id",
    "scored_at",
    "model_id",
    "probability",
    "flags",
    "amount",
    "challenger_id",
    "challenger_probability",
)
IS_FRAUD = 1
BY_CHALLENGER = 2

#: One ``scores`` row, in `SCORE_COLUMNS` order.
ScoreRow = tuple[str, float, int, float, int, float, int | None, float | None]

#: Forward migrations, one list of statements per schema version (never edit a shipped one).
#: A statement is SQL for both backends, or a ``{"sqlite": ..., "postgresql": ...}`` dict (a
#: backend it does not name skips it).
#: On SQLite, ``scores`` is clustered by (id, time) (WITHOUT ROWID): one B-tree insert per
#: row, and ``/feedback``'s lookups by id read it directly.
MIGRATIONS: tuple[tuple[str | dict[str, str], ...], ...] = (
    (
        "CREATE TABLE models (model_id INTEGER PRIMARY KEY, tag TEXT NOT NULL)",
        {
            "sqlite": """CREATE TABLE scores (
                transaction_id TEXT NOT NULL,
                scored_at DOUBLE PRECISION NOT NULL,
                model_id INTEGER NOT NULL,
                probability DOUBLE PRECISION NOT NULL,
                flags SMALLINT NOT NULL,
                amount DOUBLE PRECISION NOT NULL,
                challenger_id INTEGER,
                challenger_probability DOUBLE PRECISION,
                PRIMARY KEY (transaction_id, scored_at)
            ) WITHOUT ROWID""",
            "postgresql": """CREATE TABLE scores (
                transaction_id TEXT NOT NULL,
                scored_at DOUBLE PRECISION NOT NULL,
                model_id INTEGER NOT NULL,
                probability DOUBLE PRECISION NOT NULL,
                flags SMALLINT NOT NULL,
                amount DOUBLE PRECISION NOT NULL,
                challenger_id INTEGER,
                challenger_probability DOUBLE PRECISION
            )""",
        },
        {"postgresql": "CREATE INDEX scores_id ON scores (transaction_id)"},
        """CREATE TABLE labels (
            transaction_id TEXT PRIMARY KEY,
            label SMALLINT NOT NULL CHECK (label IN (0, 1)),
            labelled_at DOUBLE PRECISION NOT NULL
        )""",
    ),
    (
        # v2: rows written per flush, so coverage counts scored transactions without a scan.
        "CREATE TABLE score_counts (flushed_at DOUBLE PRECISION NOT NULL, n_rows INTEGER NOT NULL)",
        "CREATE INDEX score_counts_time ON score_counts (flushed_at)",
    ),
    (
        # v3: how far each worker's score journal is in this database, written in the same
        # transaction as its rows, so a replay after a crash inserts each row exactly once.
        """CREATE TABLE journal_progress (
            segment TEXT PRIMARY KEY,
            committed_bytes BIGINT NOT NULL
        )""",
    ),
    (
        # v4: the analysts' review queue. A row per transaction kept for review (decided
        # fraud, or above FRAUD_REVIEW_MIN_PROBABILITY), with the features it was scored on
        # (`REVIEW_FEATURES_DTYPE`, `FEATURE_NAMES` order); `labelled` is 1 once any label
        # arrived; the lease says who works on it until when. Partial indexes hold only open
        # items, in each order the queue is read in; labels say who gave them and how.
        {
            dialect: f"""CREATE TABLE review_items (
                transaction_id TEXT{collate} PRIMARY KEY,
                scored_at DOUBLE PRECISION NOT NULL,
                model_id INTEGER NOT NULL,
                probability DOUBLE PRECISION NOT NULL,
                amount DOUBLE PRECISION NOT NULL,
                time_feature DOUBLE PRECISION NOT NULL,
                is_fraud SMALLINT NOT NULL,
                features {blob} NOT NULL,
                labelled SMALLINT NOT NULL DEFAULT 0,
                leased_to TEXT,
                leased_until DOUBLE PRECISION
            )"""
            # PostgreSQL: byte order for ids, as SQLite and Python compare them, so a page's
            # last item (sorted in Python) is where the next page's keyset starts.
            for dialect, blob, collate in (
                ("sqlite", "BLOB", ""),
                ("postgresql", "BYTEA", ' COLLATE "C"'),
            )
        },
        "CREATE INDEX review_open_risk ON review_items (probability DESC, transaction_id) "
        "WHERE labelled = 0",
        "CREATE INDEX review_open_newest ON review_items (scored_at DESC, transaction_id) "
        "WHERE labelled = 0",
        "CREATE INDEX review_open_leases ON review_items (leased_until) WHERE labelled = 0",
        "CREATE INDEX review_scored_at ON review_items (scored_at)",
        "ALTER TABLE labels ADD COLUMN reviewer TEXT",
        "ALTER TABLE labels ADD COLUMN source TEXT NOT NULL DEFAULT 'chargeback' "
        "CHECK (source IN ('analyst', 'chargeback'))",
        "CREATE INDEX labels_source_time ON labels (source, labelled_at)",
    ),
)
SCHEMA_VERSION = len(MIGRATIONS)


def model_id(tag: str) -> int:
    """The small integer that stands for a model tag in ``scores`` (CRC-32, 31 bits)."""
    return zlib.crc32(tag.encode()) & 0x7FFFFFFF


def score_row(
    transaction_id: str,
    scored_at: float,
    model: str,
    probability: float,
    *,
    is_fraud: bool = False,
    by_challenger: bool = False,
    amount: float = 0.0,
    challenger: str | None = None,
    challenger_probability: float | None = None,
) -> ScoreRow:
    """One ``scores`` row from readable values (tests, tools; the writer builds columns)."""
    return (
        transaction_id,
        scored_at,
        model_id(model),
        probability,
        IS_FRAUD * is_fraud + BY_CHALLENGER * by_challenger,
        amount,
        None if challenger is None else model_id(challenger),
        challenger_probability,
    )


@dataclass(frozen=True)
class ScoreColumns:
    """Score rows as columns, one list per `SCORE_COLUMNS` entry: what the writer builds (no
    tuple per row) and `ScoreDatabase.insert_scores` takes."""

    transaction_id: list[str]
    scored_at: list[float]
    model_id: list[int]
    probability: list[float]
    flags: list[int]
    amount: list[float]
    challenger_id: list[int | None]
    challenger_probability: list[float | None]

    @classmethod
    def of_rows(cls, rows: Sequence[ScoreRow]) -> ScoreColumns:
        """The columns of `rows` (tests and tools; `score_row` builds one)."""
        if not rows:
            return cls(*([] for _ in SCORE_COLUMNS))
        return cls(*(list(column) for column in zip(*rows, strict=True)))

    @property
    def n_rows(self) -> int:
        return len(self.transaction_id)

    def lists(self) -> tuple[list[Any], ...]:
        """The columns in `SCORE_COLUMNS` order."""
        return tuple(getattr(self, name) for name in SCORE_COLUMNS)

    def rows(self) -> Iterator[ScoreRow]:
        """The rows, one tuple each."""
        return zip(*self.lists(), strict=True)

    def interleaved(self, start: int, stop: int) -> list[Any]:
        """The values of rows `start` to `stop`, row after row (row 0's columns, then row
        1's): the parameters of a multi-row ``VALUES``, built by slice assignment rather than
        a tuple per row."""
        width = len(SCORE_COLUMNS)
        stop = min(stop, self.n_rows)
        values: list[Any] = [None] * ((stop - start) * width)
        for i, column in enumerate(self.lists()):
            values[i::width] = column[start:stop]
        return values


#: How a review row's features are stored: 30 little-endian float64 per row.
REVIEW_FEATURES_DTYPE = np.dtype("<f8")
_TIME = FEATURE_NAMES.index("Time")
_AMOUNT = FEATURE_NAMES.index("Amount")
#: The review row insert; a retried id keeps its first row, and an id labelled before its
#: row arrived (the label came while the row was still queued) starts closed.
_INSERT_REVIEW = (
    "INSERT INTO review_items (transaction_id, scored_at, model_id, probability, amount, "
    "time_feature, is_fraud, features, labelled) VALUES (?, ?, ?, ?, ?, ?, ?, ?, "
    "CASE WHEN EXISTS (SELECT 1 FROM labels WHERE labels.transaction_id = ?) THEN 1 ELSE 0 END) "
    "ON CONFLICT (transaction_id) DO NOTHING"
)


@dataclass(frozen=True)
class ReviewColumns:
    """Rows kept for review, as columns: the request path's `ScoredBatch.review` after the
    writer (or the journal) has added who scored them."""

    transaction_id: list[str] = field(default_factory=list)
    scored_at: list[float] = field(default_factory=list)
    model_id: list[int] = field(default_factory=list)
    probability: list[float] = field(default_factory=list)
    is_fraud: list[bool] = field(default_factory=list)
    features: list[bytes] = field(default_factory=list)  # one row's 30 values each

    @property
    def n_rows(self) -> int:
        return len(self.transaction_id)

    def add(
        self,
        transaction_ids: list[str],
        scored_at: float,
        model_ids: list[int],
        probabilities: list[float],
        is_fraud: list[bool],
        features: bytes,
    ) -> None:
        """Append rows whose features come as one block of ``n * 30`` values."""
        n = len(transaction_ids)
        width = N_FEATURES * REVIEW_FEATURES_DTYPE.itemsize
        if len(features) != n * width:
            raise ValueError(f"{n} review rows need {n * width} feature bytes, got {len(features)}")
        self.transaction_id.extend(transaction_ids)
        self.scored_at.extend([scored_at] * n)
        self.model_id.extend(model_ids)
        self.probability.extend(probabilities)
        self.is_fraud.extend(is_fraud)
        self.features.extend(features[i * width : (i + 1) * width] for i in range(n))

    def extend(self, later: ReviewColumns) -> None:
        """Append the rows of `later` after these."""
        for name in ("transaction_id", "scored_at", "model_id", "probability", "is_fraud"):
            getattr(self, name).extend(getattr(later, name))
        self.features.extend(later.features)

    def parameters(self) -> list[tuple[Any, ...]]:
        """The parameters of `_INSERT_REVIEW`, one tuple per row."""
        values = np.frombuffer(b"".join(self.features), REVIEW_FEATURES_DTYPE).reshape(
            -1, N_FEATURES
        )
        return list(
            zip(
                self.transaction_id,
                self.scored_at,
                self.model_id,
                self.probability,
                values[:, _AMOUNT].tolist(),
                values[:, _TIME].tolist(),
                [int(f) for f in self.is_fraud],
                self.features,
                self.transaction_id,
                strict=True,
            )
        )


class Label(NamedTuple):
    """One label as ``/feedback`` stores it."""

    transaction_id: str
    label: int  # 1 fraud, 0 genuine
    reviewer: str | None = None  # who decided (an analyst's name), when known
    source: str = "chargeback"  # "analyst" (the review queue) or "chargeback"


#: An open review item's lease when an analyst's label closed it: (leased_to, leased_until).
Lease = tuple[str | None, float | None]


#: The shadow challenger's score of a row already written: (challenger_id, probability,
#: transaction_id, scored_at).
ChallengerUpdate = tuple[int, float, str, float]

#: Ids per ``IN (...)`` query: under SQLite's bound-parameter limit.
_ID_CHUNK = 500


class DatabaseUnavailable(RuntimeError):
    """The score database cannot be reached or written; predictions go on without it."""


@dataclass(frozen=True)
class LabelledScore:
    """A labelled transaction with its latest score (`LabelledScores` holds them as columns)."""

    transaction_id: str
    scored_at: float
    model: str
    model_version: str
    probability: float
    amount: float
    challenger: str | None
    challenger_version: str | None
    challenger_probability: float | None
    label: int
    labelled_at: float
    source: str = "chargeback"


class ScoreDatabase(Protocol):
    """What the writer, ``/feedback``, ``/performance`` and promotion need from a database."""

    url: str
    backend: str  # "sqlite" or "postgresql"
    placeholder: str  # the driver's parameter mark

    def connection(self) -> contextlib.AbstractContextManager[Any]: ...

    def begin_write(self, cursor: Any) -> None: ...

    def migrate(self) -> int: ...

    def register_models(self, tags: Sequence[str]) -> None: ...

    def insert_scores(self, scores: ScoreColumns) -> None: ...

    def write(
        self,
        scores: ScoreColumns,
        *,
        challenger_updates: Sequence[ChallengerUpdate] = (),
        progress: Sequence[tuple[str, int]] = (),
        forget: Sequence[str] = (),
        counted_rows: int | None = None,
        review: ReviewColumns | None = None,
    ) -> None: ...

    def journal_progress(self, segment: str) -> int: ...

    def close(self) -> None: ...

    def upsert_labels(
        self, labels: Sequence[tuple[Any, ...]], labelled_at: float
    ) -> dict[str, Lease]: ...

    def known_ids(self, ids: Sequence[str]) -> set[str]: ...

    def labelled_scores(self, since: float, limit: int) -> list[LabelledScore]: ...

    def scored_count(self, since: float) -> int: ...


class _SqlDatabase:
    """The SQL both backends share; subclasses open a connection and name their driver's
    error, how they insert rows and their migration lock."""

    url: str
    placeholder = "?"
    backend = "sqlite"

    #: Idle connections kept for the next unit of work (``/feedback``, ``/review``): opening
    #: one costs a PostgreSQL server process, milliseconds an answer would wait for.
    max_idle_connections = 4

    def __init__(self, url: str) -> None:
        self.url = url
        self._kept: Any = None
        self._kept_lock = threading.Lock()
        self._idle: list[Any] = []
        self._idle_lock = threading.Lock()

    def _open(self) -> Any:
        raise NotImplementedError

    def _driver_error(self) -> type[Exception]:
        raise NotImplementedError

    def _unavailable(self, error: Exception) -> DatabaseUnavailable:
        return DatabaseUnavailable(f"{redacted(self.url)}: {error}")

    def _connect(self) -> Any:
        """`_open`, its failure a `DatabaseUnavailable`."""
        try:
            return self._open()
        except (OSError, self._driver_error()) as e:
            raise self._unavailable(e) from e

    @contextmanager
    def _connection(self) -> Iterator[Any]:
        """A connection for one unit of work; driver errors become `DatabaseUnavailable`.

        One that worked goes back to a small idle pool (its open transaction, if any, rolled
        back); one that failed is closed, and so is an idle one the server has let go of.
        """
        error = self._driver_error()
        conn = None
        while conn is None:
            with self._idle_lock:
                if not self._idle:
                    break
                conn = self._idle.pop()
            if not self._usable(conn):
                with contextlib.suppress(Exception):
                    conn.close()
                conn = None
        if conn is None:
            conn = self._connect()
        try:
            yield conn
            conn.rollback()  # a unit of work that only read leaves no transaction open
        except BaseException as e:
            with contextlib.suppress(Exception):
                conn.close()
            if isinstance(e, error):
                raise self._unavailable(e) from e
            raise
        with self._idle_lock:
            if len(self._idle) < self.max_idle_connections:
                self._idle.append(conn)
                return
        conn.close()

    def _usable(self, conn: Any) -> bool:
        """Whether an idle connection can still be used."""
        return True

    def connection(self) -> contextlib.AbstractContextManager[Any]:
        """`_connection`, for the review queue's store."""
        return self._connection()

    def begin_write(self, cursor: Any) -> None:
        """Start a transaction that will write (SQLite: take the write lock now, so a read
        in it never has to be upgraded, which WAL refuses at once after another commit)."""

    @contextmanager
    def _kept_connection(self) -> Iterator[Any]:
        """The connection the score writer keeps from one flush to the next.

        Opening one per flush cost the writer about a fifth of its time (on PostgreSQL, a
        server process per connection), and on SQLite closing the last connection to the
        file checkpoints the whole WAL. A failed one is closed and opened again next time.
        """
        error = self._driver_error()
        with self._kept_lock:
            if self._kept is None:
                self._kept = self._connect()
            conn = self._kept
            try:
                yield conn
            except Exception as e:
                self._kept = None  # its state is unknown: the next call opens a new one
                with contextlib.suppress(Exception):
                    conn.close()
                if isinstance(e, error):
                    raise self._unavailable(e) from e
                raise

    def close(self) -> None:
        """Close the writer's kept connection and the idle ones (later calls open new ones)."""
        with self._kept_lock:
            conn, self._kept = self._kept, None
        with self._idle_lock:
            idle, self._idle = self._idle, []
        for c in [conn, *idle]:
            if c is not None:
                with contextlib.suppress(Exception):
                    c.close()

    def insert_scores(self, scores: ScoreColumns) -> None:
        """Append `scores` in one transaction (on SQLite, an id repeated within one request,
        at the same time, is kept once)."""
        self.write(scores, counted_rows=scores.n_rows)

    def write(
        self,
        scores: ScoreColumns,
        *,
        challenger_updates: Sequence[ChallengerUpdate] = (),
        progress: Sequence[tuple[str, int]] = (),
        forget: Sequence[str] = (),
        counted_rows: int | None = None,
        review: ReviewColumns | None = None,
    ) -> None:
        """In one transaction: append `scores` and the rows kept for `review`, set the
        shadow challenger's scores of rows written before (`challenger_updates`), record
        journal `progress` (segment, bytes committed), drop the progress of deleted
        segments (`forget`), and count `counted_rows` scored rows for coverage."""
        with self._kept_connection() as conn, self._batched(conn):
            cursor = conn.cursor()
            if scores.n_rows:
                self._insert_rows(cursor, scores)
            if review is not None and review.n_rows:
                cursor.executemany(self._sql(_INSERT_REVIEW), review.parameters())
            if challenger_updates:
                cursor.executemany(
                    self._sql(
                        "UPDATE scores SET challenger_id = ?, challenger_probability = ? "
                        "WHERE transaction_id = ? AND scored_at = ?"
                    ),
                    challenger_updates,
                )
            if progress:
                cursor.executemany(
                    self._sql(
                        "INSERT INTO journal_progress (segment, committed_bytes) VALUES (?, ?) "
                        "ON CONFLICT (segment) DO UPDATE "
                        "SET committed_bytes = excluded.committed_bytes"
                    ),
                    progress,
                )
            if forget:
                cursor.executemany(
                    self._sql("DELETE FROM journal_progress WHERE segment = ?"),
                    [(segment,) for segment in forget],
                )
            if counted_rows:
                self._count(cursor, counted_rows)
            conn.commit()

    def _batched(self, conn: Any) -> contextlib.AbstractContextManager[Any]:
        """Where the driver can, send a write's statements without waiting for each answer."""
        return contextlib.nullcontext()

    def journal_progress(self, segment: str) -> int:
        """Bytes of journal `segment` already in the database (0: none)."""
        with self._connection() as conn:
            cursor = conn.cursor()
            cursor.execute(
                self._sql("SELECT committed_bytes FROM journal_progress WHERE segment = ?"),
                (segment,),
            )
            row = cursor.fetchone()
            return 0 if row is None else int(row[0])

    def _insert_rows(self, cursor: Any, scores: ScoreColumns) -> None:
        raise NotImplementedError

    def _sql(self, statement: str) -> str:
        return statement.replace("?", self.placeholder)

    def _lock_for_migration(self, cursor: Any) -> None:
        raise NotImplementedError

    def migrate(self) -> int:
        """Bring the schema to `SCHEMA_VERSION`; returns the version found before."""
        with self._connection() as conn:
            cursor = conn.cursor()
            self._lock_for_migration(cursor)
            cursor.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
            cursor.execute("SELECT MAX(version) FROM schema_version")
            found = cursor.fetchone()[0] or 0
            if found > SCHEMA_VERSION:
                raise DatabaseUnavailable(
                    f"{self.url}: schema version {found} is newer than this service's "
                    f"{SCHEMA_VERSION}; upgrade the service"
                )
            for version in range(found + 1, SCHEMA_VERSION + 1):
                for statement in MIGRATIONS[version - 1]:
                    sql = statement if isinstance(statement, str) else statement.get(self.backend)
                    if sql:
                        cursor.execute(sql)
                cursor.execute(self._sql("INSERT INTO schema_version VALUES (?)"), (version,))
            conn.commit()
            return found

    def register_models(self, tags: Sequence[str]) -> None:
        """Record which tag each `model_id` in ``scores`` stands for."""
        with self._connection() as conn:
            conn.cursor().executemany(
                self._sql(
                    "INSERT INTO models (model_id, tag) VALUES (?, ?) "
                    "ON CONFLICT (model_id) DO NOTHING"
                ),
                [(model_id(tag), tag) for tag in tags],
            )
            conn.commit()

    def upsert_labels(
        self, labels: Sequence[tuple[Any, ...]], labelled_at: float
    ) -> dict[str, Lease]:
        """Store labels (`Label` tuples, or ``(id, label)``) and close their review items, in
        one transaction. A different label for an id overwrites the old one, with its time,
        reviewer and source; the same label again changes nothing. Returns the lease each
        open review item of an analyst's label had when the label closed it."""
        rows = [Label(*label) for label in labels]
        analyst = [r.transaction_id for r in rows if r.source == "analyst"]
        leases: dict[str, Lease] = {}
        with self._connection() as conn:
            cursor = conn.cursor()
            self.begin_write(cursor)
            for condition, parameters in self._id_conditions(analyst):
                cursor.execute(
                    "SELECT transaction_id, leased_to, leased_until FROM review_items "
                    f"WHERE labelled = 0 AND transaction_id {condition}",
                    parameters,
                )
                leases.update((tid, (to, until)) for tid, to, until in cursor.fetchall())
            cursor.executemany(
                self._sql(
                    "INSERT INTO labels (transaction_id, label, labelled_at, reviewer, source) "
                    "VALUES (?, ?, ?, ?, ?) ON CONFLICT (transaction_id) DO UPDATE "
                    "SET label = excluded.label, labelled_at = excluded.labelled_at, "
                    "reviewer = excluded.reviewer, source = excluded.source "
                    "WHERE labels.label <> excluded.label"
                ),
                [(r.transaction_id, r.label, labelled_at, r.reviewer, r.source) for r in rows],
            )
            for condition, parameters in self._id_conditions([r.transaction_id for r in rows]):
                cursor.execute(
                    "UPDATE review_items SET labelled = 1, leased_to = NULL, leased_until = NULL "
                    f"WHERE labelled = 0 AND transaction_id {condition}",
                    parameters,
                )
            conn.commit()
        return leases

    def _id_conditions(self, ids: Sequence[str]) -> Iterator[tuple[str, list[Any]]]:
        """``transaction_id <condition>`` clauses, with their parameters, that together
        match `ids` (SQLite: ``IN`` lists under its parameter limit)."""
        unique = list(dict.fromkeys(ids))
        for start in range(0, len(unique), _ID_CHUNK):
            chunk = unique[start : start + _ID_CHUNK]
            yield f"IN ({', '.join([self.placeholder] * len(chunk))})", chunk

    def known_ids(self, ids: Sequence[str]) -> set[str]:
        """The ids among `ids` that have a score."""
        unique = list(dict.fromkeys(ids))
        found: set[str] = set()
        with self._connection() as conn:
            cursor = conn.cursor()
            for start in range(0, len(unique), _ID_CHUNK):
                chunk = unique[start : start + _ID_CHUNK]
                marks = ", ".join([self.placeholder] * len(chunk))
                cursor.execute(
                    f"SELECT DISTINCT transaction_id FROM scores WHERE transaction_id IN ({marks})",
                    chunk,
                )
                found.update(row[0] for row in cursor.fetchall())
        return found

    def labelled_scores(self, since: float, limit: int) -> list[LabelledScore]:
        """Labelled transactions scored at or after `since`, newest first, at most `limit`.

        A transaction scored twice (a client retry) counts once, with its latest score.
        """
        with self._connection() as conn:
            cursor = conn.cursor()
            cursor.execute(
                self._sql(
                    "SELECT s.transaction_id, s.scored_at, m.tag, s.probability, s.amount, "
                    "c.tag, s.challenger_probability, l.label, l.labelled_at, l.source "
                    "FROM labels l JOIN scores s ON s.transaction_id = l.transaction_id "
                    "JOIN models m ON m.model_id = s.model_id "
                    "LEFT JOIN models c ON c.model_id = s.challenger_id "
                    # Ties broken by id: every replica reads the rows in one order, so its sums
                    # (expected cost) agree to the last bit with the others'.
                    "WHERE s.scored_at >= ? "
                    "ORDER BY s.scored_at DESC, s.transaction_id, s.probability DESC"
                ),
                (since,),
            )
            seen: set[str] = set()
            rows: list[LabelledScore] = []
            for row in cursor:
                if row[0] in seen:
                    continue
                seen.add(row[0])
                tid, scored_at, tag, p, amount, challenger, challenger_p, label, at, source = row
                name, _, version = tag.partition(":")
                c_name, _, c_version = (challenger or "").partition(":")
                rows.append(
                    LabelledScore(
                        tid,
                        scored_at,
                        name,
                        version,
                        p,
                        amount,
                        c_name or None,
                        c_version or None,
                        challenger_p,
                        label,
                        at,
                        source,
                    )
                )
                if len(rows) == limit:
                    break
            return rows

    def scored_count(self, since: float) -> int:
        """Score rows written at or after `since` (a retried transaction counts twice)."""
        with self._connection() as conn:
            cursor = conn.cursor()
            cursor.execute(
                self._sql(
                    "SELECT COALESCE(SUM(n_rows), 0) FROM score_counts WHERE flushed_at >= ?"
                ),
                (since,),
            )
            return int(cursor.fetchone()[0])

    def _count(self, cursor: Any, n_rows: int) -> None:
        cursor.execute(self._sql("INSERT INTO score_counts VALUES (?, ?)"), (time.time(), n_rows))


class SqliteScoreDatabase(_SqlDatabase):
    """A SQLite file in WAL mode: readers never block the writers of other workers.

    Rows go in as multi-row ``INSERT ... VALUES`` statements of at most `rows_per_statement`
    rows, sized by `statement_sizes`: one statement per chunk, so the GIL is released once per
    chunk (``executemany`` takes it back for every row, about 60 µs a row next to a busy event
    loop), and no JSON is parsed (``json_each`` cost 3 µs more per row).
    """

    #: 500 rows of 8 columns: 4,000 bound parameters, under SQLite's 32,766.
    rows_per_statement = 500

    def __init__(self, path: str | Path, busy_timeout_s: float = 10.0) -> None:
        self.path = Path(path)
        super().__init__(f"sqlite:///{self.path}")
        self.busy_timeout_s = busy_timeout_s

    def _open(self) -> sqlite3.Connection:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(
            self.path,
            timeout=self.busy_timeout_s,
            isolation_level="DEFERRED",
            check_same_thread=False,  # the kept connection is used under a lock
        )
        conn.execute("PRAGMA synchronous=NORMAL")  # WAL: durable at checkpoints, not per row
        return conn

    def _driver_error(self) -> type[Exception]:
        return sqlite3.Error

    def _insert_rows(self, cursor: Any, scores: ScoreColumns) -> None:
        start = 0
        for size in statement_sizes(scores.n_rows, self.rows_per_statement):
            cursor.execute(_sqlite_insert(size), scores.interleaved(start, start + size))
            start += size

    def _lock_for_migration(self, cursor: Any) -> None:
        # WAL is a property of the file: set once here, every later connection uses it.
        # Switching the journal mode answers SQLITE_BUSY at once, without waiting on the
        # busy timeout, while another worker switches it: so wait here, as long as that.
        deadline = time.monotonic() + self.busy_timeout_s
        while True:
            try:
                cursor.execute("PRAGMA journal_mode=WAL")
                break
            except sqlite3.OperationalError as e:
                if e.sqlite_errorcode != sqlite3.SQLITE_BUSY or time.monotonic() >= deadline:
                    raise
                time.sleep(0.01)
        cursor.execute("BEGIN IMMEDIATE")

    def begin_write(self, cursor: Any) -> None:
        cursor.execute("BEGIN IMMEDIATE")


class PostgresScoreDatabase(_SqlDatabase):
    """PostgreSQL through psycopg 3, for several replicas at once."""

    placeholder = "%s"
    backend = "postgresql"
    #: One ``INSERT ... SELECT`` over a JSON array of rows (`json_rows`): one round trip.
    insert_statement = (
        f"INSERT INTO scores ({', '.join(SCORE_COLUMNS)}) SELECT "
        + ", ".join(
            f"(e->>{i})::{t}"
            for i, t in enumerate(
                ("text", "float8", "int", "float8", "smallint", "float8", "int", "float8")
            )
        )
        + " FROM json_array_elements(%s::json) AS e"
    )

    def __init__(self, url: str, connect_timeout_s: int = 5) -> None:
        super().__init__(url)
        self.connect_timeout_s = connect_timeout_s

    def _open(self) -> Any:
        import psycopg  # only deployments with FRAUD_DB_URL=postgresql://... load it

        return psycopg.connect(self.url, connect_timeout=self.connect_timeout_s)

    def _driver_error(self) -> type[Exception]:
        import psycopg

        return psycopg.Error

    def _insert_rows(self, cursor: Any, scores: ScoreColumns) -> None:
        cursor.execute(self.insert_statement, (json_rows(scores.rows()),))

    def _batched(self, conn: Any) -> contextlib.AbstractContextManager[Any]:
        # Pipeline mode: a write's statements and its commit cost one round trip, which is
        # what a commit-before-answer request waits for.
        return conn.pipeline()

    def _lock_for_migration(self, cursor: Any) -> None:
        cursor.execute("SELECT pg_advisory_xact_lock(727272)")  # any constant: one migrator

    def _usable(self, conn: Any) -> bool:
        # An idle connection has nothing to read; a server that shut down or restarted has
        # sent its goodbye (or EOF) on the socket. A poll costs no round trip.
        if conn.closed:
            return False
        try:
            readable, _, _ = select.select([conn.fileno()], [], [], 0)
        except (OSError, ValueError):
            return False
        return not readable

    def known_ids(self, ids: Sequence[str]) -> set[str]:
        with self._connection() as conn:
            cursor = conn.cursor()
            cursor.execute(
                "SELECT DISTINCT transaction_id FROM scores WHERE transaction_id = ANY(%s)",
                (list(dict.fromkeys(ids)),),
            )
            return {row[0] for row in cursor.fetchall()}

    def _id_conditions(self, ids: Sequence[str]) -> Iterator[tuple[str, list[Any]]]:
        if ids:
            yield "= ANY(%s)", [list(dict.fromkeys(ids))]


def statement_sizes(n_rows: int, rows_per_statement: int) -> list[int]:
    """How many rows each ``INSERT`` of a flush takes: full statements of `rows_per_statement`,
    then the rest as powers of two (1,234 rows at 500: 500, 500, 128, 64, 32, 8, 2).

    A flush's row count varies, so one statement for the rest made a new SQL text nearly every
    flush, and sqlite3 keeps the last 128 prepared statements per connection: a worker's RSS
    grew by 31 MB, most of it in the first minute. With powers of two there are at most
    ``log2(rows_per_statement) + 2`` texts, all prepared once, and inserting was no slower.
    """
    sizes = [rows_per_statement] * (n_rows // rows_per_statement)
    rest = n_rows % rows_per_statement
    while rest:
        size = 1 << (rest.bit_length() - 1)
        sizes.append(size)
        rest -= size
    return sizes


@functools.lru_cache(maxsize=16)
def _sqlite_insert(n_rows: int) -> str:
    """``INSERT OR IGNORE`` of `n_rows` rows of `SCORE_COLUMNS` (cached: see `statement_sizes`)."""
    row = "(" + ", ".join("?" * len(SCORE_COLUMNS)) + ")"
    return f"INSERT OR IGNORE INTO scores ({', '.join(SCORE_COLUMNS)}) VALUES " + ", ".join(
        [row] * n_rows
    )


def json_rows(rows: Iterable[ScoreRow]) -> str:
    """Rows as one JSON array of arrays, encoded in C, for PostgreSQL's one-statement insert
    (``json_array_elements``): the GIL is released for the whole round trip, not per row."""
    return msgspec.json.encode(list(rows)).decode()


def redacted(url: str) -> str:
    """`url` without its password, for logs and ``/performance``."""
    scheme, sep, rest = url.partition("://")
    credentials, at, host = rest.rpartition("@")
    if not at or ":" not in credentials:
        return url
    return f"{scheme}{sep}{credentials.split(':', 1)[0]}:***@{host}"


def open_database(url: str) -> ScoreDatabase:
    """The database of a ``sqlite:///path`` or ``postgresql://...`` URL (not yet connected)."""
    if url.startswith("sqlite:///"):
        return SqliteScoreDatabase(url.removeprefix("sqlite:///"))
    if url.startswith(("postgresql://", "postgres://")):
        return PostgresScoreDatabase(url)
    raise ValueError(
        f"FRAUD_DB_URL={redacted(url)!r}: use sqlite:///<path> or postgresql://user@host/db"
    )


def now() -> float:
    """The time stored in the tables (Unix seconds)."""
    return time.time()
