"""Hydra configs, the training loop, ONNX export parity and the model-store round trip."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from hydra import compose
from hydra import initialize_config_dir
from hydra.errors import ConfigCompositionException
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from transformers import DistilBertConfig
from transformers import DistilBertModel

from fraud_detection.catalog import CARD_FILE
from fraud_detection.catalog import ONNX_FILE
from fraud_detection.catalog import REFERENCE_FILE
from fraud_detection.catalog import STORE_NAMES
from fraud_detection.catalog import VALIDATION_SCORES_FILE
from fraud_detection.model_card import ModelCard
from fraud_detection.schema import FEATURE_NAMES
from fraud_detection.scorer import OnnxScorer
from tests.conftest import REPO
from tests.conftest import TrainedStore
from training.calibration import calibrate
from training.calibration import fit_platt_scaling
from training.config import register_configs
from training.data import generate_transactions
from training.data import split_dataset
from training.evaluation import choose_threshold
from training.evaluation import evaluate
from training.export import OnnxParityError
from training.export import check_parity
from training.export import convert_to_fp16
from training.export import export_onnx
from training.export import torch_probabilities
from training.pipeline import fit_from_config
from training.preprocessing import FeatureScaler

register_configs()


def compose_config(*overrides: str):
    with initialize_config_dir(config_dir=str(REPO / "configs"), version_base="1.3"):
        return compose(config_name="train", overrides=list(overrides))


@pytest.fixture(scope="module")
def splits():
    frame = generate_transactions(8000, fraud_rate=0.01, seed=3)
    return split_dataset(frame, validation_size=0.2, test_size=0.2, seed=0)


def build_network(splits, *overrides: str) -> torch.nn.Module:
    cfg = compose_config(*overrides)
    torch.manual_seed(0)
    scaler = FeatureScaler.fit(splits.train.features)
    return instantiate(cfg.model.network, preprocessing=scaler.to_module())


# --- configs -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "kind", "target"),
    [
        ((), "mlp", "training.models.FraudMLP"),
        (("model=distilbert",), "distilbert", "training.models.FraudDistilBert"),
        (("model=distilbert_base",), "distilbert", "training.models.FraudDistilBert"),
    ],
)
def test_model_group_picks_the_network(overrides, kind: str, target: str) -> None:
    cfg = compose_config(*overrides)
    assert cfg.model.kind == kind
    assert cfg.model.network._target_ == target
    assert cfg.data._target_ == "training.data.generate_transactions"


def test_csv_data_and_pretrained_overrides() -> None:
    cfg = compose_config(
        "data=csv", "data.path=/x/cc.csv.gz", "model=distilbert", "model.pretrained=/w"
    )
    assert cfg.data.path == "/x/cc.csv.gz"
    assert cfg.model.network.pretrained == "/w"


@pytest.mark.parametrize("bad", ["model.hiden_sizes=[3]", "trainer.patiense=2", "model=gbm"])
def test_typos_fail_loudly(bad: str) -> None:
    with pytest.raises(ConfigCompositionException):
        compose_config(bad)


# --- training ------------------------------------------------------------------------


@pytest.mark.parametrize("model", ["mlp", "distilbert"])
def test_fit_lowers_the_loss_and_beats_a_trivial_model(splits, model: str) -> None:
    cfg = compose_config(
        f"model={model}", "model.max_epochs=4", "trainer.patience=4", "trainer.device=cpu"
    )
    network = build_network(splits, f"model={model}")
    history = fit_from_config(network, splits, cfg)
    losses = [e["train_loss"] for e in history.epochs]
    assert losses[-1] < losses[0]
    from training.export import torch_probabilities

    scores = torch_probabilities(network, splits.test.features)
    metrics, _ = evaluate(splits.test.labels, scores, 0.5)
    # A constant score has AP equal to the fraud rate (0.01).
    assert metrics["average_precision"] > 10 * splits.test.labels.mean()
    assert metrics["roc_auc"] > 0.7  # a constant score has 0.5


def test_threshold_rules() -> None:
    labels = np.array([0] * 90 + [1] * 10)
    scores = np.r_[np.linspace(0.0, 0.5, 90), np.linspace(0.45, 1.0, 10)]
    best = choose_threshold(labels, scores, "best_f1")
    metrics, _ = evaluate(labels, scores, best.value)
    assert metrics["f1"] >= max(
        evaluate(labels, scores, t)[0]["f1"] for t in np.linspace(0, 1, 101)
    )
    low_fpr = choose_threshold(labels, scores, "recall_at_fpr", target_fpr=0.0)
    assert ((scores >= low_fpr.value) & (labels == 0)).sum() == 0
    assert low_fpr.target_fpr == 0.0
    with pytest.raises(ValueError, match="best_f1"):
        choose_threshold(labels, scores, "cost")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="amounts"):
        choose_threshold(labels, scores, "min_expected_cost")


def brute_force_cost(labels, scores, amounts, cut, false_alarm_cost, genuine_weight=1.0) -> float:
    flagged = scores >= cut
    missed = amounts[(labels == 1) & ~flagged].sum()
    return missed + false_alarm_cost * genuine_weight * ((labels == 0) & flagged).sum()


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("fraud_rate", [None, 0.00172])
def test_min_expected_cost_threshold_is_the_cheapest_cut(seed: int, fraud_rate) -> None:
    rng = np.random.default_rng(seed)
    labels = (rng.random(400) < 0.1).astype(int)
    scores = np.round(np.clip(rng.normal(0.3 + 0.4 * labels, 0.2), 0, 1), 2)  # with ties
    amounts = rng.exponential(80, size=400)
    chosen = choose_threshold(
        labels, scores, "min_expected_cost", amounts=amounts, false_alarm_cost=5.0,
        fraud_rate=fraud_rate,
    )  # fmt: skip
    weight = (
        1.0
        if fraud_rate is None
        else (1 - fraud_rate) / fraud_rate * labels.sum() / ((labels == 0).sum())
    )
    costs = {c: brute_force_cost(labels, scores, amounts, c, 5.0, weight) for c in [*scores, 1.01]}
    best = min(costs.values())
    assert brute_force_cost(labels, scores, amounts, chosen.value, 5.0, weight) == (
        pytest.approx(best)
    )
    rows = labels.sum() + weight * (labels == 0).sum()
    assert chosen.expected_cost_per_transaction == pytest.approx(best / rows)
    assert chosen.rule == "min_expected_cost" and chosen.missed_fraud_cost == "amount"


def test_rarer_fraud_and_dearer_reviews_raise_the_cost_threshold() -> None:
    rng = np.random.default_rng(0)
    labels = (rng.random(2000) < 0.05).astype(int)
    scores = np.clip(rng.normal(0.3 + 0.4 * labels, 0.15), 0, 1)
    amounts = np.full(2000, 100.0)

    def cut(**kw) -> float:
        return choose_threshold(labels, scores, "min_expected_cost", amounts=amounts, **kw).value

    assert cut(fraud_rate=0.00172) > cut()
    assert cut(false_alarm_cost=50.0) > cut(false_alarm_cost=1.0)
    assert cut(missed_fraud_cost=1e6) < cut(missed_fraud_cost=1.0)


def test_platt_scaling_recovers_a_known_miscalibration(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    true_logit = rng.normal(-3, 2, size=20_000)
    labels = (rng.random(20_000) < 1 / (1 + np.exp(-true_logit))).astype(int)
    inflated = (true_logit + 1.5) * 2.0  # what class weighting does to a logit, roughly
    calibration = fit_platt_scaling(inflated, labels)
    assert calibration.slope == pytest.approx(0.5, abs=0.05)
    assert calibration.intercept == pytest.approx(-1.5, abs=0.15)

    class Constant(torch.nn.Module):  # a "network" whose logit is its first input column
        def __init__(self) -> None:
            super().__init__()
            self.unused = torch.nn.Parameter(torch.zeros(1))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x[:, 0] + 0 * self.unused

    features = np.zeros((64, len(FEATURE_NAMES)), dtype=np.float32)
    features[:, 0] = inflated[:64]
    network = calibrate(Constant(), calibration)
    path = tmp_path / "calibrated.onnx"
    export_onnx(network, path, features)
    check_parity(network, path, features, 1e-5)  # the calibration ships inside the graph
    expected = 1 / (1 + np.exp(-(calibration.slope * inflated[:64] + calibration.intercept)))
    np.testing.assert_allclose(torch_probabilities(network, features), expected, atol=1e-5)


# --- export ----------------------------------------------------------------------------


@pytest.mark.parametrize("model", ["mlp", "distilbert"])
def test_onnx_parity_and_dynamic_batch(splits, tmp_path: Path, model: str) -> None:
    network = build_network(splits, f"model={model}")
    path = tmp_path / "m.onnx"
    export_onnx(network, path, splits.test.features)
    assert check_parity(network, path, splits.test.features) < 1e-4
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for n in (1, 3, 1000):
        (p,) = session.run(["fraud_probability"], {"features": splits.test.features[:n]})
        assert p.shape == (n,)


def test_fp16_export_keeps_large_raw_features_finite(splits, tmp_path: Path) -> None:
    import onnx
    import onnxruntime as ort

    network = build_network(splits, "model=distilbert")
    path = tmp_path / "m.onnx"
    export_onnx(network, path, splits.test.features)
    kept = convert_to_fp16(path)
    assert 0 < kept < len(onnx.load(str(path)).graph.node)
    weights = {i.data_type for i in onnx.load(str(path)).graph.initializer if i.dims}
    assert onnx.TensorProto.FLOAT16 in weights, "the encoder's weights are float16"
    assert check_parity(network, path, splits.test.features, tolerance=1e-2) < 1e-2
    # Beyond float16's 65,504: the real Time range, and the API's 1e9 limit on every feature.
    extreme = np.repeat(splits.test.features[:1], 3, axis=0)
    extreme[0, 0] = 172_792.0
    extreme[1, :] = 1e9
    extreme[2, 1:-1] = -1e9
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (p,) = session.run(["fraud_probability"], {"features": extreme.astype(np.float32)})
    assert np.isfinite(p).all() and ((p >= 0) & (p <= 1)).all(), p


def test_fp16_export_refuses_a_graph_without_layer_norm(splits, tmp_path: Path) -> None:
    path = tmp_path / "m.onnx"
    export_onnx(build_network(splits, "model=mlp"), path, splits.test.features)
    with pytest.raises(ValueError, match="no LayerNormalization"):
        convert_to_fp16(path)


def test_parity_check_fails_on_a_different_network(splits, tmp_path: Path) -> None:
    path = tmp_path / "m.onnx"
    export_onnx(build_network(splits), path, splits.test.features)
    other = build_network(splits)
    with torch.no_grad():
        for param in other.parameters():
            param.add_(0.5)
    with pytest.raises(OnnxParityError):
        check_parity(other, path, splits.test.features)


def test_pretrained_encoder_loads_from_a_local_directory(splits, tmp_path: Path) -> None:
    config = DistilBertConfig(dim=48, n_layers=1, n_heads=3, hidden_dim=96)
    saved = DistilBertModel(config)
    saved.save_pretrained(tmp_path / "encoder")
    network = build_network(splits, "model=distilbert", f"model.pretrained={tmp_path / 'encoder'}")
    assert network.encoder.config.dim == 48  # size comes from the saved model, not the config
    for name, tensor in saved.state_dict().items():
        torch.testing.assert_close(network.encoder.state_dict()[name], tensor)
    with pytest.raises(InstantiationException, match=r"model.pretrained=.*absent"):
        build_network(splits, "model=distilbert", f"model.pretrained={tmp_path / 'absent'}")


# --- the Hydra app and the model store -------------------------------------------------


@pytest.mark.parametrize("kind", ["mlp", "distilbert"])
def test_model_store_round_trip(trained: TrainedStore, kind: str) -> None:
    versions = list((trained.home / "models" / STORE_NAMES[kind]).iterdir())
    model_dir = next(p for p in versions if p.is_dir())
    files = {p.name for p in model_dir.iterdir()}
    assert {ONNX_FILE, CARD_FILE, REFERENCE_FILE, "model.yaml"} <= files
    assert not any(name.endswith((".pkl", ".pickle", ".pt")) for name in files)
    card = ModelCard.from_json_file(model_dir / CARD_FILE)
    assert card.kind == kind and card.feature_names == list(FEATURE_NAMES)
    assert card.onnx_parity_max_abs_diff < 1e-4
    assert card.calibration.method == "platt" and card.calibration.slope > 0
    validation = np.loadtxt(model_dir / VALIDATION_SCORES_FILE, delimiter=",", skiprows=1)
    assert validation.shape[1] == 2 and set(np.unique(validation[:, 1])) == {0.0, 1.0}
    assert card.training_config["model"]["kind"] == kind
    assert {"average_precision", "roc_auc", "recall_at_1pct_fpr", "f1"} <= set(card.metrics)
    # Cross-fitted (TINY_TRAINING: 3 folds): every row trains, the metrics are out of fold.
    assert card.ensemble is not None and card.ensemble.members == 3
    assert card.metrics_source == "out_of_fold" and card.metrics == card.validation_metrics
    assert card.n_train_rows == 6000 and len(validation) == 6000
    info = yaml.safe_load((model_dir / "model.yaml").read_text())
    assert info["metadata"]["threshold"] == pytest.approx(card.threshold.value)
    assert info["labels"]["kind"] == kind
    scorer = OnnxScorer.from_directory(model_dir)
    reference = np.loadtxt(model_dir / REFERENCE_FILE, delimiter=",", skiprows=1)
    assert reference.shape[1] == len(FEATURE_NAMES) + 1
    np.testing.assert_allclose(
        scorer.predict_proba(reference[:, :-1].astype(np.float32)), reference[:, -1], atol=1e-4
    )


def test_training_app_logs_to_wandb_offline(trained: TrainedStore) -> None:
    runs = list(trained.workdir.rglob("offline-run-*"))
    assert len(runs) == 2, f"expected one offline W&B run per model, found {runs}"
    assert trained.output.count("out_of_fold AUPRC") == 2


def test_corrupted_card_is_refused(trained: TrainedStore, tmp_path: Path) -> None:
    model_dir = next((trained.home / "models" / "fraud-mlp").glob("*/"))
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / ONNX_FILE).write_bytes((model_dir / ONNX_FILE).read_bytes())
    (broken / CARD_FILE).write_text((model_dir / CARD_FILE).read_text().replace('"V7"', '"V77"'))
    with pytest.raises(ValueError, match="V77"):
        OnnxScorer.from_directory(broken)
    (broken / CARD_FILE).write_text((model_dir / CARD_FILE).read_text())
    (broken / ONNX_FILE).write_bytes(b"not an onnx graph")
    with pytest.raises(ValueError, match="Cannot load ONNX graph"):
        OnnxScorer.from_directory(broken)
