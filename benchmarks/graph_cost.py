"""What a stored model's ONNX graph costs per call, in process, as one service worker runs it.

    python -m benchmarks.graph_cost --data ../shared/data/creditcard_real_sample.csv.gz \
        single=/path/to/bentoml/models/fraud-mlp/<version> served=/path/to/<version>

Each graph is loaded with `OnnxScorer.from_directory` and the service's default of one
intra-op thread, then timed on real (or synthetic) rows at each batch size, each call on
different rows, the graphs alternating round by round so a noisy neighbour slows them alike.
Reports the median over rounds of the mean µs per call. `benchmarks.ensemble_serving` calls
`graph_cost` on the two stores it serves; run alone it writes
``benchmarks/results/graph-cost-<name>.{json,md}``.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.provenance import run_header
from benchmarks.provenance import write_results
from benchmarks.request_mix import load_rows
from fraud_detection.scorer import OnnxScorer

BATCH_SIZES = (1, 8, 64, 256)


def graph_cost(
    model_dirs: dict[str, Path],
    rows: np.ndarray,
    batch_sizes: tuple[int, ...] = BATCH_SIZES,
    rounds: int = 5,
    rows_per_round: int = 20_000,
) -> dict[str, dict[int, float]]:
    """µs per `OnnxScorer.predict_proba` call: ``{label: {batch size: median over rounds}}``."""
    scorers = {
        label: OnnxScorer.from_directory(path, intra_op_threads=1)
        for label, path in model_dirs.items()
    }
    features = rows.astype(np.float32)
    timings: dict[str, dict[int, list[float]]] = {
        label: {n: [] for n in batch_sizes} for label in scorers
    }
    for n in batch_sizes:
        calls = max(200, rows_per_round // n)
        # Each call scores different rows, as traffic does: one batch repeated lets the
        # CPU's branch predictor learn the trees' paths (a tree member looked 40% cheaper).
        starts = (np.arange(calls) * n) % len(features)
        batches = [
            np.ascontiguousarray(features[(s + np.arange(n)) % len(features)]) for s in starts
        ]
        for _ in range(rounds):
            for label, scorer in scorers.items():
                for batch in batches[:20]:  # warm the session's buffers for this shape
                    scorer.predict_proba(batch)
                started = time.perf_counter()
                for batch in batches:
                    scorer.predict_proba(batch)
                timings[label][n].append((time.perf_counter() - started) / calls * 1e6)
    return {
        label: {n: float(np.median(values)) for n, values in by_size.items()}
        for label, by_size in timings.items()
    }


def graph_cost_rows(cost: dict[str, dict[int, float]]) -> list[str]:
    """Markdown table rows: one line per graph, µs per call at each batch size."""
    sizes = list(next(iter(cost.values())))
    lines = [
        "| graph | " + " | ".join(f"{n} rows" for n in sizes) + " |",
        "|---|" + "---:|" * len(sizes),
    ]
    for label, by_size in cost.items():
        lines.append(f"| {label} | " + " | ".join(f"{by_size[n]:.0f}" for n in sizes) + " |")
    return lines


def markdown(results: dict[str, Any]) -> str:
    return (
        "\n".join(
            [
                "# ONNX graph cost per call (µs, one intra-op thread, median of rounds)",
                "",
                f"rows: {results['rows']}; graphs: "
                + ", ".join(f"{k} = `{v}`" for k, v in results["graphs"].items()),
                "",
                *graph_cost_rows(results["cost"]),
            ]
        )
        + "\n"
    )


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("graphs", nargs="+", help="label=model-store version directory")
    parser.add_argument("--data", help="CSV of the ULB schema (real rows); default synthetic")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--name", default="vm")
    args = parser.parse_args(argv)
    model_dirs = {}
    for spec in args.graphs:
        label, _, path = spec.partition("=")
        if not path:
            parser.error(f"{spec!r}: expected label=directory")
        model_dirs[label] = Path(path)
    rows = load_rows(args.data, 20_000, seed=11)
    cost = graph_cost(model_dirs, rows, rounds=args.rounds)
    results = {
        **run_header("benchmarks.graph_cost", argv, args.data, model=None),
        "graphs": {label: str(path) for label, path in model_dirs.items()},
        "cost": cost,
    }
    return write_results(f"graph-cost-{args.name}", results, markdown(results))


if __name__ == "__main__":
    main()
