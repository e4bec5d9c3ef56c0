"""``POST /explain`` as served: cost per row, additivity, top reasons on real frauds, and
``/predict`` throughput with the console idle.

    BENTOML_HOME=<store with fraud-mlp and fraud-distilbert> \\
        python -m benchmarks.explain --data ../shared/data/creditcard_real_sample.csv.gz

- cost: a fresh ``bentoml serve`` per model (one worker); two warm-up requests (the first
  compiles shap's numba code), then `--repeats` requests of 100 real rows each; milliseconds
  per explained row (median request) and the model evaluations per row;
- additivity: the largest ``|base_value + sum(shap_values) - logit|`` over every row answered;
- top reasons: every fraud of the real sample explained; how often the largest contribution
  is one of the features known to separate frauds in this data;
- console idle: wrk one-row ``/predict`` at 32 connections against this code and against
  `--baseline-commit` (a git worktree with its own model trained on the same data), fresh
  server pairs per round, order alternating.

Writes ``benchmarks/results/explain-<name>.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd

from benchmarks.drift_serving import start
from benchmarks.peers.measure import run_wrk
from benchmarks.peers.measure import wrk_script
from benchmarks.provenance import provenance
from fraud_detection.schema import FEATURE_NAMES
from fraud_detection.schema import TARGET_NAME
from training.data import generate_transactions

REPO = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).parent / "results"
#: Features that separate frauds from genuine transactions in the ULB data (the issue's list).
KNOWN_FRAUD_FEATURES = ("V14", "V12", "V10", "V4", "V17", "V11")
ROWS_PER_REQUEST = 100


def load_rows(data: str | None) -> pd.DataFrame:
    if data:
        return pd.read_csv(data)
    return generate_transactions(20_000, seed=17)


def explain(client: httpx.Client, url: str, frame: pd.DataFrame) -> list[dict[str, Any]]:
    body = {"transactions": frame[list(FEATURE_NAMES)].to_dict(orient="records")}
    response = client.post(f"{url}/explain", json=body, timeout=300)
    response.raise_for_status()
    return response.json()


def additivity(answers: list[dict[str, Any]]) -> float:
    return max(abs(a["base_value"] + sum(a["shap_values"].values()) - a["logit"]) for a in answers)


def explain_cost(workdir: Path, kind: str, frame: pd.DataFrame, repeats: int) -> dict[str, Any]:
    """Milliseconds per explained row in 100-row requests, and the top reasons on frauds."""
    server = start(workdir, f"explain-{kind}", FRAUD_MODEL=kind, FRAUD_DRIFT_DETECTION="0")
    rng = np.random.default_rng(5)
    try:
        with httpx.Client() as client:
            started = time.perf_counter()
            explain(client, server.url, frame.head(1))
            first_s = time.perf_counter() - started
            explain(client, server.url, frame.sample(ROWS_PER_REQUEST, random_state=1))
            seconds, answers = [], []
            for _ in range(repeats):
                batch = frame.iloc[rng.choice(len(frame), ROWS_PER_REQUEST, replace=False)]
                started = time.perf_counter()
                answers += explain(client, server.url, batch)
                seconds.append(time.perf_counter() - started)
            frauds = frame[frame[TARGET_NAME] == 1] if TARGET_NAME in frame else frame.head(0)
            fraud_answers = []
            for start_row in range(0, len(frauds), ROWS_PER_REQUEST):
                chunk = frauds.iloc[start_row : start_row + ROWS_PER_REQUEST]
                fraud_answers += explain(client, server.url, chunk)
    finally:
        server.stop()
    tops = [a["reasons"][0]["feature"] for a in fraud_answers]
    counts = pd.Series(tops, dtype=object).value_counts()
    return {
        "model": kind,
        "rows_per_request": ROWS_PER_REQUEST,
        "requests": repeats,
        "first_request_s": round(first_s, 2),
        "ms_per_row_median": round(1000 * statistics.median(seconds) / ROWS_PER_REQUEST, 3),
        "ms_per_row_all": [round(1000 * s / ROWS_PER_REQUEST, 3) for s in seconds],
        "additivity_max_abs_error": additivity(answers + fraud_answers),
        "frauds_explained": len(fraud_answers),
        "top_reason_known_share": (
            round(float(np.mean([t in KNOWN_FRAUD_FEATURES for t in tops])), 4) if tops else None
        ),
        "top_reasons": {str(k): int(v) for k, v in counts.head(8).items()},
    }


def baseline_store(workdir: Path, commit: str, data: str | None) -> tuple[Path, str]:
    """A worktree of `commit` and an MLP trained by that code on the same data."""
    tree = workdir / f"baseline-{commit}"
    subprocess.run(["git", "worktree", "add", "--detach", str(tree), commit], cwd=REPO, check=True)
    home = workdir / "baseline-home"
    overrides = ["model=mlp", f"hydra.run.dir={workdir}/baseline-run"]
    if data:
        overrides += ["data=csv", f"data.path={Path(data).resolve()}"]
    subprocess.run(
        [sys.executable, "-m", "training", *overrides],
        cwd=tree,
        env={**os.environ, "BENTOML_HOME": str(home), "WANDB_MODE": "disabled"},
        check=True,
        capture_output=True,
    )
    return tree, str(home)


def predict_with_console_idle(
    workdir: Path, frame: pd.DataFrame, commit: str, data: str | None, rounds: int, seconds: float
) -> dict[str, Any]:
    """wrk one-row /predict: this code (console mounted, never opened) vs `commit`."""
    tree, home = baseline_store(workdir, commit, data)
    body = workdir / "one-row.json"
    row = frame[list(FEATURE_NAMES)].iloc[0].to_dict()
    body.write_text(json.dumps({"transactions": [row]}))
    script = workdir / "one-row.lua"
    script.write_text(wrk_script(body))
    runs: dict[str, list[dict[str, Any]]] = {"console": [], "baseline": []}
    try:
        for round_ in range(rounds):
            servers = {
                "console": start(workdir, f"console-{round_}"),
                "baseline": start(workdir, f"baseline-{round_}", cwd=tree, BENTOML_HOME=home),
            }
            order = list(servers) if round_ % 2 == 0 else list(reversed(servers))
            try:
                for label in order:
                    run_wrk(servers[label].url, "/predict", script, 32, 3)  # warm-up
                for label in order:
                    cpu_before = servers[label].cpu_seconds()
                    result = run_wrk(servers[label].url, "/predict", script, 32, seconds).to_dict()
                    cpu = servers[label].cpu_seconds() - cpu_before
                    result["cpu_us_per_request"] = round(1e6 * cpu / max(result["requests"], 1), 1)
                    runs[label].append(result)
            finally:
                for server in servers.values():
                    server.stop()
    finally:
        subprocess.run(["git", "worktree", "remove", "--force", str(tree)], cwd=REPO, check=False)

    def paired(key: str) -> list[float]:
        """This code over the baseline, pair by pair, for one measure."""
        return [
            round(c[key] / b[key], 3)
            for c, b in zip(runs["console"], runs["baseline"], strict=True)
        ]

    ratios, p99, cpu = paired("requests_per_s"), paired("p99_ms"), paired("cpu_us_per_request")
    return {
        "baseline_commit": commit,
        "cpu_per_request_ratios": cpu,
        "cpu_per_request_ratio_median": round(statistics.median(cpu), 3),
        "console_cpu_us_per_request": [r["cpu_us_per_request"] for r in runs["console"]],
        "baseline_cpu_us_per_request": [r["cpu_us_per_request"] for r in runs["baseline"]],
        "rounds": rounds,
        "seconds": seconds,
        "console_rps": [r["requests_per_s"] for r in runs["console"]],
        "baseline_rps": [r["requests_per_s"] for r in runs["baseline"]],
        "throughput_ratios": ratios,
        "throughput_ratio_median": round(statistics.median(ratios), 3),
        "p99_ratios": p99,
        "p99_ratio_median": round(statistics.median(p99), 3),
    }


def markdown(results: dict[str, Any]) -> str:
    lines = [
        "# Explanations as served",
        "",
        f"{results['machine']}; {results['when']}; rows: {results['data']}; one worker.",
        "",
        "| model | ms per explained row (100-row requests, median) | first request | "
        "model evaluations per row | additivity max error | frauds whose top reason is "
        + "/".join(KNOWN_FRAUD_FEATURES)
        + " |",
        "|---|---|---|---|---|---|",
    ]
    for cost in results["cost"]:
        share = cost["top_reason_known_share"]
        lines.append(
            f"| {cost['model']} | {cost['ms_per_row_median']} | {cost['first_request_s']} s | "
            f"{results['evaluations_per_row']} | {cost['additivity_max_abs_error']:.1e} | "
            + (f"{share:.1%} of {cost['frauds_explained']}" if share is not None else "n/a")
            + " |"
        )
    lines += ["", "Top reason on the frauds: "]
    for cost in results["cost"]:
        lines.append(f"- {cost['model']}: {cost['top_reasons']}")
    idle = results.get("console_idle")
    if idle:
        lines += [
            "",
            f"`/predict` with the console idle (wrk one-row, 32 connections, {idle['rounds']} "
            f"fresh server pairs, {idle['seconds']:g} s passes) against "
            f"{idle['baseline_commit']}: throughput ratio median "
            f"{idle['throughput_ratio_median']} ({idle['throughput_ratios']}), p99 ratio "
            f"median {idle['p99_ratio_median']} ({idle['p99_ratios']}); server CPU per "
            f"request ratio median {idle['cpu_per_request_ratio_median']} "
            f"({idle['cpu_per_request_ratios']}); req/s this code "
            f"{idle['console_rps']}, baseline {idle['baseline_rps']}.",
        ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", help="CSV with the ULB columns (Class for the fraud figure)")
    parser.add_argument("--models", nargs="*", default=["mlp", "distilbert"])
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--baseline-commit", help="compare /predict against this commit")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--name", default="vm")
    args = parser.parse_args(argv)
    from fraud_detection.explanations import ExplainConfig

    frame = load_rows(args.data)
    config = ExplainConfig()
    results: dict[str, Any] = {
        "provenance": provenance("benchmarks.explain", argv),
        "machine": f"{os.cpu_count()} logical CPUs ({platform.machine()}), "
        f"Python {platform.python_version()}",
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "data": args.data or "synthetic",
        "explainer": "shap.PermutationExplainer, 1 antithetic permutation, "
        f"{config.background_rows} background rows",
        "evaluations_per_row": config.coalitions * config.background_rows,
    }
    with tempfile.TemporaryDirectory(prefix="explain-bench-") as tmp:
        workdir = Path(tmp)
        results["cost"] = [explain_cost(workdir, kind, frame, args.repeats) for kind in args.models]
        if args.baseline_commit:
            results["console_idle"] = predict_with_console_idle(
                workdir, frame, args.baseline_commit, args.data, args.rounds, args.seconds
            )
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"explain-{args.name}.json"
    out.write_text(json.dumps(results, indent=2))
    out.with_suffix(".md").write_text(markdown(results))
    print(markdown(results))
    return out


if __name__ == "__main__":
    main()
