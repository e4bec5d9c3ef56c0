"""Serving-side building blocks of the fraud bundle: schema, model card, scorer, drift hook.

Nothing here imports torch, Hydra or W&B, so the service stays light.
"""

from fraud_detection.catalog import STORE_NAMES
from fraud_detection.catalog import store_tag
from fraud_detection.model_card import ModelCard
from fraud_detection.schema import FEATURE_NAMES
from fraud_detection.schema import TARGET_NAME

__all__ = ["FEATURE_NAMES", "STORE_NAMES", "TARGET_NAME", "ModelCard", "store_tag"]
