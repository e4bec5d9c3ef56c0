"""What each Python worker does to an Arrow batch: check it, then score it or reject it.

Spark hands the job's columns to `scored_batches` and `rejected_batches` (``mapInArrow``) in
batches of ``spark.sql.execution.arrow.maxRecordsPerBatch`` rows. Both apply the same rules, so
every input row leaves by exactly one of them.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from backfill.models import ShippedModel
from backfill.models import executor_scorer
from backfill.row_ids import row_ids
from backfill.rules import RowProblems
from backfill.rules import check_dates
from backfill.rules import check_features
from backfill.rules import check_label
from backfill.rules import check_transaction_ids
from fraud_detection.schema import FEATURE_NAMES

if TYPE_CHECKING:
    from pyspark.accumulators import Accumulator

#: The date column a scored row is partitioned by when the input names none.
SCORE_DATE = "score_date"
REJECT_COLUMN = "reject_column"
REJECT_REASON = "reject_reason"
#: The input's date column read as a date by Spark (null where it could not be).
DATE_VALUE = "_backfill_date"
#: Where Spark keeps a CSV line whose field count differs from the header's.
MALFORMED = "_malformed_csv_row"
MALFORMED_ROW = "malformed CSV row: its field count differs from the header's"
#: Columns the job writes: an input's optional columns must not take these names.
OUTPUT_COLUMNS = (
    "transaction_id", "fraud_probability", "is_fraud", "model", "model_version",
    "challenger_probability", "challenger_is_fraud", "challenger", "challenger_version",
    "scored_at", SCORE_DATE, REJECT_COLUMN, REJECT_REASON,
)  # fmt: skip


@dataclass(frozen=True)
class InputColumns:
    """Which optional columns the input has (None where absent)."""

    transaction_id: str | None
    label: str | None
    date: str | None  # its values as dates come in DATE_VALUE
    malformed: str | None = None  # MALFORMED, for a CSV

    def names(self) -> list[str]:
        """The input columns the job reads."""
        optional = (self.transaction_id, self.label, self.date, self.malformed)
        return [*FEATURE_NAMES, *(c for c in optional if c is not None)]

    def values(self) -> list[str]:
        """The input columns a reject shows as they came (its id is its transaction_id)."""
        return [c for c in self.names() if c != self.transaction_id]


@dataclass(frozen=True)
class ScoringPlan:
    champion: ShippedModel
    challenger: ShippedModel | None
    columns: InputColumns


def scored_schema(columns: InputColumns) -> pa.Schema:
    """What `scored_batches` yields (the job adds model tags, scored_at and score_date)."""
    fields = [
        pa.field("transaction_id", pa.string(), nullable=False),
        pa.field("fraud_probability", pa.float64(), nullable=False),
        pa.field("is_fraud", pa.bool_(), nullable=False),
        pa.field("challenger_probability", pa.float64()),
        pa.field("challenger_is_fraud", pa.bool_()),
        pa.field("Amount", pa.float64(), nullable=False),
    ]
    if columns.label is not None:
        fields.append(pa.field(columns.label, pa.int32()))
    if columns.date is not None:
        fields.append(pa.field(columns.date, pa.date32()))
    return pa.schema(fields)


def rejected_schema(columns: InputColumns) -> pa.Schema:
    """What `rejected_batches` yields: the id, the broken rule, and the row's values as text."""
    fields = [
        pa.field("transaction_id", pa.string(), nullable=False),
        pa.field(REJECT_COLUMN, pa.string(), nullable=False),
        pa.field(REJECT_REASON, pa.string(), nullable=False),
    ]
    fields += [pa.field(c, pa.string()) for c in columns.values()]
    return pa.schema(fields)


@dataclass(frozen=True)
class _Checked:
    features: np.ndarray
    problems: RowProblems
    given_ids: pa.Array | None  # the input's ids, as text
    labels: np.ndarray | None

    def ids(self, rows: np.ndarray, features: np.ndarray | None = None) -> pa.Array:
        """Ids of `rows` (a mask): the input's where given, else derived from the features
        (`features`: those rows' features, when the caller has already selected them)."""
        every = bool(rows.all())
        if features is None:
            features = self.features if every else self.features[rows]
        derived = row_ids(features)  # only the rows that leave by this way
        if self.given_ids is None:
            return derived
        given = self.given_ids if every else self.given_ids.filter(pa.array(rows))
        return pc.coalesce(given, derived)


def _check(batch: pa.RecordBatch, columns: InputColumns) -> _Checked:
    features, problems = check_features(batch)
    labels = given = None
    if columns.label is not None:
        labels = check_label(batch.column(columns.label), columns.label, problems)
    if columns.date is not None:
        check_dates(batch.column(DATE_VALUE), columns.date, problems)
    if columns.transaction_id is not None:
        given = check_transaction_ids(
            batch.column(columns.transaction_id), columns.transaction_id, problems
        )
    if columns.malformed is not None:  # its values are misplaced: that is the first problem
        line = batch.column(columns.malformed).is_valid().to_numpy(zero_copy_only=False)
        problems.override(line, "(row)", MALFORMED_ROW)
    return _Checked(features, problems, given, labels)


def _task_cpus() -> int:
    from pyspark import TaskContext

    context = TaskContext.get()
    return max(1, context.cpus()) if context is not None else 1


def scored_batches(
    batches: Iterator[pa.RecordBatch], plan: ScoringPlan, rejected: Accumulator | None = None
) -> Iterator[pa.RecordBatch]:
    """The valid rows of each batch, scored by the champion (and the challenger); `rejected`
    counts the others (the job looks for them only when there are some)."""
    threads = _task_cpus()
    champion = executor_scorer(plan.champion, threads)
    challenger = None if plan.challenger is None else executor_scorer(plan.challenger, threads)
    schema = scored_schema(plan.columns)
    amount = FEATURE_NAMES.index("Amount")
    for batch in batches:
        checked = _check(batch, plan.columns)
        keep = ~checked.problems.broken
        every = bool(keep.all())
        if not every and rejected is not None:
            rejected.add(int((~keep).sum()))
        features = checked.features if every else checked.features[keep]
        rows = np.ascontiguousarray(features, dtype=np.float32)
        p = champion.predict_proba(rows).astype(np.float64)
        if challenger is None:
            cp, cf = pa.nulls(len(p), pa.float64()), pa.nulls(len(p), pa.bool_())
        else:
            q = challenger.predict_proba(rows).astype(np.float64)
            cp, cf = pa.array(q), pa.array(q >= challenger.threshold)
        arrays = [
            checked.ids(keep, features),
            pa.array(p),
            pa.array(p >= champion.threshold),
            cp,
            cf,
            pa.array(features[:, amount]),
        ]
        if checked.labels is not None:
            labels = (checked.labels if every else checked.labels[keep]).astype(np.int32)
            arrays.append(pa.array(labels, mask=labels < 0))
        if plan.columns.date is not None:
            dates = batch.column(DATE_VALUE)
            arrays.append(dates if every else dates.filter(pa.array(keep)))
        yield pa.RecordBatch.from_arrays(arrays, schema=schema)


def rejected_batches(
    batches: Iterator[pa.RecordBatch], columns: InputColumns
) -> Iterator[pa.RecordBatch]:
    """The rows of each batch that break a rule, with the rule and their values as text."""
    schema = rejected_schema(columns)
    for batch in batches:
        checked = _check(batch, columns)
        if not checked.problems.broken.any():
            continue
        rows = checked.problems.broken
        mask = pa.array(rows)
        arrays = [
            checked.ids(rows),
            pa.array(checked.problems.column[rows], pa.string()),
            pa.array(checked.problems.reason[rows], pa.string()),
        ]
        for name in columns.values():
            values = batch.column(name).filter(mask)
            arrays.append(values if pa.types.is_string(values.type) else values.cast(pa.string()))
        yield pa.RecordBatch.from_arrays(arrays, schema=schema)
