"""`RequestMix`: the request bodies a benchmark sends, built from synthetic or real rows."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fraud_detection.schema import FEATURE_NAMES

#: Rows per request and their share of requests: mostly single transactions (card
#: authorisations), some small multi-row requests (a merchant's batch). Mean: 3.5 rows.
DEFAULT_MIX: dict[int, float] = {1: 0.7, 4: 0.1, 8: 0.1, 16: 0.1}


def parse_mix(spec: str) -> dict[int, float]:
    """``"1:0.7,16:0.3"`` -> ``{1: 0.7, 16: 0.3}``; a bare ``"256"`` means every request."""
    mix: dict[int, float] = {}
    for part in spec.split(","):
        rows, _, share = part.partition(":")
        mix[int(rows)] = float(share) if share else 1.0
    total = sum(mix.values())
    if any(r < 1 for r in mix) or total <= 0:
        raise ValueError(f"bad request mix {spec!r}: rows must be >= 1 and shares positive")
    return {r: s / total for r, s in mix.items()}


def format_mix(mix: dict[int, float]) -> str:
    return ",".join(f"{rows}:{share:g}" for rows, share in mix.items())


def load_rows(data: str | None, n_rows: int, seed: int) -> np.ndarray:
    """Feature rows: from a CSV of the ULB schema when `data` is given, else synthetic."""
    if data:
        from training.data.csv_source import read_transactions_csv

        frame = read_transactions_csv(data)
    else:
        from training.data.synthetic import generate_transactions

        frame = generate_transactions(n_rows, fraud_rate=0.0017, seed=seed)
    rng = np.random.default_rng(seed)
    picked = rng.choice(len(frame), size=min(n_rows, len(frame)), replace=False)
    return frame.iloc[picked][list(FEATURE_NAMES)].to_numpy(dtype=np.float64)


@dataclass(frozen=True)
class RequestMix:
    """A fixed cycle of JSON bodies whose row counts follow a mix exactly."""

    bodies: list[bytes]
    rows_per_body: list[int]

    @property
    def mean_rows(self) -> float:
        return float(np.mean(self.rows_per_body))

    @classmethod
    def build(
        cls,
        mix: dict[int, float],
        *,
        data: str | None = None,
        n_bodies: int = 200,
        seed: int = 0,
    ) -> RequestMix:
        """`n_bodies` bodies, ``round(share * n_bodies)`` of each size, in a shuffled order."""
        sizes = [rows for rows, share in mix.items() for _ in range(round(share * n_bodies))]
        rng = np.random.default_rng(seed)
        rng.shuffle(sizes)
        rows = load_rows(data, max(sum(sizes), 1), seed)
        bodies: list[bytes] = []
        start = 0
        for size in sizes:
            chunk = rows[np.arange(start, start + size) % len(rows)]
            start += size
            records = [dict(zip(FEATURE_NAMES, map(float, row), strict=True)) for row in chunk]
            bodies.append(json.dumps({"transactions": records}).encode())
        return cls(bodies=bodies, rows_per_body=sizes)

    def save(self, path: Path) -> None:
        """One body per line (JSON has no raw newlines), for the Locust process to read."""
        path.write_bytes(b"\n".join(self.bodies))

    @staticmethod
    def load_bodies(path: Path) -> list[bytes]:
        return path.read_bytes().split(b"\n")
