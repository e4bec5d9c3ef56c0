"""`ModelCard`: the JSON metadata stored beside each ONNX graph in the BentoML model store."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from typing import Literal

import numpy as np
from pydantic import BaseModel
from pydantic import ConfigDict
from pydantic import Field
from pydantic import ValidationError

from fraud_detection.catalog import ModelKind
from fraud_detection.schema import check_feature_names

ThresholdRule = Literal["best_f1", "recall_at_fpr", "min_expected_cost"]


class Preprocessing(BaseModel):
    """Feature scaling fitted on the training split; it is also baked into the ONNX graph."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    log1p_features: list[str] = Field(description="Features passed through log1p first.")
    mean: list[float] = Field(description="Per-feature mean, in schema order.")
    scale: list[float] = Field(description="Per-feature standard deviation, in schema order.")


class Threshold(BaseModel):
    """Decision threshold on the fraud probability, chosen on the validation split."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    rule: ThresholdRule
    value: float = Field(ge=0.0, le=1.0)
    target_fpr: float | None = None
    missed_fraud_cost: Literal["amount"] | float | None = Field(
        None, description="min_expected_cost: a missed fraud costs its Amount, or this constant."
    )
    false_alarm_cost: float | None = Field(
        None, description="min_expected_cost: cost of reviewing one genuine transaction."
    )
    fraud_rate: float | None = Field(
        None,
        description="min_expected_cost: fraud prevalence the costs were weighted to "
        "(None: the validation data's own).",
    )
    expected_cost_per_transaction: float | None = Field(
        None, description="min_expected_cost: the minimum reached on validation data."
    )


class Calibration(BaseModel):
    """Platt scaling of the network's logit, fitted on validation data; inside the ONNX graph."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    method: Literal["platt", "none"]
    slope: float = 1.0
    intercept: float = 0.0

    def apply(self, logits: np.ndarray) -> np.ndarray:
        """``slope * logits + intercept`` (identity for ``none``), in float64."""
        return self.slope * np.asarray(logits, dtype=np.float64) + self.intercept


class TreeMemberInfo(BaseModel):
    """Gradient-boosted trees cross-fitted on the networks' folds, blended in the graph.

    The fold boosters give the out-of-fold scores the blend is fitted on; the served booster
    is refitted on every labelled row. The served logit is
    ``network_weight * network_logit + tree_weight * tree_logit + bias``: each branch
    Platt-scaled on the out-of-fold rows, averaged, then Platt-scaled again.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    library: Literal["lightgbm"]
    members: int
    member_best_iterations: list[int]
    member_validation_average_precision: list[float] = Field(
        description="Each booster's average precision on the fold it left out."
    )
    served_rounds: int = Field(
        description="Rounds of the served booster, refitted on every labelled row: the fold "
        "boosters' mean best iteration."
    )
    network_weight: float
    tree_weight: float
    bias: float


class EnsembleInfo(BaseModel):
    """A cross-fitted ensemble: one member per fold, their logits averaged inside the graph."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    members: int
    folds: int
    fold_seed: int
    member_network: dict[str, Any] = Field(
        default_factory=dict,
        description="What members change of the model's network config (model.member_network).",
    )
    member_best_epochs: list[int]
    member_validation_average_precision: list[float] = Field(
        description="Each member's best average precision on the fold it left out."
    )
    trees: TreeMemberInfo | None = Field(
        None,
        description="The gradient-boosted member (ensemble.trees.enabled); None: networks only.",
    )


class ModelCard(BaseModel):
    """Everything the service and the drift monitor need to know about a stored model."""

    model_config = ConfigDict(extra="forbid", frozen=True, protected_namespaces=())

    kind: ModelKind
    feature_names: list[str]
    schema_fingerprint: str
    preprocessing: Preprocessing
    threshold: Threshold
    calibration: Calibration = Calibration(method="none")
    metrics: dict[str, float] = Field(description="Metrics on the rows `metrics_source` names.")
    metrics_source: Literal["test", "out_of_fold", "validation"] = Field(
        "test",
        description="test: a held-out test split; out_of_fold: each labelled row scored by "
        "the ensemble member that did not train on it; validation: the validation split.",
    )
    validation_metrics: dict[str, float] = Field(
        description="On the rows calibration and the threshold were fitted on."
    )
    confusion_matrix: list[list[int]] = Field(
        description="[[tn, fp], [fn, tp]] on the rows `metrics_source` names."
    )
    ensemble: EnsembleInfo | None = Field(None, description="None: a single network.")
    onnx_input: str
    onnx_output: str
    onnx_logit_output: str | None = Field(
        None, description="Graph output of the calibrated logit (explanations); None: older model"
    )
    onnx_parity_max_abs_diff: float
    onnx_precision: Literal["fp32", "fp16"] = Field(
        "fp32", description="fp16: float16 compute after the first LayerNorm (GPU serving)"
    )
    data_source: str
    data_fingerprint: str
    n_train_rows: int
    training_config: dict[str, Any]
    training_seconds: float

    def to_json_file(self, path: Path) -> None:
        """Write the card as indented JSON."""
        path.write_text(self.model_dump_json(indent=2))

    @classmethod
    def from_json_file(cls, path: Path) -> ModelCard:
        """Read and validate a card; the error names the file and what is wrong with it."""
        try:
            card = cls.model_validate_json(path.read_text())
        except FileNotFoundError as e:
            raise ValueError(
                f"Model card {path} is missing; retrain the model (make models)"
            ) from e
        except (ValidationError, json.JSONDecodeError) as e:
            raise ValueError(f"Model card {path} is invalid: {e}") from e
        check_feature_names(card.feature_names, source=str(path))
        return card
