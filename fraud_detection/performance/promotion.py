"""Promote the challenger: print the evidence, then swap champion and challenger.

``python -m fraud_detection.performance.promotion`` reads the score log (FRAUD_DB_URL or the
SQLite file under FRAUD_MONITOR_LOG_PATH), finds the champion and challenger of the newest
scores, and compares them on the same labelled transactions: the ones the challenger scored
(shadow or canary) and the champion answered. With ``--evidence`` it reads the comparison a
backfill of labelled rows made instead (its ``summary.json``), and no database. Either way
`fraud_detection.performance.evidence` computes it: both models' AUPRC at the production
fraud rate, recall at 1% FPR, precision, recall and expected cost at their cards'
thresholds, with paired bootstrap intervals for the differences.

Promotion is a deployment change, not a rebuild: the image holds both models (built with
FRAUD_CHALLENGER set), and the command swaps FRAUD_MODEL and FRAUD_CHALLENGER, so the old
champion keeps running in shadow and the same command rolls back. ``--target`` says where
(Cloud Run, GKE or a local env line); without ``--apply`` the command is only printed. It
refuses a challenger that is not better on AUPRC and cost unless ``--force``.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from fraud_detection.catalog import CARD_FILE
from fraud_detection.model_card import ModelCard
from fraud_detection.performance.evidence import Evidence
from fraud_detection.performance.evidence import PairedScores
from fraud_detection.performance.evidence import paired_evidence
from fraud_detection.performance.online import DAY_S
from fraud_detection.performance.online import JudgedModel
from fraud_detection.performance.online import paired_rows
from fraud_detection.score_log.database import LabelledScore
from fraud_detection.score_log.database import open_database
from fraud_detection.settings import ServingSettings

TARGETS = ("cloudrun", "gke", "env")
#: What a backfill writes in its output folder; ``["evidence"]`` is `Evidence.to_dict()`.
SUMMARY_FILE = "summary.json"


def current_pair(rows: Sequence[LabelledScore]) -> tuple[str, str]:
    """Champion and challenger tags of the newest labelled score (of `rows`, newest first)
    that has a challenger."""
    for row in rows:
        if row.challenger is not None:
            return f"{row.model}:{row.model_version}", f"{row.challenger}:{row.challenger_version}"
    raise SystemExit(
        "No labelled transaction in the window was scored by a challenger: serve with "
        "FRAUD_CHALLENGER set, and send labels to POST /feedback"
    )


def gather_evidence(
    rows: Sequence[LabelledScore],
    champion: JudgedModel,
    challenger: JudgedModel,
    rounds: int = 1000,
    seed: int = 0,
) -> Evidence:
    """`Evidence` on those of `rows` (labelled scores) that both models scored."""
    scores = PairedScores.of_rows(paired_rows(champion, challenger, rows))
    return paired_evidence(scores, champion, challenger, rounds=rounds, seed=seed)


def read_evidence(path: Path) -> Evidence:
    """The evidence of a backfill: ``summary["evidence"]`` of its ``summary.json`` (`path`,
    or the backfill's output folder holding it)."""
    file = path / SUMMARY_FILE if path.is_dir() else path
    try:
        summary = json.loads(file.read_text())
        return Evidence.from_dict(summary["evidence"])
    except FileNotFoundError as e:
        raise SystemExit(f"No backfill summary at {file}") from e
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as e:
        raise SystemExit(
            f"{file} holds no promotion evidence (summary['evidence'], written by a backfill "
            f"of labelled rows): {e}"
        ) from e


def check_cards(evidence: Evidence) -> None:
    """Refuse evidence judged at another threshold or cost rule than the stored cards say."""
    from bentoml.exceptions import NotFound

    for role in ("champion", "challenger"):
        entry = getattr(evidence, role)
        try:
            card = judged(role, entry["model"])
        except NotFound as e:
            raise SystemExit(f"The evidence's {role} is not in the model store: {e}") from e
        judged_as = (entry.get("threshold"), entry.get("cost_rule"))
        if judged_as != (card.threshold, card.cost_rule.describe()):
            raise SystemExit(
                f"The evidence judged {role} {entry['model']} at threshold {judged_as[0]} with "
                f"costs {judged_as[1]}, but its card says {card.threshold} with "
                f"{card.cost_rule.describe()}: rerun the backfill"
            )


def swap_command(
    target: str, champion: str, challenger: str, service: str, region: str
) -> list[str]:
    """The command that makes `challenger` the champion (and the old champion its shadow)."""
    env = f"FRAUD_MODEL={challenger},FRAUD_CHALLENGER={champion}"
    if target == "cloudrun":
        return ["gcloud", "run", "services", "update", service, "--region", region,
                f"--update-env-vars={env}"]  # fmt: skip
    if target == "gke":
        return ["kubectl", "set", "env", f"deployment/{service}", *env.split(",")]
    return ["env", *env.split(",")]


def judged(role: str, tag: str) -> JudgedModel:
    """`JudgedModel` of a model in the BentoML store (its card: threshold and cost rule)."""
    import bentoml

    name, _, version = tag.partition(":")
    path = Path(bentoml.models.get(tag).path)
    return JudgedModel.of_card(role, name, version, ModelCard.from_json_file(path / CARD_FILE))


def main(argv: Sequence[str] | None = None) -> int:
    settings = ServingSettings.from_env()
    parser = argparse.ArgumentParser(
        prog="python -m fraud_detection.performance.promotion", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--db-url", default=settings.score_db_url, help="FRAUD_DB_URL")
    parser.add_argument("--days", type=float, default=settings.performance.window_days)
    parser.add_argument("--target", choices=TARGETS, default="env")
    parser.add_argument(
        "--service", default="fraud-detector", help="Cloud Run service / GKE deployment"
    )
    parser.add_argument("--region", default=os.environ.get("GCP_REGION", "us-central1"))
    parser.add_argument("--rounds", type=int, default=1000, help="bootstrap rounds")
    parser.add_argument(
        "--evidence",
        type=Path,
        help="a backfill's summary.json (or its output folder): judge on its labelled rows "
        "instead of the score log",
    )
    parser.add_argument("--apply", action="store_true", help="run the command, not only print it")
    parser.add_argument("--force", action="store_true", help="promote even if not better")
    args = parser.parse_args(argv)

    if args.evidence is not None:
        evidence = read_evidence(args.evidence)
        check_cards(evidence)
    else:
        since = time.time() - args.days * DAY_S
        rows = open_database(args.db_url).labelled_scores(since, limit=10**9)  # read once
        champion_tag, challenger_tag = current_pair(rows)
        champion = judged("champion", champion_tag)
        challenger = judged("challenger", challenger_tag)
        evidence = gather_evidence(rows, champion, challenger, rounds=args.rounds)
    champion_tag, challenger_tag = evidence.champion["model"], evidence.challenger["model"]
    print(evidence.report())
    command = swap_command(args.target, champion_tag, challenger_tag, args.service, args.region)
    if not evidence.challenger_wins and not args.force:
        print(
            "\nNot promoting: the challenger's AUPRC gain (at the base rate) is not clearly "
            "above zero, or it costs more (--force overrides).\nThe promotion would be: "
            + shlex.join(command)
        )
        return 1
    print("\nPromotion: " + shlex.join(command))
    if not args.apply:
        print("(dry run: add --apply to run it)")
        return 0
    if args.target == "env":
        print("Serve with these variables, e.g.: " + " ".join(command[1:]) + " make serve")
        return 0
    return subprocess.run(command, check=False).returncode


if __name__ == "__main__":
    sys.exit(main())
