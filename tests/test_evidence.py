"""The promotion evidence from numpy columns: equal to sklearn and brute force, and fast."""

from __future__ import annotations

import json

import numpy as np
import pytest
from sklearn.metrics import average_precision_score

from fraud_detection.performance.evidence import TARGET_FPR
from fraud_detection.performance.evidence import Evidence
from fraud_detection.performance.evidence import PairedScores
from fraud_detection.performance.evidence import RankedScores
from fraud_detection.performance.evidence import evidence_from_columns
from fraud_detection.performance.evidence import model_metrics
from fraud_detection.performance.online import CostRule
from fraud_detection.performance.online import JudgedModel
from fraud_detection.performance.online import score_metrics
from fraud_detection.prevalence import PRODUCTION_FRAUD_RATE
from fraud_detection.prevalence import genuine_weight

AUPRC_BASE_RATE, AUPRC, RECALL_AT_FPR = 0, 1, 2


def model(role: str, threshold: float = 0.5, rule: CostRule | None = None) -> JudgedModel:
    return JudgedModel(role, f"fraud-{role}", "v1", threshold, None, rule or CostRule())


def tied_sample(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Labels, scores rounded to 1-3 decimals (many ties, across classes too) and amounts."""
    n = int(rng.integers(20, 400))
    labels = (rng.random(n) < rng.uniform(0.05, 0.5)).astype(np.int8)
    labels[:2] = (0, 1)  # both classes
    scores = np.clip(np.round(rng.random(n) + 0.3 * labels, int(rng.integers(1, 4))), 0, 1)
    return labels, scores, rng.exponential(50, n)


def ranked(labels: np.ndarray, scores: np.ndarray, amounts: np.ndarray) -> RankedScores:
    fraud = labels == 1
    return RankedScores(scores[fraud], scores[~fraud], amounts[fraud], model("champion"))


def row_counts(
    labels: np.ndarray, fraud_counts: np.ndarray, genuine_counts: np.ndarray
) -> np.ndarray:
    counts = np.empty(len(labels), dtype=np.int64)
    counts[labels == 1], counts[labels == 0] = fraud_counts, genuine_counts
    return counts


@pytest.mark.parametrize("seed", range(40))
def test_average_precision_equals_sklearn_with_ties_weights_and_counts(seed: int) -> None:
    rng = np.random.default_rng(seed)
    labels, scores, amounts = tied_sample(rng)
    fraud = labels == 1
    weight = genuine_weight(labels, PRODUCTION_FRAUD_RATE)
    at_base_rate = np.where(fraud, 1.0, weight)
    # Every row once: sklearn with and without the base-rate weights.
    ones = ranked(labels, scores, amounts).metrics(
        np.ones(fraud.sum(), np.int64), np.ones((~fraud).sum(), np.int64), weight
    )
    assert ones[AUPRC] == pytest.approx(average_precision_score(labels, scores), abs=1e-12)
    assert ones[AUPRC_BASE_RATE] == pytest.approx(
        average_precision_score(labels, scores, sample_weight=at_base_rate), abs=1e-12
    )
    # A bootstrap round: rows picked 0, 1 or more times (a picked-0 row is no threshold).
    fraud_counts = rng.integers(0, 3, fraud.sum())
    genuine_counts = rng.integers(0, 3, (~fraud).sum())
    fraud_counts[0] = genuine_counts[0] = 1
    counts = row_counts(labels, fraud_counts, genuine_counts)
    drawn = ranked(labels, scores, amounts).metrics(fraud_counts, genuine_counts, weight)
    assert drawn[AUPRC] == pytest.approx(
        average_precision_score(labels, scores, sample_weight=counts), abs=1e-12
    )
    assert drawn[AUPRC_BASE_RATE] == pytest.approx(
        average_precision_score(labels, scores, sample_weight=counts * at_base_rate), abs=1e-12
    )


def brute_recall_at_fpr(labels: np.ndarray, scores: np.ndarray, counts: np.ndarray) -> float:
    """Highest recall over every cut ``score >= t`` whose false-positive rate is <= 1%."""
    frauds, genuine = counts[labels == 1].sum(), counts[labels == 0].sum()
    best = 0.0
    for t in np.unique(scores[counts > 0]):
        flagged = scores >= t
        if counts[flagged & (labels == 0)].sum() / genuine <= TARGET_FPR:
            best = max(best, counts[flagged & (labels == 1)].sum() / frauds)
    return best


@pytest.mark.parametrize("seed", range(40))
def test_recall_at_one_percent_fpr_equals_brute_force(seed: int) -> None:
    rng = np.random.default_rng(100 + seed)
    labels, scores, amounts = tied_sample(rng)
    fraud = labels == 1
    fraud_counts = rng.integers(0, 3, fraud.sum())
    genuine_counts = rng.integers(0, 3, (~fraud).sum())
    fraud_counts[0] = genuine_counts[0] = 1
    counts = row_counts(labels, fraud_counts, genuine_counts)
    got = ranked(labels, scores, amounts).metrics(fraud_counts, genuine_counts, 1.0)
    assert got[RECALL_AT_FPR] == pytest.approx(brute_recall_at_fpr(labels, scores, counts))
    ones = np.ones(len(labels), np.int64)
    got = ranked(labels, scores, amounts).metrics(ones[fraud], ones[~fraud], 1.0)
    assert got[RECALL_AT_FPR] == pytest.approx(brute_recall_at_fpr(labels, scores, ones))


def columns(n: int, separation: tuple[float, float], seed: int = 0) -> tuple[np.ndarray, ...]:
    """Labels (2% fraud), amounts and two models' probabilities: logits apart by `separation`."""
    rng = np.random.default_rng(seed)
    labels = (rng.random(n) < 0.02).astype(np.int8)
    amounts = rng.exponential(80, n)
    champion, challenger = (
        1 / (1 + np.exp(-(rng.normal(0, 1, n) + s * labels - 3))) for s in separation
    )
    return labels, amounts, champion, challenger


def test_point_metrics_are_those_of_the_performance_endpoint() -> None:
    labels, amounts, champion_p, challenger_p = columns(5000, (2.0, 3.0))
    rule = CostRule("amount", 5.0, "card")
    evidence = evidence_from_columns(
        labels, amounts, champion_p, challenger_p,
        model("champion", 0.3, rule), model("challenger", 0.4, CostRule(20.0, 2.0, "card")),
        rounds=0,
    )  # fmt: skip
    for entry, p, threshold, cost_rule in (
        (evidence.champion, champion_p, 0.3, rule),
        (evidence.challenger, challenger_p, 0.4, CostRule(20.0, 2.0, "card")),
    ):
        expected = score_metrics(labels, p, amounts, threshold, cost_rule)
        for key in ("labelled", "frauds", "flagged", "precision", "recall"):
            assert entry[key] == pytest.approx(expected[key]), key
        assert entry["auprc"] == pytest.approx(expected["auprc"], abs=1e-12)
        assert entry["expected_cost_per_transaction"] == pytest.approx(
            expected["expected_cost_per_transaction"]
        )
        assert entry["auprc_base_rate"] < entry["auprc"], "0.17% fraud is harder than 2%"
        alone = model_metrics(labels, amounts, p, model(entry["role"], threshold, cost_rule))
        assert alone.keys() == entry.keys(), "one model alone: the same entry"
        for key, value in entry.items():
            assert alone[key] == (pytest.approx(value) if isinstance(value, float) else value)


def test_intervals_hold_the_point_and_narrow_with_more_rows() -> None:
    def width(evidence: Evidence, key: str) -> float:
        point, low, high = evidence.differences[key]
        assert low <= point <= high, key
        return high - low

    widths = []
    for n in (4000, 40_000):
        labels, amounts, champion_p, challenger_p = columns(n, (2.0, 2.5), seed=n)
        evidence = evidence_from_columns(
            labels, amounts, champion_p, challenger_p, model("champion"), model("challenger"),
            rounds=300,
        )  # fmt: skip
        widths.append({k: width(evidence, k) for k in evidence.differences})
    for key in ("auprc_base_rate", "recall_at_1pct_fpr", "expected_cost_per_transaction"):
        assert widths[1][key] < 0.6 * widths[0][key], key  # ~1/sqrt(10) expected


def test_a_better_challenger_wins_and_a_worse_one_does_not() -> None:
    labels, amounts, sharp, blunt = columns(20_000, (3.0, 1.5))
    champion, challenger = model("champion", 0.2), model("challenger", 0.2)
    better = evidence_from_columns(labels, amounts, blunt, sharp, champion, challenger)
    worse = evidence_from_columns(labels, amounts, sharp, blunt, champion, challenger)
    assert better.challenger_wins and better.auprc_difference[1] > 0
    assert better.differences["recall_at_1pct_fpr"][1] > 0
    assert not worse.challenger_wins and worse.auprc_difference[2] < 0
    same = evidence_from_columns(labels, amounts, sharp, sharp, champion, challenger)
    assert not same.challenger_wins, "no gain is no promotion"
    report = better.report()
    assert "AUPRC@base" in report and "recall@1%FPR" in report and "cost/tx" in report
    assert "champion fraud-champion:v1" in report


def test_the_evidence_survives_json() -> None:
    labels, amounts, champion_p, challenger_p = columns(3000, (1.0, 3.0))
    evidence = evidence_from_columns(
        labels, amounts, champion_p, challenger_p, model("champion"), model("challenger"),
        rounds=50, seed=3,
    )  # fmt: skip
    data = json.loads(json.dumps(evidence.to_dict(), allow_nan=False))
    assert data["champion"]["model"] == "fraud-champion:v1"
    assert data["differences"]["auprc_base_rate"]["ci95_low"] > 0
    again = Evidence.from_dict(data)
    assert again == evidence and again.challenger_wins == data["challenger_wins"] is True
    assert again.report() == evidence.report()
    del data["differences"]
    with pytest.raises(ValueError, match="differences"):
        Evidence.from_dict(data)


def test_undefined_metrics_are_none_not_numbers() -> None:
    labels = np.zeros(50, np.int8)  # no fraud: no AUPRC, no recall
    p = np.linspace(0, 1, 50)
    evidence = evidence_from_columns(
        labels, np.ones(50), p, p, model("champion"), model("challenger"), rounds=20
    )
    assert evidence.champion["auprc_base_rate"] is None and evidence.champion["recall"] is None
    assert evidence.auprc_difference is None and not evidence.challenger_wins
    assert evidence.cost_difference is not None
    json.dumps(evidence.to_dict(), allow_nan=False)
    with pytest.raises(ValueError, match="NaN"):
        PairedScores(labels, np.ones(50), p, np.full(50, np.nan))
