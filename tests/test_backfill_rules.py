"""The backfill's rules on Arrow batches, and its derived ids, without Spark.

The rules must say what ``POST /predict`` says about the same values (`fraud_detection.api_models`
is the reference), naming the first column a row breaks.
"""

from __future__ import annotations

import math

import numpy as np
import pyarrow as pa
import pytest
from pydantic import ValidationError

from backfill.row_ids import row_ids
from backfill.rules import check_features
from backfill.rules import check_label
from backfill.rules import check_transaction_ids
from fraud_detection.api_models import EXAMPLE_TRANSACTION
from fraud_detection.api_models import Transaction
from fraud_detection.schema import FEATURE_NAMES


def batch_of(rows: list[dict[str, object]], text: bool = False) -> pa.RecordBatch:
    """A batch with one column per feature: float64, or strings as Spark reads a CSV."""
    columns = {}
    for name in FEATURE_NAMES:
        values = [r[name] for r in rows]
        if text:
            columns[name] = pa.array([None if v is None else str(v) for v in values])
        else:
            columns[name] = pa.array(values, type=pa.float64())
    return pa.RecordBatch.from_pydict(columns)


VALUES = [0.0, -1.5, 1e9, -1e9, 1e9 * 1.0000001, -2e9, math.nan, math.inf, -math.inf, None]


@pytest.mark.parametrize("column", ["V3", "Amount", "Time"])
@pytest.mark.parametrize("value", VALUES)
def test_the_rules_agree_with_predict(column: str, value: float | None) -> None:
    row = {**EXAMPLE_TRANSACTION, column: value}
    try:
        Transaction(**row)
        accepted = True
    except ValidationError:
        accepted = False
    for text in (False, True):
        features, problems = check_features(batch_of([row], text=text))
        assert bool(problems.broken[0]) is not accepted, (column, value, text)
        if not accepted:
            assert problems.column[0] == column
        else:
            assert features[0, FEATURE_NAMES.index(column)] == value


def test_each_row_names_its_first_broken_column_and_why() -> None:
    rows = [
        dict(EXAMPLE_TRANSACTION),
        {**EXAMPLE_TRANSACTION, "V1": "x", "Amount": -3},
        {**EXAMPLE_TRANSACTION, "V2": None},
        {**EXAMPLE_TRANSACTION, "V4": "nan"},
        {**EXAMPLE_TRANSACTION, "V5": " 7.5 "},  # spaces around a number: the number
        {**EXAMPLE_TRANSACTION, "Time": "-1"},
        {**EXAMPLE_TRANSACTION, "V6": "3e10"},
    ]
    features, problems = check_features(batch_of(rows, text=True))
    got = list(zip(problems.column.tolist(), problems.reason.tolist(), strict=True))
    assert got == [
        (None, None),
        ("V1", "not a number"),
        ("V2", "missing"),
        ("V4", "not finite"),
        (None, None),
        ("Time", "negative"),
        ("V6", "beyond ±1e+09"),
    ]
    assert features[4, FEATURE_NAMES.index("V5")] == 7.5


def test_labels_and_ids_break_rows_predict_would_refuse() -> None:
    rows = [dict(EXAMPLE_TRANSACTION)] * 4
    _, problems = check_features(batch_of(rows))
    labels = check_label(pa.array([0, 1, None, 2]), "Class", problems)
    assert labels.tolist() == [0, 1, -1, -1]
    ids = check_transaction_ids(pa.array(["a-1", None, "x" * 65, "b 2"]), "id", problems)
    assert ids.to_pylist()[0] == "a-1"
    assert problems.broken.tolist() == [False, False, True, True]
    assert problems.reason.tolist()[2:] == ["not 1 to 64 visible ASCII characters", "not 0 or 1"]


def test_derived_ids_are_stable_distinct_and_valid_transaction_ids() -> None:
    rng = np.random.default_rng(0)
    features = rng.normal(size=(5000, 30))
    ids = row_ids(features).to_pylist()
    assert len(set(ids)) == len(ids)
    assert row_ids(np.asfortranarray(features)).to_pylist() == ids  # memory order is not data
    assert row_ids(features[10:20]).to_pylist() == ids[10:20]  # nor is the batch
    # The same values read from text (a CSV) give the same ids as typed Parquet values.
    text_rows = [dict(zip(FEATURE_NAMES, map(repr, row.tolist()), strict=True)) for row in features]
    parsed, _ = check_features(batch_of(text_rows, text=True))
    assert row_ids(parsed).to_pylist() == ids
    _, problems = check_features(batch_of([dict(EXAMPLE_TRANSACTION)] * len(ids)))
    check_transaction_ids(pa.array(ids), "transaction_id", problems)
    assert not problems.broken.any()
