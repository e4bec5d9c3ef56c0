"""Model throughput without HTTP: `OnnxScorer.predict_proba` on fixed batch sizes.

python -m benchmarks.raw_throughput --model mlp --batches 1,64,1024
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import asdict
from dataclasses import dataclass
from pathlib import Path

import bentoml
import numpy as np

from fraud_detection.catalog import MODEL_KINDS
from fraud_detection.catalog import store_tag
from fraud_detection.scorer import OnnxScorer


@dataclass(frozen=True)
class RawThroughput:
    """Rows per second and latency per call at one batch size."""

    batch_size: int
    calls: int
    rows_per_s: float
    ms_per_call_p50: float
    ms_per_call_p99: float


def measure(scorer: OnnxScorer, rows: np.ndarray, batch_size: int, seconds: float) -> RawThroughput:
    """Call the scorer on `batch_size` rows repeatedly for about `seconds` (after warm-up)."""
    batch = np.ascontiguousarray(np.resize(rows, (batch_size, rows.shape[1])), dtype=np.float32)
    for _ in range(3):
        scorer.predict_proba(batch)
    timings: list[float] = []
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline or len(timings) < 5:
        started = time.perf_counter()
        scorer.predict_proba(batch)
        timings.append(time.perf_counter() - started)
    elapsed = float(np.sum(timings))
    return RawThroughput(
        batch_size=batch_size,
        calls=len(timings),
        rows_per_s=batch_size * len(timings) / elapsed,
        ms_per_call_p50=1e3 * float(np.percentile(timings, 50)),
        ms_per_call_p99=1e3 * float(np.percentile(timings, 99)),
    )


def measure_model(
    kind: str, batches: list[int], seconds: float, rows: np.ndarray, threads: int = 0
) -> dict[str, object]:
    """Raw throughput of the stored model `kind` at each batch size, with its providers."""
    stored = bentoml.models.get(store_tag(kind))
    scorer = OnnxScorer.from_directory(stored.path, intra_op_threads=threads)
    return {
        "model": str(stored.tag),
        "providers": scorer.session.get_providers(),
        "results": [asdict(measure(scorer, rows, b, seconds)) for b in batches],
    }


def main() -> None:
    from benchmarks.request_mix import load_rows

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=MODEL_KINDS, default="mlp")
    parser.add_argument("--batches", default="1,64,1024")
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--threads", type=int, default=0, help="intra-op threads (0: ORT's)")
    parser.add_argument("--data", help="CSV of the ULB schema (default: synthetic rows)")
    parser.add_argument("--out", type=Path, help="also write the results as JSON here")
    args = parser.parse_args()
    rows = load_rows(args.data, 4096, seed=1)
    batches = [int(b) for b in args.batches.split(",")]
    report = json.dumps(
        measure_model(args.model, batches, args.seconds, rows, args.threads), indent=2
    )
    print(report)
    if args.out:
        args.out.write_text(report + "\n")


if __name__ == "__main__":
    main()
