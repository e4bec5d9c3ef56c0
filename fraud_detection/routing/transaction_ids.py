"""Transaction ids: echo the caller's, assign the missing ones, and hash them into shares."""

from __future__ import annotations

import itertools
import uuid
import zlib
from collections.abc import Sequence

import numpy as np

#: What a caller's ``transaction_id`` may be: 1 to 64 visible ASCII characters (no spaces),
#: so an id is safe in URLs, logs and CSV files as it is.
TRANSACTION_ID_PATTERN = r"^[!-~]{1,64}$"
TRANSACTION_ID_MAX_LENGTH = 64


class TransactionIdAssigner:
    """Ids for transactions that came without one: a per-process random prefix and a counter.

    Unique across workers and restarts (48 random bits per process) without a random draw per
    row; shorter than 64 characters, so they pass the same rule as callers' ids.
    """

    def __init__(self) -> None:
        self.prefix = f"tx-{uuid.uuid4().hex[:12]}-"
        self._counter = itertools.count(1)

    def complete(self, ids: Sequence[str | None]) -> list[str]:
        """`ids` with each None replaced by a new id."""
        return [i if i is not None else f"{self.prefix}{next(self._counter):x}" for i in ids]

    def new(self, n: int) -> list[str]:
        """`n` new ids."""
        return [f"{self.prefix}{next(self._counter):x}" for _ in range(n)]


def traffic_buckets(ids: Sequence[str]) -> np.ndarray:
    """A number in [0, 1) per id, fixed by the id (CRC-32): the same transaction always falls
    in the same share, in every worker and replica."""
    return np.fromiter((zlib.crc32(i.encode()) for i in ids), dtype=np.float64, count=len(ids)) / (
        2.0**32
    )
