"""Cross-fitted ensembles: fold assignment, out-of-fold scores, one ONNX graph, the harness."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch

from benchmarks.quality import frauds_to_resolve
from benchmarks.quality import paired_difference
from benchmarks.quality import pooled_difference
from tests.test_training import compose_config
from training.calibration import PlattScaledNetwork
from training.data import generate_transactions
from training.data.split import Split
from training.ensemble import FoldAssignment
from training.ensemble import MeanLogitEnsemble
from training.ensemble import StackedMLPEnsemble
from training.ensemble import ensemble_network
from training.export import check_parity
from training.export import export_onnx
from training.export import torch_logits
from training.pipeline import fit_model


@pytest.fixture(scope="module")
def labelled() -> Split:
    return Split.from_frame(generate_transactions(6000, fraud_rate=0.01, seed=5))


def test_folds_cover_every_row_once_and_share_the_frauds() -> None:
    labels = np.r_[np.zeros(970, dtype=np.int64), np.ones(31, dtype=np.int64)]
    folds = FoldAssignment.stratified(labels, 5, seed=1)
    assert sorted(np.unique(folds.fold_of_row)) == [0, 1, 2, 3, 4]
    frauds = [int(labels[folds.fold_of_row == k].sum()) for k in range(5)]
    assert max(frauds) - min(frauds) <= 1 and sum(frauds) == 31
    parts = folds.split(np.arange(1001, dtype=np.float32).reshape(-1, 1), labels, 2)
    assert len(parts.train) + len(parts.validation) == 1001
    assert not set(parts.train.features[:, 0]) & set(parts.validation.features[:, 0])
    with pytest.raises(ValueError, match="at least 5 frauds"):
        FoldAssignment.stratified(np.r_[np.zeros(100), np.ones(3)].astype(np.int64), 5, 0)


def test_each_row_is_scored_by_the_member_that_left_it_out(labelled: Split) -> None:
    cfg = compose_config(
        "ensemble.folds=3",
        "ensemble.trees.enabled=false",
        "model.max_epochs=2",
        "trainer.device=cpu",
    )
    fitted = fit_model(cfg, labelled.features, labelled.labels)
    assert fitted.ensemble is not None and fitted.ensemble.members == 3
    assert fitted.ensemble.trees is None and fitted.trees is None
    assert len(fitted.histories) == 3
    np.testing.assert_array_equal(fitted.validation_labels, labelled.labels)
    assert fitted.validation_scores.shape == (len(labelled),)

    calibrated = fitted.network
    assert isinstance(calibrated, PlattScaledNetwork)
    assert isinstance(calibrated.network, StackedMLPEnsemble) and len(fitted.members) == 3
    folds = FoldAssignment.stratified(labelled.labels, 3, cfg.ensemble.seed)
    slope, intercept = fitted.calibration.slope, fitted.calibration.intercept
    member_logits = []
    for k, member in enumerate(fitted.members):
        logits = torch_logits(member, labelled.features)
        member_logits.append(logits)
        held = folds.fold_of_row == k
        expected = 1 / (1 + np.exp(-(slope * logits[held].astype(np.float64) + intercept)))
        np.testing.assert_allclose(fitted.validation_scores[held], expected, atol=1e-6)
    # The served network is the calibrated mean of the member logits.
    np.testing.assert_allclose(
        torch_logits(calibrated, labelled.features),
        slope * np.mean(member_logits, axis=0) + intercept,
        atol=1e-4,
    )
    # Members trained on different folds are different networks.
    assert not np.allclose(member_logits[0], member_logits[1], atol=1e-3)


def test_stacked_mlps_compute_the_mean_logit_ensemble(labelled: Split) -> None:
    cfg = compose_config("ensemble.folds=4", "model.max_epochs=1", "trainer.device=cpu")
    members = fit_model(cfg, labelled.features, labelled.labels).members
    stacked, plain = StackedMLPEnsemble(members), MeanLogitEnsemble(members)
    # Raw features at their extremes too: Time up to 172,792, Amount up to 25,691.
    rows = np.r_[labelled.features, labelled.features[:50] * 3].astype(np.float32)
    np.testing.assert_allclose(torch_logits(stacked, rows), torch_logits(plain, rows), atol=1e-4)
    assert isinstance(ensemble_network(members), StackedMLPEnsemble)
    odd = compose_config(
        "model.member_network.hidden_sizes=[16]", "ensemble.folds=2", "model.max_epochs=1"
    )
    mixed = [*members[:1], *fit_model(odd, labelled.features, labelled.labels).members]
    assert isinstance(ensemble_network(mixed), MeanLogitEnsemble), "shapes differ: not stacked"


def test_single_network_keeps_a_validation_split(labelled: Split) -> None:
    cfg = compose_config("ensemble.folds=1", "model.max_epochs=2", "trainer.device=cpu")
    fitted = fit_model(cfg, labelled.features, labelled.labels)
    assert fitted.ensemble is None and len(fitted.histories) == 1
    assert fitted.trees is None, "trees are cross-fitted: one network serves alone"
    assert len(fitted.validation_labels) == pytest.approx(0.15 * len(labelled), abs=2)


def test_members_take_the_member_network_and_a_single_network_the_model_network(
    labelled: Split,
) -> None:
    widths = {"mlp": [128, 64], "members": [64, 32]}  # configs/model/mlp.yaml
    ensemble = fit_model(
        compose_config("ensemble.folds=2", "ensemble.trees.enabled=false", "model.max_epochs=1"),
        labelled.features,
        labelled.labels,
    )
    for member in ensemble.members:
        linear = [m for m in member.network if isinstance(m, torch.nn.Linear)]
        assert [m.out_features for m in linear[:-1]] == widths["members"]
    assert ensemble.ensemble is not None
    assert ensemble.ensemble.member_network == {"hidden_sizes": widths["members"]}
    single = fit_model(
        compose_config("ensemble.folds=1", "model.max_epochs=1"),
        labelled.features,
        labelled.labels,
    )
    (network,) = single.members
    linear = [m for m in network.network if isinstance(m, torch.nn.Linear)]
    assert [m.out_features for m in linear[:-1]] == widths["mlp"]


@pytest.mark.parametrize("model", ["mlp", "distilbert"])
def test_ensemble_exports_to_one_graph_with_parity(
    labelled: Split, tmp_path: Path, model: str
) -> None:
    cfg = compose_config(
        f"model={model}", "ensemble.folds=2", "ensemble.trees.enabled=false", "model.max_epochs=1"
    )
    network = fit_model(cfg, labelled.features, labelled.labels).network
    path = tmp_path / "ensemble.onnx"
    export_onnx(network, path, labelled.features)
    assert check_parity(network, path, labelled.features) < 1e-4
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (probabilities, logits) = session.run(None, {"features": labelled.features[:5]})
    assert probabilities.shape == (5,) and logits.shape == (5,)
    with torch.no_grad():
        expected = network(torch.as_tensor(labelled.features[:5])).numpy()
    np.testing.assert_allclose(logits, expected, atol=1e-4)


def test_paired_difference_interval_excludes_zero_only_for_a_consistent_gain() -> None:
    rng = np.random.default_rng(0)
    base = rng.normal(0.8, 0.09, size=10)  # the fold-to-fold spread of the real sample
    incumbent = [{"m": b} for b in base]
    consistent = [{"m": b + 0.01 + rng.normal(0, 0.003)} for b in base]
    noisy = [{"m": b + rng.normal(0, 0.05)} for b in base]
    gain = paired_difference(consistent, incumbent, "m", folds=5)
    assert gain["ci95_low"] > 0 and gain["wins"] == 10
    assert gain["mean"] == pytest.approx(0.01, abs=0.003)
    chance = paired_difference(noisy, incumbent, "m", folds=5)
    assert chance["ci95_low"] < 0 < chance["ci95_high"]
    # The correction widens the interval beyond a plain paired t interval.
    diffs = np.array([c["m"] - i["m"] for c, i in zip(consistent, incumbent, strict=True)])
    plain = 2.262 * diffs.std(ddof=1) / np.sqrt(10)
    assert gain["ci95_high"] - gain["mean"] > plain


def test_pooled_difference_sees_a_better_ranking_and_nothing_in_a_tie() -> None:
    rng = np.random.default_rng(1)
    labels = np.r_[np.zeros(3000, dtype=np.int64), np.ones(60, dtype=np.int64)]
    signal = labels + rng.normal(0, 0.6, size=(2, len(labels)))  # two repeats
    sharper = labels + rng.normal(0, 0.3, size=(2, len(labels)))
    gain = pooled_difference(sharper, signal, labels, resamples=200)
    assert gain["ci95_low"] > 0 and gain["mean"] > 0
    tie = pooled_difference(signal, signal, labels, resamples=50)
    assert tie["mean"] == 0 and tie["ci95_low"] == 0 == tie["ci95_high"]


def test_pooled_interval_narrows_as_one_over_root_frauds_as_frauds_to_resolve_assumes() -> None:
    def half_width(frauds: int) -> float:
        rng = np.random.default_rng(0)
        labels = np.r_[np.zeros(40 * frauds, dtype=np.int64), np.ones(frauds, dtype=np.int64)]
        better = labels + rng.normal(0, 0.4, size=(1, len(labels)))
        worse = labels + rng.normal(0, 0.45, size=(1, len(labels)))
        interval = pooled_difference(better, worse, labels, resamples=300)
        return (interval["ci95_high"] - interval["ci95_low"]) / 2

    # Four times the frauds: half the width (sqrt(4)), not a quarter and not the same.
    assert 1.5 < half_width(50) / half_width(200) < 2.7


def test_frauds_to_resolve_scales_the_sample_by_the_squared_width_to_margin_ratio() -> None:
    assert frauds_to_resolve({"mean": 0.01, "ci95_low": 0.0}, 331) == 331
    assert frauds_to_resolve({"mean": 0.01, "ci95_low": -0.01}, 331) == 4 * 331
    assert frauds_to_resolve({"mean": 0.02, "ci95_low": 0.01}, 331) == 331  # decided already
    assert frauds_to_resolve({"mean": -0.01, "ci95_low": -0.05}, 331) is None
