"""TorchServe custom handler: our request model and `OnnxScorer`, no PyTorch model at all.

Packed into the model archive by ``server.py`` with ``peer_settings.json`` beside it, which
names the repo root (for ``benchmarks.peers.common``) and the model-store directory.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any


class FraudHandler:
    """TorchServe calls `initialize` once per worker, then `handle` with each batch."""

    def __init__(self) -> None:
        self.initialized = False

    def initialize(self, context: Any) -> None:
        here = Path(context.system_properties["model_dir"])
        settings = json.loads((here / "peer_settings.json").read_text())
        sys.path.insert(0, settings["repo_root"])
        from benchmarks.peers import common

        self.common = common
        self.scorer = common.Scorer(settings["model_dir"])
        self.initialized = True

    def handle(self, data: list[dict[str, Any]], context: Any) -> list[Any]:
        """One answer per request of the batch (batch size 1 here): predictions, or a 422."""
        answers: list[Any] = []
        for i, item in enumerate(data):
            body = item.get("body", item.get("data"))
            try:
                # TorchServe has already parsed application/json bodies; others arrive as bytes.
                if isinstance(body, bytes | bytearray | str):
                    request = self.common.REQUEST.validate_json(body)
                else:
                    request = self.common.REQUEST.validate_python(body)
            except self.common.ValidationError as e:
                context.set_response_status(code=422, phrase="Unprocessable Entity", idx=i)
                answers.append({"detail": self.common.validation_detail(e)[:5]})
                continue
            answers.append(self.scorer.predict_rows(self.scorer.features(request)))
        return answers
