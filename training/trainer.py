"""The training loop: class-weighted BCE, early stopping on validation average precision
(ties broken by validation log loss)."""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable
from dataclasses import dataclass
from dataclasses import field

import torch
from sklearn.metrics import average_precision_score
from sklearn.metrics import log_loss
from torch import nn
from tqdm.auto import tqdm

from training.data import DatasetSplits
from training.export import torch_probabilities

logger = logging.getLogger(__name__)

EpochCallback = Callable[[dict[str, float]], None]


@dataclass
class TrainingHistory:
    """Per-epoch records and the epoch whose weights were kept."""

    epochs: list[dict[str, float]] = field(default_factory=list)
    best_epoch: int = -1
    best_validation_ap: float = float("-inf")
    best_validation_loss: float = float("inf")


def _improves(record: dict[str, float], history: TrainingHistory) -> bool:
    """Higher validation AP wins; on a tie (small validation sets often reach AP = 1.0
    within a few epochs) the lower validation log loss wins."""
    ap = record["validation_average_precision"]
    if ap > history.best_validation_ap + 1e-9:
        return True
    tied = abs(ap - history.best_validation_ap) <= 1e-9
    return tied and record["validation_log_loss"] < history.best_validation_loss


def resolve_device(name: str) -> torch.device:
    """``auto`` means CUDA when visible, else CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def fit(
    network: nn.Module,
    splits: DatasetSplits,
    *,
    optimizer_factory: Callable[..., torch.optim.Optimizer],
    max_epochs: int,
    batch_size: int,
    patience: int,
    class_weight_power: float,
    seed: int,
    device: torch.device,
    on_epoch: EpochCallback | None = None,
) -> TrainingHistory:
    """Train `network` in place and restore the weights of the best validation-AP epoch.

    The positive class is weighted by ``(n_genuine / n_fraud) ** class_weight_power``.
    """
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    train_x = torch.as_tensor(splits.train.features)
    train_y = torch.as_tensor(splits.train.labels, dtype=torch.float32)
    n_pos = float(train_y.sum())
    pos_weight = ((len(train_y) - n_pos) / max(n_pos, 1.0)) ** class_weight_power
    loss_fn = nn.BCEWithLogitsLoss(pos_weight=torch.tensor(pos_weight, device=device))
    network.to(device)
    optimizer = optimizer_factory(network.parameters())
    history = TrainingHistory()
    best_state = copy.deepcopy(network.state_dict())

    progress = tqdm(range(max_epochs), desc=f"train {type(network).__name__}", unit="epoch")
    for epoch in progress:
        network.train()
        order = torch.randperm(len(train_y), generator=generator)
        total, seen = 0.0, 0
        for start in range(0, len(order), batch_size):
            idx = order[start : start + batch_size]
            x, y = train_x[idx].to(device), train_y[idx].to(device)
            optimizer.zero_grad(set_to_none=True)
            loss = loss_fn(network(x), y)
            loss.backward()
            optimizer.step()
            total += loss.item() * len(idx)
            seen += len(idx)
        val_scores = torch_probabilities(network, splits.validation.features)
        record = {
            "epoch": float(epoch),
            "train_loss": total / seen,
            "validation_average_precision": float(
                average_precision_score(splits.validation.labels, val_scores)
            ),
            "validation_log_loss": float(
                log_loss(splits.validation.labels, val_scores, labels=[0, 1])
            ),
        }
        history.epochs.append(record)
        progress.set_postfix(
            loss=f"{record['train_loss']:.4f}",
            val_ap=f"{record['validation_average_precision']:.4f}",
        )
        if on_epoch is not None:
            on_epoch(record)
        if _improves(record, history):
            history.best_validation_ap = record["validation_average_precision"]
            history.best_validation_loss = record["validation_log_loss"]
            history.best_epoch = epoch
            best_state = copy.deepcopy(network.state_dict())
        elif epoch - history.best_epoch >= patience:
            logger.info("Early stop at epoch %d (best %d)", epoch, history.best_epoch)
            break
    network.load_state_dict(best_state)
    network.cpu().eval()
    return history
