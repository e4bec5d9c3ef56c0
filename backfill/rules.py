"""The schema's rules, applied to a whole Arrow batch at once.

The same rules as ``POST /predict`` (`fraud_detection.api_models`): every feature a finite
number within ±1e9, `Time` and `Amount` at least 0, no text that is not a number. A row that
breaks one is not scored: it leaves with the first column it breaks and why, for ``rejects/``.
Columns come typed (Parquet) or as text (CSV: Spark reads every field as a string, so text that
is not a number stays visible instead of becoming null).
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from fraud_detection.api_models import FEATURE_LIMIT
from fraud_detection.routing.transaction_ids import TRANSACTION_ID_PATTERN
from fraud_detection.schema import FEATURE_NAMES
from fraud_detection.schema import NON_NEGATIVE_FEATURES

MISSING = "missing"
NOT_A_NUMBER = "not a number"
NOT_FINITE = "not finite"
OUT_OF_RANGE = f"beyond ±{FEATURE_LIMIT:.0e}"
NEGATIVE = "negative"
BAD_LABEL = "not 0 or 1"
BAD_ID = "not 1 to 64 visible ASCII characters"
NOT_A_DATE = "not a date"
#: What Arrow's string-to-float cast reads (after trimming spaces): text beyond it is no number.
_NUMBER = r"^[+-]?((\d+\.?\d*|\.\d+)([eE][+-]?\d+)?|inf|infinity|nan)$"
_NON_NEGATIVE = [j for j, name in enumerate(FEATURE_NAMES) if name in NON_NEGATIVE_FEATURES]


class RowProblems:
    """The first rule each row of a batch breaks: its column and reason (None where none)."""

    def __init__(self, n: int) -> None:
        self.broken = np.zeros(n, dtype=bool)
        self.column = np.full(n, None, dtype=object)
        self.reason = np.full(n, None, dtype=object)

    def report(self, rows: np.ndarray, column: str, reason: str) -> None:
        """Record `reason` for those of `rows` (a bool mask) that broke nothing yet."""
        new = rows & ~self.broken
        if new.any():
            self.column[new] = column
            self.reason[new] = reason
            self.broken |= new

    def override(self, rows: np.ndarray, column: str, reason: str) -> None:
        """Record `reason` for `rows`, replacing what they broke before."""
        if rows.any():
            self.column[rows] = column
            self.reason[rows] = reason
            self.broken |= rows


def _is_text(values: pa.Array) -> bool:
    return pa.types.is_string(values.type) or pa.types.is_large_string(values.type)


def _parse_text(values: pa.Array) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    """Numbers written as text, parsed exactly (Arrow's cast, not pandas' faster approximate
    parser), with the masks of empty and of unreadable values (None where there is none)."""
    text = pc.utf8_trim_whitespace(values)
    empty = pc.equal(text, "").fill_null(False).to_numpy(zero_copy_only=False)
    try:
        parsed = pc.cast(text, pa.float64())
        unread = None
    except pa.ArrowInvalid:  # some value is not a number: cast the others only
        readable = pc.match_substring_regex(text, _NUMBER, ignore_case=True).fill_null(True)
        parsed = pc.cast(pc.if_else(readable, text, pa.scalar(None, pa.string())), pa.float64())
        unread = ~readable.to_numpy(zero_copy_only=False) & ~empty
    empty_rows = empty if empty.any() else None
    return parsed.fill_null(np.nan).to_numpy(zero_copy_only=False), empty_rows, unread


def _as_float(values: pa.Array) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    """Float64 values of one column (NaN where null or not a number), and the masks of its
    missing and of its unreadable values (None where there is none)."""
    null = values.is_null().to_numpy(zero_copy_only=False) if values.null_count else None
    if not _is_text(values):
        # safe=False: an int64 beyond 2**53 becomes its nearest float (then the range rule
        # judges it) instead of failing the whole task.
        numbers = values.cast(pa.float64(), safe=False).fill_null(np.nan)
        return numbers.to_numpy(zero_copy_only=False), null, None
    parsed, empty, unread = _parse_text(values)
    if empty is not None:
        null = empty if null is None else null | empty
    return parsed, null, unread


def check_features(batch: pa.RecordBatch) -> tuple[np.ndarray, RowProblems]:
    """The ``(n, 30)`` float64 features of `batch` (NaN where unreadable) and what rows broke.

    The array is column-major (each column contiguous, as it is filled and hashed)."""
    n = batch.num_rows
    problems = RowProblems(n)
    features = np.empty((n, len(FEATURE_NAMES)), dtype=np.float64, order="F")
    unusable: dict[int, tuple[np.ndarray | None, np.ndarray | None]] = {}
    for j, name in enumerate(FEATURE_NAMES):
        features[:, j], null, unread = _as_float(batch.column(name))
        if null is not None or unread is not None:
            unusable[j] = (null, unread)
    with np.errstate(invalid="ignore"):
        in_range = np.abs(features) <= FEATURE_LIMIT  # False for NaN and infinity too
        negative = features[:, _NON_NEGATIVE] < 0
    if not unusable and in_range.all() and not negative.any():
        return features, problems  # the usual batch: one pass over the array, no reasons
    # Some row breaks a rule: name the first one per row, in schema order.
    for j, name in enumerate(FEATURE_NAMES):
        null, unread = unusable.get(j, (None, None))
        if null is not None:
            problems.report(null, name, MISSING)
        if unread is not None:
            problems.report(unread, name, NOT_A_NUMBER)
        x = features[:, j]
        problems.report(~np.isfinite(x), name, NOT_FINITE)
        problems.report(~in_range[:, j], name, OUT_OF_RANGE)  # finite ones: the others are done
        if name in NON_NEGATIVE_FEATURES:
            problems.report(negative[:, _NON_NEGATIVE.index(j)], name, NEGATIVE)
    return features, problems


def check_label(values: pa.Array, name: str, problems: RowProblems) -> np.ndarray:
    """Labels as int8 (-1 where absent); a value other than 0 or 1 breaks the row."""
    null = values.is_null().to_numpy(zero_copy_only=False)
    if _is_text(values):
        labels, empty, _ = _parse_text(values)  # unreadable text is NaN: not 0 or 1
        null = null if empty is None else null | empty
    else:
        labels = values.cast(pa.float64(), safe=False).fill_null(np.nan)
        labels = labels.to_numpy(zero_copy_only=False)
    bad = ~null & (labels != 0) & (labels != 1)  # NaN (unreadable) compares unequal too
    problems.report(bad, name, BAD_LABEL)
    return np.where(null | bad, -1, labels).astype(np.int8)


def check_transaction_ids(values: pa.Array, name: str, problems: RowProblems) -> pa.Array:
    """Ids as text; an id that `POST /predict` would refuse breaks the row (null is allowed)."""
    text = values if pa.types.is_string(values.type) else values.cast(pa.string())
    ok = pc.match_substring_regex(text, TRANSACTION_ID_PATTERN).fill_null(True)
    problems.report(~ok.to_numpy(zero_copy_only=False), name, BAD_ID)
    return text


def check_dates(values: pa.Array, name: str, problems: RowProblems) -> None:
    """A row whose date column is null (missing, or text Spark could not read as a date)."""
    problems.report(values.is_null().to_numpy(zero_copy_only=False), name, NOT_A_DATE)
