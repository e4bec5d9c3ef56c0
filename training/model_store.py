"""Save a trained model into the BentoML model store: ONNX graph, JSON card, CSV references."""

from __future__ import annotations

import logging
import shutil
import tempfile
from pathlib import Path

import bentoml
import pandas as pd

from fraud_detection.catalog import CARD_FILE
from fraud_detection.catalog import ONNX_FILE
from fraud_detection.catalog import REFERENCE_FILE
from fraud_detection.catalog import STORE_NAMES
from fraud_detection.catalog import VALIDATION_SCORES_FILE
from fraud_detection.model_card import ModelCard
from fraud_detection.model_files import CHECKSUMS_KEY
from fraud_detection.model_files import MODEL_FILES
from fraud_detection.model_files import file_checksums

logger = logging.getLogger(__name__)


def save_to_store(
    card: ModelCard, onnx_path: Path, reference: pd.DataFrame, validation_scores: pd.DataFrame
) -> bentoml.Model:
    """Create ``fraud-<kind>:<new version>``; headline metrics also go to the store's metadata.

    The files are written to a staging folder first so that their SHA-256 checksums can be
    recorded in the model's metadata; the service verifies them at start-up.
    """
    with tempfile.TemporaryDirectory() as staging:
        staged = Path(staging)
        shutil.copyfile(onnx_path, staged / ONNX_FILE)
        card.to_json_file(staged / CARD_FILE)
        reference.to_csv(staged / REFERENCE_FILE, index=False)
        validation_scores.to_csv(staged / VALIDATION_SCORES_FILE, index=False)
        checksums = file_checksums(staged)
        with bentoml.models.create(
            STORE_NAMES[card.kind],
            labels={"kind": card.kind, "framework": "onnx", "data": card.data_source},
            metadata={
                "threshold": card.threshold.value,
                "threshold_rule": card.threshold.rule,
                "schema_fingerprint": card.schema_fingerprint,
                "data_fingerprint": card.data_fingerprint,
                CHECKSUMS_KEY: checksums,
                **{f"test_{k}": v for k, v in card.metrics.items()},
            },
        ) as model:
            for name in MODEL_FILES:
                shutil.copyfile(staged / name, Path(model.path) / name)
    logger.info("Saved %s to the BentoML model store", model.tag)
    return model
