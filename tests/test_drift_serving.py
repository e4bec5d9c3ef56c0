"""Online drift detection on real `bentoml serve` processes: endpoints, gauges, failures."""

from __future__ import annotations

import re
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

from fraud_detection.schema import FEATURE_NAMES
from tests.conftest import RunningServer
from tests.conftest import start_server
from tests.test_drift_alerts import policy_queries
from tests.test_drift_alerts import referenced_metrics
from tests.test_drift_alerts import rule_expressions
from training.data import generate_transactions

# Small windows and a fast cadence so a verdict comes within seconds (see test_drift_detector
# for why the tiny test model needs the higher threshold).
FAST_DRIFT = {
    "FRAUD_DRIFT_WINDOW_ROWS": "1000",
    "FRAUD_DRIFT_MIN_ROWS": "300",
    "FRAUD_DRIFT_EVERY_ROWS": "300",
    "FRAUD_DRIFT_EVERY_SECONDS": "1",
    "FRAUD_DRIFT_MAX_CPU_SHARE": "1",
    "FRAUD_DRIFT_THRESHOLD": "0.25",
}


def send(server: RunningServer, n_rows: int, *, v14_shift: float = 0.0, seed: int = 5) -> None:
    frame = generate_transactions(n_rows, fraud_rate=0.01, seed=seed)
    frame["V14"] += v14_shift
    rows = frame[list(FEATURE_NAMES)].to_dict(orient="records")

    def post(start: int) -> None:
        # A new connection per request, several at once: the workers share the listening
        # socket, so each gets a part of the traffic (one keep-alive client would pin one).
        reply = httpx.post(
            server.url + "/predict", json={"transactions": rows[start : start + 100]}, timeout=30
        )
        assert reply.status_code == 200, reply.text

    # 16 at a time keeps both workers busy; with a few, the kernel may hand one worker all.
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(post, range(0, n_rows, 100)))


def metric(text: str, name: str) -> float | None:
    match = re.search(rf"^{re.escape(name)} (\S+)$", text, flags=re.MULTILINE)
    return None if match is None else float(match[1])


def wait_for(condition, timeout: float = 60.0):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = condition()
        if result:
            return result
        time.sleep(0.5)
    raise AssertionError("condition not met in time")


def test_shifted_traffic_is_reported_by_both_workers(trained_store: Path, tmp_path: Path) -> None:
    """Two workers, each with its own window; the summary merges both, the gauges agree."""
    server = start_server(trained_store, tmp_path, "mlp", FRAUD_WORKERS="2", **FAST_DRIFT)
    try:
        assert httpx.get(server.url + "/drift/summary").status_code == 404  # nothing yet
        send(server, 4000, v14_shift=2.0)  # V14's std is about 1

        def both_workers_reported() -> dict | None:
            reply = httpx.get(server.url + "/drift/summary", timeout=10)
            if reply.status_code != 200:
                return None
            summary = reply.json()
            if {w["worker"] for w in summary["workers"]} == {1, 2}:
                return summary
            send(server, 1000, v14_shift=2.0, seed=len(summary["workers"]) + 6)  # more traffic
            return None

        summary = wait_for(both_workers_reported, timeout=90)
        assert summary["drift_detected"] and "V14" in summary["drifted_features"]
        for worker in summary["workers"]:
            assert worker["drift_detected"] and "V14" in worker["drifted_features"], worker
            v14 = next(f for f in worker["features"] if f["feature"] == "V14")
            assert v14["method"] == "wasserstein" and v14["score"] > 0.25
        assert summary["window_rows"] == sum(w["window_rows"] for w in summary["workers"])

        metrics = httpx.get(server.url + "/metrics", timeout=10).text
        assert metric(metrics, "fraud_drift_detected") == 1.0
        assert metric(metrics, 'fraud_drift_feature_drifted{feature="V14"}') == 1.0
        assert metric(metrics, 'fraud_drift_feature_score{feature="V14"}') > 0.25
        # A worker may recompute between the two reads: compare with a verdict, not equality.
        assert metric(metrics, "fraud_drift_share") >= 1 / 29
        assert metric(metrics, "fraud_drift_window_rows") >= 600
        assert metric(metrics, "fraud_predicted_fraud_rate") is not None
        scraped = set(re.findall(r"^(fraud_[a-z_]+)", metrics, flags=re.MULTILINE))
        assert referenced_metrics(rule_expressions() + policy_queries()) <= scraped

        report = httpx.get(server.url + "/drift/report", params={"worker": 2}, timeout=30)
        assert report.status_code == 200 and report.headers["content-type"].startswith("text/html")
        assert "V14" in report.text and "Dataset Drift is detected" in report.text
    finally:
        server.server.stop()


def test_failing_drift_computation_is_counted_and_predictions_continue(
    trained_store: Path, tmp_path: Path
) -> None:
    # The results folder is a file: every publication fails, as on a full or read-only disk.
    (tmp_path / "monitoring").mkdir()
    (tmp_path / "monitoring" / "fraud_drift").write_text("")
    server = start_server(trained_store, tmp_path, "mlp", **FAST_DRIFT)
    try:
        send(server, 1000)
        failures = wait_for(
            lambda: metric(
                httpx.get(server.url + "/metrics", timeout=10).text,
                "fraud_drift_computation_failures_total",
            ),
            timeout=60,
        )
        assert failures >= 1
        send(server, 200, seed=6)  # still scoring
        assert httpx.get(server.url + "/drift/summary", timeout=10).status_code == 404
        assert "Drift computation failed" in server.log()
    finally:
        server.server.stop()
