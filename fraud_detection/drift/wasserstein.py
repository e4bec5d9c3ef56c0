"""`SortedReference`: Evidently's normed Wasserstein drift score, with the reference prepared once.

Evidently 0.7's ``wasserstein`` stattest is ``scipy.stats.wasserstein_distance(reference,
current) / max(std(reference), 0.001)``, drifted when the value reaches the threshold. SciPy
sorts both samples on every call; here the reference is sorted (and its norm taken) once per
model, and the window is sorted once per computation, which makes a 31-column window a few
milliseconds of numpy. The arithmetic is SciPy's (`_cdf_distance` with p = 1), step for step,
and a test holds the values to Evidently's own report.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

#: Evidently's floor for the reference's standard deviation (a constant column).
MIN_NORM = 0.001


class SortedReference:
    """Each reference column's finite values, sorted, and its normalising deviation."""

    def __init__(self, columns: Mapping[str, np.ndarray]) -> None:
        self.sorted: dict[str, np.ndarray] = {}
        self.norms: dict[str, float] = {}
        for name, values in columns.items():
            values = np.asarray(values, dtype=np.float64)
            values = values[np.isfinite(values)]
            if values.size == 0:
                raise ValueError(f"reference column {name!r} has no finite values")
            self.norms[name] = max(float(np.std(values)), MIN_NORM)
            self.sorted[name] = np.sort(values)

    def distance(self, name: str, current: np.ndarray) -> float:
        """Wasserstein-1 distance between `current` and the reference column `name`."""
        current = np.asarray(current, dtype=np.float64)
        current = np.sort(current[np.isfinite(current)])
        if current.size == 0:
            raise ValueError(f"current column {name!r} has no finite values")
        reference = self.sorted[name]
        values = np.concatenate((reference, current))
        values.sort(kind="mergesort")
        deltas = np.diff(values)
        reference_cdf = reference.searchsorted(values[:-1], "right") / reference.size
        current_cdf = current.searchsorted(values[:-1], "right") / current.size
        return float(np.sum(np.multiply(np.abs(reference_cdf - current_cdf), deltas)))

    def normed_distances(self, current: Mapping[str, np.ndarray]) -> dict[str, float]:
        """Each reference column's `distance` to `current`'s column, over the reference's
        deviation: Evidently's normed Wasserstein score."""
        return {name: self.distance(name, current[name]) / self.norms[name] for name in self.sorted}
