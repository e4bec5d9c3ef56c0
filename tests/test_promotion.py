"""`make promote`: the evidence on the same labelled transactions, then the swap it runs."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from fraud_detection.performance.promotion import swap_command
from fraud_detection.score_log.database import ScoreColumns
from fraud_detection.score_log.database import SqliteScoreDatabase
from fraud_detection.score_log.database import score_row
from tests.conftest import REPO


def stored_tag(home: Path, name: str) -> str:
    (folder,) = (home / "models" / name).glob("*/")
    return f"{name}:{folder.name}"


def score_log(path: Path, champion: str, challenger: str, challenger_better: bool) -> str:
    """A SQLite score log where one model separates the labels far better than the other."""
    rng = np.random.default_rng(0)
    labels = (rng.random(3000) < 0.05).astype(int)
    sharp = np.clip(0.1 + 0.8 * labels + rng.normal(0, 0.1, 3000), 0, 1)
    blunt = np.clip(0.3 + 0.2 * labels + rng.normal(0, 0.3, 3000), 0, 1)
    champion_p, challenger_p = (blunt, sharp) if challenger_better else (sharp, blunt)
    database = SqliteScoreDatabase(path)
    database.migrate()
    database.register_models([champion, challenger])
    now = time.time()
    rows = [
        score_row(f"t{i}", now - 3600, champion, float(champion_p[i]), amount=10.0,
                  challenger=challenger, challenger_probability=float(challenger_p[i]))
        for i in range(3000)
    ]  # fmt: skip
    database.insert_scores(ScoreColumns.of_rows(rows))
    database.upsert_labels([(f"t{i}", int(y)) for i, y in enumerate(labels)], now)
    return database.url


def promote(home: Path, url: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "fraud_detection.performance.promotion", "--db-url", url,
         "--rounds", "200", *args],
        cwd=REPO, env={**os.environ, "BENTOML_HOME": str(home)},
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip


def test_a_better_challenger_is_promoted_with_its_evidence(
    trained_store: Path, tmp_path: Path
) -> None:
    champion = stored_tag(trained_store, "fraud-mlp")
    challenger = stored_tag(trained_store, "fraud-distilbert")
    url = score_log(tmp_path / "better.sqlite3", champion, challenger, challenger_better=True)
    done = promote(trained_store, url, "--target", "gke")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Same 3000 labelled transactions" in done.stdout
    assert f"kubectl set env deployment/fraud-detector FRAUD_MODEL={challenger}" in done.stdout
    assert "dry run" in done.stdout

    url = score_log(tmp_path / "worse.sqlite3", champion, challenger, challenger_better=False)
    refused = promote(trained_store, url, "--target", "cloudrun")
    assert refused.returncode == 1 and "Not promoting" in refused.stdout
    forced = promote(trained_store, url, "--target", "env", "--force", "--apply")
    assert forced.returncode == 0 and f"FRAUD_MODEL={challenger}" in forced.stdout


def test_the_swap_keeps_the_old_champion_as_the_challenger() -> None:
    command = swap_command("cloudrun", "fraud-mlp:a", "fraud-distilbert:b", "svc", "europe-west1")
    assert command == [
        "gcloud", "run", "services", "update", "svc", "--region", "europe-west1",
        "--update-env-vars=FRAUD_MODEL=fraud-distilbert:b,FRAUD_CHALLENGER=fraud-mlp:a",
    ]  # fmt: skip
    assert swap_command("gke", "a:1", "b:2", "fraud-detector", "r")[-2:] == [
        "FRAUD_MODEL=b:2",
        "FRAUD_CHALLENGER=a:1",
    ]
