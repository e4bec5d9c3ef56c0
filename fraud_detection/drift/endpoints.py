"""``GET /drift/summary`` and ``GET /drift/report``: the latest drift results over HTTP.

A small Starlette app the service mounts at ``/drift``. It reads what the workers published
in the `ResultsDirectory`, so any worker answers for all of them. The Evidently HTML report
of a worker's latest window is built when first asked for (seconds of CPU, on a thread) and
kept until that worker publishes a new window.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse
from starlette.responses import JSONResponse
from starlette.responses import Response
from starlette.routing import Route

from fraud_detection.drift.results_dir import ResultsDirectory
from fraud_detection.drift.summary import DriftSummary
from fraud_detection.drift.summary import MergedDriftSummary

NOT_YET = (
    "No drift computation yet: each worker needs FRAUD_DRIFT_MIN_ROWS scored rows, then "
    "FRAUD_DRIFT_EVERY_ROWS new rows or FRAUD_DRIFT_EVERY_SECONDS"
)


OFF = "Drift detection is off (FRAUD_DRIFT_DETECTION=0)"

if TYPE_CHECKING:
    from fraud_detection.drift.detector import DriftDetector


class ReportCache:
    """The latest report per worker, keyed by the window file it was built from."""

    def __init__(self, results: ResultsDirectory, detector: Callable[[], DriftDetector]) -> None:
        self.results = results
        self.make_detector = detector
        self._detector: DriftDetector | None = None
        self._reports: dict[int, tuple[tuple[int, int], str]] = {}
        self._lock = asyncio.Lock()  # one build at a time: each takes a core for seconds

    async def html(self, summary: DriftSummary) -> str:
        worker = summary.worker
        stat = self.results.window_path(worker).stat()
        key = (stat.st_mtime_ns, stat.st_size)
        async with self._lock:
            cached = self._reports.get(worker)
            if cached is None or cached[0] != key:
                html = await asyncio.to_thread(self._build, summary)
                self._reports[worker] = (key, html)
            return self._reports[worker][1]

    def _build(self, summary: DriftSummary) -> str:
        if self._detector is None:
            self._detector = self.make_detector()  # loads Evidently on the first report
        features, scores = self.results.read_window(summary.worker)
        run = self._detector.run(
            features, scores, worker=summary.worker, rows_seen=summary.rows_seen
        )
        return run.html()


def drift_app(
    results: ResultsDirectory,
    workers: int,
    model: str,
    *,
    detector: Callable[[], DriftDetector],
    enabled: bool = True,
) -> Starlette:
    """The app; `workers` is ``FRAUD_WORKERS`` (files of higher worker indexes are stale),
    `model` the served tag (summaries of another model, left in the folder, are ignored) and
    `detector` builds the `DriftDetector` whose report ``/drift/report`` serves."""
    missing = NOT_YET if enabled else OFF
    reports = ReportCache(results, detector)

    def current() -> list[DriftSummary]:
        if not enabled:
            return []
        return [s for s in results.summaries(max_worker=workers) if s.model == model]

    async def summary(request: Request) -> Response:
        found = current()
        if not found:
            return JSONResponse({"detail": missing}, status_code=404)
        return Response(
            MergedDriftSummary.from_workers(found).model_dump_json(indent=2),
            media_type="application/json",
        )

    async def report(request: Request) -> Response:
        """The Evidently HTML report of one worker's window (``?worker=N``), else the newest."""
        found = current()
        raw = request.query_params.get("worker")
        if raw is not None:
            found = [s for s in found if str(s.worker) == raw]
        if not found:
            return JSONResponse({"detail": missing}, status_code=404)
        newest = max(found, key=lambda s: s.computed_at)
        try:
            html = await reports.html(newest)
        except FileNotFoundError:  # the worker restarted and cleared its files meanwhile
            return JSONResponse({"detail": missing}, status_code=404)
        return HTMLResponse(html)

    return Starlette(
        routes=[
            Route("/summary", summary, methods=["GET"]),
            Route("/report", report, methods=["GET"]),
        ]
    )
