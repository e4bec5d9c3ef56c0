"""Drift monitoring as served: detection delay, false alarms, hook cost and a soak.

    python -m benchmarks.drift_serving                                  # ~5 min, no soak
    python -m benchmarks.drift_serving --data creditcard.csv.gz --soak-minutes 10

Every figure comes from a real ``bentoml serve`` (one worker, default drift settings) on
127.0.0.1 and the stored ``fraud-mlp:latest`` (``BENTOML_HOME``):

- detection: a fresh server gets `--rows` in-distribution rows, then as many with V14 moved
  by two reference standard deviations and Amount tripled, as 500-row requests; the time from
  the shifted rows' arrival to ``fraud_drift_detected 1`` on ``/metrics``, and the features
  ``/drift/summary`` names. ``/drift/report`` is timed too (built on demand, then cached).
- false alarms: `--windows` windows of fresh in-distribution rows through the service's own
  online computation (`DriftDetector.summarize`) with the default settings.
- hook cost: wrk (one-row requests, 32 connections) and Locust (the request mix, 32 users)
  against two servers side by side, the drift log and detector on in one and off in the
  other, measured in turn with the order alternating by round.
- soak: `--soak-minutes` one-minute wrk passes with the detector on; throughput per minute
  and resident memory.

Writes ``benchmarks/results/drift-serving-<name>.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import bentoml
import httpx
import numpy as np

from benchmarks.peers.measure import run_locust
from benchmarks.peers.measure import run_wrk
from benchmarks.peers.measure import wrk_script
from benchmarks.provenance import run_header
from benchmarks.provenance import write_results
from benchmarks.request_mix import DEFAULT_MIX
from benchmarks.request_mix import RequestMix
from benchmarks.request_mix import load_rows
from fraud_detection.drift.config import DriftConfig
from fraud_detection.drift.detector import DriftDetector
from fraud_detection.schema import FEATURE_NAMES
from fraud_detection.scorer import OnnxScorer
from harness.server_process import ServerProcess
from harness.server_process import free_port

REPO = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).parent / "results"
DRIFT_OFF = {"FRAUD_DRIFT_LOG": "0", "FRAUD_DRIFT_DETECTION": "0"}
V14 = FEATURE_NAMES.index("V14")
AMOUNT = FEATURE_NAMES.index("Amount")


def split_cpus() -> tuple[set[int], set[int]] | None:
    """(server CPUs, load-generator CPUs): the last CPU this process may use for the server,
    the others for the load; None with fewer than two."""
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        return None
    return {cpus[-1]}, set(cpus[:-1])


def start(
    workdir: Path, name: str, cwd: Path = REPO, cpus: set[int] | None = None, **env: str
) -> ServerProcess:
    """``bentoml serve service:FraudDetector`` from `cwd`, one worker, on a free loopback port
    (on `cpus` only, through ``taskset``, when given)."""
    port = free_port()
    folder = workdir / name
    folder.mkdir(parents=True, exist_ok=True)
    environ = {
        **os.environ,
        "FRAUD_WORKERS": "1",
        "FRAUD_MONITOR_LOG_PATH": str(folder / "monitoring"),
        **env,
    }
    argv = [sys.executable, "-m", "bentoml", "serve", "service:FraudDetector"]
    argv += ["--host", "127.0.0.1", "--port", str(port)]
    if cpus:
        argv = ["taskset", "-c", ",".join(map(str, sorted(cpus))), *argv]
    return ServerProcess.start(argv, port=port, env=environ, cwd=cwd, log_file=folder / "log")


def gauge(metrics: str, name: str) -> float | None:
    match = re.search(rf"^{re.escape(name)} ([-\d.e+]+)$", metrics, re.MULTILINE)
    return float(match.group(1)) if match else None


def shifted(rows: np.ndarray, v14_std: float) -> np.ndarray:
    moved = rows.copy()
    moved[:, V14] += 2 * v14_std
    moved[:, AMOUNT] *= 3
    return moved


def post_rows(client: httpx.Client, rows: np.ndarray, per_request: int = 500) -> None:
    for i in range(0, len(rows), per_request):
        chunk = rows[i : i + per_request]
        body = {"transactions": [dict(zip(FEATURE_NAMES, r, strict=True)) for r in chunk.tolist()]}
        response = client.post("/predict", json=body)
        response.raise_for_status()


def detection(workdir: Path, rows: np.ndarray, v14_std: float) -> dict[str, Any]:
    """A fresh server: in-distribution rows, then shifted ones; when does the gauge say 1?"""
    half = len(rows) // 2
    normal, moved = rows[:half], shifted(rows[half:], v14_std)
    server = start(workdir, "detection")
    polled: list[tuple[float, float | None]] = []
    stop = threading.Event()

    def poll() -> None:
        with httpx.Client(base_url=server.url, timeout=10) as client:
            while not stop.is_set():
                value = gauge(client.get("/metrics").text, "fraud_drift_detected")
                polled.append((time.monotonic(), value))
                stop.wait(0.25)

    poller = threading.Thread(target=poll, daemon=True)
    try:
        poller.start()
        with httpx.Client(base_url=server.url, timeout=60) as client:
            started = time.monotonic()
            post_rows(client, normal)
            shift_started = time.monotonic()
            post_rows(client, moved)
            shift_ended = time.monotonic()
            detected_at = None
            while time.monotonic() < shift_ended + 120:
                hits = [t for t, v in polled if t >= shift_started and v == 1.0]
                if hits:
                    detected_at = hits[0]
                    break
                time.sleep(0.25)
            alarms_before = sum(1 for t, v in polled if t < shift_started and v == 1.0)
            summary = client.get("/drift/summary").json()
            report_times = []
            for _ in range(2):  # built on demand, then served from the cache
                t0 = time.monotonic()
                report = client.get("/drift/report")
                report_times.append(round(time.monotonic() - t0, 3))
    finally:
        stop.set()
        poller.join(timeout=5)
        server.stop()
    first_computation = next((t for t, v in polled if v is not None), None)
    return {
        "rows_in_distribution": len(normal),
        "rows_shifted": len(moved),
        "rows_per_request": 500,
        "seconds_sending_shifted_rows": round(shift_ended - shift_started, 2),
        "first_computation_after_start_s": round(first_computation - started, 2)
        if first_computation
        else None,
        "detected": detected_at is not None,
        "detection_after_last_shifted_row_s": round(detected_at - shift_ended, 2)
        if detected_at
        else None,
        "detection_after_first_shifted_row_s": round(detected_at - shift_started, 2)
        if detected_at
        else None,
        "alarms_before_shift": alarms_before,
        "drifted_features": summary.get("drifted_features"),
        "report_status": report.status_code,
        "report_seconds_first_then_cached": report_times,
    }


def false_alarms(model: Any, rows: np.ndarray, windows: int) -> dict[str, Any]:
    """Windows of fresh in-distribution rows through the service's online computation."""
    config = DriftConfig()
    detector = DriftDetector.for_model(model.path, config, model=str(model.tag))
    scorer = OnnxScorer.from_directory(model.path, intra_op_threads=1)
    rng = np.random.default_rng(7)
    alarms = []
    for _ in range(windows):
        window = rows[rng.choice(len(rows), size=config.window_rows, replace=False)]
        summary = detector.summarize(window, scorer.predict_proba(window.astype(np.float32)))
        alarms.append(
            {
                "drift_detected": summary.drift_detected,
                "drifted_features": summary.drifted_features,
                "max_feature_score": round(max(f.score for f in summary.features), 4),
            }
        )
    return {
        "windows": windows,
        "window_rows": config.window_rows,
        "alarms": sum(a["drift_detected"] for a in alarms),
        "per_window": alarms,
    }


def one_row_script(workdir: Path, row: np.ndarray, name: str) -> Path:
    """A wrk script posting `row` as a one-transaction request."""
    body = workdir / f"{name}.json"
    body.write_text(
        json.dumps({"transactions": [dict(zip(FEATURE_NAMES, row.tolist(), strict=True))]})
    )
    script = workdir / f"{name}.lua"
    script.write_text(wrk_script(body))
    return script


def measured_pass(server: ServerProcess, run: Any) -> dict[str, Any]:
    """One load pass; adds the server's CPU milliseconds per request to its result."""
    cpu_before = server.cpu_seconds()
    result = run(server.url)
    result["cpu_ms_per_request"] = round(
        1000 * (server.cpu_seconds() - cpu_before) / max(result["requests"], 1), 4
    )
    return result


def cpu_steal_share() -> tuple[int, int]:
    """(steal, total) jiffies from /proc/stat: time the hypervisor gave to other guests."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n")[0].split()[1:]]
    return fields[7], sum(fields)


def geometric_mean_interval(
    ratios: list[float], rounds: int, resamples: int = 5000, seed: int = 0
) -> dict[str, float]:
    """Geometric mean of paired ratios with a 95% two-stage bootstrap interval.

    `ratios` come in `rounds` equal blocks, one per fresh pair of servers. Passes of one pair
    share that pair's instance-to-instance difference, so the bootstrap draws rounds first,
    then passes within each drawn round: resampling passes alone would treat a few server
    instances as many and give too narrow an interval.
    """
    logs = np.log(np.asarray(ratios)).reshape(rounds, -1)
    rng = np.random.default_rng(seed)
    chosen = logs[rng.integers(0, rounds, size=(resamples, rounds))]  # resamples, rounds, passes
    within = rng.integers(0, logs.shape[1], size=chosen.shape)
    means = np.take_along_axis(chosen, within, axis=2).mean(axis=(1, 2))
    low, high = np.exp(np.percentile(means, [2.5, 97.5]))
    return {
        "geometric_mean": round(float(np.exp(logs.mean())), 3),
        "ci95_low": round(float(low), 3),
        "ci95_high": round(float(high), 3),
        "pairs": len(ratios),
        "server_pairs": rounds,
    }


def paired_cost(
    workdir: Path,
    rows: np.ndarray,
    data: str | None,
    seconds: float,
    rounds: int,
    passes: int,
    variants: dict[str, dict[str, str]],
    pin: bool = False,
    script: Path | None = None,
) -> dict[str, Any]:
    """wrk (one-row requests) and Locust (the mix) against two server variants side by side.

    With `pin` (and two CPUs or more), the servers run on the last CPU and the load
    generators on the others, the shape of a one-vCPU instance with remote clients; without
    it, the scheduler places them (how the published figures were measured).

    `variants` maps two labels to the environment each server gets; ratios are the first over
    the second. Each round starts a fresh pair of servers, then runs `passes` short passes per
    tool on each, alternating which goes first. Paired ratios of adjacent passes cancel this
    VM's drift in CPU speed (the same server's throughput moves by 10-20% from one pass to the
    next, so a handful of long passes cannot resolve a 3% effect); fresh pairs average out
    instance-to-instance differences. The result is the geometric mean of all paired ratios
    with a 95% bootstrap interval over server pairs and passes. The server's CPU time per
    request, read from /proc around each pass, is the direct measure of the cost.
    """
    first, second = variants
    # wrk posts `rows[0]` on every request, unless a `script` of its own is given.
    script = script or one_row_script(workdir, rows[0], "one-row")
    bodies = workdir / "mix.jsonl"
    RequestMix.build(DEFAULT_MIX, data=data, seed=3).save(bodies)
    tools = {
        "wrk": lambda url: run_wrk(url, "/predict", script, 32, seconds).to_dict(),
        "locust": lambda url: run_locust(
            url, "/predict", 32, seconds, bodies, workdir / "locust-paired"
        ),
    }
    runs: dict[str, dict[str, list[dict[str, Any]]]] = {
        tool: {label: [] for label in variants} for tool in tools
    }
    placement = split_cpus() if pin else None
    server_cpus = None if placement is None else placement[0]
    own_cpus = os.sched_getaffinity(0)
    if placement is not None:
        os.sched_setaffinity(0, placement[1])  # wrk and Locust inherit it
    try:
        steal_before = cpu_steal_share()
        for round_ in range(rounds):
            servers = {
                label: start(workdir, f"{label}-{round_}", cpus=server_cpus, **env)
                for label, env in variants.items()
            }
            try:
                for server in servers.values():
                    run_wrk(server.url, "/predict", script, 32, 3)  # warm-up
                for tool, run in tools.items():
                    for pass_ in range(passes):
                        order = [first, second] if (round_ + pass_) % 2 == 0 else [second, first]
                        for label in order:
                            runs[tool][label].append(measured_pass(servers[label], run))
            finally:
                for server in servers.values():
                    server.stop()
    finally:
        os.sched_setaffinity(0, own_cpus)
    steal_after = cpu_steal_share()
    steal = (steal_after[0] - steal_before[0]) / max(steal_after[1] - steal_before[1], 1)

    def paired(tool: str, key: str) -> list[float]:
        a, b = runs[tool][first], runs[tool][second]
        return [x[key] / y[key] for x, y in zip(a, b, strict=True)]

    ratios = {
        tool: {
            "throughput": geometric_mean_interval(paired(tool, "requests_per_s"), rounds),
            "p99": geometric_mean_interval(paired(tool, "p99_ms"), rounds),
            "cpu_per_request": geometric_mean_interval(paired(tool, "cpu_ms_per_request"), rounds),
            "requests_per_s": {
                label: round(float(np.mean([r["requests_per_s"] for r in runs[tool][label]])))
                for label in variants
            },
        }
        for tool in tools
    }
    return {
        "variants": variants,
        "seconds": seconds,
        "rounds": rounds,
        "passes": passes,
        "cpu_steal_share": round(steal, 4),
        "placement": "unpinned"
        if placement is None
        else f"servers on CPU {sorted(placement[0])}, load generators on CPUs "
        f"{sorted(placement[1])}",
        "ratios": ratios,
        "runs": runs,
    }


def paired_cost_rows(cost: dict[str, Any], what: str, target: str) -> list[str]:
    """Markdown table rows (measure | value | target) of a `paired_cost` result."""
    first, second = cost["variants"]
    lines = []
    for tool, label in (("wrk", "wrk one-row, 32 connections"), ("locust", "Locust mix, 32 users")):
        r = cost["ratios"][tool]

        def interval(x: dict[str, float]) -> str:
            return f"{x['geometric_mean']} [{x['ci95_low']}, {x['ci95_high']}]"

        lines.append(
            f"| {what}, {label}: {first} / {second}, geometric mean of "
            f"{r['throughput']['pairs']} paired passes [95% two-stage bootstrap: server pairs, "
            "then passes] "
            f"({cost['rounds']} fresh server pairs x {cost['passes']} alternating "
            f"{cost['seconds']:.0f} s passes; {cost.get('placement', 'unpinned')}; CPU steal "
            f"{cost['cpu_steal_share']:.1%}) "
            f"| throughput {interval(r['throughput'])} ({r['requests_per_s'][first]} / "
            f"{r['requests_per_s'][second]} req/s); p99 {interval(r['p99'])}; server CPU per "
            f"request {interval(r['cpu_per_request'])} | {target} |"
        )
    return lines


def soak(workdir: Path, rows: np.ndarray, minutes: int) -> dict[str, Any]:
    """One-minute wrk passes back to back against one server with the detector on."""
    script = one_row_script(workdir, rows[1], "soak-row")
    server = start(workdir, "soak")
    per_minute = []
    try:
        rss_start = sum(server.rss_bytes().values())
        for minute in range(1, minutes + 1):
            result = run_wrk(server.url, "/predict", script, 32, 60)
            rss = sum(server.rss_bytes().values())
            per_minute.append(
                {
                    "minute": minute,
                    "requests_per_s": result.requests_per_s,
                    "p99_ms": result.p99_ms,
                    "errors": result.errors,
                    "rss_mb": round(rss / 2**20, 1),
                }
            )
        metrics = httpx.get(server.url + "/metrics", timeout=10).text
    finally:
        server.stop()
    second, last = per_minute[min(1, len(per_minute) - 1)], per_minute[-1]
    return {
        "minutes": minutes,
        "per_minute": per_minute,
        "last_over_second_minute": round(last["requests_per_s"] / second["requests_per_s"], 3),
        "rss_growth": round(last["rss_mb"] * 2**20 / rss_start - 1, 4),
        "drift_computations": gauge(metrics, "fraud_drift_computations_total"),
        "errors": sum(m["errors"] for m in per_minute),
    }


def markdown(results: dict[str, Any]) -> str:
    lines = [
        "# Drift monitoring as served",
        "",
        f"{results['machine']}; {results['date']}; model {results['model']}; rows: "
        f"{results['rows']}; one worker, default drift settings.",
        "",
        "| measure | value | target |",
        "|---|---|---|",
    ]
    if "detection" in results:
        d = results["detection"]
        lines += [
            f"| detection after the last shifted row arrived | "
            f"{d['detection_after_last_shifted_row_s']} s (after the first: "
            f"{d['detection_after_first_shifted_row_s']} s; shifted rows took "
            f"{d['seconds_sending_shifted_rows']} s to send), features {d['drifted_features']} "
            f"| <= 30 s |",
            f"| alarms before the shift | {d['alarms_before_shift']} | 0 |",
            f"| `/drift/report`, first (built) then cached | "
            f"{d['report_seconds_first_then_cached']} s | |",
        ]
    if "false_alarms" in results:
        fa = results["false_alarms"]
        lines.append(
            f"| false alarms, {fa['windows']} in-distribution windows of {fa['window_rows']} "
            f"rows | {fa['alarms']} | 0 |"
        )
    if "hook_cost" in results:
        lines += paired_cost_rows(results["hook_cost"], "hook cost", ">= 0.97; <= 1.1")
    if "soak" in results:
        s = results["soak"]
        lines.append(
            f"| soak {s['minutes']} min: last minute / second minute req/s; RSS growth; errors "
            f"| {s['last_over_second_minute']}; {s['rss_growth']:.1%}; {s['errors']} "
            f"| >= 0.95; < 5%; 0 |"
        )
        lines += ["", "| minute | req/s | p99 ms | RSS MB |", "|---:|---:|---:|---:|"]
        lines += [
            f"| {m['minute']} | {m['requests_per_s']:.0f} | {m['p99_ms']:.1f} | {m['rss_mb']} |"
            for m in s["per_minute"]
        ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", help="CSV of the ULB schema (real rows); default synthetic")
    parser.add_argument("--rows", type=int, default=12_000, help="half normal, half shifted")
    parser.add_argument("--windows", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=5.0, help="per hook-cost pass")
    parser.add_argument("--rounds", type=int, default=4, help="hook-cost server pairs")
    parser.add_argument("--passes", type=int, default=8, help="hook-cost pass pairs per tool")
    parser.add_argument("--soak-minutes", type=int, default=0)
    parser.add_argument(
        "--pin", action="store_true", help="hook cost: servers on one CPU, load on the others"
    )
    parser.add_argument("--name", default="vm")
    parser.add_argument(
        "--stages", default="detection,false-alarms,hook-cost", help="comma-separated subset"
    )
    args = parser.parse_args(argv)
    stages = set(args.stages.split(","))

    model = bentoml.models.get("fraud-mlp:latest")
    pool = load_rows(args.data, max(args.rows, 20_000), seed=11)
    detector_reference = DriftDetector.for_model(model.path, DriftConfig(), model=str(model.tag))
    v14_std = float(detector_reference.reference.features["V14"].std())
    results: dict[str, Any] = {
        **run_header("benchmarks.drift_serving", argv, args.data),
        "model": str(model.tag),
    }
    with tempfile.TemporaryDirectory(prefix="drift-bench-") as tmp:
        workdir = Path(tmp)
        if "detection" in stages:
            results["detection"] = detection(workdir, pool[: args.rows], v14_std)
            print(json.dumps(results["detection"], indent=2), flush=True)
        if "false-alarms" in stages:
            fresh = pool[args.rows :] if len(pool) > args.rows + 5000 else pool
            results["false_alarms"] = false_alarms(model, fresh, args.windows)
            print("false alarms:", results["false_alarms"]["alarms"], flush=True)
        if "hook-cost" in stages:
            results["hook_cost"] = paired_cost(
                workdir,
                pool,
                args.data,
                args.seconds,
                args.rounds,
                args.passes,
                {"on": {}, "off": DRIFT_OFF},
                pin=args.pin,
            )
            print(json.dumps(results["hook_cost"]["ratios"]), flush=True)
        soaked = soak(workdir, pool, args.soak_minutes) if args.soak_minutes else None
    # The soak is its own file: a run without it leaves the last soak's figures in place.
    written = []
    if soaked is not None:
        header = {
            k: v for k, v in results.items() if k not in ("detection", "false_alarms", "hook_cost")
        }
        soak_results = {**header, "soak": soaked}
        written.append(
            write_results(f"drift-serving-soak-{args.name}", soak_results, markdown(soak_results))
        )
    if stages & {"detection", "false-alarms", "hook-cost"}:
        written.append(write_results(f"drift-serving-{args.name}", results, markdown(results)))
    return written[-1]


if __name__ == "__main__":
    main()
