"""Read a real creditcard CSV (plain or gzipped) and check it against the schema."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from fraud_detection.schema import COLUMN_NAMES
from fraud_detection.schema import NON_NEGATIVE_FEATURES
from fraud_detection.schema import TARGET_NAME
from fraud_detection.schema import describe_column_difference


class DataFileError(ValueError):
    """The file is not a ULB creditcard CSV; the message says what is wrong."""


def read_transactions_csv(path: str | Path) -> pd.DataFrame:
    """Load `path` (``.csv`` or ``.csv.gz``) with columns Time, V1..V28, Amount, Class."""
    path = Path(path)
    if not path.is_file():
        raise DataFileError(
            f"{path}: no such file. Fetch the real data with `dvc pull` (see data.dvc) "
            "or train on the embedded default: data=synthetic"
        )
    try:
        header = pd.read_csv(path, nrows=0).columns.tolist()
    except (pd.errors.ParserError, UnicodeDecodeError, EOFError, OSError) as e:
        raise DataFileError(f"{path}: not a readable CSV ({e})") from e
    if header != list(COLUMN_NAMES):
        raise DataFileError(
            f"{path}: header does not match the creditcard schema "
            f"({describe_column_difference(header, COLUMN_NAMES)}). Expected {list(COLUMN_NAMES)}"
        )
    frame = pd.read_csv(path)
    for column in COLUMN_NAMES:
        values = pd.to_numeric(frame[column], errors="coerce")
        bad = frame.index[values.isna() | ~np.isfinite(values.fillna(0.0))]
        if len(bad):
            raise DataFileError(
                f"{path}: column {column!r} has non-numeric or non-finite values "
                f"(first at data row {int(bad[0])}: {frame[column].iloc[bad[0]]!r})"
            )
        frame[column] = values
    labels = set(np.unique(frame[TARGET_NAME]))
    if not labels <= {0, 1} or len(labels) < 2:
        raise DataFileError(f"{path}: {TARGET_NAME} must hold both 0 and 1, found {sorted(labels)}")
    for column in NON_NEGATIVE_FEATURES:
        if (frame[column] < 0).any():
            raise DataFileError(f"{path}: column {column!r} has negative values")
    frame[TARGET_NAME] = frame[TARGET_NAME].astype(np.int64)
    return frame
