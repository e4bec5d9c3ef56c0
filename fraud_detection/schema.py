"""The one definition of the ULB credit-card transaction schema.

Training, ONNX export, the service's request model, the synthetic generator and the drift
reference all derive their column lists from here, so a column-order mistake cannot happen
in one place only.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

#: Input features in the order the models consume them.
FEATURE_NAMES: tuple[str, ...] = ("Time", *(f"V{i}" for i in range(1, 29)), "Amount")
#: Label column: 1 = fraud, 0 = genuine.
TARGET_NAME = "Class"
#: Every column of the raw dataset, in file order.
COLUMN_NAMES: tuple[str, ...] = (*FEATURE_NAMES, TARGET_NAME)
#: Features that must be >= 0 (seconds since the first transaction, and a money amount).
NON_NEGATIVE_FEATURES: frozenset[str] = frozenset({"Time", "Amount"})
N_FEATURES = len(FEATURE_NAMES)


def schema_fingerprint(feature_names: Sequence[str] = FEATURE_NAMES) -> str:
    """Short hash of the ordered feature names, stored with each model."""
    return hashlib.sha256(",".join(feature_names).encode()).hexdigest()[:16]


class SchemaMismatchError(ValueError):
    """The columns a model was trained on differ from this code's schema."""


def describe_column_difference(found: Sequence[str], expected: Sequence[str]) -> str:
    """How `found` differs from `expected`: the missing and unexpected names, or the order."""
    missing = [c for c in expected if c not in found]
    unexpected = [c for c in found if c not in expected]
    detail = []
    if missing:
        detail.append(f"missing {missing}")
    if unexpected:
        detail.append(f"unexpected {unexpected}")
    return "; ".join(detail) or f"same names in another order: {list(found)}"


def check_feature_names(found: Sequence[str], *, source: str) -> None:
    """Raise `SchemaMismatchError` naming the differing columns if `found` is not our schema."""
    if tuple(found) == FEATURE_NAMES:
        return
    raise SchemaMismatchError(
        f"{source}: feature columns differ from the schema "
        f"({describe_column_difference(found, FEATURE_NAMES)}). "
        f"Expected {list(FEATURE_NAMES)}. Retrain the model with this code: make models"
    )
