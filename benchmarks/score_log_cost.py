"""What the score log and the shadow challenger cost a serving worker.

    python -m benchmarks.score_log_cost                      # BENTOML_HOME's fraud-mlp
    python -m benchmarks.score_log_cost --data ../shared/data/creditcard_real_sample.csv.gz

Real ``bentoml serve`` processes (one worker, default settings otherwise) measured side by
side with `benchmarks.drift_serving.paired_cost` (wrk one-row requests and the Locust request
mix at 32 connections/users, short passes alternating between the two servers, fresh server
pairs per round):

- ``sqlite``: the default score log (SQLite under the monitor path) against ``FRAUD_SCORE_LOG=0``;
- ``postgresql``: the score log on a PostgreSQL 15 server started here, against off;
- ``shadow``: DistilBERT as the challenger at the default shadow share, against the score log
  alone (needs ``fraud-distilbert`` in the store);
- ``control``: the log off against the log off (two servers of one build): how far from 1.0
  this harness reads on this machine when nothing differs, the floor under the other ratios.

It also times one model call per row count in-process (the challenger's cost per row against
the champion's), which is what the shadow share multiplies. Writes
``benchmarks/results/score-log-<stage>-<name>.json`` and ``.md``, one pair per stage run.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import bentoml
import numpy as np

from benchmarks.drift_serving import paired_cost
from benchmarks.drift_serving import paired_cost_rows
from benchmarks.provenance import run_header
from benchmarks.provenance import write_results
from benchmarks.request_mix import load_rows
from fraud_detection.scorer import OnnxScorer
from fraud_detection.settings import ServingSettings
from harness.postgres_server import PostgresServer

OFF = {"FRAUD_SCORE_LOG": "0"}
#: Each stage and the target its ratios are read against, in the order they run.
STAGE_TARGETS = {
    "sqlite": "throughput >= 0.95",
    "postgresql": "measured",
    "shadow": "modest",
    "control": "1.0 within the harness's resolution",
}
STAGES = tuple(STAGE_TARGETS)


def per_row_cost(rows: np.ndarray, repeats: int = 200) -> dict[str, Any]:
    """Median microseconds of one session call, per model and rows per call (one thread)."""
    timings: dict[str, Any] = {}
    for name in ("fraud-mlp", "fraud-distilbert"):
        try:
            scorer = OnnxScorer.from_directory(bentoml.models.get(name).path, intra_op_threads=1)
        except bentoml.exceptions.NotFound:
            continue
        timings[name] = {}
        for n in (1, 64):
            batch = rows[:n]
            scorer.predict_proba(batch)
            spent = []
            for _ in range(repeats):
                start = time.perf_counter()
                scorer.predict_proba(batch)
                spent.append(time.perf_counter() - start)
            timings[name][n] = round(float(np.median(spent)) * 1e6, 1)
    return timings


def markdown(results: dict[str, Any]) -> str:
    lines = [
        "# The score log and the shadow challenger: serving cost",
        "",
        f"{results['machine']}; {results['date']}; rows: {results['rows']}; store: "
        f"{results['models']}; one worker each, default settings otherwise.",
        "",
        "| measure | value | target |",
        "|---|---|---|",
    ]
    for stage, target in STAGE_TARGETS.items():
        if stage in results:
            lines += paired_cost_rows(results[stage], stage, target)
    if results.get("per_row_us"):
        lines += [
            "",
            "One ONNX Runtime call, one thread, median µs (in-process):",
            "",
            "| model | 1 row | 64 rows |",
            "|---|---:|---:|",
        ]
        lines += [f"| {name} | {t[1]} | {t[64]} |" for name, t in results["per_row_us"].items()]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", help="CSV of the ULB schema (real rows); default synthetic")
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--passes", type=int, default=6)
    parser.add_argument("--stages", default=",".join(STAGES))
    parser.add_argument("--name", default="vm")
    parser.add_argument(
        "--pin", action="store_true", help="servers on one CPU, load generators on the others"
    )
    args = parser.parse_args(argv)
    stages = args.stages.split(",")
    rows = load_rows(args.data, 20_000, seed=11)
    results: dict[str, Any] = {
        **run_header("benchmarks.score_log_cost", argv, args.data),
        "models": os.environ.get("BENTOML_HOME", "~/bentoml"),
        "shadow_share": ServingSettings().shadow_share,
        "per_row_us": per_row_cost(rows),
    }
    print(json.dumps(results["per_row_us"]), flush=True)

    def measure(stage: str, variants: dict[str, dict[str, str]], workdir: Path) -> None:
        results[stage] = paired_cost(
            workdir, rows, args.data, args.seconds, args.rounds, args.passes, variants, args.pin
        )
        print(stage, json.dumps(results[stage]["ratios"]), flush=True)

    with tempfile.TemporaryDirectory(prefix="score-log-bench-") as tmp:
        workdir = Path(tmp)
        if "sqlite" in stages:
            measure("sqlite", {"sqlite": {}, "off": OFF}, workdir)
        if "postgresql" in stages:
            database = PostgresServer.create(workdir / "postgres")
            try:
                measure("postgresql", {"postgresql": {"FRAUD_DB_URL": database.url}, "off": OFF},
                        workdir)  # fmt: skip
            finally:
                database.stop()
        if "shadow" in stages:
            measure("shadow", {"shadow": {"FRAUD_CHALLENGER": "distilbert"}, "sqlite": {}}, workdir)
        if "control" in stages:
            measure("control", {"off-again": OFF, "off": OFF}, workdir)
    # One file per stage (score-log-<stage>-<name>): a run of some stages replaces only
    # theirs, and each file says when and on what its own stage was measured.
    common = {k: v for k, v in results.items() if k not in STAGES}
    written = [
        write_results(
            f"score-log-{stage}-{args.name}",
            {**common, stage: results[stage]},
            markdown({**common, stage: results[stage]}),
        )
        for stage in STAGES
        if stage in results
    ]
    return written[-1]


if __name__ == "__main__":
    main()
