"""``python -m training.drift``: the serving detector's report, from a CSV or monitor logs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from fraud_detection.schema import FEATURE_NAMES
from tests.conftest import REPO
from training.data import generate_transactions


def offline_drift(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "training.drift", "--model", "fraud-mlp:latest", *args],
        cwd=REPO, env={**os.environ, "BENTOML_HOME": str(home)},
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip


def test_offline_report_from_a_csv_names_the_shifted_feature(
    trained_store: Path, tmp_path: Path
) -> None:
    frame = generate_transactions(2000, fraud_rate=0.01, seed=21)
    frame["V14"] += 2.0
    csv = tmp_path / "shifted.csv"
    frame.to_csv(csv, index=False)  # no score column: the command scores the rows itself
    out = tmp_path / "report"
    result = offline_drift(
        trained_store, "--current", str(csv), "--output", str(out), "--threshold", "0.25"
    )
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary == json.loads(result.stdout)
    assert summary["window_rows"] == 2000 and summary["drift_detected"]
    assert "V14" in summary["drifted_features"]
    assert "V14" in (out / "report.html").read_text()


def test_offline_report_reads_monitor_logs_and_refuses_an_empty_folder(
    trained_store: Path, tmp_path: Path
) -> None:
    logs = tmp_path / "fraud_transactions" / "data"
    logs.mkdir(parents=True)
    rows = generate_transactions(1500, fraud_rate=0.01, seed=22)[list(FEATURE_NAMES)]
    rows["fraud_probability"] = 0.01
    rows.iloc[:700].to_json(logs / "data.1.log", orient="records", lines=True)
    rows.iloc[700:].to_json(logs / "data.2.log", orient="records", lines=True)
    result = offline_drift(trained_store, "--current", str(logs), "--output", str(tmp_path / "o"))
    assert result.returncode == 0, result.stderr[-3000:]
    assert json.loads(result.stdout)["window_rows"] == 1500, "both workers' files are read"

    empty = tmp_path / "empty"
    empty.mkdir()
    refused = offline_drift(trained_store, "--current", str(empty))
    assert refused.returncode != 0 and "no bentoml.monitor data files" in refused.stderr
