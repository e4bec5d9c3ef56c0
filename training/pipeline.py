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

from fraud_detection.catalog import ONNX_FILE
from fraud_detection.drift_log import SCORE_COLUMN
from fraud_detection.model_card import Calibration
from fraud_detection.model_card import ModelCard
from fraud_detection.model_card import Threshold
from fraud_detection.schema import FEATURE_NAMES
from fraud_detection.schema import TARGET_NAME
from fraud_detection.schema import schema_fingerprint
from training.calibration import calibrate
from training.calibration import fit_platt_scaling
from training.data import DatasetSplits
from training.data import split_dataset
from training.evaluation import choose_threshold
from training.evaluation import evaluate
from training.export import ONNX_INPUT
from training.export import ONNX_LOGIT_OUTPUT
from training.export import ONNX_OUTPUT
from training.export import check_parity
from training.export import convert_to_fp16
from training.export import export_onnx
from training.export import torch_logits
from training.export import torch_probabilities
from training.model_store import save_to_store
from training.preprocessing import FeatureScaler
from training.tracking import RunTracker
from training.trainer import EpochCallback
from training.trainer import TrainingHistory
from training.trainer import fit
from training.trainer import resolve_device

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainReport:
    """What one training run produced."""

    tag: str
    metrics: dict[str, float]
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
        seed=cfg.trainer.seed,
        device=resolve_device(cfg.trainer.device),
        on_epoch=on_epoch,
    )


def describe_source(data_cfg: DictConfig) -> str:
    if "path" in data_cfg:
        return f"csv:{Path(data_cfg.path).name}"
    return f"synthetic:n={data_cfg.n_rows},fraud_rate={data_cfg.fraud_rate},seed={data_cfg.seed}"


@dataclass(frozen=True)
class FittedModel:
    """A trained, calibrated network and the decision threshold chosen for it."""

    network: torch.nn.Module  # raw features in, calibrated fraud logit out
    scaler: FeatureScaler
    calibration: Calibration
    threshold: Threshold
    validation_scores: np.ndarray
    history: TrainingHistory
    training_seconds: float


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


def fit_model(
    cfg: DictConfig, splits: DatasetSplits, on_epoch: EpochCallback | None = None
) -> FittedModel:
    """Scale, fit (early stopping on validation), calibrate and threshold ``cfg.model``.

    The test split is not looked at. `train` and the quality benchmark both call this, so the
    benchmark measures exactly what ``python -m training`` ships.
    """
    if cfg.trainer.torch_threads > 0:
        torch.set_num_threads(cfg.trainer.torch_threads)
    scaler = FeatureScaler.fit(splits.train.features)
    torch.manual_seed(cfg.trainer.seed)
    network = instantiate(cfg.model.network, preprocessing=scaler.to_module())
    started = time.perf_counter()
    history = fit_from_config(network, splits, cfg, on_epoch=on_epoch)
    if cfg.calibration.method == "platt":
        logits = torch_logits(network, splits.validation.features)
        calibration = fit_platt_scaling(logits, splits.validation.labels)
    else:
        calibration = Calibration(method="none")
    network = calibrate(network, calibration)
    training_seconds = time.perf_counter() - started
    validation_scores = torch_probabilities(network, splits.validation.features)
    threshold = threshold_from_config(
        cfg, splits.validation.labels, validation_scores, splits.validation.features
    )
    return FittedModel(
        network=network,
        scaler=scaler,
        calibration=calibration,
        threshold=threshold,
        validation_scores=validation_scores,
        history=history,
        training_seconds=training_seconds,
    )


def train(cfg: DictConfig, *, wandb_mode: str, output_dir: Path) -> TrainReport:
    """Train the model `cfg.model` on `cfg.data` and save it to the BentoML model store."""
    resolved: dict[str, Any] = OmegaConf.to_container(cfg, resolve=True)  # type: ignore[assignment]
    frame: pd.DataFrame = instantiate(cfg.data)
    splits = split_dataset(
        frame,
        validation_size=cfg.split.validation_size,
        test_size=cfg.split.test_size,
        seed=cfg.split.seed,
    )
    logger.info(
        "Data %s: %d rows (%d frauds); train/val/test = %d/%d/%d",
        describe_source(cfg.data),
        len(frame),
        int(frame[TARGET_NAME].sum()),
        len(splits.train),
        len(splits.validation),
        len(splits.test),
    )
    tracker = RunTracker(
        project=cfg.wandb.project,
        name=f"fraud-{cfg.model.kind}",
        mode=wandb_mode,
        directory=output_dir,
        config=resolved,
    )
    fitted = fit_model(cfg, splits, on_epoch=tracker.log_epoch)
    network, threshold = fitted.network, fitted.threshold
    validation_metrics, _ = evaluate(
        splits.validation.labels, fitted.validation_scores, threshold.value
    )
    test_scores = torch_probabilities(network, splits.test.features)
    metrics, confusion = evaluate(splits.test.labels, test_scores, threshold.value)
    tracker.log_evaluation(splits.test.labels, test_scores, threshold.value, metrics)
    logger.info(
        "Test metrics of %s: %s", cfg.model.kind, {k: round(v, 4) for k, v in metrics.items()}
    )
    logger.info("Threshold %s", threshold.model_dump(exclude_none=True))

    rng = np.random.default_rng(cfg.split.seed)
    rows = rng.choice(
        len(splits.train), size=min(cfg.export.reference_rows, len(splits.train)), replace=False
    )
    reference = pd.DataFrame(splits.train.features[rows], columns=list(FEATURE_NAMES))
    reference[SCORE_COLUMN] = torch_probabilities(network, splits.train.features[rows])

    with tempfile.TemporaryDirectory() as tmp:
        onnx_path = Path(tmp) / ONNX_FILE
        export_onnx(network, onnx_path, splits.test.features)
        parity = check_parity(network, onnx_path, splits.test.features, cfg.export.parity_tolerance)
        if cfg.export.fp16:
            convert_to_fp16(onnx_path)
            parity = check_parity(
                network, onnx_path, splits.test.features, cfg.export.fp16_parity_tolerance
            )
        card = ModelCard(
            kind=cfg.model.kind,
            feature_names=list(FEATURE_NAMES),
            schema_fingerprint=schema_fingerprint(),
            preprocessing=fitted.scaler.to_card(),
            threshold=threshold,
            calibration=fitted.calibration,
            metrics=metrics,
            validation_metrics=validation_metrics,
            confusion_matrix=confusion,
            onnx_input=ONNX_INPUT,
            onnx_output=ONNX_OUTPUT,
            onnx_logit_output=ONNX_LOGIT_OUTPUT,
            onnx_parity_max_abs_diff=parity,
            onnx_precision="fp16" if cfg.export.fp16 else "fp32",
            data_source=describe_source(cfg.data),
            data_fingerprint=data_fingerprint(frame),
            n_train_rows=len(splits.train),
            training_config=resolved,
            training_seconds=round(fitted.training_seconds, 2),
        )
        validation_reference = pd.DataFrame(
            {SCORE_COLUMN: fitted.validation_scores, TARGET_NAME: splits.validation.labels}
        )
        model = save_to_store(card, onnx_path, reference, validation_reference)
    tracker.finish()
    return TrainReport(
        tag=str(model.tag),
        metrics=metrics,
        training_seconds=fitted.training_seconds,
        history=fitted.history,
    )
