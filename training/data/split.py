"""Seeded, stratified train/validation/test split."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.model_selection import train_test_split

from fraud_detection.schema import FEATURE_NAMES
from fraud_detection.schema import TARGET_NAME


@dataclass(frozen=True)
class Split:
    """Features (float32, schema order) and labels of one part of the data."""

    features: np.ndarray
    labels: np.ndarray

    @classmethod
    def from_frame(cls, frame: pd.DataFrame) -> Split:
        return cls(
            features=frame.loc[:, list(FEATURE_NAMES)].to_numpy(dtype=np.float32),
            labels=frame[TARGET_NAME].to_numpy(dtype=np.int64),
        )

    def __len__(self) -> int:
        return len(self.labels)


@dataclass(frozen=True)
class DatasetSplits:
    train: Split
    validation: Split
    test: Split


def split_dataset(
    frame: pd.DataFrame, *, validation_size: float, test_size: float, seed: int
) -> DatasetSplits:
    """Stratify on the label so each part keeps the fraud rate."""
    rest, test = train_test_split(
        frame, test_size=test_size, stratify=frame[TARGET_NAME], random_state=seed
    )
    train, validation = train_test_split(
        rest,
        test_size=validation_size / (1.0 - test_size),
        stratify=rest[TARGET_NAME],
        random_state=seed,
    )
    return DatasetSplits(
        Split.from_frame(train), Split.from_frame(validation), Split.from_frame(test)
    )
