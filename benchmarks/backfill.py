"""The Spark backfill against its targets: per-core speed, scaling, memory, and HTTP.

    python -m benchmarks.backfill                                   # ~35 min on 2 cores
    make bench-backfill [BACKFILL_BENCH_ARGS="--rows 1000000 --stages limit,spark"]

Every figure comes from real processes on this machine and the store of ``BENTOML_HOME``
(``fraud-mlp:latest``, ``fraud-distilbert:latest``). The input is `--rows` rows of the embedded
synthetic generator (Time, V1..V28, Amount, Class), written once as Parquet files of 1M rows
(row groups of 100k) under ``.cache/bench-backfill/``; smaller inputs are the first files of
the same set, so every stage sees a prefix of the same rows. Each Spark run is
``python -m backfill --input <parquet> --output <tmp> --model mlp [--challenger distilbert]
--master <m>`` as a subprocess, its throughput the job's own ``summary.json``
(``rows_per_second``: input rows over the seconds from Spark session ready to commit done;
the rows/s with Spark's start are given beside it). While it runs, its processes are sampled
every 0.2 s (psutil): resident memory of the JVMs (driver, executors) and of the Python
workers (``pyspark.daemon`` and its forks), their CPU time, and the machine's busy cores.

Stages (``--stages``, all by default):

- ``limit``: the physical limit, one process feeding the champion's ONNX graph
  (`OnnxScorer`, one intra-op thread) from an in-memory float32 array in 10,000-row calls,
  and, for reference, the Python worker's whole function (`backfill.scoring.scored_batches`:
  checks, ids, scores, Arrow) on in-memory Arrow batches of the same size.
- ``spark``: ``local[1]``, ``local[2]``, and a standalone cluster (`StandaloneCluster`, from
  the pyspark wheel) of one and of two workers of one core each, on `--rows` rows, the
  configurations alternating, `--repeats` runs each (one by default: on 2 cores the four
  take ~6 minutes at 10M rows, the challenger's ~23 at 1M).
- ``memory``: ``local[1]`` and the one-worker standalone cluster on `--memory-rows` rows,
  `--memory-repeats` each: peak RSS against the same configurations' runs on `--rows` rows.
- ``http``: what a user does today: ``bentoml serve service:FraudDetector`` with two workers
  (``FRAUD_WORKERS=2``, default settings otherwise) and `fraud_detection.client.score_frame`
  (``bentoml.SyncHTTPClient``, 1,000-row requests) on the first `--http-rows` rows, from 1, 2
  and 4 client threads (each its own client, taking 20,000-row slices in turn); the best.
- ``challenger``: the same with the DistilBERT challenger on `--challenger-rows` rows: the
  limit (both graphs on each 10,000-row array), the four Spark configurations, and HTTP with
  ``FRAUD_CHALLENGER=distilbert FRAUD_CANARY_SHARE=1`` (both models score every row in the
  request; the shadow share scores off the response path from a bounded queue and skips rows
  when it falls behind, so it would not score every row).

Writes ``benchmarks/results/backfill-<name>.json``, ``.md`` and ``.png``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import queue
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from unittest import mock

import numpy as np
import psutil

from benchmarks.drift_serving import REPO
from benchmarks.drift_serving import start
from benchmarks.provenance import run_header
from benchmarks.provenance import write_results
from fraud_detection.schema import FEATURE_NAMES

CACHE = REPO / ".cache" / "bench-backfill"
CHUNK_ROWS = 1_000_000
ROW_GROUP_ROWS = 100_000
CALL_ROWS = 10_000
SAMPLE_EVERY_S = 0.2
HTTP_CHUNK_ROWS = 1_000
HTTP_SLICE_ROWS = 20_000
HTTP_THREADS = (1, 2, 4)
CONFIGS = ("local[1]", "local[2]", "standalone-1x1", "standalone-2x1")
MEMORY_CONFIGS = ("local[1]", "standalone-1x1")

# --- input --------------------------------------------------------------------------------


def input_folder(rows: int, seed: int) -> Path:
    """A folder of Parquet files holding `rows` synthetic rows: files of `CHUNK_ROWS` rows
    (file i from seed `seed` + i), generated once into the cache; an input of fewer rows is
    one file of its own. Its files are hard links to the cached ones."""
    chunk = min(rows, CHUNK_ROWS)
    if rows % chunk:
        raise SystemExit(f"--rows {rows}: a multiple of {CHUNK_ROWS:,} (or fewer) please")
    chunks = CACHE / f"chunks-{chunk}-seed{seed}"
    chunks.mkdir(parents=True, exist_ok=True)
    folder = CACHE / f"input-{rows}-seed{seed}"
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(rows // chunk):
        name = f"part-{i:05d}.parquet"
        cached = chunks / name
        if not cached.exists():
            write_chunk(cached, chunk, seed + i)
        if not (folder / name).exists():
            os.link(cached, folder / name)
    return folder


def write_chunk(path: Path, rows: int, seed: int) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from training.data.synthetic import generate_transactions

    started = time.monotonic()
    frame = generate_transactions(rows, seed=seed)
    partial = path.with_suffix(".partial")
    pq.write_table(
        pa.Table.from_pandas(frame, preserve_index=False), partial, row_group_size=ROW_GROUP_ROWS
    )
    partial.rename(path)
    print(f"wrote {path} ({rows:,} rows, {time.monotonic() - started:.1f} s)", flush=True)


def read_rows(folder: Path, rows: int) -> Any:
    """The first `rows` rows of an input folder, as a pandas frame."""
    import pyarrow.parquet as pq

    tables, have = [], 0
    for file in sorted(folder.glob("*.parquet")):
        table = pq.read_table(file)
        tables.append(table.slice(0, rows - have))
        have += tables[-1].num_rows
        if have >= rows:
            break
    import pyarrow as pa

    return pa.concat_tables(tables).to_pandas()


# --- the physical limit ------------------------------------------------------------------


def stored_scorer(tag: str) -> Any:
    import bentoml

    from fraud_detection.scorer import OnnxScorer

    model = bentoml.models.get(tag)
    return str(model.tag), OnnxScorer.from_directory(model.path, intra_op_threads=1)


def timed_calls(call: Callable[[int], int], seconds: float) -> dict[str, Any]:
    """`call(i)` (it returns the rows it handled) for at least `seconds`: rows per second."""
    call(0)  # warm-up
    rows, calls = 0, 0
    cpu = time.process_time()
    started = time.perf_counter()
    while (elapsed := time.perf_counter() - started) < seconds:
        rows += call(calls)
        calls += 1
    return {
        "rows": rows,
        "calls": calls,
        "seconds": round(elapsed, 3),
        "rows_per_second": round(rows / elapsed, 1),
        "process_cpu_per_wall": round((time.process_time() - cpu) / elapsed, 3),
    }


def physical_limit(
    features: np.ndarray, models: list[str], seconds: float, passes: int
) -> dict[str, Any]:
    """One process: the graphs of `models` on each 10,000-row slice of `features`."""
    loaded = [stored_scorer(m) for m in models]
    x = np.ascontiguousarray(features, dtype=np.float32)
    starts = list(range(0, len(x) - CALL_ROWS + 1, CALL_ROWS))

    def call(i: int) -> int:
        rows = x[starts[i % len(starts)] :][:CALL_ROWS]
        for _, scorer in loaded:
            scorer.predict_proba(rows)
        return len(rows)

    runs = [timed_calls(call, seconds) for _ in range(passes)]
    return {
        "models": [tag for tag, _ in loaded],
        "intra_op_threads": 1,
        "rows_per_call": CALL_ROWS,
        "passes": runs,
        "rows_per_second": round(float(np.median([r["rows_per_second"] for r in runs])), 1),
    }


def call_size_effect(model: str, features: np.ndarray, seconds: float) -> dict[str, Any]:
    """One graph alone (one thread) in calls of 256 and of 10,000 rows: rows per second."""
    tag, scorer = stored_scorer(model)
    x = np.ascontiguousarray(features[:20_000], dtype=np.float32)
    by_size = {}
    for size in (256, CALL_ROWS):
        starts = list(range(0, len(x) - size + 1, size))
        by_size[str(size)] = timed_calls(
            lambda i, size=size, starts=starts: len(
                scorer.predict_proba(x[starts[i % len(starts)] :][:size])
            ),
            seconds,
        )["rows_per_second"]
    return {"model": tag, "rows_per_second_by_call_rows": by_size}


def worker_function(folder: Path, models: list[str], seconds: float) -> dict[str, Any]:
    """`scored_batches`, the function each Python worker runs, on in-memory Arrow batches of
    10,000 rows of the input (the job's columns): what one Python worker can do per core."""
    import pyarrow.parquet as pq

    from backfill import scoring
    from backfill.models import ShippedModel
    from backfill.scoring import InputColumns
    from backfill.scoring import ScoringPlan

    columns = InputColumns(transaction_id=None, label="Class", date=None)
    file = sorted(folder.glob("*.parquet"))[0]
    table = pq.read_table(file, columns=columns.names()).slice(0, 200_000)
    batches = table.to_batches(max_chunksize=CALL_ROWS)
    loaded = {}
    shipped = []
    for model in models:
        tag, scorer = stored_scorer(model)
        name, version = tag.split(":")
        loaded[name] = scorer
        shipped.append(ShippedModel(name, version, "", scorer.threshold, f"{name}.tar", {}))
    plan = ScoringPlan(shipped[0], shipped[1] if len(shipped) > 1 else None, columns)

    def call(i: int) -> int:
        batch = batches[i % len(batches)]
        for _ in scoring.scored_batches(iter([batch]), plan):
            pass
        return batch.num_rows

    with mock.patch.object(scoring, "executor_scorer", lambda m, threads: loaded[m.name]):
        return timed_calls(call, seconds)


# --- Spark runs ----------------------------------------------------------------------------


def classify(process: psutil.Process, job_pid: int, roots: set[int]) -> str:
    if process.pid == job_pid:
        return "driver_python"
    if process.pid in roots:
        return "cluster_daemons"  # the standalone master and workers
    cmdline = " ".join(process.cmdline())
    if "pyspark.daemon" in cmdline or "pyspark.worker" in cmdline:
        return "python_workers"
    if process.name() == "java" or "/java " in cmdline[:200]:
        if "CoarseGrainedExecutorBackend" in cmdline:
            return "executor_jvm"
        return "driver_jvm"  # in local mode, the driver and the executor in one JVM
    return "other"


class Sampler:
    """Every 0.2 s: RSS and CPU time of the job's processes by kind, and the machine's CPU."""

    KINDS = ("driver_python", "driver_jvm", "executor_jvm", "python_workers", "cluster_daemons")

    def __init__(self, job_pid: int, roots: list[int]) -> None:
        self.job_pid = job_pid
        self.roots = set(roots)
        self.samples: list[dict[str, Any]] = []
        self.cpu_by_pid: dict[int, tuple[str, float]] = {}
        self.kind_of: dict[int, str] = {}
        self.cpu_at_start: dict[int, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)

    def _processes(self) -> list[psutil.Process]:
        found: dict[int, psutil.Process] = {}
        for pid in [self.job_pid, *self.roots]:
            try:
                root = psutil.Process(pid)
                found[pid] = root
                for child in root.children(recursive=True):
                    found[child.pid] = child
            except psutil.NoSuchProcess:
                continue
        return list(found.values())

    def _run(self) -> None:
        while not self._stop.is_set():
            now, machine = time.time(), psutil.cpu_times()
            rss = dict.fromkeys(self.KINDS, 0)
            for process in self._processes():
                try:
                    kind = self.kind_of.get(process.pid)
                    if kind is None or kind == "other":  # spark-class's bash execs the JVM
                        kind = self.kind_of[process.pid] = classify(
                            process, self.job_pid, self.roots
                        )
                    with process.oneshot():
                        memory = process.memory_info().rss
                        times = process.cpu_times()
                except (psutil.NoSuchProcess, psutil.AccessDenied):
                    continue
                rss[kind] = rss.get(kind, 0) + memory
                used = times.user + times.system
                if process.pid in self.roots:  # started before the job: count from here
                    used -= self.cpu_at_start.setdefault(process.pid, used)
                self.cpu_by_pid[process.pid] = (kind, used)
            self.samples.append({"t": now, "cpu": machine, "rss": rss})
            self._stop.wait(SAMPLE_EVERY_S)

    def cpu_seconds(self) -> dict[str, float]:
        """CPU seconds by kind during the run (each process's last sample)."""
        total: dict[str, float] = {}
        for kind, seconds in self.cpu_by_pid.values():
            total[kind] = total.get(kind, 0.0) + seconds
        return {k: round(v, 1) for k, v in sorted(total.items())}


def busy(a: Any, b: Any) -> tuple[float, float, float]:
    """Busy CPU seconds (all but idle and iowait), steal seconds, between two cpu_times."""
    fields = a._fields
    total = sum(getattr(b, f) - getattr(a, f) for f in fields if f not in ("guest", "guest_nice"))
    idle = (b.idle - a.idle) + (getattr(b, "iowait", 0) - getattr(a, "iowait", 0))
    steal = getattr(b, "steal", 0) - getattr(a, "steal", 0)
    return total - idle, steal, total


def window_cpu(samples: list[dict[str, Any]], begin: float, end: float) -> dict[str, Any] | None:
    """The machine's average busy cores between `begin` and `end` (wall-clock times)."""
    inside = [s for s in samples if begin <= s["t"] <= end]
    if len(inside) < 2:
        return None
    first, last = inside[0], inside[-1]
    wall = last["t"] - first["t"]
    busy_s, steal_s, _ = busy(first["cpu"], last["cpu"])
    return {
        "seconds": round(wall, 1),
        "busy_cores": round(busy_s / wall, 2),
        "steal_cores": round(steal_s / wall, 3),
        "cores": psutil.cpu_count(),
    }


def rss_peaks(samples: list[dict[str, Any]], executor_kinds: tuple[str, ...]) -> dict[str, float]:
    mb = 2**20

    def peak(kinds: tuple[str, ...]) -> float:
        return round(max((sum(s["rss"].get(k, 0) for k in kinds) for s in samples), default=0) / mb)

    peaks = {f"{k}_mb": peak((k,)) for k in Sampler.KINDS}
    peaks["executor_mb"] = peak(executor_kinds)
    return peaks


def timeline(samples: list[dict[str, Any]], origin: float) -> list[dict[str, float]]:
    """One point a second: busy cores and RSS (MB) by kind, seconds from `origin`."""
    points, last = [], None
    for sample in samples:
        if last is not None and sample["t"] - last["t"] < 1.0:
            continue
        if last is not None:
            busy_s, _, _ = busy(last["cpu"], sample["cpu"])
            point = {"t": round(sample["t"] - origin, 1)}
            point["busy_cores"] = round(busy_s / (sample["t"] - last["t"]), 2)
            point.update({k: round(v / 2**20) for k, v in sample["rss"].items() if v})
            points.append(point)
        last = sample
    return points


def phases(log: str, seconds: float, rows: int) -> dict[str, float] | None:
    """The job's own phases, from its log: ready to rows counted, to scores staged, to done."""
    counted = re.search(r"backfill \d+ input rows \(([\d.]+) s\)", log)
    staged = re.search(r"backfill scores staged \(([\d.]+) s\)", log)
    if not counted or not staged:
        return None
    a, b = float(counted.group(1)), float(staged.group(1))
    return {
        "models_read_count_s": a,
        "score_and_write_s": round(b - a, 1),
        "checks_and_evidence_s": round(seconds - b, 1),
        "score_and_write_rows_per_second": round(rows / (b - a), 1) if b > a else None,
    }


def spark_run(
    workdir: Path, input_path: Path, config: str, challenger: bool, label: str
) -> dict[str, Any]:
    """One ``python -m backfill`` subprocess under `config`; its summary and what was sampled."""
    from backfill.standalone import StandaloneCluster

    cluster = None
    if config.startswith("standalone"):
        workers, cores = (int(n) for n in config.split("-")[1].split("x"))
        logs = workdir / f"cluster-{label}"
        logs.mkdir(parents=True, exist_ok=True)
        cluster = StandaloneCluster.start(workers=workers, cores=cores, log_dir=logs)
        master = cluster.url
        executor_kinds: tuple[str, ...] = ("executor_jvm", "python_workers")
    else:
        master = config
        executor_kinds = ("driver_jvm", "python_workers")
    output = workdir / f"out-{label}"
    argv = ["--input", str(input_path), "--output", str(output), "--model", "mlp"]
    argv += [*(["--challenger", "distilbert"] if challenger else []), "--master", master]
    log = workdir / f"{label}.log"
    result: dict[str, Any] = {"config": config, "label": label, "master": master}
    try:
        roots = [] if cluster is None else [p.pid for p in cluster.processes]
        with log.open("wb") as out:
            began = time.time()
            process = subprocess.Popen(
                [sys.executable, "-m", "backfill", *argv],
                cwd=REPO,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
            with Sampler(process.pid, roots) as sampler:
                returncode = process.wait()
            ended = time.time()
    finally:
        if cluster is not None:
            cluster.stop()
    result["returncode"] = returncode
    result["wall_seconds"] = round(ended - began, 1)
    summary_file = output / "summary.json"
    if returncode != 0 or not summary_file.exists():
        result["error"] = log.read_text(errors="replace")[-3000:]
        print(f"  {label}: FAILED (exit {returncode}); log tail:\n{result['error']}", flush=True)
        shutil.rmtree(output, ignore_errors=True)
        return result
    summary = json.loads(summary_file.read_text())
    shutil.rmtree(output, ignore_errors=True)
    start_ts = dt.datetime.fromisoformat(summary["started_at"]).timestamp()
    job_end = start_ts + summary["seconds_with_spark_start"]
    ready = job_end - summary["seconds"]
    rows = summary["input_rows"]
    samples = sampler.samples
    result.update(
        {
            "input_rows": rows,
            "seconds": summary["seconds"],
            "seconds_with_spark_start": summary["seconds_with_spark_start"],
            "rows_per_second": summary["rows_per_second"],
            "rows_per_second_with_spark_start": round(
                rows / summary["seconds_with_spark_start"], 1
            ),
            "default_parallelism": summary.get("default_parallelism"),
            "champion": summary["champion"]["model"],
            "challenger": (summary.get("challenger") or {}).get("model"),
            "cpu_job": window_cpu(samples, ready, job_end),
            "cpu_whole_run": window_cpu(samples, began, ended),
            "cpu_seconds_by_kind": sampler.cpu_seconds(),
            "rss_peak": rss_peaks(samples, executor_kinds),
            "executor_kinds": list(executor_kinds),
            "job_window_s": [round(ready - began, 1), round(job_end - began, 1)],
            "timeline": timeline(samples, began),
        }
    )
    whole = result["cpu_whole_run"]
    if whole:
        own = sum(result["cpu_seconds_by_kind"].values()) / whole["seconds"]
        whole["job_processes_cores"] = round(own, 2)
        whole["other_processes_cores"] = round(max(whole["busy_cores"] - own, 0.0), 2)
    result["phases"] = phases(log.read_text(errors="replace"), summary["seconds"], rows)
    cpu = result["cpu_job"] or {}
    print(
        f"  {label}: {rows:,} rows in {summary['seconds']:.1f} s ({summary['rows_per_second']:,.0f}"
        f" rows/s; {summary['seconds_with_spark_start']:.1f} s with Spark's start); machine busy "
        f"{cpu.get('busy_cores')} of {cpu.get('cores')} cores; executor peak RSS "
        f"{result['rss_peak']['executor_mb']} MB",
        flush=True,
    )
    return result


def spark_series(
    workdir: Path,
    input_path: Path,
    configs: tuple[str, ...],
    repeats: int,
    challenger: bool,
    prefix: str,
) -> dict[str, list[dict[str, Any]]]:
    """`repeats` rounds over `configs`, the order reversed every other round."""
    runs: dict[str, list[dict[str, Any]]] = {c: [] for c in configs}
    for round_ in range(repeats):
        order = configs if round_ % 2 == 0 else configs[::-1]
        for config in order:
            label = f"{prefix}-{config.replace('[', '').replace(']', '')}-{round_ + 1}"
            run = spark_run(workdir, input_path, config, challenger, label)
            if challenger or config not in MEMORY_CONFIGS:  # the plot's memory panel only
                run.pop("timeline", None)
            runs[config].append(run)
    return runs


def median_of(runs: list[dict[str, Any]], key: str) -> float | None:
    values = [r[key] for r in runs if r.get(key) is not None]
    return round(float(np.median(values)), 1) if values else None


def executor_peak(runs: list[dict[str, Any]]) -> float | None:
    values = [r["rss_peak"]["executor_mb"] for r in runs if "rss_peak" in r]
    return float(np.median(values)) if values else None


# --- HTTP, as a user would score today -----------------------------------------------------


def http_pass(url: str, frame: Any, threads: int) -> dict[str, Any]:
    """`threads` clients taking 20,000-row slices of `frame` in turn (`score_frame`, 1,000-row
    requests) until none is left: rows per second, and the machine's CPU meanwhile."""
    import bentoml

    from fraud_detection.client import score_frame

    slices: queue.Queue[Any] = queue.Queue()
    for i in range(0, len(frame), HTTP_SLICE_ROWS):
        slices.put(frame.iloc[i : i + HTTP_SLICE_ROWS])
    scored = [0] * threads
    errors: list[str] = []

    def client(index: int) -> None:
        try:
            with bentoml.SyncHTTPClient(url, timeout=120) as c:
                while True:
                    try:
                        part = slices.get_nowait()
                    except queue.Empty:
                        return
                    scored[index] += len(score_frame(c, part, chunk_size=HTTP_CHUNK_ROWS))
        except Exception as e:  # reported with the result
            errors.append(f"{type(e).__name__}: {e}"[:300])

    workers = [threading.Thread(target=client, args=(i,)) for i in range(threads)]
    cpu_before, own_before, began = psutil.cpu_times(), time.process_time(), time.perf_counter()
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    seconds = time.perf_counter() - began
    busy_s, steal_s, _ = busy(cpu_before, psutil.cpu_times())
    rows = sum(scored)
    return {
        "threads": threads,
        "rows": rows,
        "seconds": round(seconds, 2),
        "rows_per_second": round(rows / seconds, 1),
        "busy_cores": round(busy_s / seconds, 2),
        "steal_cores": round(steal_s / seconds, 3),
        "client_cpu_cores": round((time.process_time() - own_before) / seconds, 2),
        "errors": errors,
    }


def http_baseline(workdir: Path, frame: Any, name: str, env: dict[str, str]) -> dict[str, Any]:
    """A two-worker server with `env`; one pass per client thread count; the best."""
    environ = {"FRAUD_WORKERS": "2", **env}
    server = start(workdir, name, **environ)
    try:
        http_pass(server.url, frame.iloc[: 5 * HTTP_CHUNK_ROWS], 1)  # warm-up
        passes = []
        for threads in HTTP_THREADS:
            passes.append(http_pass(server.url, frame, threads))
            p = passes[-1]
            print(
                f"  HTTP {name}, {threads} client thread(s): {p['rows']:,} rows in {p['seconds']} "
                f"s ({p['rows_per_second']:,.0f} rows/s), machine busy {p['busy_cores']} cores, "
                f"errors {len(p['errors'])}",
                flush=True,
            )
        with_status = server.url + "/model/info"
        import httpx

        info = httpx.get(with_status, timeout=10).json()
    finally:
        server.stop()
    best = max(passes, key=lambda p: p["rows_per_second"] if not p["errors"] else 0)
    return {
        "server": "bentoml serve service:FraudDetector",
        "env": environ,
        "client": "fraud_detection.client.score_frame over bentoml.SyncHTTPClient, "
        f"{HTTP_CHUNK_ROWS}-row requests, {HTTP_SLICE_ROWS}-row slices per thread in turn",
        "rows": len(frame),
        "passes": passes,
        "best": best,
        "model_info": info,
    }


# --- the report ----------------------------------------------------------------------------


def ratio(a: float | None, b: float | None) -> float | None:
    return None if a is None or not b else round(a / b, 3)


def target(name: str, measured: str, value: float | None, goal: str, met: bool | None) -> dict:
    return {
        "target": name,
        "goal": goal,
        "measured": measured,
        "value": value,
        "met": None if met is None else bool(met),
    }


def spark_targets(results: dict[str, Any], key: str, title: str) -> list[dict[str, Any]]:
    """Per core, scaling and the HTTP multiple for one series (`spark` or `challenger`)."""
    section = results.get(key)
    if not section or "runs" not in section:
        return []
    runs = section["runs"]
    med = {c: median_of(runs.get(c, []), "rows_per_second") for c in CONFIGS}
    limit = (section.get("limit") or {}).get("rows_per_second")
    rows: list[dict[str, Any]] = []
    if limit:
        r = ratio(med["local[1]"], limit)
        with_start = median_of(runs.get("local[1]", []), "rows_per_second_with_spark_start")
        rows.append(
            target(
                f"{title}: per core, local[1] / the physical limit",
                f"{r} ({med['local[1]']:,} / {limit:,} rows/s; with Spark's start "
                f"{fmt(with_start)} rows/s, {ratio(with_start, limit)})"
                if r
                else "n/a",
                r,
                ">= 0.7",
                None if r is None else r >= 0.7,
            )
        )
    for a, b, what in (
        ("standalone-2x1", "standalone-1x1", "standalone, 2 workers x 1 core / 1 worker"),
        ("local[2]", "local[1]", "local[2] / local[1]"),
    ):
        r = ratio(med[a], med[b])
        rows.append(
            target(
                f"{title}: {what}",
                f"{r} ({med[a]:,} / {med[b]:,} rows/s)" if r else "n/a",
                r,
                ">= 1.7",
                None if r is None else r >= 1.7,
            )
        )
    http = section.get("http")
    if http:
        best = http["best"]["rows_per_second"]
        r = ratio(med["local[2]"], best)
        rows.append(
            target(
                f"{title}: local[2] / HTTP (2 server workers, best client: "
                f"{http['best']['threads']} thread(s), first {http['rows']:,} rows)",
                f"{r} ({med['local[2]']:,} / {best:,} rows/s)" if r else "n/a",
                r,
                ">= 5",
                None if r is None else r >= 5,
            )
        )
    return rows


def memory_targets(results: dict[str, Any]) -> list[dict[str, Any]]:
    memory = results.get("memory")
    spark = results.get("spark")
    if not memory or not spark:
        return []
    rows = []
    for config in MEMORY_CONFIGS:
        small = executor_peak(memory["runs"].get(config, []))
        large = executor_peak(spark["runs"].get(config, []))
        r = ratio(large, small)
        what = (
            "executor JVM + Python workers"
            if config.startswith("standalone")
            else ("the one JVM (driver and executor) + Python workers")
        )
        rows.append(
            target(
                f"peak executor RSS, {config} ({what}): {results['rows']:,} / "
                f"{memory['rows']:,} rows",
                f"{r} ({large:,.0f} / {small:,.0f} MB)" if r else "n/a",
                r,
                "within 10% (<= 1.10)",
                None if r is None else abs(r - 1) <= 0.10,
            )
        )
    return rows


def all_targets(results: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        *spark_targets(results, "spark", f"MLP, {results['rows']:,} rows"),
        *memory_targets(results),
        *spark_targets(
            results,
            "challenger",
            f"MLP + DistilBERT challenger, {results.get('challenger_rows', 0):,} rows",
        ),
    ]


def fmt(value: Any, digits: int = 0) -> str:
    if value is None:
        return "-"
    return f"{value:,.{digits}f}"


def run_rows(runs: dict[str, list[dict[str, Any]]]) -> list[str]:
    lines = []
    for config, series in runs.items():
        for run in series:
            if "error" in run:
                lines.append(
                    f"| {config} | {run['label']} | failed (exit {run['returncode']}) |" + " |" * 10
                )
                continue
            cpu = run.get("cpu_job") or {}
            by_kind = run["cpu_seconds_by_kind"]
            jvm = by_kind.get("driver_jvm", 0) + by_kind.get("executor_jvm", 0)
            py = by_kind.get("python_workers", 0)
            rss = run["rss_peak"]
            jvm_rss = rss["driver_jvm_mb"] + rss["executor_jvm_mb"]
            jvms = (
                f"driver {fmt(rss['driver_jvm_mb'])}, executors {fmt(rss['executor_jvm_mb'])}"
                if rss["executor_jvm_mb"]
                else "one JVM: driver and executor"
            )
            lines.append(
                f"| {config} | {run['label'].rsplit('-', 1)[-1]} | {run['input_rows']:,} | "
                f"{run['seconds']:.1f} | {run['seconds_with_spark_start']:.1f} | "
                f"{fmt(run['rows_per_second'])} | {fmt(run['rows_per_second_with_spark_start'])} | "
                f"{fmt((run.get('phases') or {}).get('score_and_write_rows_per_second'))} | "
                f"{cpu.get('busy_cores', '-')} / {cpu.get('cores', '-')} "
                f"({(run.get('cpu_whole_run') or {}).get('other_processes_cores', '-')}) | "
                f"{jvm:.0f} / {py:.0f} | "
                f"{fmt(jvm_rss)} ({jvms}) / {fmt(rss['python_workers_mb'])} | "
                f"**{fmt(rss['executor_mb'])}** |"
            )
    return lines


def observations(results: dict[str, Any]) -> list[str]:
    """What the samples say about CPU saturation and the shape of executor memory."""
    lines = []
    cores = results.get("cores") or psutil.cpu_count()
    for key, title in (("spark", "MLP"), ("challenger", "MLP + DistilBERT")):
        runs = (results.get(key) or {}).get("runs", {})
        for config in ("local[1]", "standalone-1x1"):
            run = next((r for r in runs.get(config, []) if "error" not in r), None)
            if run is None:
                continue
            cpu, wall = run["cpu_seconds_by_kind"], run["wall_seconds"]
            jvm = cpu.get("driver_jvm", 0) + cpu.get("executor_jvm", 0)
            used = sum(cpu.values()) / wall
            lines.append(
                f"{title}, {config} ({run['input_rows']:,} rows): one task slot, yet the job's "
                f"processes averaged {used:.2f} cores over the run (JVMs {jvm / wall:.2f}, Python "
                f"workers {cpu.get('python_workers', 0) / wall:.2f}); on {cores} cores a second "
                f"slot can add at most {cores / used:.2f}x."
            )
    for key in ("spark", "memory"):
        for config in MEMORY_CONFIGS:
            for run in (results.get(key) or {}).get("runs", {}).get(config, [])[:1]:
                if "timeline" not in run:
                    continue
                begin, end = run["job_window_s"]
                kinds = run["executor_kinds"]

                def at(share: float, run=run, begin=begin, end=end, kinds=kinds) -> str:
                    t = begin + share * (end - begin)
                    point = min(run["timeline"], key=lambda p: abs(p["t"] - t))
                    return fmt(sum(point.get(k, 0) for k in kinds))

                lines.append(
                    f"Executor RSS, {config}, {run['input_rows']:,} rows (run 1): at 25% / 50% / "
                    f"75% / 95% of the job {at(0.25)} / {at(0.5)} / {at(0.75)} / {at(0.95)} MB "
                    f"(1 s points); peak {fmt(run['rss_peak']['executor_mb'])} MB (0.2 s samples)."
                )
    return lines


RUN_HEADER = [
    "| configuration | run | rows | s | s with Spark's start | rows/s | rows/s with start | "
    "rows/s of the score-and-write phase | machine busy cores in the job (other processes' "
    "cores) | CPU s: JVMs / Python workers | peak RSS MB: JVMs / Python workers | peak "
    "executor RSS MB |",
    "|---|---:|---:|---:|---:|---:|---:|---:|---|---|---|---:|",
]


def markdown(results: dict[str, Any]) -> str:
    lines = [
        "# Spark backfill: per-core speed, scaling, memory, and HTTP",
        "",
        f"{results['machine']}; {results['date']}; commit {results['commit']}; champion "
        f"{results.get('model')}; challenger {results.get('challenger_model')}; rows: "
        f"{results['rows_kind']}.",
        f"Command: `{results['command']}`"
        + (f"; wall time {results['wall_minutes']} min." if "wall_minutes" in results else ""),
        "",
        "## Targets",
        "",
        "<!-- --8<-- [start:targets] -->",
        "",
        "| target | measured | goal | met |",
        "|---|---|---|---|",
    ]
    for t in results.get("targets", []):
        met = "-" if t["met"] is None else ("**yes**" if t["met"] else "**no**")
        lines.append(f"| {t['target']} | {t['measured']} | {t['goal']} | {met} |")
    lines += [
        "",
        "Spark figures: the median of the runs below, the job's own `rows_per_second` (input "
        "rows over the seconds from Spark session ready to commit done: read, check, score, "
        "write, count, promotion evidence). The physical limit: one process feeding the same "
        "ONNX graph(s) (one intra-op thread) from an in-memory float32 array in 10,000-row "
        "calls. HTTP: a prefix of the same rows (10 million over HTTP would take too long), "
        "client and server on this machine.",
        "",
        "<!-- --8<-- [end:targets] -->",
    ]
    for key, title in (("spark", "MLP champion"), ("challenger", "MLP + DistilBERT challenger")):
        section = results.get(key)
        if not section:
            continue
        lines += ["", f"## {title}", "", f"<!-- --8<-- [start:{key}] -->", ""]
        limit = section.get("limit")
        if limit:
            passes = ", ".join(fmt(p["rows_per_second"]) for p in limit["passes"])
            lines.append(
                f"- Physical limit ({' + '.join(limit['models'])}, one thread, 10,000-row "
                f"calls): **{fmt(limit['rows_per_second'])} rows/s** (median of {passes})."
            )
        sizes = section.get("challenger_call_rows")
        if sizes:
            by = sizes["rows_per_second_by_call_rows"]
            lines.append(
                f"- The challenger's graph alone, one thread: {fmt(by['256'])} rows/s in 256-row "
                f"calls, {fmt(by[str(CALL_ROWS)])} rows/s in 10,000-row calls (the job's Arrow "
                "batches)."
            )
        fn = section.get("worker_function")
        if fn:
            lines.append(
                f"- The Python worker's function alone (`scored_batches` on in-memory Arrow "
                f"batches of 10,000 rows: checks, ids, scores, Arrow), one process: "
                f"{fmt(fn['rows_per_second'])} rows/s."
            )
        http = section.get("http")
        if http:
            per = "; ".join(
                f"{p['threads']} thread(s) {fmt(p['rows_per_second'])} rows/s (machine busy "
                f"{p['busy_cores']} cores; client {p['client_cpu_cores']}"
                f"{'; errors ' + str(len(p['errors'])) if p['errors'] else ''})"
                for p in http["passes"]
            )
            env = " ".join(f"{k}={v}" for k, v in http["env"].items())
            lines.append(
                f"- HTTP ({env}; {http['client']}; the first {http['rows']:,} rows): {per}."
            )
        if "runs" in section:
            lines += ["", *RUN_HEADER, *run_rows(section["runs"])]
        lines += ["", f"<!-- --8<-- [end:{key}] -->"]
    memory = results.get("memory")
    if memory:
        lines += [
            "",
            f"## Memory at {memory['rows']:,} rows",
            "",
            "<!-- --8<-- [start:memory] -->",
            "",
            *RUN_HEADER,
            *run_rows(memory["runs"]),
            "",
            "<!-- --8<-- [end:memory] -->",
        ]
    lines += [
        "",
        "Machine busy cores: the machine's CPU (psutil, all but idle and iowait) over the job's "
        "window, whatever ran it; in brackets, the cores used over the whole run by processes "
        "other than the job's (other work on the machine). CPU s by kind: the job's own "
        "processes. The score-and-write phase: the job's log, rows counted to scores staged. "
        "Peak executor RSS: the peak of the sum, sampled every 0.2 s, of the executor JVM(s) "
        "(in local mode the one JVM, driver and executor) and the Python workers "
        "(`pyspark.daemon` and its forks; RSS counts their shared pages once per process).",
    ]
    observed = observations(results)
    if observed:
        lines += ["", "## Observed", "", "<!-- --8<-- [start:observed] -->", ""]
        lines += [*[f"- {n}" for n in observed], "", "<!-- --8<-- [end:observed] -->"]
    if results.get("notes"):
        lines += ["", "## Notes", "", *[f"- {n}" for n in results["notes"]]]
    return "\n".join(lines) + "\n"


def plot(results: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(17, 5))
    for ax, key, title in (
        (axes[0], "spark", f"MLP, {results['rows']:,} rows"),
        (axes[1], "challenger", f"MLP + DistilBERT, {results.get('challenger_rows', 0):,} rows"),
    ):
        section = results.get(key) or {}
        labels, values, colors = [], [], []
        if section.get("limit"):
            labels.append("physical limit\n(1 core)")
            values.append(section["limit"]["rows_per_second"])
            colors.append("#999999")
        for config in CONFIGS:
            value = median_of(section.get("runs", {}).get(config, []), "rows_per_second")
            if value:
                labels.append(config.replace("standalone-", "standalone\n"))
                values.append(value)
                colors.append("#1f77b4")
        http = section.get("http")
        if http:
            labels.append(f"HTTP best\n({http['best']['threads']} thr.)")
            values.append(http["best"]["rows_per_second"])
            colors.append("#d62728")
        if not values:
            ax.axis("off")
            ax.text(0.5, 0.5, f"{title}: not run", ha="center", transform=ax.transAxes)
            continue
        if section.get("limit"):
            ax.axhline(
                0.7 * section["limit"]["rows_per_second"], ls="--", color="#555555", lw=1,
                label="0.7 x the physical limit (per-core target)",
            )  # fmt: skip
        if http:
            ax.axhline(
                5 * http["best"]["rows_per_second"], ls=":", color="#d62728", lw=1,
                label="5 x HTTP (target for the Spark backfill)",
            )  # fmt: skip
        ax.bar(range(len(values)), values, color=colors)
        ax.legend(fontsize=7, loc="upper right")
        ax.set_xticks(range(len(values)), labels, fontsize=8)
        ax.set_ylabel("rows / s")
        ax.set_title(title)
        for i, v in enumerate(values):
            ax.text(i, v, f"{v:,.0f}", ha="center", va="bottom", fontsize=7)
    ax = axes[2]
    plotted = False
    for key, style in (("memory", "--"), ("spark", "-")):
        section = results.get(key) or {}
        for config, color in zip(MEMORY_CONFIGS, ("#1f77b4", "#2ca02c"), strict=True):
            runs = [r for r in section.get("runs", {}).get(config, []) if "timeline" in r]
            if not runs:
                continue
            run = runs[0]
            kinds = run["executor_kinds"]
            t = [p["t"] for p in run["timeline"]]
            mb = [sum(p.get(k.replace("_mb", ""), 0) for k in kinds) for p in run["timeline"]]
            ax.plot(t, mb, style, color=color, label=f"{config}, {run['input_rows']:,} rows")
            plotted = True
    if plotted:
        ax.set_xlabel("seconds from the job's start")
        ax.set_ylabel("executor RSS MB (JVM + Python workers)")
        ax.set_title("Executor memory over a run")
        ax.legend(fontsize=7)
    fig.suptitle(f"Spark backfill, {results['machine']}", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def save(results: dict[str, Any], name: str) -> Path:
    results["targets"] = all_targets(results)
    out = write_results(f"backfill-{name}", results, markdown(results))
    plot(results, out.with_suffix(".png"))
    return out


STAGES = ("limit", "spark", "memory", "http", "challenger")


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--memory-rows", type=int, default=1_000_000)
    parser.add_argument("--challenger-rows", type=int, default=1_000_000)
    parser.add_argument("--http-rows", type=int, default=500_000, help="prefix sent over HTTP")
    parser.add_argument(
        "--challenger-http-rows", type=int, default=40_000, help="prefix, with the challenger"
    )
    parser.add_argument(
        "--repeats", type=int, default=1, help="runs per Spark configuration on --rows"
    )
    parser.add_argument("--memory-repeats", type=int, default=2)
    parser.add_argument("--challenger-repeats", type=int, default=1)
    parser.add_argument("--limit-seconds", type=float, default=5.0)
    parser.add_argument("--limit-passes", type=int, default=3)
    parser.add_argument("--seed", type=int, default=2024)
    parser.add_argument("--stages", default=",".join(STAGES))
    parser.add_argument("--name", default="vm")
    args = parser.parse_args(argv)
    stages = args.stages.split(",")
    unknown = set(stages) - set(STAGES)
    if unknown:
        parser.error(f"unknown stages {sorted(unknown)}; choose from {STAGES}")
    import bentoml

    header = run_header("benchmarks.backfill", argv, None)
    results: dict[str, Any] = {
        **header,
        "rows_kind": "synthetic (training.data.synthetic.generate_transactions, Time, V1..V28, "
        f"Amount, Class; seed {args.seed}+file), Parquet files of {CHUNK_ROWS:,} rows, row groups "
        f"of {ROW_GROUP_ROWS:,}",
        "bentoml_home": os.environ.get("BENTOML_HOME"),
        "model": str(bentoml.models.get("fraud-mlp:latest").tag),
        "rows": args.rows,
        "challenger_rows": args.challenger_rows,
        "cores": psutil.cpu_count(),
        "repeats": {
            "spark": args.repeats,
            "memory": args.memory_repeats,
            "challenger": args.challenger_repeats,
        },
        "notes": [
            f"Runs per Spark configuration: {args.repeats} on {args.rows:,} rows, "
            f"{args.memory_repeats} on {args.memory_rows:,} (memory), {args.challenger_repeats} "
            f"with the challenger on {args.challenger_rows:,}; a figure is the median of its "
            "runs. More repeats would not fit the run in ~35 minutes on 2 cores.",
            "HTTP: `bentoml serve` and the client share this machine's cores (the client's own "
            "CPU is given per pass); the rows are a prefix of the Spark input, since 10 million "
            "rows over HTTP would take too long.",
            "With the challenger, the HTTP server runs with FRAUD_CHALLENGER=distilbert and "
            "FRAUD_CANARY_SHARE=1: both models score every row before the answer (the champion's "
            "score is logged, the challenger's answers). The shadow share would score off the "
            "response path from a bounded queue (4,096 rows) and skip rows when behind, so "
            "FRAUD_SHADOW_SHARE=1 would not score every row with both.",
            "In local mode the executor is the driver's JVM: its peak RSS includes the driver's "
            "share, e.g. collecting the promotion-evidence columns (Amount, probabilities, "
            "label) of every row. In the standalone cluster the executor JVMs are separate "
            "processes (the driver's JVM is given beside them).",
        ],
    }
    if "challenger" in stages:
        results["challenger_model"] = str(bentoml.models.get("fraud-distilbert:latest").tag)
    started = time.monotonic()
    main_input = input_folder(args.rows, args.seed)
    with tempfile.TemporaryDirectory(prefix="backfill-bench-") as tmp:
        workdir = Path(tmp)
        if "limit" in stages or "spark" in stages:
            section = results.setdefault("spark", {})
            if "limit" in stages:
                features = read_rows(main_input, min(args.rows, CHUNK_ROWS))[list(FEATURE_NAMES)]
                section["limit"] = physical_limit(
                    features.to_numpy(), ["fraud-mlp:latest"], args.limit_seconds,
                    args.limit_passes,
                )  # fmt: skip
                section["worker_function"] = worker_function(
                    main_input, ["fraud-mlp:latest"], args.limit_seconds
                )
                print(f"limit: {section['limit']['rows_per_second']:,} rows/s", flush=True)
                save(results, args.name)
            if "spark" in stages:
                section["runs"] = spark_series(
                    workdir, main_input, CONFIGS, args.repeats, False, "mlp"
                )
                save(results, args.name)
        if "memory" in stages:
            small = input_folder(args.memory_rows, args.seed)
            results["memory"] = {
                "rows": args.memory_rows,
                "runs": spark_series(
                    workdir, small, MEMORY_CONFIGS, args.memory_repeats, False, "mem"
                ),
            }
            save(results, args.name)
        if "http" in stages:
            frame = read_rows(main_input, args.http_rows)
            results.setdefault("spark", {})["http"] = http_baseline(workdir, frame, "http-mlp", {})
            save(results, args.name)
        if "challenger" in stages:
            small = input_folder(args.challenger_rows, args.seed)
            models = ["fraud-mlp:latest", "fraud-distilbert:latest"]
            features = read_rows(small, min(args.challenger_rows, CHUNK_ROWS))[list(FEATURE_NAMES)]
            section = results["challenger"] = {"rows": args.challenger_rows}
            section["limit"] = physical_limit(
                features.to_numpy(), models, args.limit_seconds, args.limit_passes
            )
            section["worker_function"] = worker_function(small, models, args.limit_seconds)
            section["challenger_call_rows"] = call_size_effect(
                models[1], features.to_numpy(), args.limit_seconds
            )
            print(f"limit with challenger: {section['limit']['rows_per_second']:,}", flush=True)
            save(results, args.name)
            section["runs"] = spark_series(
                workdir, small, CONFIGS, args.challenger_repeats, True, "challenger"
            )
            save(results, args.name)
            frame = read_rows(small, args.challenger_http_rows)
            section["http"] = http_baseline(
                workdir,
                frame,
                "http-challenger",
                {"FRAUD_CHALLENGER": "distilbert", "FRAUD_CANARY_SHARE": "1"},
            )
    results["wall_minutes"] = round((time.monotonic() - started) / 60, 1)
    return save(results, args.name)


if __name__ == "__main__":
    main()
