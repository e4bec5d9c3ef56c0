"""Measurements of one running server: score parity, lone-request latency, wrk and Locust passes.

The parsing and checking functions are pure, so the tests run them on captured output.
"""

from __future__ import annotations

import http.client
import json
import re
import subprocess
import time
from dataclasses import asdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.serving import read_locust_csv
from benchmarks.serving import run_locust as serving_locust
from fraud_detection.schema import FEATURE_NAMES

REPO = Path(__file__).resolve().parents[2]
LOCUSTFILE = REPO / "benchmarks" / "locustfile.py"
PREDICTION_KEYS = ("fraud_probability", "is_fraud", "model", "model_version")


# --- request bodies --------------------------------------------------------------------------


def body(rows: np.ndarray) -> bytes:
    """Our API's JSON body for `rows` (schema order)."""
    records = [dict(zip(FEATURE_NAMES, map(float, row), strict=True)) for row in rows]
    return json.dumps({"transactions": records}).encode()


def bad_body(row: np.ndarray) -> bytes:
    """A one-row body whose V1 is a string: every server must answer it with a 4xx."""
    record: dict[str, Any] = dict(zip(FEATURE_NAMES, map(float, row), strict=True))
    record["V1"] = "0.5"
    return json.dumps({"transactions": [record]}).encode()


# --- score parity ----------------------------------------------------------------------------


class ParityError(AssertionError):
    """A server's answers differ from the reference's."""


def parity_problems(
    reference: list[dict[str, Any]], answer: Any, tolerance: float = 1e-6
) -> list[str]:
    """Every way `answer` differs from `reference` (empty: same scores and decisions).

    Probabilities may differ by at most `tolerance`; ``is_fraud``, ``model`` and
    ``model_version`` must be equal.
    """
    if not isinstance(answer, list):
        return [f"answer is a {type(answer).__name__}, not a JSON list: {str(answer)[:200]}"]
    if len(answer) != len(reference):
        return [f"{len(answer)} predictions for {len(reference)} rows"]
    problems: list[str] = []
    for i, (want, got) in enumerate(zip(reference, answer, strict=True)):
        if not isinstance(got, dict) or any(k not in got for k in PREDICTION_KEYS):
            problems.append(f"row {i}: not a prediction object: {str(got)[:200]}")
            continue
        diff = abs(float(got["fraud_probability"]) - float(want["fraud_probability"]))
        if not diff <= tolerance:  # also catches NaN
            problems.append(
                f"row {i}: fraud_probability {got['fraud_probability']!r} vs "
                f"{want['fraud_probability']!r} (|diff| {diff:.3g} > {tolerance:g})"
            )
        if got["is_fraud"] is not want["is_fraud"]:
            problems.append(f"row {i}: is_fraud {got['is_fraud']!r} vs {want['is_fraud']!r}")
        for key in ("model", "model_version"):
            if got[key] != want[key]:
                problems.append(f"row {i}: {key} {got[key]!r} vs {want[key]!r}")
    return problems


def max_abs_diff(reference: list[dict[str, Any]], answer: list[dict[str, Any]]) -> float:
    return max(
        abs(float(a["fraud_probability"]) - float(r["fraud_probability"]))
        for r, a in zip(reference, answer, strict=True)
    )


def check_parity(reference: list[dict[str, Any]], answer: Any, tolerance: float = 1e-6) -> float:
    """The largest probability difference; `ParityError` listing the problems if any."""
    problems = parity_problems(reference, answer, tolerance)
    if problems:
        more = f" (and {len(problems) - 10} more)" if len(problems) > 10 else ""
        raise ParityError("; ".join(problems[:10]) + more)
    return max_abs_diff(reference, answer)


# --- plain HTTP ------------------------------------------------------------------------------


def post(url: str, route: str, payload: bytes, timeout: float = 30.0) -> tuple[int, bytes]:
    """One POST on a new connection: status and body."""
    host, port = url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=timeout)
    try:
        conn.request("POST", route, payload, {"Content-Type": "application/json"})
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def wait_first_answer(url: str, route: str, payload: bytes, timeout: float = 180.0) -> float:
    """Seconds until a POST of `payload` is answered 200 (some servers are "ready" earlier)."""
    started = time.monotonic()
    last = "no answer"
    while time.monotonic() - started < timeout:
        try:
            status, answer = post(url, route, payload, timeout=10)
            if status == 200:
                return time.monotonic() - started
            last = f"HTTP {status}: {answer[:300]!r}"
        except OSError as e:
            last = repr(e)
        time.sleep(0.5)
    raise TimeoutError(f"no 200 from POST {route} after {timeout:.0f} s; last: {last}")


@dataclass
class LoneLatency:
    """Sequential requests on one keep-alive connection: one client, nothing else in flight."""

    requests: int
    errors: int
    p50_ms: float
    p99_ms: float
    mean_ms: float


def lone_latency(url: str, route: str, bodies: list[bytes], n: int = 300) -> LoneLatency:
    """`n` POSTs one after another on one connection, cycling through `bodies`."""
    host, port = url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=30)
    headers = {"Content-Type": "application/json"}
    times: list[float] = []
    errors = 0
    try:
        for i in range(n):
            started = time.perf_counter()
            try:
                conn.request("POST", route, bodies[i % len(bodies)], headers)
                response = conn.getresponse()
                response.read()
                ok = response.status == 200
            except (OSError, http.client.HTTPException):
                conn.close()  # reconnects on the next request
                ok = False
            elapsed = time.perf_counter() - started
            if ok:
                times.append(elapsed)
            else:
                errors += 1
    finally:
        conn.close()
    ms = np.array(times) * 1000 if times else np.array([float("nan")])
    return LoneLatency(
        requests=n,
        errors=errors,
        p50_ms=float(np.percentile(ms, 50)),
        p99_ms=float(np.percentile(ms, 99)),
        mean_ms=float(ms.mean()),
    )


# --- wrk -------------------------------------------------------------------------------------


@dataclass
class WrkResult:
    """What one wrk run printed (``--latency``), latencies in milliseconds."""

    requests: int
    seconds: float
    requests_per_s: float
    p50_ms: float
    p75_ms: float
    p90_ms: float
    p99_ms: float
    non_2xx: int
    socket_errors: dict[str, int]

    @property
    def errors(self) -> int:
        return self.non_2xx + sum(self.socket_errors.values())

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "errors": self.errors}


_UNITS_MS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3, "h": 3600e3}
_DURATION = re.compile(r"^\s*([\d.]+)(us|ms|s|m|h)\s*$")


def _ms(text: str) -> float:
    match = _DURATION.match(text)
    if not match:
        raise ValueError(f"not a wrk duration: {text!r}")
    return float(match.group(1)) * _UNITS_MS[match.group(2)]


def parse_wrk(output: str) -> WrkResult:
    """Parse wrk's report (run with ``--latency``); `ValueError` if it is not one."""
    percentiles: dict[str, float] = {}
    for pct, value in re.findall(r"^\s+(50|75|90|99)%\s+(\S+)\s*$", output, re.MULTILINE):
        percentiles[pct] = _ms(value)
    done = re.search(r"^\s*(\d+) requests in ([\d.]+)(us|ms|s|m|h),", output, re.MULTILINE)
    rate = re.search(r"^Requests/sec:\s+([\d.]+)", output, re.MULTILINE)
    if not (done and rate and len(percentiles) == 4):
        raise ValueError(f"not a wrk --latency report:\n{output[-2000:]}")
    non_2xx = re.search(r"^\s*Non-2xx or 3xx responses:\s+(\d+)", output, re.MULTILINE)
    sockets = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output
    )
    socket_errors = dict.fromkeys(("connect", "read", "write", "timeout"), 0)
    if sockets:
        socket_errors = dict(zip(socket_errors, map(int, sockets.groups()), strict=True))
    return WrkResult(
        requests=int(done.group(1)),
        seconds=_ms(done.group(2) + done.group(3)) / 1000,
        requests_per_s=float(rate.group(1)),
        p50_ms=percentiles["50"],
        p75_ms=percentiles["75"],
        p90_ms=percentiles["90"],
        p99_ms=percentiles["99"],
        non_2xx=int(non_2xx.group(1)) if non_2xx else 0,
        socket_errors=socket_errors,
    )


def wrk_script(body_file: Path) -> str:
    """A wrk Lua script that POSTs the JSON in `body_file` on every request."""
    path = str(body_file).replace("\\", "\\\\").replace('"', '\\"')
    return (
        f'local f = assert(io.open("{path}", "rb"))\n'
        'wrk.method = "POST"\n'
        'wrk.body = f:read("*a")\n'
        "f:close()\n"
        'wrk.headers["Content-Type"] = "application/json"\n'
    )


def run_wrk(
    url: str, route: str, script: Path, connections: int, seconds: float, threads: int = 2
) -> WrkResult:
    """``wrk -t{threads} -c{connections} -d{seconds}s --latency -s script url+route``."""
    threads = max(1, min(threads, connections))  # wrk needs connections >= threads
    argv = [
        "wrk",
        f"-t{threads}",
        f"-c{connections}",
        f"-d{seconds:g}s",
        "--timeout",
        "10s",
        "--latency",
        "-s",
        str(script),
        url + route,
    ]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 60)
    if done.returncode != 0:
        raise RuntimeError(f"wrk failed ({done.returncode}): {done.stderr[-1000:]}")
    return parse_wrk(done.stdout)


# --- Locust ----------------------------------------------------------------------------------


def run_locust(
    url: str, route: str, users: int, seconds: float, bodies: Path, csv_prefix: Path
) -> dict[str, Any]:
    """Headless Locust (`benchmarks/locustfile.py`) at `users`, posting to `route`."""
    done = serving_locust(url, users, seconds, bodies, csv_prefix, path=route)
    if done.returncode not in (0, 1):  # 1: some requests failed, which is reported
        raise RuntimeError(f"locust failed ({done.returncode}):\n{done.stderr[-2000:]}")
    stats, failures = read_locust_csv(csv_prefix)
    return {
        "users": users,
        "requests": int(stats["Request Count"]),
        "failures": int(stats["Failure Count"]),
        "failures_by_status": failures,
        "requests_per_s": float(stats["Requests/s"]),
        "p50_ms": float(stats["50%"]),
        "p99_ms": float(stats["99%"]),
    }
