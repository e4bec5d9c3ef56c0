"""`PerformanceConfig`: the trailing window of ``/performance`` and the recall alert's rule."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class PerformanceConfig:
    """The trailing window and the recall alert's rule."""

    window_rows: int = 10_000
    window_days: float = 30.0
    recall_alert_margin: float = 0.10
    recall_alert_min_frauds: int = 30
