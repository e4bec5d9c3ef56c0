"""`ShapExplainer`: why the served model gave a transaction its score, feature by feature.

Attributions are Shapley values of the model's calibrated logit, ``log(p / (1 - p))``, computed
by shap's `PermutationExplainer` over the model's own ONNX session: each coalition of
features keeps the transaction's values and takes the others from background rows (shap's
`Independent` masker over rows sampled from the model's stored reference). One antithetic
permutation (forward and backward) gives ``2 * 30 + 1 = 61`` coalitions, each evaluated on
every background row in one batched session call, so a row costs
``permutations * 61 * background_rows`` model evaluations. The attributions add up exactly:
``base_value + sum(values) == logit`` (the permutation's steps telescope), where
``base_value`` is the mean logit over the background rows.

shap (and numba under it) is imported when the first explainer is made, not when the service
starts, so a service nobody asks for explanations pays nothing for them.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from fraud_detection.catalog import REFERENCE_FILE
from fraud_detection.schema import FEATURE_NAMES
from fraud_detection.schema import N_FEATURES
from fraud_detection.scorer import OnnxScorer


class ExplanationsUnavailable(RuntimeError):
    """Explanations cannot be served: shap is not installed (a lean image: HTTP 404), or the
    stored model predates the graph's logit output (409). A 4xx, as BentoML hides the text
    of 5xx answers."""

    def __init__(self, message: str, http_status: int = 409) -> None:
        super().__init__(message)
        self.http_status = http_status


@dataclass(frozen=True)
class ExplainConfig:
    """How explanations are estimated (``FRAUD_EXPLAIN_*`` settings)."""

    background_rows: int = 32  # reference rows each coalition is averaged over
    permutations: int = 1  # antithetic permutations per row (61 coalitions each)
    seed: int = 0  # fixes the background sample and the permutations
    top_reasons: int = 5  # reasons listed per transaction, largest |contribution| first

    def __post_init__(self) -> None:
        for name in ("background_rows", "permutations", "top_reasons"):
            if getattr(self, name) < 1:
                raise ValueError(
                    f"FRAUD_EXPLAIN_{name.upper()} must be >= 1, got {getattr(self, name)}"
                )

    @property
    def coalitions(self) -> int:
        """Coalitions shap evaluates per row: ``permutations * (2 * 30 + 1)``."""
        return self.permutations * (2 * N_FEATURES + 1)


@dataclass(frozen=True)
class Explanations:
    """Scores and attributions of `n` transactions (arrays in request order)."""

    probabilities: np.ndarray  # (n,) the served fraud probability
    logits: np.ndarray  # (n,) its calibrated logit
    base_values: np.ndarray  # (n,) mean logit over the background rows
    values: np.ndarray  # (n, 30) one Shapley value per feature, schema order
    model_evaluations: int  # rows the ONNX session scored to explain them

    @property
    def additivity_error(self) -> float:
        """Largest ``|base_value + sum(values) - logit|`` over the rows."""
        return float(np.max(np.abs(self.base_values + self.values.sum(axis=1) - self.logits)))


class ShapExplainer:
    """Explains scores of one model with shap's permutation estimator over its ONNX session.

    Every row is explained with the same seeded permutations, so a transaction gets the same
    attributions alone or within a file. Calls are serialised: shap draws permutations from
    numpy's global generator, whose state is put back afterwards.
    """

    def __init__(
        self,
        scorer: OnnxScorer,
        background: np.ndarray,
        typical_values: np.ndarray,
        config: ExplainConfig = ExplainConfig(),
    ) -> None:
        try:
            import shap  # numba and llvmlite: loaded only by a service that explains
        except ImportError as e:
            raise ExplanationsUnavailable(
                f"explanations need the shap package, which this installation lacks ({e}); "
                "images built with `make container EXPLANATIONS=0` leave it out",
                http_status=404,
            ) from e
        if scorer.card.onnx_logit_output is None:
            raise ExplanationsUnavailable(
                f"the served {scorer.card.kind} model was exported without its logit output; "
                "retrain it (make models) to explain its scores"
            )
        if background.shape[1:] != (N_FEATURES,) or len(background) == 0:
            raise ValueError(f"background must be (k, {N_FEATURES}), got {background.shape}")
        self.scorer = scorer
        self.config = config
        self.background = np.asarray(background, dtype=np.float64)
        self.typical_values = np.asarray(typical_values, dtype=np.float64)
        self._lock = threading.Lock()
        self._evaluations = 0
        with _global_numpy_seed(config.seed):  # shap seeds the global generator here too
            self._explainer = shap.explainers.PermutationExplainer(
                self._logit,
                shap.maskers.Independent(self.background, max_samples=len(self.background)),
                seed=config.seed,
            )

    @classmethod
    def for_model(
        cls, scorer: OnnxScorer, model_dir: str | Path, config: ExplainConfig = ExplainConfig()
    ) -> ShapExplainer:
        """An explainer whose background is sampled from the model's stored reference rows."""
        path = Path(model_dir) / REFERENCE_FILE
        try:
            reference = pd.read_csv(path, usecols=list(FEATURE_NAMES))
        except (FileNotFoundError, ValueError) as e:
            raise ValueError(f"{path} cannot serve as explanation background: {e}") from e
        rows = reference[list(FEATURE_NAMES)].to_numpy(dtype=np.float64)
        rng = np.random.default_rng(config.seed)
        pick = rng.choice(len(rows), size=min(config.background_rows, len(rows)), replace=False)
        return cls(scorer, rows[np.sort(pick)], np.median(rows, axis=0), config)

    @property
    def evaluations_per_row(self) -> int:
        """Model evaluations per explained row: coalitions times background rows."""
        return self.config.coalitions * len(self.background)

    def _logit(self, features: np.ndarray) -> np.ndarray:
        self._evaluations += len(features)
        return self.scorer.predict_with_logits(features)[1].astype(np.float64)

    def explain(self, features: np.ndarray) -> Explanations:
        """Probability, logit, base value and per-feature Shapley values of each row."""
        if features.ndim != 2 or features.shape[1] != N_FEATURES or len(features) == 0:
            raise ValueError(f"expected shape (n >= 1, {N_FEATURES}), got {features.shape}")
        rows = np.asarray(features, dtype=np.float32).astype(np.float64)
        values = np.empty_like(rows)
        base_values = np.empty(len(rows))
        with self._lock, _global_numpy_seed(self.config.seed):
            self._evaluations = 0
            for i in range(len(rows)):
                np.random.seed(self.config.seed)  # the same permutations for every row
                # shap's per-row estimator, without the Explanation object its __call__
                # wraps around every call (a quarter of the cost of a row, measured)
                result = self._explainer.explain_row(
                    rows[i],
                    max_evals=self.config.coalitions,
                    main_effects=False,
                    error_bounds=False,
                    batch_size="auto",
                    outputs=None,
                    silent=True,
                )
                values[i] = result["values"]
                base_values[i] = result["expected_values"]
            evaluations = self._evaluations
        probabilities, logits = self.scorer.predict_with_logits(rows)
        return Explanations(
            probabilities=probabilities,
            logits=logits.astype(np.float64),
            base_values=base_values,
            values=values,
            model_evaluations=evaluations,
        )

    def records(self, features: np.ndarray, explanations: Explanations) -> list[dict[str, Any]]:
        """Per row: logit, base value, Shapley value per feature and the top reasons."""
        return [
            {
                "logit": float(explanations.logits[i]),
                "base_value": float(explanations.base_values[i]),
                "shap_values": dict(
                    zip(FEATURE_NAMES, explanations.values[i].tolist(), strict=True)
                ),
                "reasons": self.reasons(features[i], explanations.values[i]),
            }
            for i in range(len(features))
        ]

    def reasons(self, features: np.ndarray, values: np.ndarray) -> list[dict[str, Any]]:
        """The `top_reasons` largest attributions of one row, as data an analyst can read."""
        order = np.argsort(-np.abs(values), kind="stable")[: self.config.top_reasons]
        return [
            {
                "feature": FEATURE_NAMES[j],
                "value": float(features[j]),
                "typical_value": float(self.typical_values[j]),
                "contribution": float(values[j]),
            }
            for j in order
        ]


@contextlib.contextmanager
def _global_numpy_seed(seed: int) -> Iterator[None]:
    """Seed numpy's global generator for a block, then restore its previous state."""
    saved = np.random.get_state()
    np.random.seed(seed)
    try:
        yield
    finally:
        np.random.set_state(saved)


class ModelExplainers:
    """The explainers of the models a worker serves, by tag, each made at its first use.

    `records` answers what ``POST /explain`` answers for the champion, for any served model:
    the review queue explains a kept row with the model that scored it.
    """

    def __init__(
        self, models: dict[str, tuple[OnnxScorer, Path]], config: ExplainConfig = ExplainConfig()
    ) -> None:
        self.models = models  # tag -> (scorer, stored model folder)
        self.config = config
        self._explainers: dict[str, ShapExplainer] = {}
        self._lock = threading.Lock()

    def explainer(self, tag: str) -> ShapExplainer:
        """The explainer of model `tag` (KeyError: not served here; `ExplanationsUnavailable`:
        it cannot be explained)."""
        scorer, folder = self.models[tag]
        with self._lock:  # one explainer per model, even when two requests ask at once
            if tag not in self._explainers:
                self._explainers[tag] = ShapExplainer.for_model(scorer, folder, self.config)
            return self._explainers[tag]

    def records(
        self, tag: str, features: np.ndarray, transaction_ids: list[str]
    ) -> list[dict[str, Any]]:
        """Per row, `fraud_detection.api_models.Explanation`'s fields: the prediction (id,
        probability, decision at the model's threshold, model) and its attributions."""
        explainer = self.explainer(tag)
        explanations = explainer.explain(features)
        name, _, version = tag.partition(":")
        threshold = self.models[tag][0].threshold
        p = explanations.probabilities
        predictions = [
            {
                "transaction_id": tid,
                "fraud_probability": probability,
                "is_fraud": decided,
                "model": name,
                "model_version": version,
            }
            for tid, probability, decided in zip(
                transaction_ids, p.tolist(), (p >= threshold).tolist(), strict=True
            )
        ]
        return [
            {**prediction, **attribution}
            for prediction, attribution in zip(
                predictions, explainer.records(features, explanations), strict=True
            )
        ]
