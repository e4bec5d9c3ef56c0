"""Deterministic synthetic transactions with the ULB creditcard schema.

The default data source when the real file is absent. Class-conditional feature means and
standard deviations of V1..V28 are rounded per-class statistics of real ULB rows (the
comparison is written by ``python -m training.data.compare_synthetic``). Each fraud draws a
*severity*: most frauds are shifted far along V14, V12, V10, V17, V4, V11 and friends, a
minority barely at all, so the task is realistic (not separable) and the shifted features
are correlated within frauds, as in the real data.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from fraud_detection.schema import COLUMN_NAMES
from fraud_detection.schema import TARGET_NAME

# Per-feature (genuine mean, genuine std, fraud mean, fraud std) for V1..V28.
_V_PROFILE: tuple[tuple[float, float, float, float], ...] = (
    (-0.06, 1.82, -4.50, 6.69),
    (0.06, 1.60, 3.43, 4.11),
    (0.23, 1.40, -6.76, 6.94),
    (-0.01, 1.40, 4.50, 2.85),
    (0.00, 1.30, -2.90, 5.43),
    (0.04, 1.33, -1.50, 1.67),
    (0.02, 1.15, -5.14, 6.79),
    (0.00, 1.10, 1.16, 5.33),
    (0.09, 1.10, -2.51, 2.45),
    (-0.02, 1.05, -5.38, 4.60),
    (0.11, 1.04, 3.64, 2.66),
    (-0.11, 1.10, -6.04, 4.51),
    (0.09, 1.04, -0.10, 1.15),
    (0.08, 0.94, -6.81, 4.24),
    (0.03, 0.92, -0.10, 1.03),
    (0.00, 0.83, -3.84, 3.84),
    (0.05, 0.75, -6.22, 7.09),
    (-0.03, 0.82, -2.08, 2.95),
    (0.01, 0.80, 0.56, 1.57),
    (0.02, 0.79, 0.40, 1.28),
    (-0.01, 0.70, 0.43, 2.38),
    (-0.03, 0.70, 0.02, 1.08),
    (-0.01, 0.56, -0.21, 1.70),
    (0.01, 0.60, -0.12, 0.52),
    (0.03, 0.49, 0.07, 0.85),
    (-0.01, 0.48, 0.05, 0.47),
    (0.02, 0.36, 0.23, 1.20),
    (0.00, 0.33, 0.07, 0.52),
)
_SECONDS_PER_DAY = 86_400
# Relative transaction intensity per hour of day for genuine traffic (quiet nights).
_GENUINE_HOURLY = np.array(
    [0.6, 0.35, 0.2, 0.15, 0.15, 0.2, 0.35, 0.6, 0.9] + [1.0] * 13 + [0.9, 0.8]
)
# Fraud severity: a mixture of overt frauds, U(0.7, 1.7), and subtle ones, U(0.05, 0.35),
# that look almost genuine.
_OVERT_SHARE = 0.85
_OVERT = (0.7, 1.7)
_SUBTLE = (0.05, 0.35)


def _uniform_moments(low: float, high: float) -> tuple[float, float]:
    mean = (low + high) / 2
    return mean, (high - low) ** 2 / 12 + mean**2


def _severity_variance() -> float:
    (m1, s1), (m2, s2) = _uniform_moments(*_OVERT), _uniform_moments(*_SUBTLE)
    mean = _OVERT_SHARE * m1 + (1 - _OVERT_SHARE) * m2
    return _OVERT_SHARE * s1 + (1 - _OVERT_SHARE) * s2 - mean**2


_T_DF = 5.0  # Student-t degrees of freedom: heavier tails than a Gaussian, as in real V's


def generate_transactions(
    n_rows: int, *, fraud_rate: float = 0.0017, seed: int = 0
) -> pd.DataFrame:
    """`n_rows` transactions (Time, V1..V28, Amount, Class); same seed, same frame.

    At least one fraud and one genuine row are always present.
    """
    if n_rows < 2:
        raise ValueError(f"n_rows must be >= 2, got {n_rows}")
    if not 0.0 < fraud_rate < 1.0:
        raise ValueError(f"fraud_rate must be in (0, 1), got {fraud_rate}")
    rng = np.random.default_rng(seed)
    n_fraud = min(max(1, round(n_rows * fraud_rate)), n_rows - 1)
    n_genuine = n_rows - n_fraud
    profile = np.array(_V_PROFILE)

    t_scale = profile[:, 1] / np.sqrt(_T_DF / (_T_DF - 2.0))
    v_genuine = profile[:, 0] + rng.standard_t(_T_DF, size=(n_genuine, 28)) * t_scale

    overt = rng.random(n_fraud) < _OVERT_SHARE
    severity = np.where(overt, rng.uniform(*_OVERT, n_fraud), rng.uniform(*_SUBTLE, n_fraud))
    shift = profile[:, 2] - profile[:, 0]
    fraud_center = profile[:, 0] + severity[:, None] * shift
    # Within-severity spread chosen so the total fraud std matches the real one.
    within_var = np.maximum(
        profile[:, 3] ** 2 - _severity_variance() * shift**2, (0.25 * profile[:, 3]) ** 2
    )
    v_fraud = fraud_center + rng.normal(size=(n_fraud, 28)) * np.sqrt(within_var)

    hours = rng.choice(24, size=n_genuine, p=_GENUINE_HOURLY / _GENUINE_HOURLY.sum())
    t_genuine = rng.integers(0, 2, n_genuine) * _SECONDS_PER_DAY + hours * 3600
    t_genuine = t_genuine + rng.integers(0, 3600, n_genuine)
    t_fraud = rng.integers(0, 2 * _SECONDS_PER_DAY, n_fraud)

    amount_genuine = np.where(
        rng.random(n_genuine) < 0.007, 0.0, rng.lognormal(np.log(20.0), 1.6, n_genuine)
    )
    small = rng.random(n_fraud) < 0.5
    amount_fraud = np.where(
        rng.random(n_fraud) < 0.06,
        0.0,
        np.where(
            small,
            rng.lognormal(np.log(2.0), 1.0, n_fraud),
            rng.lognormal(np.log(90.0), 1.2, n_fraud),
        ),
    )

    frame = pd.DataFrame(
        np.column_stack(
            [
                np.concatenate([t_genuine, t_fraud]).astype(float),
                np.vstack([v_genuine, v_fraud]),
                np.round(np.concatenate([amount_genuine, amount_fraud]), 2),
            ]
        ),
        columns=list(COLUMN_NAMES[:-1]),
    )
    frame[TARGET_NAME] = np.r_[
        np.zeros(n_genuine, dtype=np.int64), np.ones(n_fraud, dtype=np.int64)
    ]
    # Sort by time, like the real file; ties broken by a seeded permutation.
    order = np.lexsort((rng.permutation(n_rows), frame["Time"].to_numpy()))
    return frame.iloc[order].reset_index(drop=True)
