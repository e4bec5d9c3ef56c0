"""``GET /model/info``: which model is served and how it decides (threshold rule and value).

The decision threshold is part of what the model means to a fraud team, so the service says
which rule chose it, with what costs, and the metrics it was chosen against.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from fraud_detection.catalog import CARD_FILE
from fraud_detection.model_card import ModelCard


def describe_model(tag: str, card: ModelCard) -> dict[str, Any]:
    """The public facts of a stored model: no training config or data paths."""
    return {
        "model": tag,
        "kind": card.kind,
        "threshold": card.threshold.model_dump(exclude_none=True),
        "calibration": card.calibration.model_dump(),
        "onnx_precision": card.onnx_precision,
        "metrics": card.metrics,
        "metrics_source": card.metrics_source,
        "validation_metrics": card.validation_metrics,
        "ensemble": None if card.ensemble is None else card.ensemble.model_dump(),
        "data_fingerprint": card.data_fingerprint,
        "feature_names": card.feature_names,
    }


def model_info_app(tag: str, model_dir: str | Path) -> Starlette:
    """A Starlette app answering ``GET /info`` with `describe_model` of the model in `model_dir`."""
    body = describe_model(tag, ModelCard.from_json_file(Path(model_dir) / CARD_FILE))

    async def info(request: Request) -> JSONResponse:
        return JSONResponse(body)

    return Starlette(routes=[Route("/info", info, methods=["GET"])])
