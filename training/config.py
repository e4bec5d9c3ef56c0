"""Typed schema of the Hydra configuration; YAML under ``configs/`` holds only values.

Every group's schema is registered in Hydra's ConfigStore as ``base_<name>``; the YAML files
extend it, so a misspelt key fails at start-up instead of being ignored.
"""

from __future__ import annotations

from dataclasses import dataclass
from dataclasses import field
from typing import Any
from typing import Optional

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING


@dataclass
class SyntheticDataConfig:
    """Embedded generator (the offline default)."""

    _target_: str = "training.data.generate_transactions"
    n_rows: int = 50_000  # quickstart size: trains both models in minutes on 2 CPU cores
    fraud_rate: float = 0.0017  # share of frauds, as in the full ULB dataset
    seed: int = 0


@dataclass
class CsvDataConfig:
    """A real ULB creditcard CSV, plain or gzipped (``data=csv data.path=<file>``)."""

    _target_: str = "training.data.read_transactions_csv"
    path: str = MISSING


@dataclass
class SplitConfig:
    # ensemble.folds=1 only: share of all rows for early stopping, calibration, threshold
    validation_size: float = 0.15
    # held out from everything (card metrics on it); 0: every labelled row trains, and the
    # card reports the out-of-fold metrics
    test_size: float = 0.0
    seed: int = 0


@dataclass
class TreeConfig:
    """The optional LightGBM member, one booster per fold (see `training.tree_member`)."""

    enabled: bool = True  # with ensemble.folds >= 2; ensemble.folds=1 serves one network alone
    n_estimators: int = 2000  # upper bound: each booster early-stops on the fold it left out
    learning_rate: float = 0.1  # fewer trees: ONNX Runtime walks each one for every row
    num_leaves: int = 15
    max_depth: int = 4  # each row walks at most 4 nodes per tree (-1: no limit)
    min_child_samples: int = 20
    subsample: float = 0.8
    colsample_bytree: float = 0.8
    reg_lambda: float = 1.0
    early_stopping_rounds: int = 50
    seed: int = 0


@dataclass
class EnsembleConfig:
    """Cross-fitting: `folds` members, each trained on the other folds, averaged in one graph."""

    folds: int = 5  # 1: a single network with a validation split
    seed: int = 0  # which fold each row falls in
    trees: TreeConfig = field(default_factory=TreeConfig)


@dataclass
class OptimizerConfig:
    _target_: str = "torch.optim.AdamW"
    _partial_: bool = True  # the parameters are given at run time
    lr: float = 1e-3
    weight_decay: float = 1e-4


@dataclass
class MlpNetworkConfig:
    _target_: str = "training.models.FraudMLP"
    hidden_sizes: list[int] = field(default_factory=lambda: [128, 64])
    dropout: float = 0.1


@dataclass
class DistilBertNetworkConfig:
    _target_: str = "training.models.FraudDistilBert"
    dim: int = 32  # tiny CPU default; see configs/model/distilbert_base.yaml for the GPU size
    n_layers: int = 2
    n_heads: int = 2
    hidden_dim: int = 64
    dropout: float = 0.1
    pretrained: Optional[str] = "${..pretrained}"  # noqa: UP045 (OmegaConf needs Optional)


@dataclass
class ModelConfig:
    """One network family and its training recipe."""

    kind: str = MISSING  # mlp | distilbert: the model-store name is fraud-<kind>
    network: Any = MISSING
    #: Overrides of `network` for cross-fitted members (``ensemble.folds >= 2``); empty: none.
    member_network: dict[str, Any] = field(default_factory=dict)
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    batch_size: int = 512
    max_epochs: int = 30


@dataclass
class MlpConfig(ModelConfig):
    kind: str = "mlp"
    network: MlpNetworkConfig = field(default_factory=MlpNetworkConfig)


@dataclass
class DistilBertConfig(ModelConfig):
    kind: str = "distilbert"
    network: DistilBertNetworkConfig = field(default_factory=DistilBertNetworkConfig)
    #: Local directory of pretrained DistilBERT weights (``save_pretrained`` layout), not a hub id.
    pretrained: Optional[str] = None  # noqa: UP045


@dataclass
class TrainerConfig:
    patience: int = 5  # epochs without a better validation AP before stopping
    class_weight_power: float = 0.5  # positive weight = (n_genuine / n_fraud) ** power
    device: str = "auto"  # auto | cpu | cuda
    seed: int = 0
    torch_threads: int = 0  # 0 = torch's default


@dataclass
class ThresholdConfig:
    rule: str = "best_f1"  # best_f1 | recall_at_fpr | min_expected_cost
    target_fpr: float = 0.01  # used by recall_at_fpr
    missed_fraud_cost: Any = "amount"  # min_expected_cost: "amount" (the fraud's Amount) or a cost
    false_alarm_cost: float = 5.0  # min_expected_cost: cost of reviewing one genuine transaction
    # min_expected_cost: weight genuine rows to this fraud prevalence (None: the data's own rate)
    fraud_rate: Optional[float] = None  # noqa: UP045 (OmegaConf needs Optional)


@dataclass
class CalibrationConfig:
    method: str = "platt"  # platt (logistic fit on validation logits, inside the ONNX) | none


@dataclass
class ExportConfig:
    parity_tolerance: float = 1e-4  # max |p_onnx - p_torch| on the test rows
    reference_rows: int = 5_000  # training rows stored with the model for drift detection
    fp16: bool = False  # float16 graph after the first LayerNorm (DistilBERT on GPU)
    fp16_parity_tolerance: float = 1e-2  # max |p_fp16 - p_torch_fp32| on the test rows


@dataclass
class WandbConfig:
    project: str = "fraud-bento"
    mode: str = "offline"  # offline | online | disabled; the WANDB_MODE variable wins


@dataclass
class TrainConfig:
    data: Any = MISSING
    model: Any = MISSING
    split: SplitConfig = field(default_factory=SplitConfig)
    ensemble: EnsembleConfig = field(default_factory=EnsembleConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    threshold: ThresholdConfig = field(default_factory=ThresholdConfig)
    calibration: CalibrationConfig = field(default_factory=CalibrationConfig)
    export: ExportConfig = field(default_factory=ExportConfig)
    wandb: WandbConfig = field(default_factory=WandbConfig)


def register_configs() -> None:
    """Register the schemas that ``configs/*.yaml`` extend."""
    store = ConfigStore.instance()
    store.store(name="base_train", node=TrainConfig)
    store.store(group="data", name="base_synthetic", node=SyntheticDataConfig)
    store.store(group="data", name="base_csv", node=CsvDataConfig)
    store.store(group="model", name="base_mlp", node=MlpConfig)
    store.store(group="model", name="base_distilbert", node=DistilBertConfig)
