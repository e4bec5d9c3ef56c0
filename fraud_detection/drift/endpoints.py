"""``GET /drift/summary`` and ``GET /drift/report``: the latest drift results over HTTP.

A small Starlette app the service mounts at ``/drift``. It reads what the workers published
in the `ResultsDirectory`, so any worker answers for all of them.
"""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import FileResponse
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


def drift_app(
    results: ResultsDirectory, workers: int, model: str, *, enabled: bool = True
) -> Starlette:
    """The app; `workers` is ``FRAUD_WORKERS`` (files of higher worker indexes are stale) and
    `model` the served tag (summaries of another model, left in the folder, are ignored)."""
    missing = NOT_YET if enabled else OFF

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
        """The Evidently HTML report of one worker (``?worker=N``), else the newest one."""
        found = current()
        raw = request.query_params.get("worker")
        if raw is not None:
            found = [s for s in found if str(s.worker) == raw]
        if not found:
            return JSONResponse({"detail": missing}, status_code=404)
        newest = max(found, key=lambda s: s.computed_at)
        return FileResponse(results.report_path(newest.worker), media_type="text/html")

    return Starlette(
        routes=[
            Route("/summary", summary, methods=["GET"]),
            Route("/report", report, methods=["GET"]),
        ]
    )
