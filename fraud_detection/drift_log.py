"""The drift-logging hook: every scored row's features and score, written for drift analysis.

`DriftHook` is the interface the service calls after each batch. `MonitorDriftLog` hands the
rows to a background thread that writes them as JSON lines through `bentoml.monitor`, so
logging never delays or fails a prediction. `JsonLinesMonitor` is the monitor type the service
configures: BentoML's default files, written a whole record at a time. The online Evidently
detector (`fraud_detection.drift.monitor.DriftMonitor`) is another `DriftHook`;
`CompositeDriftHook` feeds both from the service's one ``observe`` call.
"""

from __future__ import annotations

import collections
import datetime as dt
import functools
import json
import logging
import logging.handlers
import queue
import threading
import time
from pathlib import Path
from typing import Any
from typing import Protocol

import bentoml
import msgspec
import numpy as np
from bentoml.monitoring import DefaultMonitor

from fraud_detection.schema import FEATURE_NAMES

logger = logging.getLogger(__name__)

#: Name of the bentoml monitor; logs land in ``<log_path>/<MONITOR_NAME>/data/data.<worker>.log``.
MONITOR_NAME = "fraud_transactions"
SCORE_COLUMN = "fraud_probability"
#: The ``monitoring.type`` that makes ``bentoml.monitor`` use `JsonLinesMonitor`.
MONITOR_TYPE = "fraud_detection.drift_log.JsonLinesMonitor"
MONITOR_LOGGING_CONFIG = Path(__file__).with_name("monitor_logging.yaml")
#: Rows encoded per hold of the GIL by the drift-log writer (about 0.5 ms of work).
ENCODE_CHUNK_ROWS = 200


class RaisingTimedRotatingFileHandler(logging.handlers.TimedRotatingFileHandler):
    """A daily-rotated log file whose write errors (disk full, I/O error) raise to the caller.

    `logging` normally prints a failed write to stderr and carries on, which would hide a
    full disk from the drift-log failure counter.
    """

    def handleError(self, record: logging.LogRecord) -> None:
        raise  # handleError runs inside emit's except block: re-raise that error


class JsonLinesMonitor(DefaultMonitor):
    """BentoML's default monitor (same files, same JSON lines, daily rotation), faster.

    The default keeps each value in a Python deque and formats and flushes one log record
    per row; this one keeps each column as an array and writes a whole record (thousands of
    rows) in one log call.
    """

    def __init__(
        self, name: str, log_path: str, log_config_file: str | None = None, **options: Any
    ) -> None:
        super().__init__(name, log_path, log_config_file or str(MONITOR_LOGGING_CONFIG), **options)

    def export_schema(self, columns_schema: dict[str, dict[str, str]]) -> None:
        if self.schema_logger is None:
            self._init_logger()
        self.schema_logger.info(json.dumps({"columns": list(columns_schema.values())}))

    def log_batch(self, data_batch: Any, name: str, role: str, data_type: str) -> None:
        """Log a whole column as one array (the base class appends it value by value)."""
        self.log(np.asarray(data_batch), name, role, data_type)

    def export_data(self, datas: dict[str, collections.deque[Any]]) -> None:
        if self.data_logger is None:
            self._init_logger()
        columns = {
            name: np.concatenate([np.atleast_1d(v) for v in values])
            for name, values in datas.items()
        }
        row = _row_type((*columns, self.COLUMN_TIME))
        now = dt.datetime.now().isoformat()
        values = np.column_stack(list(columns.values())).astype(np.float64)
        encode = _encoder().encode_lines
        chunks = []
        for start in range(0, len(values), ENCODE_CHUNK_ROWS):
            # msgspec writes each float's shortest exact form, 2.5x faster than pandas'
            # to_json; a chunk at a time, yielding the GIL between chunks so the event loop
            # never waits behind a whole flush.
            rows = values[start : start + ENCODE_CHUNK_ROWS].tolist()
            chunks.append(encode([row(*v, now) for v in rows]))
            time.sleep(0)
        self.data_logger.info(b"".join(chunks).decode().rstrip("\n"))


@functools.cache
def _row_type(names: tuple[str, ...]) -> type[msgspec.Struct]:
    """A struct with these fields (numbers, then the time string), encoded as a JSON object."""
    fields = [(n, float) for n in names[:-1]] + [(names[-1], str)]
    # Floats and a string cannot form cycles: keep thousands of rows a second out of the GC.
    return msgspec.defstruct("DriftLogRow", fields, gc=False)


@functools.cache
def _encoder() -> msgspec.json.Encoder:
    return msgspec.json.Encoder()


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


class MonitorDriftLog:
    """Writes each row (30 features + score) to `bentoml.monitor`, one JSON line per row.

    `observe` only enqueues; a daemon thread writes what arrived in the last `flush_seconds`
    (0.5 s: fewer, larger writes) as one monitor record. When more than `max_pending_batches`
    wait (the disk cannot keep up), new batches are dropped from the log and counted in
    `dropped_rows`; predictions are never held back.
    """

    def __init__(
        self,
        monitor_name: str = MONITOR_NAME,
        *,
        max_pending_batches: int = 10_000,
        flush_seconds: float = 0.5,
    ) -> None:
        self.monitor_name = monitor_name
        self.flush_seconds = flush_seconds
        self.failures = 0
        self.dropped_rows = 0
        self.written_rows = 0
        self._pending: queue.Queue[tuple[np.ndarray, np.ndarray] | None] = queue.Queue(
            maxsize=max_pending_batches
        )
        self._writer = threading.Thread(target=self._drain, name="drift-log", daemon=True)
        self._writer.start()

    def observe(self, features: np.ndarray, scores: np.ndarray) -> None:
        try:
            self._pending.put_nowait((features, scores))
        except queue.Full:
            self.dropped_rows += len(scores)
            drift_log_counters()[1].inc(len(scores))
            if self.dropped_rows == len(scores):  # warn once, then count
                logger.warning("Drift log backlog full: rows are dropped from the log")

    def close(self, timeout: float = 10.0) -> None:
        """Write what is queued, then stop the writer thread."""
        try:
            self._pending.put(None, timeout=timeout)
        except queue.Full:
            logger.warning("Drift log writer stuck; %d batches unwritten", self._pending.qsize())
            return
        self._writer.join(timeout)

    def _drain(self) -> None:
        while True:
            batches = self._collect()
            rows = [b for b in batches if b is not None]
            if rows:
                self._write(
                    np.concatenate([f for f, _ in rows]), np.concatenate([s for _, s in rows])
                )
            if batches and batches[-1] is None:
                return

    def _collect(self) -> list[tuple[np.ndarray, np.ndarray] | None]:
        """Wait for a batch, let `flush_seconds` pass, then take everything queued.

        Sleeping instead of waking for every batch keeps the writer to one wake-up and one
        write per interval, so its cost (a pandas frame, one file write, and the GIL while
        they run) does not land on every request.
        """
        batches = [self._pending.get()]
        if batches[0] is not None:
            time.sleep(self.flush_seconds)
        while batches[-1] is not None:
            try:
                batches.append(self._pending.get_nowait())
            except queue.Empty:
                break
        return batches

    def _write(self, features: np.ndarray, scores: np.ndarray) -> None:
        try:
            with bentoml.monitor(self.monitor_name) as monitor:
                for column, name in enumerate(FEATURE_NAMES):
                    monitor.log_batch(
                        features[:, column],
                        name=name,
                        role="feature",
                        data_type="numerical",
                    )
                monitor.log_batch(
                    scores, name=SCORE_COLUMN, role="prediction", data_type="numerical"
                )
            self.written_rows += len(scores)
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
    """Hands each batch to several hooks (the JSON-lines log and the online detector).

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
