"""Schema, synthetic generator and CSV reader."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from fraud_detection.schema import COLUMN_NAMES
from fraud_detection.schema import FEATURE_NAMES
from fraud_detection.schema import SchemaMismatchError
from fraud_detection.schema import check_feature_names
from training.data import DataFileError
from training.data import generate_transactions
from training.data import read_transactions_csv
from training.data import split_dataset


def test_feature_order_is_the_ulb_order() -> None:
    assert FEATURE_NAMES[0] == "Time" and FEATURE_NAMES[-1] == "Amount"
    assert FEATURE_NAMES[1:-1] == tuple(f"V{i}" for i in range(1, 29))
    assert COLUMN_NAMES[-1] == "Class"


def test_schema_mismatch_names_the_columns() -> None:
    with pytest.raises(SchemaMismatchError, match=r"missing \['V7'\].*unexpected \['V29'\]"):
        check_feature_names([c if c != "V7" else "V29" for c in FEATURE_NAMES], source="card")
    swapped = list(FEATURE_NAMES)
    swapped[1], swapped[2] = swapped[2], swapped[1]
    with pytest.raises(SchemaMismatchError, match="another order"):
        check_feature_names(swapped, source="card")


def test_generator_is_deterministic_per_seed() -> None:
    a = generate_transactions(3000, seed=5)
    b = generate_transactions(3000, seed=5)
    c = generate_transactions(3000, seed=6)
    pd.testing.assert_frame_equal(a, b)
    assert not a.equals(c)


def test_generator_matches_the_schema_and_rates() -> None:
    frame = generate_transactions(50_000, fraud_rate=0.0017, seed=0)
    assert list(frame.columns) == list(COLUMN_NAMES)
    assert frame["Class"].sum() == round(50_000 * 0.0017)
    assert frame["Time"].between(0, 2 * 86_400).all() and frame["Time"].is_monotonic_increasing
    assert (frame["Amount"] >= 0).all()
    assert np.isfinite(frame[list(FEATURE_NAMES)].to_numpy()).all()
    # Heavy-tailed amounts: mean well above the median, as in the real data.
    assert frame["Amount"].mean() > 2 * frame["Amount"].median()
    # Frauds are shifted on the known discriminative features (negative V14, V12; positive V4).
    means = frame.groupby("Class")[["V14", "V12", "V4"]].mean()
    assert means.loc[1, "V14"] < means.loc[0, "V14"] - 3
    assert means.loc[1, "V12"] < means.loc[0, "V12"] - 3
    assert means.loc[1, "V4"] > means.loc[0, "V4"] + 2


@pytest.mark.parametrize("suffix", [".csv", ".csv.gz"])
def test_csv_round_trip(tmp_path: Path, suffix: str) -> None:
    frame = generate_transactions(500, fraud_rate=0.05, seed=1)
    path = tmp_path / f"cc{suffix}"
    frame.to_csv(path, index=False)
    loaded = read_transactions_csv(path)
    pd.testing.assert_frame_equal(loaded, frame, check_dtype=False)


def _write(tmp_path: Path, frame: pd.DataFrame) -> Path:
    path = tmp_path / "bad.csv"
    frame.to_csv(path, index=False)
    return path


def test_csv_errors_name_the_problem(tmp_path: Path) -> None:
    good = generate_transactions(200, fraud_rate=0.05, seed=1)
    with pytest.raises(DataFileError, match="no such file"):
        read_transactions_csv(tmp_path / "absent.csv")
    with pytest.raises(DataFileError, match=r"missing \['V5'\]"):
        read_transactions_csv(_write(tmp_path, good.drop(columns="V5")))
    with pytest.raises(DataFileError, match=r"missing \['Class'\].*unexpected \['label'\]"):
        read_transactions_csv(_write(tmp_path, good.rename(columns={"Class": "label"})))
    broken = good.astype({"V3": object})
    broken.loc[7, "V3"] = "oops"
    with pytest.raises(DataFileError, match=r"'V3'.*row 7"):
        read_transactions_csv(_write(tmp_path, broken))
    with pytest.raises(DataFileError, match="both 0 and 1"):
        read_transactions_csv(_write(tmp_path, good.assign(Class=0)))
    with pytest.raises(DataFileError, match="'Amount' has negative"):
        read_transactions_csv(_write(tmp_path, good.assign(Amount=-1.0)))


def test_split_is_stratified_and_disjoint() -> None:
    frame = generate_transactions(10_000, fraud_rate=0.01, seed=2)
    splits = split_dataset(frame, validation_size=0.15, test_size=0.2, seed=0)
    sizes = [len(splits.train), len(splits.validation), len(splits.test)]
    assert sum(sizes) == len(frame)
    for part in (splits.train, splits.validation, splits.test):
        assert part.features.shape[1] == len(FEATURE_NAMES)
        assert part.labels.mean() == pytest.approx(0.01, abs=0.002)
    rows = {tuple(r) for r in np.vstack([splits.train.features, splits.validation.features])}
    assert not any(tuple(r) in rows for r in splits.test.features)
