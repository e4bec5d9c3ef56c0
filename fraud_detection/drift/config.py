"""`DriftConfig`: how the online drift detector samples traffic and decides what is drift."""

from __future__ import annotations

from dataclasses import dataclass

from fraud_detection.schema import FEATURE_NAMES


@dataclass(frozen=True)
class DriftConfig:
    """Window, cadence and decision rule of the drift detector (``FRAUD_DRIFT_*`` settings).

    A computation starts when `every_rows` rows have arrived since the last one, or
    `every_seconds` have passed and some rows have arrived, provided the window holds at least
    `min_rows` rows. After a computation that took ``d`` seconds, the next waits at least
    ``d / max_cpu_share - d`` seconds, so drift work never takes more than `max_cpu_share` of
    a worker's time whatever the traffic and cadence.
    """

    window_rows: int = 5_000  # last rows kept per worker; older rows roll out (by design)
    min_rows: int = 1_000  # no verdict from fewer rows: small windows are noisy
    every_rows: int = 1_000  # new rows that trigger a computation (a fifth of the window)
    every_seconds: float = 5.0  # or this much time, whichever comes first
    max_cpu_share: float = 0.01  # most of a worker's time the detector takes (monitoring.md)
    method: str = "wasserstein"  # Evidently stattest for every feature and for the score
    threshold: float = 0.1  # the method's drift threshold (normed distance for wasserstein)
    min_drifted_features: int = 1  # drifted features that make the window drifted
    fraud_rate_alpha: float = 0.001  # binomial test level for the predicted fraud rate
    # Left out of the report. ``Time`` is seconds since the dataset's first transaction:
    # live traffic is always a narrow slice of it, so it would drift in every window.
    ignore_features: frozenset[str] = frozenset({"Time"})

    def __post_init__(self) -> None:
        for name in ("window_rows", "min_rows", "every_rows", "min_drifted_features"):
            if getattr(self, name) < 1:
                raise ValueError(
                    f"FRAUD_DRIFT_{name.upper()} must be >= 1, got {getattr(self, name)}"
                )
        if self.min_rows > self.window_rows:
            raise ValueError(
                f"FRAUD_DRIFT_MIN_ROWS={self.min_rows} exceeds FRAUD_DRIFT_WINDOW_ROWS="
                f"{self.window_rows}; the window could never hold enough rows"
            )
        if self.every_seconds <= 0:
            raise ValueError(f"FRAUD_DRIFT_EVERY_SECONDS must be > 0, got {self.every_seconds}")
        if not 0.0 < self.max_cpu_share <= 1.0:
            raise ValueError(
                f"FRAUD_DRIFT_MAX_CPU_SHARE must be in (0, 1], got {self.max_cpu_share}"
            )
        if self.threshold <= 0:
            raise ValueError(f"FRAUD_DRIFT_THRESHOLD must be > 0, got {self.threshold}")
        unknown = sorted(self.ignore_features - set(FEATURE_NAMES))
        if unknown:
            raise ValueError(
                f"FRAUD_DRIFT_IGNORE_FEATURES names unknown features {unknown}; "
                f"use names from {list(FEATURE_NAMES)}"
            )
        if len(self.features) < self.min_drifted_features:
            raise ValueError(
                f"FRAUD_DRIFT_MIN_DRIFTED_FEATURES={self.min_drifted_features} exceeds the "
                f"{len(self.features)} monitored features"
            )

    @property
    def features(self) -> list[str]:
        """The monitored features, in schema order."""
        return [f for f in FEATURE_NAMES if f not in self.ignore_features]
