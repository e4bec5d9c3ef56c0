"""`RunTracker`: Weights & Biases logging for one training run (offline unless told otherwise)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

logger = logging.getLogger(__name__)


class RunTracker:
    """Logs the resolved config, per-epoch metrics, the PR curve and the confusion matrix.

    `mode` is W&B's: ``offline`` (default; sync later with ``wandb sync``), ``online`` or
    ``disabled`` (tests).
    """

    def __init__(
        self, *, project: str, name: str, mode: str, directory: Path, config: dict[str, Any]
    ) -> None:
        import wandb

        directory.mkdir(parents=True, exist_ok=True)
        self._wandb = wandb
        self.run = wandb.init(
            project=project,
            name=name,
            mode=mode,
            dir=str(directory),
            config=config,
            reinit="finish_previous",
        )

    def log_epoch(self, record: dict[str, float]) -> None:
        self.run.log(record)

    def log_evaluation(
        self,
        labels: np.ndarray,
        scores: np.ndarray,
        threshold: float,
        metrics: dict[str, float],
        prefix: str = "test",
    ) -> None:
        wandb = self._wandb
        probabilities = np.column_stack([1.0 - scores, scores])
        self.run.log(
            {
                f"{prefix}/pr_curve": wandb.plot.pr_curve(
                    labels, probabilities, labels=["genuine", "fraud"]
                ),
                f"{prefix}/confusion_matrix": wandb.plot.confusion_matrix(
                    y_true=labels.tolist(),
                    preds=(scores >= threshold).astype(int).tolist(),
                    class_names=["genuine", "fraud"],
                ),
            }
        )
        self.run.summary.update({f"{prefix}/{k}": v for k, v in metrics.items()})

    def finish(self) -> None:
        self.run.finish()
