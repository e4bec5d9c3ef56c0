"""Screenshot of the Evidently report that a real server serves after shifted traffic.

    python -m benchmarks.drift_screenshot            # needs chromium (apt-get install chromium)

Starts ``bentoml serve`` on BENTOML_HOME's fraud-mlp, sends 5,000 synthetic rows with V14
shifted by +2 standard deviations, waits for the drift computation, saves
``GET /drift/report`` and photographs it with headless Chromium into
``docs/drift-report-screenshot.png`` (the README's Monitoring picture).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from fraud_detection.schema import FEATURE_NAMES
from harness.server_process import ServerProcess
from harness.server_process import free_port
from training.data import generate_transactions

REPO = Path(__file__).resolve().parents[1]
ROWS = 5_000


def shifted_report(workdir: Path) -> str:
    """The HTML of ``/drift/report`` after one window of V14-shifted traffic."""
    port = free_port()
    env = {
        **os.environ,
        "FRAUD_MODEL": "mlp",
        "FRAUD_MONITOR_LOG_PATH": str(workdir / "monitoring"),
        "FRAUD_DRIFT_MIN_ROWS": str(ROWS),
        "FRAUD_DRIFT_EVERY_ROWS": str(ROWS),
        "FRAUD_DRIFT_EVERY_SECONDS": "2",
        "FRAUD_DRIFT_MAX_CPU_SHARE": "1",
    }
    argv = [sys.executable, "-m", "bentoml", "serve", "service:FraudDetector", "--port", str(port)]
    server = ServerProcess.start(argv, port=port, env=env, cwd=REPO, log_file=workdir / "serve.log")
    try:
        frame = generate_transactions(ROWS, seed=123)
        frame["V14"] += 2 * frame["V14"].std()
        rows = frame[list(FEATURE_NAMES)].to_dict(orient="records")
        with httpx.Client(base_url=server.url, timeout=30) as client:
            for start in range(0, ROWS, 250):
                client.post("/predict", json={"transactions": rows[start : start + 250]})
            deadline = time.monotonic() + 120
            while client.get("/drift/summary").status_code != 200:
                if time.monotonic() > deadline:
                    raise TimeoutError("no drift computation within 120 s")
                time.sleep(1)
            return client.get("/drift/report").text
    finally:
        server.stop()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "drift-report-screenshot.png")
    args = parser.parse_args(argv)
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        parser.error("chromium is not installed (Debian: apt-get install chromium)")
    with tempfile.TemporaryDirectory() as tmp:
        page = Path(tmp) / "report.html"
        page.write_text(shifted_report(Path(tmp)))
        subprocess.run(
            [browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
             "--window-size=1400,1800", "--virtual-time-budget=15000",
             f"--screenshot={args.out}", page.as_uri()],
            check=True, capture_output=True, timeout=120,
        )  # fmt: skip
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
