"""The drift-logging hook: every scored row's features and score, written for drift analysis.

`DriftHook` is the interface the service calls after each batch. `DriftLogWriter` hands the
rows to a background thread that appends them, every half second, to this worker's file of
the day as fixed-width little-endian float64 records (time, 30 features, score): one
``write`` per flush, no per-row encoding, so logging costs the serving worker almost nothing
and never delays or fails a prediction. `DriftLogFiles` names and reads those files (the
offline ``python -m training.drift`` and any numpy user read them back). The online detector
(`fraud_detection.drift.monitor.DriftMonitor`) is another `DriftHook`; `CompositeDriftHook`
feeds both from the service's one ``observe`` call.
"""

from __future__ import annotations

import collections
import datetime as dt
import functools
import json
import logging
import threading
import time
from pathlib import Path
from typing import Any
from typing import Protocol

import numpy as np

from fraud_detection.schema import FEATURE_NAMES

logger = logging.getLogger(__name__)

#: Logs land in ``<FRAUD_MONITOR_LOG_PATH>/<MONITOR_NAME>/data/``.
MONITOR_NAME = "fraud_transactions"
SCORE_COLUMN = "fraud_probability"
TIME_COLUMN = "timestamp"
#: One record: seconds since the epoch (UTC), the 30 features in schema order, the score.
LOG_COLUMNS = (TIME_COLUMN, *FEATURE_NAMES, SCORE_COLUMN)
LOG_DTYPE = np.dtype("<f8")
RECORD_BYTES = len(LOG_COLUMNS) * LOG_DTYPE.itemsize
LOG_SUFFIX = ".f64"


class DriftLogFiles:
    """The drift-log folder: ``rows.<worker>.<YYYY-MM-DD>.f64`` files plus ``columns.json``.

    A file is raw records of `LOG_COLUMNS` (``numpy.fromfile(path).reshape(-1, 32)``);
    ``columns.json`` says so for tools that do not import this module.
    """

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)

    @classmethod
    def under(cls, monitor_log_path: str | Path) -> DriftLogFiles:
        """The folder the service writes under ``FRAUD_MONITOR_LOG_PATH``."""
        return cls(Path(monitor_log_path) / MONITOR_NAME / "data")

    def path(self, worker: int, day: dt.date) -> Path:
        return self.directory / f"rows.{worker}.{day.isoformat()}{LOG_SUFFIX}"

    def prepare(self) -> None:
        """Create the folder and describe the record layout in ``columns.json``."""
        self.directory.mkdir(parents=True, exist_ok=True)
        layout = {"dtype": LOG_DTYPE.str, "record_bytes": RECORD_BYTES, "columns": LOG_COLUMNS}
        schema = self.directory / "columns.json"
        if not schema.exists():
            schema.write_text(json.dumps(layout, indent=1))

    @staticmethod
    def day_of(path: Path) -> str:
        """The ``YYYY-MM-DD`` part of ``rows.<worker>.<day>.f64``."""
        return path.name.split(".")[2]

    def files(self) -> list[Path]:
        """Every worker's files, oldest day first."""
        return sorted(
            self.directory.glob(f"rows.*{LOG_SUFFIX}"), key=lambda p: (self.day_of(p), p.name)
        )

    def prune(self, keep_days: int, today: dt.date) -> list[Path]:
        """Delete files of days older than the last `keep_days`; returns what went."""
        oldest = today - dt.timedelta(days=keep_days - 1)
        removed = []
        for path in self.files():
            try:
                day = dt.date.fromisoformat(self.day_of(path))
            except ValueError:
                continue
            if day < oldest:
                path.unlink(missing_ok=True)
                removed.append(path)
        return removed

    @staticmethod
    def read_file(path: Path) -> np.ndarray:
        """One file's records as an (n, 32) array; a record cut short by a crash is left out."""
        raw = np.fromfile(path, dtype=LOG_DTYPE)
        whole = len(raw) - len(raw) % len(LOG_COLUMNS)
        return raw[:whole].reshape(-1, len(LOG_COLUMNS))

    def read(self) -> Any:
        """All files as a DataFrame of `LOG_COLUMNS`, ``timestamp`` as UTC datetimes."""
        import pandas as pd

        files = self.files()
        return read_log_files(files) if files else pd.DataFrame(columns=list(LOG_COLUMNS))


def read_log_files(paths: list[Path]) -> Any:
    """Drift-log files as one DataFrame of `LOG_COLUMNS` (pandas imported on use)."""
    import pandas as pd

    records = np.concatenate([DriftLogFiles.read_file(p) for p in paths])
    frame = pd.DataFrame(records, columns=list(LOG_COLUMNS))
    frame[TIME_COLUMN] = pd.to_datetime(frame[TIME_COLUMN], unit="s", utc=True)
    return frame


def current_worker() -> int:
    """BentoML's 1-based index of this worker process (1 outside ``bentoml serve``)."""
    from bentoml._internal.context import server_context

    return server_context.worker_index or 1


@functools.cache
def drift_log_counters() -> tuple[Any, Any]:
    """Prometheus counters (failed writes, dropped rows), created once per worker process.

    prometheus_client is imported here, not at module import: BentoML sets the multiprocess
    directory in each worker after the service module is imported.
    """
    import prometheus_client

    return (
        prometheus_client.Counter(
            "fraud_drift_log_failures", "Drift-log writes that failed (predictions continued)"
        ),
        prometheus_client.Counter(
            "fraud_drift_log_dropped_rows", "Rows left out of the drift log: its backlog was full"
        ),
    )


class DriftHook(Protocol):
    """Receives every scored batch; must never raise into, or block, the prediction path."""

    def observe(self, features: np.ndarray, scores: np.ndarray) -> None: ...

    def close(self) -> None: ...


class DriftLogWriter:
    """Appends each scored row (time, 30 features, score) to this worker's drift-log file.

    `observe` only appends to a deque; a daemon thread wakes every `flush_seconds` and writes
    what arrived as one block to the file of the day (UTC), deleting days older than
    `keep_days`. When more than `max_pending_batches` wait (the disk cannot keep up), new
    batches are dropped from the log and counted in `dropped_rows`; a failed write is
    counted in `failures`. Predictions are never held back.
    """

    def __init__(
        self,
        files: DriftLogFiles,
        *,
        worker: int = 1,
        keep_days: int = 7,
        max_pending_batches: int = 10_000,
        flush_seconds: float = 0.5,
    ) -> None:
        self.files = files
        self.worker = worker
        self.keep_days = keep_days
        self.max_pending_batches = max_pending_batches
        self.flush_seconds = flush_seconds
        self.failures = 0
        self.dropped_rows = 0
        self.written_rows = 0
        self._pending: collections.deque[tuple[float, np.ndarray, np.ndarray]] = collections.deque()
        self._pruned_on: dt.date | None = None
        self._stop = threading.Event()
        self._writer = threading.Thread(target=self._drain, name="drift-log", daemon=True)
        self._writer.start()

    def observe(self, features: np.ndarray, scores: np.ndarray) -> None:
        if len(self._pending) >= self.max_pending_batches:
            self.dropped_rows += len(scores)
            drift_log_counters()[1].inc(len(scores))
            if self.dropped_rows == len(scores):  # warn once, then count
                logger.warning("Drift log backlog full: rows are dropped from the log")
            return
        # deque.append is atomic under the GIL: no lock, no wake-up of the writer.
        self._pending.append((time.time(), features, scores))

    def close(self, timeout: float = 10.0) -> None:
        """Write what is queued, then stop the writer thread."""
        self._stop.set()
        self._writer.join(timeout)
        if self._writer.is_alive():
            logger.warning("Drift log writer stuck; %d batches unwritten", len(self._pending))

    def _drain(self) -> None:
        while not self._stop.wait(self.flush_seconds):
            self._flush()
        self._flush()

    def _flush(self) -> None:
        batches = []
        while self._pending:
            batches.append(self._pending.popleft())
        if batches:
            self.write(batches)

    def write(self, batches: list[tuple[float, np.ndarray, np.ndarray]]) -> None:
        """Append `batches` (time, features, scores) as records; a failure is counted."""
        today = dt.datetime.now(dt.UTC).date()
        try:
            counts = [len(scores) for _, _, scores in batches]
            rows = sum(counts)
            # One concatenate per column group, not three slice copies per batch: a loaded
            # worker hands over thousands of small batches per flush.
            block = np.empty((rows, len(LOG_COLUMNS)), dtype=LOG_DTYPE)
            block[:, 0] = np.repeat([stamp for stamp, _, _ in batches], counts)
            block[:, 1:-1] = np.concatenate([features for _, features, _ in batches])
            block[:, -1] = np.concatenate([scores for _, _, scores in batches])
            if self._pruned_on != today:
                self.files.prepare()
                self.files.prune(self.keep_days, today)
                self._pruned_on = today
            with open(self.files.path(self.worker, today), "ab") as out:
                out.write(block.tobytes())
            self.written_rows += rows
        except Exception:
            # A broken log sink must not turn a scored request into an error.
            self.failures += 1
            drift_log_counters()[0].inc()
            logger.exception(
                "Drift log failed (%d failures so far); predictions continue", self.failures
            )


class NoDriftLog:
    """The hook when drift logging is switched off (``FRAUD_DRIFT_LOG=0``)."""

    def observe(self, features: np.ndarray, scores: np.ndarray) -> None:
        return None

    def close(self) -> None:
        return None


class CompositeDriftHook:
    """Hands each batch to several hooks (the drift log and the online detector).

    Each hook already promises not to raise; one that breaks that promise is logged and
    skipped, so it can neither fail the prediction nor starve the hooks after it.
    """

    def __init__(self, *hooks: DriftHook) -> None:
        self.hooks = hooks

    def observe(self, features: np.ndarray, scores: np.ndarray) -> None:
        for hook in self.hooks:
            try:
                hook.observe(features, scores)
            except Exception:
                logger.exception("Drift hook %s raised; predictions continue", type(hook).__name__)

    def close(self) -> None:
        for hook in self.hooks:
            hook.close()
