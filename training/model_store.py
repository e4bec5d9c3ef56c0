"""Save a trained model into the BentoML model store: ONNX graph + JSON card + CSV reference."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import bentoml
import pandas as pd

from fraud_detection.catalog import CARD_FILE
from fraud_detection.catalog import ONNX_FILE
from fraud_detection.catalog import REFERENCE_FILE
from fraud_detection.catalog import STORE_NAMES
from fraud_detection.model_card import ModelCard

logger = logging.getLogger(__name__)


def save_to_store(card: ModelCard, onnx_path: Path, reference: pd.DataFrame) -> bentoml.Model:
    """Create ``fraud-<kind>:<new version>``; headline metrics also go to the store's metadata."""
    with bentoml.models.create(
        STORE_NAMES[card.kind],
        labels={"kind": card.kind, "framework": "onnx", "data": card.data_source},
        metadata={
            "threshold": card.threshold.value,
            "threshold_rule": card.threshold.rule,
            "schema_fingerprint": card.schema_fingerprint,
            "data_fingerprint": card.data_fingerprint,
            **{f"test_{k}": v for k, v in card.metrics.items()},
        },
    ) as model:
        target = Path(model.path)
        shutil.copyfile(onnx_path, target / ONNX_FILE)
        card.to_json_file(target / CARD_FILE)
        reference.to_csv(target / REFERENCE_FILE, index=False)
    logger.info("Saved %s to the BentoML model store", model.tag)
    return model
