"""`ResultsDirectory`: each worker's latest drift summary and window, shared between workers.

Every worker keeps its own window and writes ``worker-<n>.json`` (the summary) and
``worker-<n>.npy`` (the window the summary judged: 30 features and the score, float32, about
600 KB) here; the HTTP endpoints, served by whichever worker takes the request, read them all,
and build the Evidently report of a window only when asked. Files are replaced atomically
(write then rename), so a reader never sees half a file.
"""

from __future__ import annotations

import io
import logging
import os
import re
import tempfile
from pathlib import Path

import numpy as np
from pydantic import ValidationError

from fraud_detection.drift.summary import DriftSummary

logger = logging.getLogger(__name__)

_SUMMARY = re.compile(r"worker-(\d+)\.json")


class ResultsDirectory:
    """The folder of per-worker drift results (beside the monitor log by default)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def summary_path(self, worker: int) -> Path:
        return self.path / f"worker-{worker}.json"

    def window_path(self, worker: int) -> Path:
        return self.path / f"worker-{worker}.npy"

    def write(self, summary: DriftSummary, features: np.ndarray, scores: np.ndarray) -> None:
        """Publish a worker's latest summary and the window it judged (the window first: the
        summary is what readers look for)."""
        self.path.mkdir(parents=True, exist_ok=True)
        window = np.column_stack([features, scores]).astype(np.float32)  # lossless: served rows
        buffer = io.BytesIO()
        np.save(buffer, window, allow_pickle=False)
        _replace(self.window_path(summary.worker), buffer.getvalue())
        _replace(self.summary_path(summary.worker), summary.model_dump_json(indent=2).encode())

    def read_window(self, worker: int) -> tuple[np.ndarray, np.ndarray]:
        """The features ``(n, 30)`` and scores ``(n,)`` a worker's latest summary judged."""
        window = np.load(self.window_path(worker), allow_pickle=False)
        return window[:, :-1].astype(np.float64), window[:, -1].astype(np.float64)

    def clear(self, worker: int) -> None:
        """Remove a worker's results (left by an earlier run) before it publishes new ones."""
        self.summary_path(worker).unlink(missing_ok=True)
        self.window_path(worker).unlink(missing_ok=True)

    def summaries(self, max_worker: int | None = None) -> list[DriftSummary]:
        """The latest summary of each worker ``1..max_worker`` (all workers if None).

        Files of worker indexes beyond the configured count are left-overs of an earlier
        run with more workers, so they are ignored rather than merged.
        """
        found = []
        paths = sorted(self.path.glob("worker-*.json")) if self.path.is_dir() else []
        for path in paths:
            match = _SUMMARY.fullmatch(path.name)
            if match is None or (max_worker is not None and int(match[1]) > max_worker):
                continue
            try:
                found.append(DriftSummary.model_validate_json(path.read_text()))
            except (OSError, ValidationError) as e:  # a worker mid-write on a foreign FS
                logger.warning("Skipping unreadable drift summary %s: %s", path, e)
        return found


def _replace(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
