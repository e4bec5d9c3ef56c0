"""A fraud model from the BentoML store, found by tag and its files checked before use.

The service resolves its champion and challenger here at start-up, and a Spark backfill its
models on the driver: both refuse a missing model, naming the command that creates it.
"""

from __future__ import annotations

import os

import bentoml

from fraud_detection.catalog import resolve_model
from fraud_detection.catalog import training_command
from fraud_detection.model_files import CHECKSUMS_KEY
from fraud_detection.model_files import verify_checksums


def stored_model(tag: str) -> bentoml.models.BentoModel:
    """The model `tag` from the store, its files checked (at start-up, not at a request)."""
    model = bentoml.models.BentoModel(tag)
    kind = resolve_model(tag)[0]
    if model.stored is None:
        raise bentoml.exceptions.NotFound(
            f"Model {tag} is not in the BentoML model store under "
            f"BENTOML_HOME={os.environ.get('BENTOML_HOME', '~/bentoml')}. "
            f"Create it with: {training_command(kind)}"
        )
    verify_checksums(
        model.stored.path,
        model.stored.info.metadata.get(CHECKSUMS_KEY),
        f"{model.stored.tag} (retrain: {training_command(kind)})",
    )
    return model
