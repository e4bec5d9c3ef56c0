"""`make promote`: the evidence on the same labelled transactions, then the swap it runs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from fraud_detection.catalog import CARD_FILE
from fraud_detection.model_card import ModelCard
from fraud_detection.performance.evidence import evidence_from_columns
from fraud_detection.performance.online import JudgedModel
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


def stored_model(home: Path, role: str, name: str) -> JudgedModel:
    """`JudgedModel` of a stored model, from its card (as the backfill builds it)."""
    _, version = stored_tag(home, name).split(":")
    card = ModelCard.from_json_file(home / "models" / name / version / CARD_FILE)
    return JudgedModel.of_card(role, name, version, card)


def backfill_output(folder: Path, home: Path, challenger_better: bool) -> Path:
    """A backfill's output folder whose summary.json holds the evidence on 20,000 rows."""
    rng = np.random.default_rng(1)
    labels = (rng.random(20_000) < 0.02).astype(int)
    sharp = 1 / (1 + np.exp(-(rng.normal(0, 1, 20_000) + 4 * labels - 4)))
    blunt = 1 / (1 + np.exp(-(rng.normal(0, 1, 20_000) + 1.5 * labels - 4)))
    champion_p, challenger_p = (blunt, sharp) if challenger_better else (sharp, blunt)
    evidence = evidence_from_columns(
        labels, rng.exponential(80, 20_000), champion_p, challenger_p,
        stored_model(home, "champion", "fraud-mlp"),
        stored_model(home, "challenger", "fraud-distilbert"),
    )  # fmt: skip
    folder.mkdir()
    summary = {"rows": 20_000, "evidence": evidence.to_dict()}
    (folder / "summary.json").write_text(json.dumps(summary, allow_nan=False))
    return folder


def test_a_backfill_summary_is_evidence_without_a_database(
    trained_store: Path, tmp_path: Path
) -> None:
    champion = stored_tag(trained_store, "fraud-mlp")
    challenger = stored_tag(trained_store, "fraud-distilbert")
    nowhere = "postgresql://nobody@127.0.0.1:1/none"  # any connection attempt would fail
    better = backfill_output(tmp_path / "better", trained_store, challenger_better=True)
    done = promote(trained_store, nowhere, "--evidence", str(better / "summary.json"))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Same 20000 labelled transactions" in done.stdout
    for column in ("AUPRC@base", "recall@1%FPR", "cost/tx", f"champion {champion}"):
        assert column in done.stdout
    assert f"Promotion: env FRAUD_MODEL={challenger} FRAUD_CHALLENGER={champion}" in done.stdout

    worse = backfill_output(tmp_path / "worse", trained_store, challenger_better=False)
    refused = promote(trained_store, nowhere, "--evidence", str(worse), "--target", "gke")
    assert refused.returncode == 1 and "Not promoting" in refused.stdout, refused.stderr
    assert f"kubectl set env deployment/fraud-detector FRAUD_MODEL={challenger}" in refused.stdout
    forced = promote(trained_store, nowhere, "--evidence", str(worse), "--force")
    assert forced.returncode == 0 and f"FRAUD_MODEL={challenger}" in forced.stdout

    summary = json.loads((worse / "summary.json").read_text())
    summary["evidence"]["challenger"]["threshold"] = 0.123  # not what the card says
    (worse / "summary.json").write_text(json.dumps(summary))
    stale = promote(trained_store, nowhere, "--evidence", str(worse), "--force")
    assert stale.returncode == 1 and "its card says" in stale.stderr, stale.stderr
    del summary["evidence"]
    (worse / "summary.json").write_text(json.dumps(summary))
    unlabelled = promote(trained_store, nowhere, "--evidence", str(worse))
    assert unlabelled.returncode == 1 and "holds no promotion evidence" in unlabelled.stderr


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
