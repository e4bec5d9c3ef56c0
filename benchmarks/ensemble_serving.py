"""What serving a cross-fitted ensemble costs: the default MLP ensemble against one MLP.

    python -m benchmarks.ensemble_serving --data ../shared/data/creditcard_real_sample.csv.gz

Trains both with the real training command into temporary model stores
(``python -m training data=... [ensemble.folds=1]``), then serves each with
``bentoml serve`` (one worker, default settings) and measures them side by side with
`benchmarks.drift_serving.paired_cost`: wrk one-row requests and the Locust request mix at 32
connections/users, many short passes alternating between the two servers; and, first, each
stored graph's cost per call in process (`benchmarks.graph_cost`). Writes
``benchmarks/results/ensemble-serving-<name>.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from benchmarks.drift_serving import REPO
from benchmarks.drift_serving import paired_cost
from benchmarks.drift_serving import paired_cost_rows
from benchmarks.graph_cost import graph_cost
from benchmarks.graph_cost import graph_cost_rows
from benchmarks.provenance import run_header
from benchmarks.provenance import write_results
from benchmarks.request_mix import load_rows


def train_store(home: Path, data: str | None, *overrides: str) -> str:
    """``python -m training`` (MLP) into `home`; returns the line it printed."""
    argv = [sys.executable, "-m", "training", f"hydra.run.dir={home}/run", *overrides]
    if data:
        argv += ["data=csv", f"data.path={Path(data).resolve()}"]
    env = {**os.environ, "BENTOML_HOME": str(home), "WANDB_MODE": "disabled", "TQDM_DISABLE": "1"}
    done = subprocess.run(argv, cwd=REPO, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"training failed: {done.stderr[-2000:]}")
    return done.stdout.strip().splitlines()[-1]


def stored_model_dir(home: Path) -> Path:
    """The one ``fraud-mlp`` version directory in the model store at `home`."""
    (version,) = (home / "models" / "fraud-mlp").glob("*/")
    return version


def markdown(results: dict[str, Any]) -> str:
    lines = [
        "# Serving a cross-fitted MLP ensemble against one MLP",
        "",
        f"{results['machine']}; {results['date']}; rows: {results['rows']}; one worker each, "
        "default settings (drift hooks on in both).",
        "",
        f"- ensemble: `{results['trained']['ensemble']}`",
        f"- single: `{results['trained']['single']}`",
        "",
        "| measure | value | target |",
        "|---|---|---|",
        *paired_cost_rows(results["cost"], "serving cost", "throughput >= 0.9"),
        "",
        "ONNX Runtime in process, one intra-op thread, different rows on each call: µs per call "
        "(`benchmarks.graph_cost`, median of 5 alternating rounds):",
        "",
        *graph_cost_rows(results["graph_cost"]),
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", help="CSV of the ULB schema (real rows); default synthetic")
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--passes", type=int, default=6)
    parser.add_argument("--name", default="vm")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="ensemble-bench-") as tmp:
        workdir = Path(tmp)
        homes = {"ensemble": workdir / "ensemble-home", "single": workdir / "single-home"}
        trained = {
            "ensemble": train_store(homes["ensemble"], args.data),
            "single": train_store(homes["single"], args.data, "ensemble.folds=1"),
        }
        print(json.dumps(trained, indent=1), flush=True)
        rows = load_rows(args.data, 20_000, seed=11)
        in_process = graph_cost(
            {label: stored_model_dir(home) for label, home in homes.items()}, rows
        )
        cost = paired_cost(
            workdir,
            rows,
            args.data,
            args.seconds,
            args.rounds,
            args.passes,
            {label: {"BENTOML_HOME": str(home)} for label, home in homes.items()},
        )
    results = {
        **run_header("benchmarks.ensemble_serving", argv, args.data),
        "trained": trained,
        "cost": cost,
        "graph_cost": in_process,
    }
    return write_results(f"ensemble-serving-{args.name}", results, markdown(results))


if __name__ == "__main__":
    main()
