"""The LightGBM member: cross-fitted on the networks' folds, blended inside the one ONNX graph."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from sklearn.metrics import average_precision_score

from fraud_detection.schema import FEATURE_NAMES
from tests.test_training import compose_config
from training.data import generate_transactions
from training.data.split import Split
from training.ensemble import FoldAssignment
from training.evaluation import choose_threshold
from training.export import check_parity
from training.export import export_onnx
from training.export import torch_logits
from training.pipeline import FittedModel
from training.pipeline import fit_model
from training.tree_member import TreeBlend


@pytest.fixture(scope="module")
def labelled() -> Split:
    return Split.from_frame(generate_transactions(6000, fraud_rate=0.01, seed=7))


@pytest.fixture(scope="module")
def fitted(labelled: Split) -> FittedModel:
    cfg = compose_config("ensemble.folds=3", "model.max_epochs=2", "trainer.device=cpu")
    assert cfg.ensemble.trees.enabled, "the tree member is on by default"
    return fit_model(cfg, labelled.features, labelled.labels)


def tree_depths(booster) -> list[int]:
    """Each tree's depth (a lone leaf: 0) from LightGBM's own dump."""

    def depth(node: dict) -> int:
        if "leaf_index" in node or "left_child" not in node:
            return 0
        return 1 + max(depth(node["left_child"]), depth(node["right_child"]))

    return [depth(t["tree_structure"]) for t in booster.booster_.dump_model()["tree_info"]]


def test_blend_is_the_recalibrated_mean_of_calibrated_logits() -> None:
    rng = np.random.default_rng(0)
    labels = (rng.random(4000) < 0.05).astype(np.int64)
    network = 3.0 * labels + rng.normal(0, 1.5, 4000) + 2.0  # over-confident, shifted
    trees = 0.5 * labels + rng.normal(0, 0.4, 4000) - 4.0  # timid
    blend = TreeBlend.fit(network, trees, labels)

    def platt(c, x):
        return c.slope * x + c.intercept

    expected = platt(
        blend.final_platt,
        0.5 * (platt(blend.network_platt, network) + platt(blend.tree_platt, trees)),
    )
    np.testing.assert_allclose(blend.logits(network, trees), expected, rtol=1e-12, atol=1e-12)
    # Each branch is rescaled before averaging: the timid branch gets the larger weight.
    assert blend.tree_weight > blend.network_weight > 0
    # Calibrated: the blend's mean probability matches the fraud rate it was fitted on.
    probabilities = 1 / (1 + np.exp(-blend.logits(network, trees)))
    assert probabilities.mean() == pytest.approx(labels.mean(), rel=0.02)


def test_each_fold_booster_scores_the_fold_it_left_out(
    labelled: Split, fitted: FittedModel
) -> None:
    trees = fitted.trees
    assert trees is not None and len(trees.fold_boosters) == 3
    folds = FoldAssignment.stratified(labelled.labels, 3, 0)
    for k, booster in enumerate(trees.fold_boosters):
        held = folds.fold_of_row == k
        raw = booster.predict(labelled.features[held], raw_score=True)
        np.testing.assert_allclose(trees.out_of_fold_logits[held], raw, rtol=1e-12)
        # early stopping picked an iteration below the cap
        assert 1 <= trees.best_iterations[k] < 2000
        assert booster.booster_.num_trees() <= trees.best_iterations[k] + 50  # stopped early
    assert average_precision_score(labelled.labels, trees.out_of_fold_logits) > 0.5
    info = fitted.ensemble.trees if fitted.ensemble else None
    assert info is not None and info.members == 3 and info.library == "lightgbm"
    assert info.member_best_iterations == trees.best_iterations
    # The served booster is refitted on every row for the folds' mean number of rounds.
    assert info.served_rounds == round(np.mean(trees.best_iterations))
    assert trees.served.booster_.num_trees() == info.served_rounds
    # ensemble.trees.max_depth (4 by default) bounds every tree, served and fold boosters.
    for booster in [trees.served, *trees.fold_boosters]:
        depths = tree_depths(booster)
        assert max(depths) == 4 and len(depths) == booster.booster_.num_trees()
    assert not np.allclose(trees.logit(labelled.features[:100]), trees.out_of_fold_logits[:100])


def test_served_graph_holds_networks_and_trees_with_parity(
    labelled: Split, fitted: FittedModel, tmp_path: Path
) -> None:
    path = tmp_path / "blend.onnx"
    fitted.export(path, labelled.features)
    graph = onnx.load(str(path)).graph
    ops = [n.op_type for n in graph.node]
    assert ops.count("TreeEnsembleRegressor") == 1 and "TreeEnsembleClassifier" not in ops
    assert check_parity(fitted.probabilities, path, labelled.features) < 1e-4
    # Extreme raw values too (Time up to 172,792; the API allows 1e9).
    rows = np.r_[labelled.features[:200], labelled.features[:50] * 40].astype(np.float32)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    probabilities, logits = session.run(None, {"features": rows})
    assert probabilities.shape == (len(rows),) and logits.shape == (len(rows),)
    np.testing.assert_allclose(logits, fitted.logits(rows), atol=1e-4)
    expected = 1 / (1 + np.exp(-logits.astype(np.float64)))
    np.testing.assert_allclose(probabilities, expected, rtol=0, atol=1e-6)
    # The trees change the served score: the network's share alone is a different model.
    network_only = tmp_path / "network.onnx"
    export_onnx(fitted.network, network_only, labelled.features)
    (alone,) = ort.InferenceSession(str(network_only)).run(["fraud_logit"], {"features": rows})
    np.testing.assert_allclose(alone, torch_logits(fitted.network, rows), atol=1e-4)
    assert np.max(np.abs(alone - logits)) > 0.1
    np.testing.assert_allclose(
        logits - alone, fitted.tree_weight * fitted.trees.logit(rows), atol=1e-3
    )


def test_threshold_and_calibration_use_the_blended_out_of_fold_scores(
    labelled: Split, fitted: FittedModel
) -> None:
    trees = fitted.trees
    assert trees is not None
    np.testing.assert_array_equal(fitted.validation_labels, labelled.labels)
    # Out of fold, blended: not the served model's in-sample scores.
    in_sample = fitted.probabilities(labelled.features)
    assert not np.allclose(fitted.validation_scores, in_sample, atol=1e-3)
    rate = fitted.validation_scores.astype(np.float64).mean()
    assert rate == pytest.approx(labelled.labels.mean(), rel=0.05)
    # The card's threshold is the configured rule applied to those blended scores.
    cfg = compose_config("ensemble.folds=3", "model.max_epochs=2", "trainer.device=cpu")
    missed = cfg.threshold.missed_fraud_cost
    expected = choose_threshold(
        labelled.labels,
        fitted.validation_scores,
        cfg.threshold.rule,
        cfg.threshold.target_fpr,
        amounts=labelled.features[:, FEATURE_NAMES.index("Amount")],
        missed_fraud_cost=missed if missed == "amount" else float(missed),
        false_alarm_cost=cfg.threshold.false_alarm_cost,
        fraud_rate=cfg.threshold.fraud_rate,
    )
    assert fitted.threshold == expected


def test_float16_export_refuses_the_tree_member(tmp_path: Path) -> None:
    from training.pipeline import train

    cfg = compose_config("model=distilbert", "export.fp16=true")
    with pytest.raises(ValueError, match=r"ensemble\.trees\.enabled=false"):
        train(cfg, wandb_mode="disabled", output_dir=tmp_path)
