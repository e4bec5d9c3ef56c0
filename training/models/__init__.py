"""The two network families; Hydra picks one with ``model=mlp`` or ``model=distilbert``."""

from training.models.distilbert import FraudDistilBert
from training.models.mlp import FraudMLP

__all__ = ["FraudDistilBert", "FraudMLP"]
