"""`ResultsDirectory`: each worker's latest drift summary and report, shared between workers.

Every worker keeps its own window and writes ``worker-<n>.json`` and ``worker-<n>.html``
here; the HTTP endpoints, served by whichever worker takes the request, read them all. Files
are replaced atomically (write then rename), so a reader never sees half a report.
"""

from __future__ import annotations

import logging
import os
import re
import tempfile
from pathlib import Path

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

    def report_path(self, worker: int) -> Path:
        return self.path / f"worker-{worker}.html"

    def write(self, summary: DriftSummary, html: str) -> None:
        """Publish a worker's latest summary and report (the report first: the summary
        pointing at it is what readers look for)."""
        self.path.mkdir(parents=True, exist_ok=True)
        _replace(self.report_path(summary.worker), html)
        _replace(self.summary_path(summary.worker), summary.model_dump_json(indent=2))

    def clear(self, worker: int) -> None:
        """Remove a worker's results (left by an earlier run) before it publishes new ones."""
        self.summary_path(worker).unlink(missing_ok=True)
        self.report_path(worker).unlink(missing_ok=True)

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


def _replace(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
