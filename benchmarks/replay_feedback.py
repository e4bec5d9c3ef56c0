"""The champion-challenger loop on real rows: replay, labels back, online metrics, promotion.

    python -m benchmarks.replay_feedback --data ../shared/data/creditcard_real_sample.csv.gz

Starts ``bentoml serve`` (BENTOML_HOME's ``fraud-mlp`` as champion, ``fraud-distilbert`` as
the challenger in shadow, two workers, the default SQLite score log), sends every row with a
``transaction_id`` through ``POST /predict`` (500 per request), posts every label to
``POST /feedback``, and compares ``GET /performance`` with the same metrics computed offline
(ONNX Runtime on the same rows, scikit-learn's average precision). Then runs the promotion
command against the service's score log. Writes ``benchmarks/results/replay-<name>.json`` and
``.md``.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import bentoml
import httpx
import numpy as np
import pandas as pd
from sklearn.metrics import average_precision_score

from benchmarks.drift_serving import REPO
from benchmarks.drift_serving import start
from benchmarks.provenance import run_header
from benchmarks.provenance import write_results
from fraud_detection.client import score_frame
from fraud_detection.routing.transaction_ids import traffic_buckets
from fraud_detection.schema import FEATURE_NAMES
from fraud_detection.scorer import OnnxScorer
from training.data import generate_transactions


def offline(frame: pd.DataFrame, name: str, rows: np.ndarray) -> dict[str, float]:
    """AUPRC and recall at the threshold of the stored model `name` on `rows` of `frame`."""
    scorer = OnnxScorer.from_directory(bentoml.models.get(f"{name}:latest").path)
    features = frame.loc[rows, list(FEATURE_NAMES)].to_numpy(np.float32)
    p = scorer.predict_proba(features).astype(np.float64)
    y = frame.loc[rows, "Class"].to_numpy()
    return {
        "auprc": float(average_precision_score(y, p)),
        "recall": float((p[y == 1] >= scorer.threshold).mean()),
        "rows": len(y),
        "frauds": int(y.sum()),
    }


def replay(frame: pd.DataFrame, workdir: Path, shadow_share: float) -> dict[str, Any]:
    server = start(
        workdir,
        "replay",
        FRAUD_WORKERS="2",
        FRAUD_CHALLENGER="distilbert",
        FRAUD_SHADOW_SHARE=str(shadow_share),
        FRAUD_PERFORMANCE_WINDOW_ROWS=str(len(frame) + 1),
    )
    try:
        started = time.perf_counter()
        with bentoml.SyncHTTPClient(server.url, server_ready_timeout=30) as client:
            answers = score_frame(client, frame, chunk_size=500)
        scoring_s = time.perf_counter() - started
        deadline = time.monotonic() + 120
        while httpx.get(f"{server.url}/performance", timeout=30).json()["scored"] < len(frame):
            if time.monotonic() > deadline:
                raise TimeoutError("the score log did not catch up")
            time.sleep(0.5)
        labels = [
            {"transaction_id": t, "label": int(y)}
            for t, y in zip(frame["transaction_id"], frame["Class"], strict=True)
        ]
        started = time.perf_counter()
        for i in range(0, len(labels), 5000):
            httpx.post(f"{server.url}/feedback", json=labels[i : i + 5000], timeout=60)
        feedback_s = time.perf_counter() - started
        document = httpx.get(f"{server.url}/performance", timeout=60).json()
        db_url = f"sqlite:///{workdir / 'replay' / 'monitoring' / 'fraud_scores.sqlite3'}"
        promotion = subprocess.run(
            [sys.executable, "-m", "fraud_detection.performance.promotion", "--db-url", db_url],
            cwd=REPO, capture_output=True, text=True, check=False,
        )  # fmt: skip
    finally:
        server.stop()
    served = answers["fraud_probability"].to_numpy()
    return {
        "document": document,
        "served_auprc": float(average_precision_score(frame["Class"], served)),
        "scoring_seconds": round(scoring_s, 2),
        "feedback_seconds": round(feedback_s, 2),
        "promotion_output": promotion.stdout + promotion.stderr,
        "promotion_exit_code": promotion.returncode,
    }


def markdown(results: dict[str, Any]) -> str:
    doc = results["replay"]["document"]
    champion, challenger = doc["models"]
    off, off_challenger = results["offline"]["champion"], results["offline"]["challenger"]
    return "\n".join(
        [
            "# Replay of real rows with their labels fed back",
            "",
            f"{results['machine']}; {results['date']}; rows: {results['rows']}; champion "
            f"`{champion['model']}`, challenger `{challenger['model']}` in shadow "
            f"(share {results['shadow_share']}); two workers, SQLite score log.",
            "",
            "| measure | online (`GET /performance`) | offline (ONNX Runtime + scikit-learn) |",
            "|---|---|---|",
            f"| champion AUPRC, {champion['labelled']} rows ({champion['frauds']} frauds) | "
            f"{champion['auprc']:.6f} | {off['auprc']:.6f} (on the served scores: "
            f"{results['replay']['served_auprc']:.6f}) |",
            f"| champion recall at its threshold | {champion['recall']:.6f} | "
            f"{off['recall']:.6f} |",
            f"| challenger AUPRC on its shadow rows, {challenger['labelled']} rows "
            f"({challenger['frauds']} frauds) | {challenger['auprc']:.6f} | "
            f"{off_challenger['auprc']:.6f} ({off_challenger['rows']} rows) |",
            f"| label coverage; median label delay | {doc['label_coverage']}; "
            f"{doc['label_delay_days']['median'] * 86400:.1f} s | |",
            f"| replay: scoring, then feedback | {results['replay']['scoring_seconds']} s, "
            f"{results['replay']['feedback_seconds']} s | |",
            "",
            "Promotion command on the service's score log "
            f"(exit code {results['replay']['promotion_exit_code']}):",
            "",
            "```text",
            results["replay"]["promotion_output"].strip(),
            "```",
            "",
        ]
    )


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", help="CSV of the ULB schema (real rows); default synthetic")
    parser.add_argument("--shadow-share", type=float, default=0.25)
    parser.add_argument("--name", default="vm")
    args = parser.parse_args(argv)
    frame = (
        pd.read_csv(args.data) if args.data else generate_transactions(15_000, seed=21)
    ).reset_index(drop=True)
    frame["transaction_id"] = [f"replay-{i}" for i in range(len(frame))]
    shadowed = np.flatnonzero(traffic_buckets(frame["transaction_id"].tolist()) < args.shadow_share)
    with tempfile.TemporaryDirectory(prefix="replay-") as tmp:
        result = replay(frame, Path(tmp), args.shadow_share)
    results = {
        **run_header("benchmarks.replay_feedback", argv, args.data),
        "shadow_share": args.shadow_share,
        "replay": result,
        "offline": {
            "champion": offline(frame, "fraud-mlp", np.arange(len(frame))),
            "challenger": offline(frame, "fraud-distilbert", shadowed),
        },
    }
    return write_results(f"replay-{args.name}", results, markdown(results))


if __name__ == "__main__":
    main()
