"""Promotion evidence from a labelled backfill: both models on the same rows.

The numbers come from the code behind ``make promote`` (`fraud_detection.performance`), so a
backfill's ``summary.json`` is evidence that command accepts.
"""

from __future__ import annotations

from typing import TYPE_CHECKING
from typing import Any

import numpy as np

from backfill.models import ShippedModel

if TYPE_CHECKING:
    from pyspark.sql import DataFrame


def promotion_evidence(
    scores: DataFrame,
    label: str,
    champion: ShippedModel,
    challenger: ShippedModel | None,
    rounds: int,
) -> dict[str, Any]:
    """``labelled_rows`` and, with a challenger, ``evidence`` (`Evidence.to_dict`); without
    one, the champion's metrics on the labelled rows."""
    from fraud_detection.performance.evidence import evidence_from_columns
    from fraud_detection.performance.promotion import judged

    wanted = ["Amount", "fraud_probability", label]
    if challenger is not None:
        wanted.append("challenger_probability")
    table = scores.where(scores[label].isNotNull()).select(*wanted).toArrow()
    columns = {c: table.column(c).to_numpy() for c in wanted}
    labels = columns[label].astype(np.int64)
    summary: dict[str, Any] = {"labelled_rows": len(labels), "labelled_frauds": int(labels.sum())}
    if not len(labels):
        return summary
    champion_judged = judged("champion", champion.tag)
    if challenger is None:
        from fraud_detection.performance.evidence import model_metrics

        summary["champion_metrics"] = model_metrics(
            labels, columns["Amount"], columns["fraud_probability"], champion_judged
        )
        return summary
    evidence = evidence_from_columns(
        labels,
        columns["Amount"],
        columns["fraud_probability"],
        columns["challenger_probability"],
        champion_judged,
        judged("challenger", challenger.tag),
        rounds=rounds,
    )
    summary["evidence"] = evidence.to_dict()
    return summary
