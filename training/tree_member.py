"""The optional gradient-boosted member: LightGBM cross-fitted on the networks' folds.

Each fold's booster trains on the other folds and early-stops (average precision) on the fold
it left out, exactly as the network members do, so every labelled row has an out-of-fold tree
logit next to its out-of-fold network logit. The served booster is then refitted on all
labelled rows for the fold boosters' mean number of rounds: one booster in the graph instead
of K keeps the trees' share of serving small (ONNX Runtime walks every tree for every row).

The two logits are blended by `TreeBlend`: each is Platt-scaled on the out-of-fold rows, the
two calibrated logits are averaged, and a final Platt scaling maps the average to
frequencies. Every step is affine, so the served logit is
``network_weight * network_logit + tree_weight * tree_logit + bias``; `add_tree_member` puts
the booster into the network's ONNX graph, and serving stays one session call.

LightGBM and onnxmltools are training dependencies only: the served graph needs nothing
beyond ONNX Runtime's own ``ai.onnx.ml`` operators.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from sklearn.metrics import average_precision_score

from fraud_detection.model_card import Calibration
from fraud_detection.model_card import TreeMemberInfo
from training.calibration import fit_platt_scaling
from training.config import TreeConfig
from training.ensemble import FoldAssignment


@dataclass(frozen=True)
class CrossFittedTrees:
    """The served booster, and every labelled row's out-of-fold raw score (log-odds) from the
    fold boosters that left it out."""

    served: Any  # lightgbm.LGBMClassifier, refitted on every labelled row
    fold_boosters: list[Any]
    out_of_fold_logits: np.ndarray
    best_iterations: list[int]
    member_average_precision: list[float]

    def logit(self, features: np.ndarray) -> np.ndarray:
        """The served booster's raw score, as the ONNX graph computes it."""
        return self.served.predict(features, raw_score=True)


def cross_fit_trees(
    features: np.ndarray, labels: np.ndarray, folds: FoldAssignment, params: TreeConfig
) -> CrossFittedTrees:
    """Train one LightGBM booster per fold, early-stopped on the fold it leaves out, then the
    served booster on every row for their mean number of rounds."""
    import lightgbm

    boosters, iterations, precisions = [], [], []
    out_of_fold = np.full(len(labels), np.nan, dtype=np.float64)
    for fold in range(folds.n_folds):
        parts = folds.split(features, labels, fold)
        booster = _booster(params, params.n_estimators, params.seed + fold)
        booster.fit(
            parts.train.features,
            parts.train.labels,
            eval_X=parts.validation.features,
            eval_y=parts.validation.labels,
            callbacks=[lightgbm.early_stopping(params.early_stopping_rounds, verbose=False)],
        )
        held = folds.fold_of_row == fold
        out_of_fold[held] = booster.predict(parts.validation.features, raw_score=True)
        boosters.append(booster)
        iterations.append(int(booster.best_iteration_ or params.n_estimators))
        precisions.append(
            float(average_precision_score(parts.validation.labels, out_of_fold[held]))
        )
    served = _booster(params, max(1, round(float(np.mean(iterations)))), params.seed)
    served.fit(features, labels)
    return CrossFittedTrees(served, boosters, out_of_fold, iterations, precisions)


def _booster(params: TreeConfig, rounds: int, seed: int) -> Any:
    import lightgbm

    return lightgbm.LGBMClassifier(
        n_estimators=rounds,
        learning_rate=params.learning_rate,
        num_leaves=params.num_leaves,
        max_depth=params.max_depth,
        min_child_samples=params.min_child_samples,
        subsample=params.subsample,
        subsample_freq=1,
        colsample_bytree=params.colsample_bytree,
        reg_lambda=params.reg_lambda,
        metric="average_precision",
        random_state=seed,
        n_jobs=1,  # the folds are small; threads cost more than they save here
        verbose=-1,
    )


@dataclass(frozen=True)
class TreeBlend:
    """The served logit as an affine function of the network's and the trees' logits."""

    network_platt: Calibration
    tree_platt: Calibration
    final_platt: Calibration

    @classmethod
    def fit(
        cls, network_logits: np.ndarray, tree_logits: np.ndarray, labels: np.ndarray
    ) -> TreeBlend:
        """Fit all three Platt scalings on out-of-fold logits (the rows no member trained on)."""
        network_platt = fit_platt_scaling(network_logits, labels)
        tree_platt = fit_platt_scaling(tree_logits, labels)
        averaged = 0.5 * (network_platt.apply(network_logits) + tree_platt.apply(tree_logits))
        return cls(network_platt, tree_platt, fit_platt_scaling(averaged, labels))

    @property
    def network_weight(self) -> float:
        return 0.5 * self.final_platt.slope * self.network_platt.slope

    @property
    def tree_weight(self) -> float:
        return 0.5 * self.final_platt.slope * self.tree_platt.slope

    @property
    def bias(self) -> float:
        half_intercepts = 0.5 * (self.network_platt.intercept + self.tree_platt.intercept)
        return self.final_platt.slope * half_intercepts + self.final_platt.intercept

    def logits(self, network_logits: np.ndarray, tree_logits: np.ndarray) -> np.ndarray:
        """The blended, calibrated logit (float64)."""
        return (
            self.network_weight * np.asarray(network_logits, dtype=np.float64)
            + self.tree_weight * np.asarray(tree_logits, dtype=np.float64)
            + self.bias
        )

    def info(self, trees: CrossFittedTrees) -> TreeMemberInfo:
        """What the model card records about the tree member and the blend."""
        return TreeMemberInfo(
            library="lightgbm",
            members=len(trees.fold_boosters),
            member_best_iterations=trees.best_iterations,
            served_rounds=int(trees.served.n_estimators),
            member_validation_average_precision=[
                round(p, 6) for p in trees.member_average_precision
            ],
            network_weight=self.network_weight,
            tree_weight=self.tree_weight,
            bias=self.bias,
        )
