"""Hydra entry point.

python -m training                                  # MLP on the embedded synthetic data
python -m training model=distilbert                 # tiny DistilBERT
python -m training -m model=mlp,distilbert          # both
python -m training data=csv data.path=creditcard.csv.gz
python -m training model=distilbert model.pretrained=/path/to/saved/distilbert
"""

from __future__ import annotations

import os
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from training.config import register_configs
from training.pipeline import train

register_configs()


@hydra.main(version_base="1.3", config_path="../configs", config_name="train")
def main(cfg: DictConfig) -> None:
    report = train(
        cfg,
        wandb_mode=os.environ.get("WANDB_MODE", cfg.wandb.mode),
        output_dir=Path(HydraConfig.get().runtime.output_dir),
    )
    print(
        f"{report.tag}: {report.metrics_source} AUPRC "
        f"{report.metrics['average_precision']:.4f}, "
        f"trained in {report.training_seconds:.1f} s"
    )


if __name__ == "__main__":
    main()
