"""Cross-fitting: K networks, each trained on K-1 folds and early-stopped on the fold it left out.

Every labelled row trains K-1 members and is scored, out of fold, by the one member that never
saw it. Those out-of-fold scores are the honest validation set of the ensemble: calibration
and the threshold are fitted on all of them rather than on a 15% validation split. The served
model is `MeanLogitEnsemble`, the members' logits averaged inside one network, so the ONNX
export is one graph and serving stays one session call.
"""

from __future__ import annotations

from collections.abc import Callable
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from sklearn.model_selection import StratifiedKFold
from torch import nn

from training.data import DatasetSplits
from training.data.split import Split
from training.export import torch_logits
from training.models import FraudMLP
from training.preprocessing import ScaleFeatures
from training.trainer import TrainingHistory


class MeanLogitEnsemble(nn.Module):
    """Raw features in, the mean of the members' fraud logits out."""

    def __init__(self, members: Sequence[nn.Module]) -> None:
        super().__init__()
        if not members:
            raise ValueError("an ensemble needs at least one member")
        self.members = nn.ModuleList(members)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return torch.stack([member(features) for member in self.members]).mean(dim=0)


class StackedMLPEnsemble(nn.Module):
    """The same function as ``MeanLogitEnsemble(mlps)``, computed as K-batched matrix products.

    Each member's scaling is folded into its first layer (``W (x - m) / s + b`` is
    ``(W / s) x + (b - W m / s)``), then layer i of all members is one ``[K, in, out]`` tensor:
    the exported graph has a handful of MatMul nodes whatever K is, instead of K copies of the
    member's nodes, so an ensemble costs the service about what one network does.
    """

    def __init__(self, mlps: Sequence[FraudMLP]) -> None:
        super().__init__()
        scalers = [m.preprocessing for m in mlps]
        if not all(isinstance(s, ScaleFeatures) for s in scalers):
            raise TypeError("every member must scale its features with ScaleFeatures")
        mask = scalers[0].log1p_mask
        if any(not torch.equal(s.log1p_mask, mask) for s in scalers):
            raise ValueError("members log1p-transform different features")
        self.register_buffer("log1p_mask", mask.clone())
        for m in mlps:  # the stacked forward hard-codes Linear, exact GELU, Dropout
            for layer in m.network:
                exact_gelu = isinstance(layer, nn.GELU) and layer.approximate == "none"
                if not (isinstance(layer, nn.Linear | nn.Dropout) or exact_gelu):
                    raise ValueError(f"cannot stack a member with a {layer} layer")
        per_member = [[layer for layer in m.network if isinstance(layer, nn.Linear)] for m in mlps]
        shapes = {tuple(tuple(layer.weight.shape) for layer in layers) for layers in per_member}
        if len(shapes) != 1:
            raise ValueError(f"members differ in shape: {sorted(shapes)}")
        weights, biases = [], []
        with torch.no_grad():
            for depth in range(len(per_member[0])):
                w = torch.stack([layers[depth].weight.T for layers in per_member])  # K,in,out
                b = torch.stack([layers[depth].bias for layers in per_member])  # K,out
                if depth == 0:
                    scale = torch.stack([s.scale for s in scalers]).unsqueeze(-1)  # K,in,1
                    mean = torch.stack([s.mean for s in scalers]).unsqueeze(-1)
                    b = b - (w * (mean / scale)).sum(dim=1)
                    w = w / scale
                weights.append(nn.Parameter(w.clone(), requires_grad=False))
                biases.append(nn.Parameter(b.unsqueeze(1).clone(), requires_grad=False))
        self.weights = nn.ParameterList(weights)
        self.biases = nn.ParameterList(biases)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        x = torch.where(self.log1p_mask, torch.log1p(torch.relu(features)), features)
        hidden = x.unsqueeze(0)  # 1,N,in: broadcast against every member's K,in,out
        last = len(self.weights) - 1
        for depth, (w, b) in enumerate(zip(self.weights, self.biases, strict=True)):
            hidden = torch.matmul(hidden, w) + b
            if depth < last:
                hidden = nn.functional.gelu(hidden)
        return hidden.squeeze(-1).mean(dim=0)


def ensemble_network(members: Sequence[nn.Module]) -> nn.Module:
    """The members' mean logit as one network: stacked when they are MLPs of one shape."""
    if all(isinstance(m, FraudMLP) for m in members):
        try:
            return StackedMLPEnsemble(members)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            pass
    return MeanLogitEnsemble(members)


@dataclass(frozen=True)
class FoldAssignment:
    """Which of `n_folds` stratified folds each labelled row is held out in."""

    fold_of_row: np.ndarray
    n_folds: int

    @classmethod
    def stratified(cls, labels: np.ndarray, n_folds: int, seed: int) -> FoldAssignment:
        if n_folds < 2:
            raise ValueError(f"cross-fitting needs at least 2 folds, got {n_folds}")
        frauds = int(np.sum(labels == 1))
        if frauds < n_folds:
            raise ValueError(
                f"ensemble.folds={n_folds} needs at least {n_folds} frauds in the training "
                f"rows, found {frauds}; lower ensemble.folds or add data"
            )
        fold_of_row = np.empty(len(labels), dtype=np.int64)
        splitter = StratifiedKFold(n_splits=n_folds, shuffle=True, random_state=seed)
        for fold, (_, held_out) in enumerate(splitter.split(np.zeros(len(labels)), labels)):
            fold_of_row[held_out] = fold
        return cls(fold_of_row, n_folds)

    def split(self, features: np.ndarray, labels: np.ndarray, fold: int) -> DatasetSplits:
        """Fold `fold` held out (validation, and test for the trainer's bookkeeping)."""
        held = self.fold_of_row == fold
        train = Split(features[~held], labels[~held])
        held_out = Split(features[held], labels[held])
        return DatasetSplits(train=train, validation=held_out, test=held_out)


#: Builds and trains one member on a fold's parts; returns the network (raw features ->
#: logit) and its history. `index` seeds it.
MemberTrainer = Callable[[DatasetSplits, int], tuple[nn.Module, TrainingHistory]]


@dataclass(frozen=True)
class CrossFittedMembers:
    """The members, their histories, and every labelled row's out-of-fold logit."""

    members: list[nn.Module]
    histories: list[TrainingHistory]
    out_of_fold_logits: np.ndarray
    folds: FoldAssignment

    def ensemble(self) -> nn.Module:
        return ensemble_network(self.members)


def cross_fit(
    features: np.ndarray, labels: np.ndarray, folds: FoldAssignment, train_member: MemberTrainer
) -> CrossFittedMembers:
    """Train one member per fold; score each row with the member that held it out."""
    members, histories = [], []
    out_of_fold = np.full(len(labels), np.nan, dtype=np.float64)
    for fold in range(folds.n_folds):
        parts = folds.split(features, labels, fold)
        network, history = train_member(parts, fold)
        held = folds.fold_of_row == fold
        out_of_fold[held] = torch_logits(network, parts.validation.features)
        members.append(network)
        histories.append(history)
    return CrossFittedMembers(members, histories, out_of_fold, folds)
