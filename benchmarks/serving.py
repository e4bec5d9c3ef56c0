"""Serving benchmark: every variant at the same Locust loads, in one run, on this machine.

    python -m benchmarks.serving                      # all variants, ~13 minutes on 2 cores
    python -m benchmarks.serving --variants noop,mlp-batching --users 8,32 --duration 10

Starts each server itself on 127.0.0.1, waits for ``/readyz``, runs headless Locust at each
user count, stops the server, then measures raw ONNX Runtime throughput and writes
``serving-<host>.json``, ``.md`` and ``.png`` to ``--out``. Needs the models in the
BentoML store (``make models``).
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import os
import platform
import socket
import subprocess
import sys
import tempfile
import threading
from dataclasses import asdict
from dataclasses import dataclass
from dataclasses import field
from pathlib import Path

import psutil

from benchmarks.provenance import provenance
from benchmarks.raw_throughput import measure_model
from benchmarks.report import write_report
from benchmarks.request_mix import DEFAULT_MIX
from benchmarks.request_mix import RequestMix
from benchmarks.request_mix import format_mix
from benchmarks.request_mix import load_rows
from benchmarks.request_mix import parse_mix
from harness.server_process import ServerProcess
from harness.server_process import free_port

REPO = Path(__file__).resolve().parents[1]
LOCUSTFILE = Path(__file__).with_name("locustfile.py")


@dataclass(frozen=True)
class Variant:
    """One server configuration to measure."""

    name: str
    description: str
    app: str  # bentoml service import path, or an ASGI app for uvicorn
    model: str | None = None
    env: dict[str, str] = field(default_factory=dict)
    runner: str = "bentoml"  # "bentoml" or "uvicorn"

    def argv(self, port: int) -> list[str]:
        if self.runner == "uvicorn":
            return [
                sys.executable,
                "-m",
                "uvicorn",
                self.app,
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--log-level",
                "warning",
                "--no-access-log",
            ]
        return [
            sys.executable,
            "-m",
            "bentoml",
            "serve",
            self.app,
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ]


SERVICE = "service:FraudDetector"
#: Variants that split the drift hook's cost into its log and detector parts (not in `make bench`).
HOOK_SPLIT_VARIANTS = ("mlp-batching-log-only", "mlp-batching-detector-only")
VARIANTS: dict[str, Variant] = {
    v.name: v
    for v in [
        Variant(
            "noop",
            "framework ceiling: same API and validation, no model",
            "benchmarks.noop_service:NoopService",
        ),
        Variant("mlp-batching", "MLP, zero-delay batching (the default service)", SERVICE, "mlp"),
        Variant("mlp-no-batching", "MLP, batching off", SERVICE, "mlp", {"FRAUD_BATCHING": "0"}),
        Variant(
            "mlp-batching-no-drift-log",
            "MLP, zero-delay batching, drift log and drift detection off",
            SERVICE,
            "mlp",
            {"FRAUD_DRIFT_LOG": "0", "FRAUD_DRIFT_DETECTION": "0"},
        ),
        Variant(
            "mlp-batching-log-only",
            "MLP, zero-delay batching, drift log on, drift detection off",
            SERVICE,
            "mlp",
            {"FRAUD_DRIFT_DETECTION": "0"},
        ),
        Variant(
            "mlp-batching-detector-only",
            "MLP, zero-delay batching, drift detection on, drift log off",
            SERVICE,
            "mlp",
            {"FRAUD_DRIFT_LOG": "0"},
        ),
        Variant(
            "mlp-fastapi-torch",
            "seed-style FastAPI + PyTorch, one request at a time",
            "benchmarks.fastapi_baseline:app",
            "mlp",
            runner="uvicorn",
        ),
        Variant(
            "distilbert-batching",
            "DistilBERT (CPU size), zero-delay batching",
            SERVICE,
            "distilbert",
        ),
        Variant(
            "distilbert-no-batching",
            "DistilBERT (CPU size), batching off",
            SERVICE,
            "distilbert",
            {"FRAUD_BATCHING": "0"},
        ),
        Variant(
            "distilbert-fastapi-torch",
            "seed-style FastAPI + PyTorch, one request at a time",
            "benchmarks.fastapi_baseline:app",
            "distilbert",
            runner="uvicorn",
        ),
    ]
}


@dataclass
class LoadLevel:
    """Locust's figures for one variant at one user count."""

    users: int
    requests: int
    failures: int
    failures_by_status: dict[str, int]
    requests_per_s: float
    rows_per_s: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    rss_mb_total: float
    rss_mb_worker: float


class RssSampler:
    """Peak resident memory of a server's processes, sampled in a background thread."""

    def __init__(self, server: ServerProcess, interval: float = 0.5) -> None:
        self.server = server
        self.interval = interval
        self.peak_total = 0
        self.peak_process = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            rss = self.server.rss_bytes()
            if rss:
                self.peak_total = max(self.peak_total, sum(rss.values()))
                self.peak_process = max(self.peak_process, max(rss.values()))
            self._stop.wait(self.interval)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def run_locust(
    url: str, users: int, seconds: float, bodies: Path, csv_prefix: Path, path: str = "/predict"
) -> subprocess.CompletedProcess[str]:
    """Headless Locust, all users started at once, for `seconds`, posting to `path`."""
    argv = [
        sys.executable,
        "-m",
        "locust",
        "-f",
        str(LOCUSTFILE),
        "--headless",
        "-u",
        str(users),
        "-r",
        str(users),
        "-t",
        f"{seconds:g}s",
        "--host",
        url,
        "--csv",
        str(csv_prefix),
        "--only-summary",
        "--loglevel",
        "WARNING",
        "--stop-timeout",
        "10",
    ]
    env = {**os.environ, "BENCH_BODIES": str(bodies), "BENCH_PATH": path}
    return subprocess.run(
        argv, cwd=REPO, env=env, capture_output=True, text=True, timeout=seconds + 120
    )


def read_locust_csv(csv_prefix: Path) -> tuple[dict[str, str], dict[str, int]]:
    """The "Aggregated" stats row, and failure counts by error text ("HTTP 503", ...)."""
    with open(f"{csv_prefix}_stats.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    aggregated = next(r for r in rows if r["Name"] == "Aggregated")
    failures: dict[str, int] = {}
    with open(f"{csv_prefix}_failures.csv", newline="") as f:
        for r in csv.DictReader(f):
            failures[r["Error"]] = failures.get(r["Error"], 0) + int(r["Occurrences"])
    return aggregated, failures


def measure_level(
    server: ServerProcess, users: int, seconds: int, mix: RequestMix, bodies: Path, work: Path
) -> LoadLevel:
    prefix = work / f"locust_{users}"
    with RssSampler(server) as rss:
        done = run_locust(server.url, users, seconds, bodies, prefix)
    if done.returncode not in (0, 1):  # 1: some requests failed, which is reported
        raise RuntimeError(f"locust failed ({done.returncode}):\n{done.stderr[-3000:]}")
    stats, failures = read_locust_csv(prefix)
    rps = float(stats["Requests/s"])
    return LoadLevel(
        users=users,
        requests=int(stats["Request Count"]),
        failures=int(stats["Failure Count"]),
        failures_by_status=failures,
        requests_per_s=rps,
        rows_per_s=rps * mix.mean_rows,
        p50_ms=float(stats["50%"]),
        p95_ms=float(stats["95%"]),
        p99_ms=float(stats["99%"]),
        rss_mb_total=rss.peak_total / 2**20,
        rss_mb_worker=rss.peak_process / 2**20,
    )


def measure_variant(
    variant: Variant,
    workers: int,
    users: list[int],
    seconds: int,
    warmup: int,
    mix: RequestMix,
    bodies: Path,
    work: Path,
    keep_order: bool = False,
) -> list[LoadLevel]:
    """Start the variant's server, warm it up, measure each user count, stop it.

    `workers` applies to the BentoML variants; the FastAPI baseline is one process by design.
    Loads run ascending unless `keep_order` (e.g. ``1,64,1`` to see the batcher after a burst).
    """
    port = free_port()
    env = {
        **os.environ,
        "FRAUD_MONITOR_LOG_PATH": str(work / "monitoring"),
        "FRAUD_WORKERS": str(workers),
        **variant.env,
    }
    if variant.model:
        env["FRAUD_MODEL"] = variant.model
    server = ServerProcess.start(
        variant.argv(port), port=port, env=env, cwd=REPO, log_file=work / "server.log"
    )
    try:
        levels = []
        # Ascending loads, each warmed up at its own user count, so that a level is measured
        # in its own steady state (BentoML's adaptive batcher, used before the zero-delay
        # one, held requests longer right after a heavier level).
        for n in users if keep_order else sorted(users):
            if warmup > 0:
                run_locust(server.url, n, warmup, bodies, work / "warmup")
            level = measure_level(server, n, seconds, mix, bodies, work)
            print(
                f"  {variant.name:28s} users={n:3d} req/s={level.requests_per_s:8.1f} "
                f"p50={level.p50_ms:6.0f}ms p99={level.p99_ms:6.0f}ms "
                f"failures={level.failures} rss={level.rss_mb_total:.0f}MB",
                flush=True,
            )
            levels.append(level)
        return levels
    finally:
        server.stop()


def machine() -> dict[str, object]:
    return {
        "host": socket.gethostname(),
        "cpu": platform.processor() or platform.machine(),
        "logical_cpus": psutil.cpu_count(),
        "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "python": platform.python_version(),
    }


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(description="Serving benchmark (see module docstring).")
    parser.add_argument(
        "--variants",
        default=",".join(v for v in VARIANTS if v not in HOOK_SPLIT_VARIANTS),
        help=f"comma-separated; also {', '.join(HOOK_SPLIT_VARIANTS)} (the hook's two parts)",
    )
    parser.add_argument("--users", default="1,8,32,64")
    parser.add_argument("--duration", type=int, default=15, help="seconds per user count")
    parser.add_argument(
        "--warmup", type=int, default=4, help="seconds of unrecorded load before each count"
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=int(os.environ.get("FRAUD_WORKERS", os.cpu_count() or 1)),
        help="BentoML worker processes (default: FRAUD_WORKERS, else one per CPU)",
    )
    parser.add_argument(
        "--keep-order", action="store_true", help="run --users in the given order, not ascending"
    )
    parser.add_argument("--mix", default=format_mix(DEFAULT_MIX), help="rows:share,...")
    parser.add_argument("--data", help="CSV of the ULB schema to draw rows from")
    parser.add_argument("--raw-batches", default="1,64,1024")
    parser.add_argument("--raw-seconds", type=float, default=2.0)
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results")
    parser.add_argument("--name", default="serving-vm", help="result file stem")
    args = parser.parse_args(argv)

    names = args.variants.split(",")
    unknown = [n for n in names if n not in VARIANTS]
    if unknown:
        parser.error(f"unknown variants {unknown}; choose from {list(VARIANTS)}")
    users = [int(u) for u in args.users.split(",")]
    mix = RequestMix.build(parse_mix(args.mix), data=args.data)
    results: dict[str, object] = {
        "provenance": provenance("benchmarks.serving", argv),
        "machine": machine(),
        "started": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "settings": {
            "users": users,
            "bentoml_workers": args.workers,
            "seconds_per_level": args.duration,
            "warmup_seconds": args.warmup,
            "request_mix": args.mix,
            "mean_rows_per_request": mix.mean_rows,
            "data": args.data or "synthetic",
        },
        "variants": {},
        "raw": {},
    }
    with tempfile.TemporaryDirectory(prefix="fraud-bench-") as tmp:
        bodies = Path(tmp) / "bodies.jsonl"
        mix.save(bodies)
        for name in names:
            variant = VARIANTS[name]
            work = Path(tmp) / name
            work.mkdir()
            print(f"{name}: {variant.description}", flush=True)
            levels = measure_variant(
                variant,
                args.workers,
                users,
                args.duration,
                args.warmup,
                mix,
                bodies,
                work,
                keep_order=args.keep_order,
            )
            results["variants"][name] = {  # type: ignore[index]
                "description": variant.description,
                "model": variant.model,
                "env": variant.env,
                "levels": [asdict(level) for level in levels],
            }
    rows = load_rows(args.data, 4096, seed=1)
    batches = [int(b) for b in args.raw_batches.split(",")]
    for kind in sorted({VARIANTS[n].model for n in names if VARIANTS[n].model}):
        results["raw"][kind] = measure_model(kind, batches, args.raw_seconds, rows)  # type: ignore[index]
    stem = args.name
    out = write_report(results, args.out, stem)
    print(f"wrote {out}.json/.md/.png")
    return out


if __name__ == "__main__":
    main()
