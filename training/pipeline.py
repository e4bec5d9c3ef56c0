"""`train`: data -> split -> fit -> threshold -> test metrics -> ONNX -> BentoML model store."""

from __future__ import annotations

import hashlib
import logging
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig
from omegaconf import OmegaConf
from sklearn.model_selection import train_test_split

from fraud_detection.catalog import ONNX_FILE
from fraud_detection.drift_log import SCORE_COLUMN
from fraud_detection.model_card import Calibration
from fraud_detection.model_card import EnsembleInfo
from fraud_detection.model_card import ModelCard
from fraud_detection.model_card import Threshold
from fraud_detection.schema import FEATURE_NAMES
from fraud_detection.schema import TARGET_NAME
from fraud_detection.schema import schema_fingerprint
from training.calibration import PlattScaledNetwork
from training.calibration import calibrate
from training.calibration import fit_platt_scaling
from training.data import DatasetSplits
from training.data.split import Split
from training.ensemble import FoldAssignment
from training.ensemble import MemberTrainer
from training.ensemble import cross_fit
from training.evaluation import choose_threshold
from training.evaluation import evaluate
from training.export import ONNX_INPUT
from training.export import ONNX_LOGIT_OUTPUT
from training.export import ONNX_OUTPUT
from training.export import add_tree_member
from training.export import check_parity
from training.export import convert_to_fp16
from training.export import export_onnx
from training.export import probabilities_from_logits
from training.export import torch_logits
from training.preprocessing import FeatureScaler
from training.tracking import RunTracker
from training.trainer import EpochCallback
from training.trainer import TrainingHistory
from training.trainer import fit
from training.trainer import resolve_device
from training.tree_member import CrossFittedTrees
from training.tree_member import TreeBlend
from training.tree_member import cross_fit_trees

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainReport:
    """What one training run produced."""

    tag: str
    metrics: dict[str, float]
    metrics_source: str  # test | out_of_fold | validation
    training_seconds: float
    history: TrainingHistory


def data_fingerprint(frame: pd.DataFrame) -> str:
    """Content hash of the training data (values and column names, not the row index)."""
    digest = hashlib.sha256(",".join(frame.columns).encode())
    digest.update(pd.util.hash_pandas_object(frame, index=False).to_numpy().tobytes())
    return digest.hexdigest()[:16]


def fit_from_config(
    network: torch.nn.Module,
    splits: DatasetSplits,
    cfg: DictConfig,
    on_epoch: EpochCallback | None = None,
    seed_offset: int = 0,
) -> TrainingHistory:
    """`fit` with the optimizer and recipe of ``cfg.model`` and the settings of ``cfg.trainer``."""
    return fit(
        network,
        splits,
        optimizer_factory=instantiate(cfg.model.optimizer),
        max_epochs=cfg.model.max_epochs,
        batch_size=cfg.model.batch_size,
        patience=cfg.trainer.patience,
        class_weight_power=cfg.trainer.class_weight_power,
        seed=cfg.trainer.seed + seed_offset,
        device=resolve_device(cfg.trainer.device),
        on_epoch=on_epoch,
    )


def describe_source(data_cfg: DictConfig) -> str:
    if "path" in data_cfg:
        return f"csv:{Path(data_cfg.path).name}"
    return f"synthetic:n={data_cfg.n_rows},fraud_rate={data_cfg.fraud_rate},seed={data_cfg.seed}"


@dataclass(frozen=True)
class FittedModel:
    """A trained, calibrated network, the threshold chosen for it and the scores behind both.

    `validation_*` are the rows calibration and the threshold were fitted on: out-of-fold for
    a cross-fitted ensemble (every labelled row), the validation split for a single network.
    """

    network: torch.nn.Module  # raw features in, calibrated fraud logit out
    scaler: FeatureScaler
    calibration: Calibration
    threshold: Threshold
    validation_scores: np.ndarray
    validation_labels: np.ndarray
    histories: list[TrainingHistory]
    members: list[torch.nn.Module]  # uncalibrated, raw features -> logit
    training_seconds: float
    ensemble: EnsembleInfo | None = None
    trees: CrossFittedTrees | None = None  # their logit, times blend.tree_weight, is added
    blend: TreeBlend | None = None

    @property
    def history(self) -> TrainingHistory:
        """The first (or only) member's history."""
        return self.histories[0]

    @property
    def tree_weight(self) -> float:
        """The trees' weight in the served logit (0 without a tree member)."""
        return 0.0 if self.blend is None else self.blend.tree_weight

    def logits(self, features: np.ndarray) -> np.ndarray:
        """The served, calibrated logit of raw `features` (float64), as the ONNX graph has it."""
        logits = torch_logits(self.network, features).astype(np.float64)
        if self.trees is not None:
            logits += self.tree_weight * self.trees.logit(features)
        return logits

    def probabilities(self, features: np.ndarray) -> np.ndarray:
        """The served fraud probabilities of raw `features`."""
        return probabilities_from_logits(self.logits(features))

    def export(self, path: Path, example: np.ndarray) -> None:
        """Write the served model to `path` as one ONNX graph (the trees inside it, if any)."""
        export_onnx(self.network, path, example)
        if self.trees is not None:
            add_tree_member(path, self.trees.served, self.tree_weight)


def threshold_from_config(
    cfg: DictConfig, labels: np.ndarray, scores: np.ndarray, features: np.ndarray
) -> Threshold:
    """Apply ``cfg.threshold``'s rule to validation `scores`."""
    missed = cfg.threshold.missed_fraud_cost
    return choose_threshold(
        labels,
        scores,
        cfg.threshold.rule,
        cfg.threshold.target_fpr,
        amounts=features[:, FEATURE_NAMES.index("Amount")],
        missed_fraud_cost=missed if missed == "amount" else float(missed),
        false_alarm_cost=cfg.threshold.false_alarm_cost,
        fraud_rate=cfg.threshold.fraud_rate,
    )


def member_network_config(cfg: DictConfig) -> DictConfig:
    """``cfg.model.network``, with ``cfg.model.member_network`` over it when cross-fitting."""
    if cfg.ensemble.folds >= 2 and cfg.model.member_network:
        return OmegaConf.merge(cfg.model.network, cfg.model.member_network)  # type: ignore[return-value]
    return cfg.model.network


def member_trainer(cfg: DictConfig, on_epoch: EpochCallback | None = None) -> MemberTrainer:
    """Builds `member_network_config` with scaling fitted on a fold's training rows, and fits it."""
    network_cfg = member_network_config(cfg)

    def train_member(parts: DatasetSplits, index: int) -> tuple[torch.nn.Module, TrainingHistory]:
        scaler = FeatureScaler.fit(parts.train.features)
        torch.manual_seed(cfg.trainer.seed + index)
        network = instantiate(network_cfg, preprocessing=scaler.to_module())

        def log_epoch(record: dict[str, float]) -> None:
            if on_epoch is not None:
                on_epoch({f"member_{index}/{key}": value for key, value in record.items()})

        history = fit_from_config(network, parts, cfg, log_epoch, seed_offset=index)
        return network, history

    return train_member


def calibrate_and_threshold(
    cfg: DictConfig, logits: np.ndarray, labels: np.ndarray, features: np.ndarray
) -> tuple[Calibration, np.ndarray, Threshold]:
    """Platt scaling on held-out `logits` (or none), the calibrated scores, and the threshold."""
    if cfg.calibration.method == "platt":
        calibration = fit_platt_scaling(logits, labels)
    else:
        calibration = Calibration(method="none")
    scores = probabilities_from_logits(calibration.apply(logits))
    return calibration, scores, threshold_from_config(cfg, labels, scores, features)


def uses_trees(cfg: DictConfig) -> bool:
    """Whether ``cfg`` trains the tree member: it is enabled, and the networks are cross-fitted."""
    return bool(cfg.ensemble.trees.enabled) and cfg.ensemble.folds >= 2


def fit_model(
    cfg: DictConfig,
    features: np.ndarray,
    labels: np.ndarray,
    on_epoch: EpochCallback | None = None,
) -> FittedModel:
    """Fit ``cfg.model`` on labelled rows: scale, train, calibrate and threshold.

    With ``ensemble.folds`` K >= 2, K members are cross-fitted and averaged in one network;
    calibration and the threshold use every row's out-of-fold score. With K = 1, one network
    trains on all but a ``split.validation_size`` share, which early stopping, calibration
    and the threshold use. `train` and the quality benchmark both call this, so the benchmark
    measures exactly what ``python -m training`` ships.
    """
    if cfg.trainer.torch_threads > 0:
        torch.set_num_threads(cfg.trainer.torch_threads)
    use_trees = uses_trees(cfg)
    if cfg.ensemble.trees.enabled and not use_trees:
        logger.info("ensemble.folds=1: one network, no tree member (trees are cross-fitted)")
    if use_trees and cfg.calibration.method != "platt":
        raise ValueError("ensemble.trees.enabled blends by Platt scaling: set calibration=platt")
    started = time.perf_counter()
    train_member = member_trainer(cfg, on_epoch)
    trees: CrossFittedTrees | None = None
    blend: TreeBlend | None = None
    if cfg.ensemble.folds >= 2:
        folds = FoldAssignment.stratified(labels, cfg.ensemble.folds, cfg.ensemble.seed)
        crossed = cross_fit(features, labels, folds, train_member)
        network: torch.nn.Module = crossed.ensemble()
        histories, members = crossed.histories, crossed.members
        held_logits, held_labels, held_features = crossed.out_of_fold_logits, labels, features
        ensemble: EnsembleInfo | None = EnsembleInfo(
            members=len(histories),
            folds=folds.n_folds,
            fold_seed=cfg.ensemble.seed,
            member_network=OmegaConf.to_container(cfg.model.member_network),
            member_best_epochs=[h.best_epoch for h in histories],
            member_validation_average_precision=[round(h.best_validation_ap, 6) for h in histories],
        )
        if use_trees:
            trees = cross_fit_trees(features, labels, folds, cfg.ensemble.trees)
            blend = TreeBlend.fit(held_logits, trees.out_of_fold_logits, labels)
            ensemble = ensemble.model_copy(update={"trees": blend.info(trees)})
    else:
        share = cfg.split.validation_size / (1.0 - cfg.split.test_size)
        fit_rows, held_rows = train_test_split(
            np.arange(len(labels)), test_size=share, stratify=labels, random_state=cfg.split.seed
        )
        held = Split(features[held_rows], labels[held_rows])
        parts = DatasetSplits(Split(features[fit_rows], labels[fit_rows]), held, held)
        network, history = train_member(parts, 0)
        histories, members, ensemble = [history], [network], None
        held_features, held_labels = parts.validation.features, parts.validation.labels
        held_logits = torch_logits(network, held_features)
    if blend is None or trees is None:
        calibration, scores, threshold = calibrate_and_threshold(
            cfg, held_logits, held_labels, held_features
        )
        network = calibrate(network, calibration)
    else:
        calibration = blend.final_platt
        scores = probabilities_from_logits(blend.logits(held_logits, trees.out_of_fold_logits))
        threshold = threshold_from_config(cfg, held_labels, scores, held_features)
        device = next(network.parameters()).device
        network = PlattScaledNetwork(network, blend.network_weight, blend.bias).to(device)
    training_seconds = time.perf_counter() - started
    return FittedModel(
        network=network,
        scaler=FeatureScaler.fit(features),
        calibration=calibration,
        threshold=threshold,
        validation_scores=scores,
        validation_labels=held_labels,
        histories=histories,
        members=members,
        training_seconds=training_seconds,
        ensemble=ensemble,
        trees=trees,
        blend=blend,
    )


def holdout_test(frame: pd.DataFrame, test_size: float, seed: int) -> tuple[Split, Split | None]:
    """The labelled rows models are fitted on, and a stratified test split (None when 0)."""
    if test_size <= 0:
        return Split.from_frame(frame), None
    rest, test = train_test_split(
        frame, test_size=test_size, stratify=frame[TARGET_NAME], random_state=seed
    )
    return Split.from_frame(rest), Split.from_frame(test)


def train(cfg: DictConfig, *, wandb_mode: str, output_dir: Path) -> TrainReport:
    """Train the model `cfg.model` on `cfg.data` and save it to the BentoML model store.

    The card's ``metrics`` are on the test split when ``split.test_size`` > 0, else the
    out-of-fold (or validation) metrics, the rows calibration and the threshold were fitted on
    (``metrics_source`` says which).
    """
    resolved: dict[str, Any] = OmegaConf.to_container(cfg, resolve=True)  # type: ignore[assignment]
    if cfg.export.fp16 and uses_trees(cfg):
        raise ValueError(
            "export.fp16 converts the DistilBERT graph, which cannot hold the tree member: "
            "add ensemble.trees.enabled=false"
        )
    frame: pd.DataFrame = instantiate(cfg.data)
    labelled, test = holdout_test(frame, cfg.split.test_size, cfg.split.seed)
    logger.info(
        "Data %s: %d rows (%d frauds); %d labelled rows to fit on (%s), %d test rows",
        describe_source(cfg.data),
        len(frame),
        int(frame[TARGET_NAME].sum()),
        len(labelled),
        f"{cfg.ensemble.folds} cross-fitted members"
        if cfg.ensemble.folds >= 2
        else f"{cfg.split.validation_size:.0%} of all rows for validation",
        0 if test is None else len(test),
    )
    tracker = RunTracker(
        project=cfg.wandb.project,
        name=f"fraud-{cfg.model.kind}",
        mode=wandb_mode,
        directory=output_dir,
        config=resolved,
    )
    fitted = fit_model(cfg, labelled.features, labelled.labels, on_epoch=tracker.log_epoch)
    network, threshold = fitted.network, fitted.threshold
    validation_metrics, validation_confusion = evaluate(
        fitted.validation_labels, fitted.validation_scores, threshold.value
    )
    if test is None:
        metrics, confusion = validation_metrics, validation_confusion
        source = "validation" if fitted.ensemble is None else "out_of_fold"
        tracker.log_evaluation(
            fitted.validation_labels, fitted.validation_scores, threshold.value, metrics, source
        )
        parity_rows = labelled.features[: min(len(labelled), 20_000)]
    else:
        test_scores = fitted.probabilities(test.features)
        metrics, confusion = evaluate(test.labels, test_scores, threshold.value)
        tracker.log_evaluation(test.labels, test_scores, threshold.value, metrics)
        source, parity_rows = "test", test.features
    logger.info(
        "Metrics of %s (%s): %s",
        cfg.model.kind,
        source,
        {k: round(v, 4) for k, v in metrics.items()},
    )
    logger.info("Threshold %s", threshold.model_dump(exclude_none=True))

    rng = np.random.default_rng(cfg.split.seed)
    rows = rng.choice(
        len(labelled), size=min(cfg.export.reference_rows, len(labelled)), replace=False
    )
    reference = pd.DataFrame(labelled.features[rows], columns=list(FEATURE_NAMES))
    reference[SCORE_COLUMN] = fitted.probabilities(labelled.features[rows])

    with tempfile.TemporaryDirectory() as tmp:
        onnx_path = Path(tmp) / ONNX_FILE
        fitted.export(onnx_path, parity_rows)
        parity = check_parity(
            fitted.probabilities, onnx_path, parity_rows, cfg.export.parity_tolerance
        )
        if cfg.export.fp16:
            convert_to_fp16(onnx_path)
            parity = check_parity(network, onnx_path, parity_rows, cfg.export.fp16_parity_tolerance)
        card = ModelCard(
            kind=cfg.model.kind,
            feature_names=list(FEATURE_NAMES),
            schema_fingerprint=schema_fingerprint(),
            preprocessing=fitted.scaler.to_card(),
            threshold=threshold,
            calibration=fitted.calibration,
            metrics=metrics,
            metrics_source=source,
            validation_metrics=validation_metrics,
            confusion_matrix=confusion,
            ensemble=fitted.ensemble,
            onnx_input=ONNX_INPUT,
            onnx_output=ONNX_OUTPUT,
            onnx_logit_output=ONNX_LOGIT_OUTPUT,
            onnx_parity_max_abs_diff=parity,
            onnx_precision="fp16" if cfg.export.fp16 else "fp32",
            data_source=describe_source(cfg.data),
            data_fingerprint=data_fingerprint(frame),
            n_train_rows=len(labelled),
            training_config=resolved,
            training_seconds=round(fitted.training_seconds, 2),
        )
        validation_reference = pd.DataFrame(
            {SCORE_COLUMN: fitted.validation_scores, TARGET_NAME: fitted.validation_labels}
        )
        # imported here: fitting (and the quality harness) needs no BentoML
        from training.model_store import save_to_store

        model = save_to_store(card, onnx_path, reference, validation_reference)
    tracker.finish()
    return TrainReport(
        tag=str(model.tag),
        metrics=metrics,
        metrics_source=source,
        training_seconds=fitted.training_seconds,
        history=fitted.history,
    )
