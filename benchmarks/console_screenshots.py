"""Screenshots of the analyst console's four panels, taken in headless Chromium.

    BENTOML_HOME=<store> python -m benchmarks.console_screenshots \\
        [--data ../shared/data/creditcard_real_sample.csv.gz]   # needs apt-get install chromium

Starts ``bentoml serve`` on BENTOML_HOME's fraud-mlp, sends 1,000 rows with V14 shifted by
+2 standard deviations (so the monitoring panel has a drift verdict to show), then scores a
real fraud in the form, a 200-row file, and saves ``docs/console-*.png`` (wide, 1280 px, and
the form on a 390 px phone-width window).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

import httpx
import pandas as pd

from fraud_detection.schema import FEATURE_NAMES
from fraud_detection.schema import TARGET_NAME
from harness.server_process import ServerProcess
from harness.server_process import free_port
from training.data import generate_transactions

REPO = Path(__file__).resolve().parents[1]
DOCS = REPO / "docs"
CHROMIUM = "/usr/bin/chromium"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", help="CSV with the ULB columns; synthetic rows without it")
    args = parser.parse_args(argv)
    from playwright.sync_api import sync_playwright

    frame = pd.read_csv(args.data) if args.data else generate_transactions(5_000, fraud_rate=0.02)
    frauds = frame[frame[TARGET_NAME] == 1]
    batch = pd.concat([frame[frame[TARGET_NAME] == 0].sample(190, random_state=3), frauds.head(10)])
    batch = batch.sample(frac=1, random_state=4).reset_index(drop=True)
    batch.insert(0, "transaction_id", [f"tx-{i:05d}" for i in range(len(batch))])
    shifted = frame.sample(1_000, random_state=6)[list(FEATURE_NAMES)].copy()
    shifted["V14"] += 2 * frame["V14"].std()

    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        csv_path = workdir / "transactions.csv"
        batch[["transaction_id", *FEATURE_NAMES]].to_csv(csv_path, index=False)
        port = free_port()
        env = {
            **os.environ,
            "FRAUD_MODEL": "mlp",
            "FRAUD_MONITOR_LOG_PATH": str(workdir / "monitoring"),
            "FRAUD_DRIFT_EVERY_SECONDS": "1",
        }
        argv_ = [sys.executable, "-m", "bentoml", "serve", "service:FraudDetector"]
        argv_ += ["--port", str(port)]
        server = ServerProcess.start(
            argv_, port=port, env=env, cwd=REPO, log_file=workdir / "serve.log"
        )
        try:
            rows = shifted.to_dict(orient="records")
            httpx.post(f"{server.url}/predict", json={"transactions": rows}, timeout=60)
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(
                    executable_path=CHROMIUM, args=["--no-sandbox"]
                )
                page = browser.new_page(viewport={"width": 1280, "height": 860})
                page.set_default_timeout(120_000)
                page.goto(f"{server.url}/")
                page.wait_for_selector("body[data-ready='1']")
                fraud = frauds.iloc[0]
                for name in FEATURE_NAMES:
                    page.fill(f"#field-{name}", repr(float(fraud[name])))
                page.click("#score-submit")
                page.wait_for_selector("#score-result:not([hidden])")
                page.wait_for_timeout(500)
                page.screenshot(path=str(DOCS / "console-score.png"), full_page=True)

                page.click("nav button[data-panel='file']")
                page.set_input_files("#file-input", str(csv_path))
                page.wait_for_selector("#file-result:not([hidden])")
                page.click("#sort-probability")
                page.locator("#file-table tbody tr").first.click()
                page.wait_for_selector("#file-reasons tbody tr")
                page.wait_for_timeout(500)
                page.screenshot(path=str(DOCS / "console-file.png"), full_page=True)

                page.click("nav button[data-panel='model']")
                page.screenshot(path=str(DOCS / "console-model.png"), full_page=True)

                page.click("nav button[data-panel='monitoring']")
                for _ in range(60):  # until a drift computation has run
                    if "DRIFT" in (page.text_content("#drift-verdict") or ""):
                        break
                    page.wait_for_timeout(1000)
                    page.click("#drift-refresh")
                page.screenshot(path=str(DOCS / "console-monitoring.png"), full_page=True)

                phone = browser.new_page(viewport={"width": 390, "height": 844})
                phone.goto(f"{server.url}/ui/")
                phone.wait_for_selector("body[data-ready='1']")
                phone.screenshot(path=str(DOCS / "console-narrow.png"))
                browser.close()
        finally:
            server.stop()
    print("Saved", ", ".join(sorted(p.name for p in DOCS.glob("console-*.png"))))


if __name__ == "__main__":
    main()
