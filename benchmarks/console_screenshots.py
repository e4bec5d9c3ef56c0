"""Screenshots of the analyst console's five panels, taken in headless Chromium.

    BENTOML_HOME=<store> python -m benchmarks.console_screenshots \\
        [--data ../shared/data/creditcard_real_sample.csv.gz] [--challenger distilbert]
    # needs apt-get install chromium

Starts ``bentoml serve`` on BENTOML_HOME's fraud-mlp, sends 1,000 rows with V14 shifted by
+2 standard deviations (so the monitoring panel has a drift verdict to show) and their labels
(so it has model health to show: with ``--challenger``, the challenger scores a share of them
in shadow and the panel pairs the two models on those), then scores a real fraud in the form,
a 200-row file, queues 12 frauds for review, and saves ``docs/console-*.png`` (wide, 1280 px,
and the form and the review queue on a 390 px phone-width window).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
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
#: One reviewer for both windows, so the phone sees the items the wide window leased.
REVIEWER = "analyst-demo"
AS_REVIEWER = f"localStorage.setItem('fraud-console-reviewer', '{REVIEWER}');"
#: The phone fetches 5 items at a time: the queue and the item fit a short page.
FIVE_PER_FETCH = """localStorage.setItem('fraud-console-review', '{"limit": "5"}');"""


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", help="CSV with the ULB columns; synthetic rows without it")
    parser.add_argument("--challenger", help="a second model in BENTOML_HOME, scored in shadow")
    args = parser.parse_args(argv)
    from playwright.sync_api import sync_playwright

    frame = pd.read_csv(args.data) if args.data else generate_transactions(5_000, fraud_rate=0.02)
    frauds = frame[frame[TARGET_NAME] == 1]
    batch = pd.concat([frame[frame[TARGET_NAME] == 0].sample(190, random_state=3), frauds.head(10)])
    batch = batch.sample(frac=1, random_state=4).reset_index(drop=True)
    batch.insert(0, "transaction_id", [f"tx-{i:05d}" for i in range(len(batch))])
    shifted = frame.sample(1_000, random_state=6)[list(FEATURE_NAMES)].copy()
    shifted["V14"] += 2 * frame["V14"].std()
    shifted.insert(0, "transaction_id", [f"label-{i:04d}" for i in range(len(shifted))])
    labels = [
        {"transaction_id": t, "label": int(y)}
        for t, y in zip(
            shifted["transaction_id"], frame.loc[shifted.index, TARGET_NAME], strict=True
        )
    ]

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
        if args.challenger:
            env |= {"FRAUD_CHALLENGER": args.challenger, "FRAUD_SHADOW_SHARE": "0.3"}
        argv_ = [sys.executable, "-m", "bentoml", "serve", "service:FraudDetector"]
        argv_ += ["--port", str(port)]
        server = ServerProcess.start(
            argv_, port=port, env=env, cwd=REPO, log_file=workdir / "serve.log"
        )
        try:
            rows = shifted.to_dict(orient="records")
            httpx.post(f"{server.url}/predict", json={"transactions": rows}, timeout=300)
            httpx.post(f"{server.url}/feedback", json=labels, timeout=60)
            for _ in range(120):  # until the score log holds the scores the labels join
                health = httpx.get(f"{server.url}/performance", timeout=60).json()
                joined = health["paired"]["labelled"] if args.challenger else health["labelled"]
                if joined > 0 and health["labelled"] == len(labels):
                    break
                time.sleep(1)
            flagged = frauds.iloc[10:22][list(FEATURE_NAMES)].to_dict(orient="records")
            queue = [{**r, "transaction_id": f"card-{i:04d}"} for i, r in enumerate(flagged)]
            httpx.post(f"{server.url}/predict", json={"transactions": queue}, timeout=60)
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(
                    executable_path=CHROMIUM, args=["--no-sandbox"]
                )
                page = browser.new_page(viewport={"width": 1280, "height": 860})
                page.set_default_timeout(120_000)
                page.add_init_script(AS_REVIEWER)
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
                page.wait_for_function(
                    "document.querySelector('#health-summary').textContent.includes('labelled of')"
                )
                page.screenshot(path=str(DOCS / "console-monitoring.png"), full_page=True)

                page.click("nav button[data-panel='review']")
                loaded = (
                    "() => { const row = document.querySelector('#review-table tr.selected code');"
                    " return row && document.querySelector('#review-item').dataset.loaded"
                    " === row.textContent; }"
                )
                page.wait_for_function(loaded)
                page.keyboard.press("f")  # one label, so the live region has a result to show
                page.wait_for_selector("#panel-review:not([data-busy])")
                page.wait_for_function(loaded)
                page.wait_for_timeout(500)
                page.screenshot(path=str(DOCS / "console-review.png"), full_page=True)

                phone = browser.new_page(viewport={"width": 390, "height": 844})
                phone.add_init_script(AS_REVIEWER + FIVE_PER_FETCH)
                phone.goto(f"{server.url}/ui/")
                phone.wait_for_selector("body[data-ready='1']")
                phone.screenshot(path=str(DOCS / "console-narrow.png"))
                phone.click("nav button[data-panel='review']")
                phone.wait_for_function(loaded)
                phone.wait_for_timeout(500)
                phone.screenshot(path=str(DOCS / "console-review-narrow.png"), full_page=True)
                browser.close()
        finally:
            server.stop()
    print("Saved", ", ".join(sorted(p.name for p in DOCS.glob("console-*.png"))))


if __name__ == "__main__":
    main()
