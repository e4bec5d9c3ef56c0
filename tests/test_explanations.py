"""`ShapExplainer` on the models the Hydra app stored: additivity, determinism, shap parity."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from fraud_detection.catalog import REFERENCE_FILE
from fraud_detection.catalog import STORE_NAMES
from fraud_detection.explanations import ExplainConfig
from fraud_detection.explanations import ExplanationsUnavailable
from fraud_detection.explanations import ShapExplainer
from fraud_detection.schema import FEATURE_NAMES
from fraud_detection.scorer import OnnxScorer
from training.data import generate_transactions


def model_dir(home: Path, kind: str) -> Path:
    (version,) = (home / "models" / STORE_NAMES[kind]).glob("*/")
    return version


def rows(n: int, seed: int = 3) -> np.ndarray:
    frame = generate_transactions(max(n, 50), fraud_rate=0.3, seed=seed).head(n)
    return frame[list(FEATURE_NAMES)].to_numpy(dtype=np.float64)


@pytest.fixture(scope="module", params=["mlp", "distilbert"])
def explainer(request: pytest.FixtureRequest, trained_store: Path) -> ShapExplainer:
    path = model_dir(trained_store, request.param)
    return ShapExplainer.for_model(OnnxScorer.from_directory(path), path)


def test_attributions_add_up_to_the_served_logit(explainer: ShapExplainer) -> None:
    features = rows(12)
    result = explainer.explain(features)
    assert result.values.shape == (12, len(FEATURE_NAMES))
    assert result.additivity_error <= 1e-4
    # The logit is the one the served probability is the sigmoid of.
    served = explainer.scorer.predict_proba(features)
    np.testing.assert_allclose(1 / (1 + np.exp(-result.logits)), served, atol=1e-6)
    np.testing.assert_allclose(result.probabilities, served, atol=1e-7)
    # Not a degenerate answer: features do move the logit, and rows differ.
    assert np.abs(result.values).max() > 1e-3
    assert not np.allclose(result.values[0], result.values[1])
    assert result.model_evaluations == 12 * explainer.evaluations_per_row


def test_base_value_is_the_mean_logit_over_the_background(explainer: ShapExplainer) -> None:
    result = explainer.explain(rows(2))
    _, background_logits = explainer.scorer.predict_with_logits(explainer.background)
    np.testing.assert_allclose(result.base_values, background_logits.mean(), atol=1e-5)


def test_deterministic_and_independent_of_the_other_rows(explainer: ShapExplainer) -> None:
    features = rows(6)
    first = explainer.explain(features)
    again = explainer.explain(features)
    np.testing.assert_array_equal(first.values, again.values)
    alone = explainer.explain(features[4:5])
    np.testing.assert_allclose(alone.values[0], first.values[4], atol=1e-9)
    # The global numpy generator is left as it was found.
    np.random.seed(11)
    expected = np.random.random()
    np.random.seed(11)
    explainer.explain(features[:1])
    assert np.random.random() == expected


def test_equals_shaps_own_explainer_call(explainer: ShapExplainer) -> None:
    """The per-row path gives what shap's public ``explainer(X)`` gives with the same seed."""
    import shap

    features = rows(3)
    ours = explainer.explain(features)
    for i in range(len(features)):
        reference = shap.explainers.PermutationExplainer(
            lambda x: explainer.scorer.predict_with_logits(x)[1].astype(np.float64),
            shap.maskers.Independent(explainer.background, max_samples=len(explainer.background)),
            seed=explainer.config.seed,
        )
        expected = reference(features[i : i + 1], max_evals=explainer.config.coalitions)
        np.testing.assert_allclose(ours.values[i], expected.values[0], atol=1e-6)
        assert ours.base_values[i] == pytest.approx(expected.base_values[0], abs=1e-6)


def test_more_permutations_and_background_change_the_estimate_not_additivity(
    trained_store: Path,
) -> None:
    path = model_dir(trained_store, "mlp")
    scorer = OnnxScorer.from_directory(path)
    config = ExplainConfig(background_rows=8, permutations=3, seed=5)
    explainer = ShapExplainer.for_model(scorer, path, config)
    assert len(explainer.background) == 8
    assert explainer.evaluations_per_row == 3 * 61 * 8
    result = explainer.explain(rows(4))
    assert result.additivity_error <= 1e-4
    assert result.model_evaluations == 4 * 3 * 61 * 8


def test_reasons_are_the_largest_contributions_with_typical_values(
    explainer: ShapExplainer, trained_store: Path
) -> None:
    features = rows(3)
    result = explainer.explain(features)
    records = explainer.records(features, result)
    reference = pd.read_csv(model_dir(trained_store, explainer.scorer.card.kind) / REFERENCE_FILE)
    for i, record in enumerate(records):
        reasons = record["reasons"]
        assert len(reasons) == explainer.config.top_reasons
        sizes = [abs(r["contribution"]) for r in reasons]
        assert sizes == sorted(sizes, reverse=True)
        assert sizes[0] == pytest.approx(np.abs(result.values[i]).max())
        for reason in reasons:
            j = FEATURE_NAMES.index(reason["feature"])
            assert reason["value"] == pytest.approx(features[i, j])
            assert reason["contribution"] == record["shap_values"][reason["feature"]]
            assert reason["typical_value"] == pytest.approx(reference[reason["feature"]].median())


def test_a_model_without_a_logit_output_is_refused_by_name(trained_store: Path) -> None:
    path = model_dir(trained_store, "mlp")
    scorer = OnnxScorer.from_directory(path)
    old = OnnxScorer(scorer.session, scorer.card.model_copy(update={"onnx_logit_output": None}))
    with pytest.raises(ExplanationsUnavailable, match="retrain") as refused:
        ShapExplainer.for_model(old, path)
    assert refused.value.http_status == 409


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="FRAUD_EXPLAIN_BACKGROUND_ROWS"):
        ExplainConfig(background_rows=0)
    with pytest.raises(ValueError, match="FRAUD_EXPLAIN_PERMUTATIONS"):
        ExplainConfig(permutations=0)


def test_an_installation_without_shap_is_refused_by_name(
    trained_store: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What `make container EXPLANATIONS=0` images meet: /explain answers 404 with this."""
    path = model_dir(trained_store, "mlp")
    monkeypatch.setitem(sys.modules, "shap", None)  # import shap -> ImportError
    with pytest.raises(ExplanationsUnavailable, match="EXPLANATIONS=0") as refused:
        ShapExplainer.for_model(OnnxScorer.from_directory(path), path)
    assert refused.value.http_status == 404
