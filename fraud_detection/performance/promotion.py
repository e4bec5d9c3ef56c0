"""Promote the challenger: print the evidence, then swap champion and challenger.

``python -m fraud_detection.performance.promotion`` reads the score log (FRAUD_DB_URL or the
SQLite file under FRAUD_MONITOR_LOG_PATH), finds the champion and challenger of the newest
scores, and compares them on the same labelled transactions: the ones the challenger scored
(shadow or canary) and the champion answered. It prints both models' AUPRC, precision, recall
and expected cost there, with bootstrap intervals for the differences.

Promotion is a deployment change, not a rebuild: the image holds both models (built with
FRAUD_CHALLENGER set), and the command swaps FRAUD_MODEL and FRAUD_CHALLENGER, so the old
champion keeps running in shadow and the same command rolls back. ``--target`` says where
(Cloud Run, GKE or a local env line); without ``--apply`` the command is only printed. It
refuses a challenger that is not better on AUPRC and cost unless ``--force``.
"""

from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from fraud_detection.catalog import CARD_FILE
from fraud_detection.model_card import ModelCard
from fraud_detection.performance.config import PerformanceConfig
from fraud_detection.performance.online import DAY_S
from fraud_detection.performance.online import JudgedModel
from fraud_detection.performance.online import judge
from fraud_detection.performance.online import paired_rows
from fraud_detection.score_log.database import LabelledScore
from fraud_detection.score_log.database import open_database
from fraud_detection.settings import ServingSettings

TARGETS = ("cloudrun", "gke", "env")


Difference = tuple[float, float, float]  # challenger - champion, 95% interval low, high


@dataclass(frozen=True)
class Evidence:
    """Both models judged on the same labelled transactions, with paired intervals."""

    champion: dict[str, Any]
    challenger: dict[str, Any]
    auprc_difference: Difference | None
    cost_difference: Difference | None

    @property
    def challenger_wins(self) -> bool:
        """Higher AUPRC with an interval above zero, and no higher expected cost."""
        if self.auprc_difference is None or self.cost_difference is None:
            return False
        return self.auprc_difference[1] > 0 and self.cost_difference[0] <= 0


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


def bootstrap_differences(
    rows: Sequence[LabelledScore],
    champion: JudgedModel,
    challenger: JudgedModel,
    keys: Sequence[str],
    rounds: int,
    seed: int,
) -> dict[str, Difference | None]:
    """Challenger minus champion on each of `keys`, with 95% stratified row-bootstrap
    intervals from the same resamples (None where the metric is undefined on `rows`)."""
    config = PerformanceConfig(recall_alert_min_frauds=0)

    def differences(sample: Sequence[LabelledScore]) -> dict[str, float | None]:
        a, b = judge(champion, sample, config), judge(challenger, sample, config)
        return {k: None if a[k] is None or b[k] is None else b[k] - a[k] for k in keys}

    points = differences(rows)
    rng = np.random.default_rng(seed)
    labels = np.array([r.label for r in rows])
    frauds, genuine = np.flatnonzero(labels == 1), np.flatnonzero(labels == 0)
    draws: dict[str, list[float]] = {k: [] for k in keys}
    for _ in range(rounds):
        picked = np.concatenate(
            [rng.choice(frauds, len(frauds)), rng.choice(genuine, len(genuine))]
        )
        for k, d in differences([rows[i] for i in picked]).items():
            if d is not None:
                draws[k].append(d)
    result: dict[str, Difference | None] = {}
    for k in keys:
        point = points[k]
        if point is None:
            result[k] = None
            continue
        lo, hi = np.quantile(draws[k], [0.025, 0.975])
        result[k] = (point, float(lo), float(hi))
    return result


def gather_evidence(
    rows: Sequence[LabelledScore],
    champion: JudgedModel,
    challenger: JudgedModel,
    rounds: int = 1000,
    seed: int = 0,
) -> Evidence:
    """`Evidence` on those of `rows` (labelled scores) that both models scored."""
    both = paired_rows(champion, challenger, rows)
    config = PerformanceConfig()
    cost = "expected_cost_per_transaction"
    intervals = bootstrap_differences(both, champion, challenger, ("auprc", cost), rounds, seed)
    return Evidence(
        champion=judge(champion, both, config),
        challenger=judge(challenger, both, config),
        auprc_difference=intervals["auprc"],
        cost_difference=intervals[cost],
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


def report(evidence: Evidence, champion: str, challenger: str) -> str:
    """The evidence as a table a reviewer reads before promoting."""

    def cell(x: float | None) -> str:
        return "n/a" if x is None else f"{x:.4f}"

    def interval(d: tuple[float, float, float] | None) -> str:
        return (
            "n/a (both classes needed)" if d is None else f"{d[0]:+.4f} [{d[1]:+.4f}, {d[2]:+.4f}]"
        )

    a, b = evidence.champion, evidence.challenger
    names = {"champion": f"champion {champion}", "challenger": f"challenger {challenger}"}
    width = max(map(len, names.values())) + 2
    lines = [
        f"Same {a['labelled']} labelled transactions ({a['frauds']} frauds), scored by both:",
        f"{'':{width}}{'AUPRC':>9}{'precision':>11}{'recall':>9}{'cost/tx':>10}",
    ]
    for role, m in (("champion", a), ("challenger", b)):
        lines.append(
            f"{names[role]:{width}}{cell(m['auprc']):>9}{cell(m['precision']):>11}"
            f"{cell(m['recall']):>9}{cell(m['expected_cost_per_transaction']):>10}"
        )
    lines += [
        f"AUPRC, challenger - champion [95% bootstrap]: {interval(evidence.auprc_difference)}",
        f"cost per transaction, challenger - champion: {interval(evidence.cost_difference)}",
    ]
    return "\n".join(lines)


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
    parser.add_argument("--apply", action="store_true", help="run the command, not only print it")
    parser.add_argument("--force", action="store_true", help="promote even if not better")
    args = parser.parse_args(argv)

    since = time.time() - args.days * DAY_S
    rows = open_database(args.db_url).labelled_scores(since, limit=10**9)  # read once
    champion_tag, challenger_tag = current_pair(rows)
    champion = judged("champion", champion_tag)
    challenger = judged("challenger", challenger_tag)
    evidence = gather_evidence(rows, champion, challenger, rounds=args.rounds)
    print(report(evidence, champion_tag, challenger_tag))
    command = swap_command(args.target, champion_tag, challenger_tag, args.service, args.region)
    if not evidence.challenger_wins and not args.force:
        print(
            "\nNot promoting: the challenger's AUPRC gain is not clearly above zero, or it "
            "costs more (--force overrides).\nThe promotion would be: " + shlex.join(command)
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
