"""The analysts' review queue as served: what keeping flagged rows costs, and how fast the
queue answers with a large log.

    python -m benchmarks.review_queue --data ../shared/data/creditcard_real_sample.csv.gz

Stages (``--stages``, all by default), each its own results file:

- ``cost`` (``review-cost-<name>``): one worker with the queue on (the default) against one
  with ``FRAUD_REVIEW=0``, side by side (`benchmarks.drift_serving.paired_cost`: fresh server
  pairs, alternating short passes, paired ratios), and a control (two identical servers, queue
  off). The rows are real, at the real fraud rate: the sample's genuine rows and as many of its
  frauds as make 0.172%; wrk posts them one per request in turn (32 connections), Locust the
  request mix of the same rows.
- ``latency`` (``review-latency-<name>``): a score log holding `--log-rows` scored rows,
  `--flagged` of them kept for review (their features from the real rows), on SQLite and on a
  local PostgreSQL 15 server; one worker served on each. ``GET /review`` (20 items, each call
  by a new reviewer, so every call leases a page) and ``GET /review/{id}`` (an open item, with
  its explanation), `--requests` sequential calls each after a warm-up; p50 and p99.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd

from benchmarks.drift_serving import paired_cost
from benchmarks.drift_serving import paired_cost_rows
from benchmarks.drift_serving import start
from benchmarks.provenance import run_header
from benchmarks.provenance import served_model
from benchmarks.provenance import write_results
from fraud_detection.prevalence import PRODUCTION_FRAUD_RATE
from fraud_detection.schema import FEATURE_NAMES
from fraud_detection.score_log.database import REVIEW_FEATURES_DTYPE
from fraud_detection.score_log.database import ReviewColumns
from fraud_detection.score_log.database import ScoreColumns
from fraud_detection.score_log.database import model_id
from fraud_detection.score_log.database import open_database
from harness.postgres_server import PostgresServer

OFF = {"FRAUD_REVIEW": "0"}
STAGES = ("cost", "latency")


def rows_at_fraud_rate(data: str | None, rate: float, seed: int = 7) -> pd.DataFrame:
    """Every genuine row of `data` (the synthetic generator's without it) and as many frauds
    as make `rate`, shuffled."""
    if data:
        from training.data.csv_source import read_transactions_csv

        frame = read_transactions_csv(data)
    else:
        from training.data.synthetic import generate_transactions

        frame = generate_transactions(20_000, fraud_rate=0.02, seed=seed)
    genuine, frauds = frame[frame["Class"] == 0], frame[frame["Class"] == 1]
    n_frauds = max(1, round(len(genuine) * rate / (1 - rate)))
    picked = frauds.sample(n=min(n_frauds, len(frauds)), random_state=seed)
    return pd.concat([genuine, picked]).sample(frac=1.0, random_state=seed)


def cycling_script(workdir: Path, frame: pd.DataFrame) -> Path:
    """A wrk script posting each row of `frame` as a one-row request, in turn."""
    bodies = [
        json.dumps({"transactions": [dict(zip(FEATURE_NAMES, row, strict=True))]})
        for row in frame[list(FEATURE_NAMES)].to_numpy(np.float64).tolist()
    ]
    script = workdir / "cycling.lua"
    # wrk's Lua has no JSON parser: one body per line, read at start by each thread.
    lines = workdir / "bodies.txt"
    lines.write_text("\n".join(bodies) + "\n")
    script.write_text(
        "local bodies = {}\n"
        f'for line in io.lines("{lines}") do bodies[#bodies + 1] = line end\n'
        "local i = 0\n"
        'wrk.method = "POST"\n'
        'wrk.headers["Content-Type"] = "application/json"\n'
        "request = function()\n"
        "  i = i % #bodies + 1\n"
        "  return wrk.format(nil, nil, nil, bodies[i])\n"
        "end\n"
    )
    return script


def cost(workdir: Path, args: argparse.Namespace) -> dict[str, Any]:
    frame = rows_at_fraud_rate(args.data, PRODUCTION_FRAUD_RATE)
    at_rate = workdir / "rows-at-rate.csv"
    frame.to_csv(at_rate, index=False)
    script = cycling_script(workdir, frame)
    rows = frame[list(FEATURE_NAMES)].to_numpy(np.float64)
    measured = {
        "rows": len(frame),
        "frauds": int(frame["Class"].sum()),
        "fraud_rate": round(float(frame["Class"].mean()), 5),
    }
    pairs = {"review": {"on": {}, "off": OFF}, "control": {"off-again": OFF, "off": OFF}}
    for stage, variants in pairs.items():
        measured[stage] = paired_cost(
            workdir,
            rows,
            str(at_rate),
            args.seconds,
            args.rounds,
            args.passes,
            variants,
            script=script,
        )
        print(stage, json.dumps(measured[stage]["ratios"]), flush=True)
    return measured


def fill(url: str, frame: pd.DataFrame, log_rows: int, flagged: int, tag: str) -> float:
    """Write `log_rows` scored rows, `flagged` of them kept for review, spread over the last
    seven days, as the writer would; returns the seconds it took."""
    database = open_database(url)
    database.migrate()
    features = frame[list(FEATURE_NAMES)].to_numpy(np.float64)
    rng = np.random.default_rng(3)
    model = model_id(tag)
    start_s, now = time.perf_counter(), time.time()
    chunk = 50_000
    keep_every = max(1, log_rows // flagged)
    for begin in range(0, log_rows, chunk):
        n = min(chunk, log_rows - begin)
        ids = [f"bench-{i}" for i in range(begin, begin + n)]
        at = (now - rng.uniform(0, 7 * 86_400, n)).tolist()
        p = rng.uniform(0, 1, n)
        kept = [i for i in range(n) if (begin + i) % keep_every == 0][
            : max(0, flagged - begin // keep_every)
        ]
        p[kept] = rng.uniform(0.5, 1.0, len(kept))
        amounts = features[rng.integers(0, len(features), n), FEATURE_NAMES.index("Amount")]
        scores = ScoreColumns(
            ids,
            at,
            [model] * n,
            p.tolist(),
            [int(x >= 0.69) for x in p],
            amounts.tolist(),
            [None] * n,
            [None] * n,
        )
        review = ReviewColumns()
        for i in kept:
            row = features[rng.integers(0, len(features))]
            review.add(
                [ids[i]],
                at[i],
                [model],
                [float(p[i])],
                [bool(p[i] >= 0.69)],
                np.ascontiguousarray(row, REVIEW_FEATURES_DTYPE).tobytes(),
            )
        database.write(scores, counted_rows=n, review=review)
    return time.perf_counter() - start_s


def timed(client: httpx.Client, urls: list[str]) -> dict[str, Any]:
    spent, statuses = [], {}
    for url in urls:
        begin = time.perf_counter()
        answer = client.get(url)
        spent.append((time.perf_counter() - begin) * 1000)
        statuses[answer.status_code] = statuses.get(answer.status_code, 0) + 1
    spent.sort()
    return {
        "requests": len(urls),
        "statuses": statuses,
        "p50_ms": round(statistics.median(spent), 2),
        "p99_ms": round(spent[min(len(spent) - 1, int(0.99 * len(spent)))], 2),
        "max_ms": round(spent[-1], 2),
    }


def latency_on(
    workdir: Path, name: str, url: str | None, args: argparse.Namespace, frame: pd.DataFrame
) -> dict[str, Any]:
    tag = served_model("mlp")["tag"]
    env = {"FRAUD_DB_URL": url} if url else {}
    folder = workdir / name
    sqlite_url = f"sqlite:///{(folder / 'monitoring').resolve() / 'fraud_scores.sqlite3'}"
    (folder / "monitoring").mkdir(parents=True, exist_ok=True)
    filled_s = fill(url or sqlite_url, frame, args.log_rows, args.flagged, tag)
    server = start(workdir, name, **env)
    try:
        with httpx.Client(base_url=server.url, timeout=30) as client:
            client.get("/review", params={"reviewer": "warm-up"})
            pages = [f"/review?reviewer=bench-{i}&limit=20" for i in range(args.requests)]
            page = timed(client, pages)
            ids = [
                f"bench-{i * max(1, args.log_rows // args.flagged)}"
                for i in range(args.requests * 20, args.requests * 21)
            ]
            client.get(f"/review/{ids[0]}", params={"reviewer": "warm-up"})  # the explainer
            items = timed(client, [f"/review/{tid}?reviewer=opener" for tid in ids])
    finally:
        server.stop()
    return {
        "log_rows": args.log_rows,
        "flagged": args.flagged,
        "fill_s": round(filled_s, 1),
        "page": page,
        "item": items,
    }


def latency(workdir: Path, args: argparse.Namespace) -> dict[str, Any]:
    frame = rows_at_fraud_rate(args.data, PRODUCTION_FRAUD_RATE)
    measured = {"sqlite": latency_on(workdir, "sqlite", None, args, frame)}
    print("sqlite", json.dumps(measured["sqlite"]), flush=True)
    database = PostgresServer.create(workdir / "postgres")
    try:
        measured["postgresql"] = latency_on(workdir, "postgresql", database.url, args, frame)
        print("postgresql", json.dumps(measured["postgresql"]), flush=True)
    finally:
        database.stop()
    return measured


def markdown(results: dict[str, Any]) -> str:
    lines = [
        "# The review queue as served",
        "",
        f"{results['machine']}; {results['date']}; commit {results['commit']}; rows: "
        f"{results['rows']}. Command: `{results['command']}`",
        "",
    ]
    if "cost" in results:
        c = results["cost"]
        lines += [
            f"Keeping flagged rows' features, on real rows at the real fraud rate "
            f"({c['frauds']} frauds in {c['rows']:,} rows, {c['fraud_rate']:.3%}):",
            "",
            "| measure | value | target |",
            "|---|---|---|",
            *paired_cost_rows(c["review"], "queue on / off", "throughput >= 0.98"),
            *paired_cost_rows(c["control"], "control (two identical servers)", "1.0"),
        ]
    if "latency" in results:
        lines += [
            "",
            "| backend | log rows | kept for review | GET /review p50 / p99 ms | "
            "GET /review/{id} p50 / p99 ms | target |",
            "|---|---:|---:|---|---|---|",
        ]
        for backend, m in results["latency"].items():
            lines.append(
                f"| {backend} | {m['log_rows']:,} | {m['flagged']:,} | {m['page']['p50_ms']} / "
                f"{m['page']['p99_ms']} | {m['item']['p50_ms']} / {m['item']['p99_ms']} | "
                "p99 <= 50 ms |"
            )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", help="CSV of the ULB schema (real rows); default synthetic")
    parser.add_argument("--stages", default=",".join(STAGES))
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--passes", type=int, default=6)
    parser.add_argument("--log-rows", type=int, default=1_000_000)
    parser.add_argument("--flagged", type=int, default=100_000)
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--name", default="vm")
    args = parser.parse_args(argv)
    stages = args.stages.split(",")
    header = run_header("benchmarks.review_queue", argv, args.data)
    written = []
    with tempfile.TemporaryDirectory(prefix="review-bench-") as tmp:
        workdir = Path(tmp)
        for stage, measure in (("cost", cost), ("latency", latency)):
            if stage in stages:
                results = {**header, stage: measure(workdir, args)}
                written.append(
                    write_results(f"review-{stage}-{args.name}", results, markdown(results))
                )
    return written[-1]


if __name__ == "__main__":
    main()
