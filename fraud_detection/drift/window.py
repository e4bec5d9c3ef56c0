"""`DriftWindow`: the last N scored rows of one worker, in a fixed numpy ring buffer."""

from __future__ import annotations

import threading

import numpy as np

from fraud_detection.schema import N_FEATURES


class DriftWindow:
    """Holds the most recent `capacity` rows (30 features + score); older rows roll out.

    Rolling out is the design, not a loss: drift is judged on recent traffic. `append` is one
    vectorised copy under a lock (no pandas, no allocation), so the request path pays a few
    microseconds per batch; `snapshot` copies the rows out, oldest first, for a computation.
    """

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be >= 1, got {capacity}")
        self.capacity = capacity
        self._rows = np.zeros((capacity, N_FEATURES + 1), dtype=np.float64)
        self._next = 0  # where the next row goes
        self._filled = 0
        self._seen = 0  # rows ever appended
        self._lock = threading.Lock()

    def append(self, features: np.ndarray, scores: np.ndarray) -> None:
        """Add a batch: `features` ``(n, 30)``, `scores` ``(n,)``."""
        n = len(scores)
        if features.shape != (n, N_FEATURES):
            raise ValueError(
                f"expected features of shape ({n}, {N_FEATURES}), got {features.shape}"
            )
        with self._lock:
            self._seen += n
            if n >= self.capacity:  # a batch larger than the window: keep its tail
                features, scores, n = (
                    features[-self.capacity :],
                    scores[-self.capacity :],
                    self.capacity,
                )
            first = min(n, self.capacity - self._next)
            end = self._next + first
            self._rows[self._next : end, :N_FEATURES] = features[:first]
            self._rows[self._next : end, N_FEATURES] = scores[:first]
            rest = n - first  # wraps round to the start
            self._rows[:rest, :N_FEATURES] = features[first:]
            self._rows[:rest, N_FEATURES] = scores[first:]
            self._next = (self._next + n) % self.capacity
            self._filled = min(self.capacity, self._filled + n)

    @property
    def rows(self) -> int:
        """Rows in the window now (at most `capacity`)."""
        return self._filled

    @property
    def seen(self) -> int:
        """Rows appended since the window was created, rolled-out ones included."""
        return self._seen

    def snapshot(self) -> tuple[np.ndarray, np.ndarray, int]:
        """A copy of the window's features and scores, oldest first, and `seen` at that time."""
        with self._lock:
            if self._filled < self.capacity:
                rows = self._rows[: self._filled].copy()
            else:
                rows = np.roll(self._rows, -self._next, axis=0)
            seen = self._seen
        return rows[:, :N_FEATURES], rows[:, N_FEATURES], seen
