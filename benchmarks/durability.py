"""What a crash costs the score log, and what the durable score log costs a request.

    python -m benchmarks.durability --data ../shared/data/creditcard_real_sample.csv.gz
    make bench-durability DATA=../shared/data/creditcard_real_sample.csv.gz

Real ``bentoml serve`` processes, the model of ``BENTOML_HOME``, real rows when `--data` is
given. Stages (``--stages``, all by default):

- ``kills``: two workers on the default SQLite log, 16 client connections of one-row requests
  with unique ``transaction_id``\\ s; a worker is SIGKILLed every few seconds (``--kills``).
  Counts the ids answered 200, those missing from the log (while the server runs, and after a
  clean stop) and the errors the clients saw. Once per durability mode (``journal``, the
  default, and ``async``, the in-memory queue of earlier releases).
- ``sqlite-cost``: ``journal`` against ``async`` with `benchmarks.drift_serving.paired_cost`
  (wrk one-row and the Locust mix at 32 connections, alternating passes, fresh pairs), two
  ``async`` servers as the control beside it, and lone requests (wrk, one connection): p50.
- ``postgresql-cost``: ``commit`` against ``async`` on a PostgreSQL 15 server on 127.0.0.1,
  wrk one-row at 1 and 32 connections: req/s, p50, p99.

Writes ``benchmarks/results/durability-<name>.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import os
import signal
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass
from dataclasses import field
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import psutil

from benchmarks.drift_serving import one_row_script
from benchmarks.drift_serving import paired_cost
from benchmarks.drift_serving import paired_cost_rows
from benchmarks.drift_serving import start
from benchmarks.peers.measure import run_wrk
from benchmarks.provenance import run_header
from benchmarks.provenance import write_results
from benchmarks.request_mix import load_rows
from fraud_detection.schema import FEATURE_NAMES
from fraud_detection.score_log.database import ScoreDatabase
from fraud_detection.score_log.database import open_database
from fraud_detection.settings import SCORE_DB_FILE
from harness.postgres_server import PostgresServer
from harness.server_process import ServerProcess

WORKER_MODULE = "_bentoml_impl.worker.service"


def worker_pids(server: ServerProcess) -> list[int]:
    """The pids of the server's HTTP workers (children of BentoML's arbiter)."""
    pids = []
    for child in psutil.Process(server.process.pid).children(recursive=True):
        try:
            if WORKER_MODULE in " ".join(child.cmdline()):
                pids.append(child.pid)
        except psutil.NoSuchProcess:
            continue
    return sorted(pids)


@dataclass
class LoadOutcome:
    """What the clients saw: ids answered 200, and every other outcome by kind."""

    answered: list[str] = field(default_factory=list)
    errors: Counter[str] = field(default_factory=Counter)
    seconds: float = 0.0

    @property
    def requests_per_s(self) -> float:
        return len(self.answered) / self.seconds if self.seconds else 0.0


class OneRowLoad:
    """`connections` threads, each with its own keep-alive connection, posting one-row
    requests with unique transaction ids (``<prefix>-<thread>-<n>``) until `stop`."""

    def __init__(self, url: str, rows: np.ndarray, connections: int, prefix: str) -> None:
        self.url = url
        self.rows = [dict(zip(FEATURE_NAMES, row.tolist(), strict=True)) for row in rows]
        self.prefix = prefix
        self._stop = threading.Event()
        self._outcomes = [LoadOutcome() for _ in range(connections)]
        self._threads = [
            threading.Thread(target=self._run, args=(i,), daemon=True) for i in range(connections)
        ]
        self._started = time.monotonic()

    def __enter__(self) -> OneRowLoad:
        self._started = time.monotonic()
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _run(self, index: int) -> None:
        outcome = self._outcomes[index]
        n = 0
        with httpx.Client(base_url=self.url, timeout=10) as client:
            while not self._stop.is_set():
                tid = f"{self.prefix}-{index}-{n}"
                row = {**self.rows[(index * 7919 + n) % len(self.rows)], "transaction_id": tid}
                n += 1
                try:
                    answer = client.post("/predict", json={"transactions": [row]})
                except httpx.HTTPError as e:
                    outcome.errors[type(e).__name__] += 1
                    continue
                if answer.status_code == 200:
                    outcome.answered.append(tid)
                else:
                    outcome.errors[f"HTTP {answer.status_code}"] += 1

    def stop(self) -> LoadOutcome:
        """Stop the clients; what they saw, merged."""
        self._stop.set()
        for thread in self._threads:
            thread.join(30)
        merged = LoadOutcome(seconds=time.monotonic() - self._started)
        for outcome in self._outcomes:
            merged.answered += outcome.answered
            merged.errors.update(outcome.errors)
        return merged


def missing_from_log(database: ScoreDatabase, ids: list[str], timeout_s: float) -> list[str]:
    """The ids not in the score log once it has caught up (or after `timeout_s`)."""
    deadline = time.monotonic() + timeout_s
    while True:
        missing = sorted(set(ids) - database.known_ids(ids))
        if not missing or time.monotonic() > deadline:
            return missing
        time.sleep(0.5)


def kill_workers(server: ServerProcess, kills: int, every_s: float) -> list[dict[str, Any]]:
    """SIGKILL one worker `kills` times, `every_s` apart; how long each took to come back."""
    events = []
    for k in range(kills):
        time.sleep(every_s)
        before = worker_pids(server)
        victim = before[k % len(before)]
        os.kill(victim, signal.SIGKILL)
        killed_at = time.monotonic()
        restarted = None
        while time.monotonic() - killed_at < 30:
            now = worker_pids(server)
            if len(now) == len(before) and victim not in now:
                restarted = round(time.monotonic() - killed_at, 2)
                break
            time.sleep(0.05)
        events.append({"pid": victim, "new_worker_after_s": restarted})
    return events


def crash_run(
    workdir: Path,
    rows: np.ndarray,
    durability: str,
    kills: int,
    every_s: float,
    connections: int = 16,
) -> dict[str, Any]:
    """Two workers under one-row load; `kills` SIGKILLs; what was answered and what was lost."""
    name = f"kills-{durability}"
    server = start(
        workdir, name, FRAUD_WORKERS="2", FRAUD_SCORE_LOG_DURABILITY=durability
    )  # fmt: skip
    database = open_database(f"sqlite:///{workdir / name / 'monitoring' / SCORE_DB_FILE}")
    try:
        with OneRowLoad(server.url, rows, connections, prefix=name) as load:
            events = kill_workers(server, kills, every_s)
            time.sleep(every_s)
            outcome = load.stop()
        caught_up = time.monotonic()
        missing_live = missing_from_log(database, outcome.answered, timeout_s=15)
        caught_up_s = time.monotonic() - caught_up
    finally:
        server.stop()
    missing = missing_from_log(database, outcome.answered, timeout_s=0)
    return {
        "durability": durability,
        "workers": 2,
        "connections": connections,
        "kills": events,
        "answered": len(outcome.answered),
        "requests_per_s": round(outcome.requests_per_s),
        "errors_seen_by_clients": dict(outcome.errors),
        "missing_while_serving": len(missing_live),
        "log_caught_up_s": None if missing_live else round(caught_up_s, 1),
        "missing_after_clean_stop": len(missing),
        "missing_examples": missing[:5],
    }


def wrk_pairs(
    workdir: Path,
    rows: np.ndarray,
    variants: dict[str, dict[str, str]],
    connections: list[int],
    seconds: float,
    rounds: int,
    passes: int,
) -> dict[str, Any]:
    """wrk one-row passes alternating between two servers (fresh pairs per round), at each
    connection count: mean req/s, median p50 and p99 per variant, and paired ratios."""
    script = one_row_script(workdir, rows[0], "durability-one-row")
    runs: dict[int, dict[str, list[dict[str, Any]]]] = {
        c: {label: [] for label in variants} for c in connections
    }
    for round_ in range(rounds):
        servers = {
            label: start(workdir, f"{label}-wrk-{round_}", **env) for label, env in variants.items()
        }
        try:
            for server in servers.values():
                run_wrk(server.url, "/predict", script, 32, 2)  # warm-up
            for c in connections:
                for pass_ in range(passes):
                    order = list(variants) if (round_ + pass_) % 2 == 0 else list(variants)[::-1]
                    for label in order:
                        result = run_wrk(servers[label].url, "/predict", script, c, seconds)
                        runs[c][label].append(result.to_dict())
        finally:
            for server in servers.values():
                server.stop()
    first, second = variants
    summary: dict[str, Any] = {"variants": variants, "seconds": seconds, "rounds": rounds}
    for c, by_label in runs.items():
        entry: dict[str, Any] = {}
        for label, results in by_label.items():
            entry[label] = {
                "requests_per_s": round(float(np.mean([r["requests_per_s"] for r in results]))),
                "p50_ms": round(float(np.median([r["p50_ms"] for r in results])), 3),
                "p99_ms": round(float(np.median([r["p99_ms"] for r in results])), 3),
                "errors": int(sum(r["errors"] for r in results)),
            }
        pairs = list(zip(by_label[first], by_label[second], strict=True))
        ratios = [a["requests_per_s"] / b["requests_per_s"] for a, b in pairs]
        p50_deltas = [a["p50_ms"] - b["p50_ms"] for a, b in pairs]
        entry["throughput_ratio"] = round(float(np.exp(np.mean(np.log(ratios)))), 3)
        entry["p50_delta_ms"] = round(float(np.median(p50_deltas)), 3)
        summary[f"c{c}"] = entry
    return summary


def served_model() -> str:
    import bentoml

    return str(bentoml.models.get("fraud-mlp:latest").tag)


def markdown(results: dict[str, Any]) -> str:
    lines = [
        "# What a crash costs the score log, and what durability costs",
        "",
        f"{results['machine']}; {results['date']}; commit {results['commit']}; model "
        f"{results['model']}; rows: {results['rows']}.",
        f"Command: `{results['command']}`",
    ]
    if "kills" in results:
        lines += [
            "",
            "## SIGKILL of a worker under load (2 workers, SQLite, 16 connections, one-row "
            "requests with unique ids)",
            "",
            "<!-- --8<-- [start:kills] -->",
            "",
            "| durability | kills | answered 200 | missing from the log (serving / after a clean "
            "stop) | errors seen by the clients | log caught up |",
            "|---|---:|---:|---|---|---|",
        ]
        for run in results["kills"]:
            errors = ", ".join(f"{k} {v}" for k, v in run["errors_seen_by_clients"].items())
            caught = "-" if run["log_caught_up_s"] is None else f"{run['log_caught_up_s']} s"
            lines.append(
                f"| {run['durability']} | {len(run['kills'])} | {run['answered']:,} | "
                f"**{run['missing_while_serving']:,}** / {run['missing_after_clean_stop']:,} | "
                f"{errors or '0'} | {caught} |"
            )
        lines += ["", "<!-- --8<-- [end:kills] -->"]
    if "sqlite_cost" in results:
        lines += ["", "## SQLite: journal against async", "", "<!-- --8<-- [start:sqlite] -->", ""]
        lines += ["| measure | value | target |", "|---|---|---|"]
        lines += paired_cost_rows(results["sqlite_cost"], "journal / async", "throughput >= 0.95")
        lines += paired_cost_rows(results["sqlite_control"], "control: async / async", "1.0")
        lone = results["sqlite_lone"]["c1"]
        lines.append(
            f"| lone requests (wrk, 1 connection): p50 journal - async | "
            f"{lone['p50_delta_ms']:+.3f} ms (p50 {lone['journal']['p50_ms']} / "
            f"{lone['async']['p50_ms']} ms) | <= +0.3 ms |"
        )
        lines += ["", "<!-- --8<-- [end:sqlite] -->"]
    if "postgresql_cost" in results:
        pg = results["postgresql_cost"]
        lines += [
            "",
            "## PostgreSQL (127.0.0.1): commit before answering against async (wrk one-row)",
            "",
            "<!-- --8<-- [start:postgresql] -->",
            "",
            "| connections | mode | req/s | p50 ms | p99 ms | throughput commit / async |",
            "|---:|---|---:|---:|---:|---:|",
        ]
        for key in [k for k in pg if k.startswith("c")]:
            for label in pg["variants"]:
                m = pg[key][label]
                lines.append(
                    f"| {key[1:]} | {label} | {m['requests_per_s']:,} | {m['p50_ms']} | "
                    f"{m['p99_ms']} | {pg[key]['throughput_ratio'] if label == 'commit' else ''} |"
                )
    return "\n".join(lines) + "\n"


STAGES = ("kills", "sqlite-cost", "postgresql-cost")


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", help="CSV of the ULB schema (real rows); default synthetic")
    parser.add_argument("--kills", type=int, default=5)
    parser.add_argument("--kill-every", type=float, default=3.0)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--passes", type=int, default=6)
    parser.add_argument("--stages", default=",".join(STAGES))
    parser.add_argument("--name", default="vm")
    args = parser.parse_args(argv)
    stages = args.stages.split(",")
    rows = load_rows(args.data, 20_000, seed=13)
    results: dict[str, Any] = {
        **run_header("benchmarks.durability", argv, args.data),
        "model": served_model(),
    }
    journal = {"FRAUD_SCORE_LOG_DURABILITY": "journal"}
    asynchronous = {"FRAUD_SCORE_LOG_DURABILITY": "async"}
    with tempfile.TemporaryDirectory(prefix="durability-bench-") as tmp:
        workdir = Path(tmp)
        if "kills" in stages:
            results["kills"] = [
                crash_run(workdir, rows, mode, args.kills, args.kill_every)
                for mode in ("journal", "async")
            ]
            write_results(f"durability-{args.name}", results, markdown(results))
        if "sqlite-cost" in stages:
            cost = (workdir, rows, args.data, args.seconds, args.rounds, args.passes)
            results["sqlite_cost"] = paired_cost(*cost, {"journal": journal, "async": asynchronous})
            results["sqlite_control"] = paired_cost(
                *cost, {"async-again": asynchronous, "async": asynchronous}
            )
            results["sqlite_lone"] = wrk_pairs(
                workdir,
                rows,
                {"journal": journal, "async": asynchronous},
                [1],
                args.seconds,
                args.rounds,
                args.passes,
            )
            write_results(f"durability-{args.name}", results, markdown(results))
        if "postgresql-cost" in stages:
            database = PostgresServer.create(workdir / "postgres")
            try:
                url = {"FRAUD_DB_URL": database.url}
                results["postgresql_cost"] = wrk_pairs(
                    workdir,
                    rows,
                    {
                        "commit": {**url, "FRAUD_SCORE_LOG_DURABILITY": "commit"},
                        "async": {**url, "FRAUD_SCORE_LOG_DURABILITY": "async"},
                    },
                    [1, 32],
                    args.seconds,
                    args.rounds,
                    max(2, args.passes // 2),
                )
            finally:
                database.stop()
    return write_results(f"durability-{args.name}", results, markdown(results))


if __name__ == "__main__":
    main()
