"""`ReviewStore`: the review queue's SQL, on the score database (SQLite or PostgreSQL).

Rows reach ``review_items`` from the score writers (`ScoreDatabase.write`), and labels close
them (`ScoreDatabase.upsert_labels`). Here they are leased: listing a page or opening an item
leases it to the reviewer who asked, in one transaction, so two reviewers never get the same
item. On PostgreSQL the page's rows are locked with ``FOR UPDATE SKIP LOCKED``: a concurrent
lister skips them, and a row whose lease another lister committed meanwhile fails its
re-checked ``WHERE``; on SQLite ``BEGIN IMMEDIATE`` makes every leasing transaction the only
writer.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from fraud_detection.review.cursor import Position
from fraud_detection.schema import N_FEATURES
from fraud_detection.score_log.database import REVIEW_FEATURES_DTYPE
from fraud_detection.score_log.database import ScoreDatabase

DAY_S = 86_400.0
#: Each order's sort key column (descending), then ``transaction_id`` (ascending).
ORDER_KEYS = {"risk": "probability", "newest": "scored_at"}
_ITEM_COLUMNS = (
    "transaction_id, scored_at, model_id, probability, amount, time_feature, is_fraud, "
    "leased_to, leased_until"
)


@dataclass(frozen=True)
class QueueItem:
    """A review row without its features."""

    transaction_id: str
    scored_at: float
    model: str  # its tag, name:version
    probability: float
    amount: float
    time: float
    is_fraud: bool
    leased_to: str | None
    leased_until: float | None

    def key(self, order: str) -> float:
        return self.probability if order == "risk" else self.scored_at


@dataclass(frozen=True)
class QueuePage:
    items: list[QueueItem]  # in the page's order, each leased to the reviewer
    open: int
    reviewed_today: int


@dataclass(frozen=True)
class LabelRow:
    label: int
    reviewer: str | None
    source: str
    labelled_at: float


@dataclass(frozen=True)
class OpenedItem:
    """An item with its features (30 float64, schema order) and label, after `open_item`."""

    item: QueueItem
    features: np.ndarray
    labelled: bool
    label: LabelRow | None


class ReviewStore:
    """Leases, reads and purges review items in `database`."""

    def __init__(self, database: ScoreDatabase, *, lease_s: float, retention_s: float) -> None:
        self.database = database
        self.lease_s = lease_s
        self.retention_s = retention_s
        self._tags: dict[int, str] = {}
        self._tags_lock = threading.Lock()

    def _sql(self, statement: str) -> str:
        return statement.replace("?", self.database.placeholder)

    def lease_page(
        self,
        reviewer: str,
        *,
        order: str = "risk",
        limit: int = 20,
        after: Position | None = None,
        now: float | None = None,
    ) -> QueuePage:
        """Lease to `reviewer` the next `limit` open items after `after`, in `order`: items
        without a label, unleased, leased to `reviewer`, or whose lease expired. Returns
        them with the queue's counts, read in the same transaction."""
        now = time.time() if now is None else now
        key = ORDER_KEYS[order]
        keyset = ""
        parameters: list[Any] = [now, reviewer]
        if after is not None:
            # The first term bounds the index range, so a deep page costs what the first does.
            keyset = f"AND {key} <= ? AND ({key} < ? OR transaction_id > ?) "
            parameters += [after.key, after.key, after.transaction_id]
        parameters += [limit, reviewer, now + self.lease_s]
        lock = " FOR UPDATE SKIP LOCKED" if self.database.backend == "postgresql" else ""
        statement = self._sql(
            "WITH picked AS MATERIALIZED (SELECT transaction_id FROM review_items "
            "WHERE labelled = 0 AND (leased_until IS NULL OR leased_until <= ? OR leased_to = ?) "
            f"{keyset}ORDER BY {key} DESC, transaction_id LIMIT ?{lock}) "
            "UPDATE review_items SET leased_to = ?, leased_until = ? "
            "WHERE transaction_id IN (SELECT transaction_id FROM picked) "
            f"RETURNING {_ITEM_COLUMNS}"
        )
        with self.database.connection() as conn:
            cursor = conn.cursor()
            self.database.begin_write(cursor)
            cursor.execute(statement, parameters)
            rows = cursor.fetchall()
            cursor.execute(
                self._sql(
                    "SELECT (SELECT COUNT(*) FROM review_items WHERE labelled = 0) - "
                    "(SELECT COUNT(*) FROM review_items WHERE labelled = 0 "
                    "AND leased_until > ? AND leased_to <> ?), "
                    "(SELECT COUNT(*) FROM labels WHERE source = 'analyst' AND labelled_at >= ?)"
                ),
                (now, reviewer, now - now % DAY_S),
            )
            open_items, reviewed_today = cursor.fetchone()
            conn.commit()
        items = sorted(
            (self._item(row) for row in rows),
            key=lambda item: (-item.key(order), item.transaction_id),
        )
        return QueuePage(items, int(open_items), int(reviewed_today))

    def scored_with(self, transaction_id: str) -> tuple[str, np.ndarray] | None:
        """The tag of the model that scored an item, and its features (None: no such item)."""
        with self.database.connection() as conn:
            cursor = conn.cursor()
            cursor.execute(
                self._sql("SELECT model_id, features FROM review_items WHERE transaction_id = ?"),
                (transaction_id,),
            )
            row = cursor.fetchone()
        if row is None:
            return None
        return self._tag(row[0]), _features(row[1])

    def open_item(
        self, transaction_id: str, reviewer: str, now: float | None = None
    ) -> OpenedItem | None:
        """The item with its features and label (None: no such item). An open item that is
        unleased, leased to `reviewer` or whose lease expired is leased to `reviewer`."""
        now = time.time() if now is None else now
        lock = " FOR UPDATE" if self.database.backend == "postgresql" else ""
        with self.database.connection() as conn:
            cursor = conn.cursor()
            self.database.begin_write(cursor)
            cursor.execute(
                self._sql(
                    f"SELECT {_ITEM_COLUMNS}, features, labelled FROM review_items "
                    f"WHERE transaction_id = ?{lock}"
                ),
                (transaction_id,),
            )
            row = cursor.fetchone()
            if row is None:
                return None
            *columns, features, labelled = row
            leased_to, leased_until = columns[-2:]
            expired = leased_until is None or leased_until <= now
            if not labelled and (leased_to in (None, reviewer) or expired):
                columns[-2:] = [reviewer, now + self.lease_s]
                cursor.execute(
                    self._sql(
                        "UPDATE review_items SET leased_to = ?, leased_until = ? "
                        "WHERE transaction_id = ?"
                    ),
                    (*columns[-2:], transaction_id),
                )
            cursor.execute(
                self._sql(
                    "SELECT label, reviewer, source, labelled_at FROM labels "
                    "WHERE transaction_id = ?"
                ),
                (transaction_id,),
            )
            label = cursor.fetchone()
            conn.commit()
        return OpenedItem(
            self._item(columns),
            _features(features),
            bool(labelled),
            None if label is None else LabelRow(*label),
        )

    def purge(self, now: float | None = None, batch: int = 1000) -> int:
        """Delete review rows scored more than the retention ago, `batch` rows per
        transaction (each holds the write lock briefly); returns how many. Also closes items
        scored in the last day whose label was committed while their row was (a race between
        a label and the score writer's commit, on PostgreSQL)."""
        now = time.time() if now is None else now
        deleted = 0
        while True:
            with self.database.connection() as conn:
                cursor = conn.cursor()
                self.database.begin_write(cursor)
                cursor.execute(
                    self._sql(
                        "DELETE FROM review_items WHERE transaction_id IN (SELECT "
                        "transaction_id FROM review_items WHERE scored_at < ? LIMIT ?)"
                    ),
                    (now - self.retention_s, batch),
                )
                n = max(int(cursor.rowcount), 0)
                conn.commit()
            deleted += n
            if n < batch:
                break
        with self.database.connection() as conn:
            cursor = conn.cursor()
            self.database.begin_write(cursor)
            cursor.execute(
                self._sql(
                    "UPDATE review_items SET labelled = 1, leased_to = NULL, leased_until = NULL "
                    "WHERE labelled = 0 AND scored_at >= ? AND EXISTS (SELECT 1 FROM labels "
                    "WHERE labels.transaction_id = review_items.transaction_id)"
                ),
                (now - 86_400.0,),
            )
            conn.commit()
        return deleted

    def _item(self, row: Any) -> QueueItem:
        tid, scored_at, model_id, p, amount, time_feature, is_fraud, leased_to, until = row
        return QueueItem(
            tid,
            scored_at,
            self._tag(model_id),
            p,
            amount,
            time_feature,
            bool(is_fraud),
            leased_to,
            until,
        )

    def _tag(self, model_id: int) -> str:
        """The tag `model_id` stands for (read once per model; tags never change)."""
        with self._tags_lock:
            if model_id not in self._tags:
                with self.database.connection() as conn:
                    cursor = conn.cursor()
                    cursor.execute("SELECT model_id, tag FROM models")
                    self._tags.update(cursor.fetchall())
            return self._tags.get(model_id, f"unknown model {model_id}")


def _features(stored: bytes) -> np.ndarray:
    """A row's 30 features from their stored bytes (a BLOB, or a BYTEA's memoryview)."""
    return np.frombuffer(bytes(stored), REVIEW_FEATURES_DTYPE).reshape(N_FEATURES)
