"""``python -m training.drift``: the serving detector's report, from a CSV or monitor logs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from fraud_detection.drift_log import DriftLogFiles
from fraud_detection.drift_log import DriftLogWriter
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


def test_offline_report_reads_drift_logs_and_refuses_an_empty_folder(
    trained_store: Path, tmp_path: Path
) -> None:
    files = DriftLogFiles.under(tmp_path)
    rows = generate_transactions(1500, fraud_rate=0.01, seed=22)[list(FEATURE_NAMES)]
    rows["fraud_probability"] = 0.01
    for worker, part in ((1, rows.iloc[:600]), (2, rows.iloc[600:1200])):
        writer = DriftLogWriter(files, worker=worker)
        writer.observe(part[list(FEATURE_NAMES)].to_numpy(), part["fraud_probability"].to_numpy())
        writer.close()
    # A JSON-lines file of an earlier version's log is read beside them.
    rows.iloc[1200:].to_json(files.directory / "data.1.log", orient="records", lines=True)
    result = offline_drift(
        trained_store, "--current", str(files.directory), "--output", str(tmp_path / "o")
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert json.loads(result.stdout)["window_rows"] == 1500, "every worker's file is read"

    empty = tmp_path / "empty"
    empty.mkdir()
    refused = offline_drift(trained_store, "--current", str(empty))
    assert refused.returncode != 0 and "no drift-log files" in refused.stderr
