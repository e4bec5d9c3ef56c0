"""Champion and challenger in one process: canary routing, shadow scoring, online metrics."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import average_precision_score
from sklearn.metrics import precision_score
from sklearn.metrics import recall_score

from fraud_detection.performance.config import PerformanceConfig
from fraud_detection.performance.online import CostRule
from fraud_detection.performance.online import JudgedModel
from fraud_detection.performance.online import OnlinePerformance
from fraud_detection.performance.online import judge
from fraud_detection.performance.online import score_metrics
from fraud_detection.performance.routes import OutcomeRoutes
from fraud_detection.performance.routes import OutcomesSlot
from fraud_detection.routing.router import ChampionChallenger
from fraud_detection.routing.router import ServedModel
from fraud_detection.routing.router import TrafficShares
from fraud_detection.routing.shadow import ShadowScorer
from fraud_detection.routing.transaction_ids import TransactionIdAssigner
from fraud_detection.routing.transaction_ids import traffic_buckets
from fraud_detection.score_log.database import ScoreColumns
from fraud_detection.score_log.database import SqliteScoreDatabase
from fraud_detection.score_log.database import score_row
from fraud_detection.score_log.writer import ScoredBatch
from fraud_detection.score_log.writer import ScoreLogWriter
from fraud_detection.scorer import OnnxScorer
from tests.conftest import call_asgi
from training.data import generate_transactions

FEATURES = generate_transactions(1000, fraud_rate=0.02, seed=5)


def served(role_scorer: OnnxScorer, name: str) -> ServedModel:
    async def score(features: np.ndarray) -> np.ndarray:
        return role_scorer.predict_proba(features)

    return ServedModel(name, "v", role_scorer.threshold, score)


@pytest.fixture(scope="module")
def scorers(trained_store: Path) -> tuple[OnnxScorer, OnnxScorer]:
    def load(name: str) -> OnnxScorer:
        (folder,) = (trained_store / "models" / name).glob("*/")
        return OnnxScorer.from_directory(folder)

    return load("fraud-mlp"), load("fraud-distilbert")


def features_and_ids() -> tuple[np.ndarray, list[str]]:
    features = FEATURES.drop(columns="Class").to_numpy(np.float32)
    return features, [f"card-{i}" for i in range(len(features))]


def test_assigned_ids_are_unique_and_pass_the_id_rule() -> None:
    a, b = TransactionIdAssigner(), TransactionIdAssigner()
    ids = a.complete([None, "mine", None]) + b.new(2)
    assert ids[1] == "mine" and len(set(ids)) == 5
    assert all(1 <= len(i) <= 64 and i.isascii() and " " not in i for i in ids)
    buckets = traffic_buckets([f"x{i}" for i in range(20_000)])
    assert buckets.min() >= 0 and buckets.max() < 1 and abs(buckets.mean() - 0.5) < 0.01


def test_the_canary_share_is_decided_by_the_challenger_and_named(scorers) -> None:
    mlp, distilbert = scorers
    router = ChampionChallenger(
        served(mlp, "fraud-mlp"),
        challenger=served(distilbert, "fraud-distilbert"),
        shares=TrafficShares(canary=0.2),
    )
    features, ids = features_and_ids()
    routed = asyncio.run(router.score(features, ids))
    canary = traffic_buckets(ids) < 0.2
    np.testing.assert_array_equal(routed.by_challenger, canary)
    assert 0.15 < canary.mean() < 0.25
    expected = np.where(canary, distilbert.predict_proba(features), mlp.predict_proba(features))
    np.testing.assert_allclose(routed.probabilities, expected, rtol=0, atol=1e-6)
    thresholds = np.where(canary, distilbert.threshold, mlp.threshold)
    np.testing.assert_array_equal(routed.is_fraud, routed.probabilities >= thresholds)
    again = asyncio.run(router.score(features[::-1], ids[::-1]))
    np.testing.assert_array_equal(again.by_challenger, canary[::-1]), "an id keeps its route"


def test_shadow_rows_get_the_challengers_score_in_the_log(scorers, tmp_path: Path) -> None:
    mlp, distilbert = scorers
    database = SqliteScoreDatabase(tmp_path / "scores.sqlite3")
    writer = ScoreLogWriter(database, "fraud-mlp:v", "fraud-distilbert:v", flush_interval_s=0.05)
    shadow = ShadowScorer(distilbert.predict_proba, writer.submit)
    router = ChampionChallenger(
        served(mlp, "fraud-mlp"),
        challenger=served(distilbert, "fraud-distilbert"),
        shares=TrafficShares(shadow=0.3),
        score_log=writer,
        shadow=shadow,
    )
    features, ids = features_and_ids()
    for start in range(0, len(ids), 100):
        routed = asyncio.run(router.score(features[start : start + 100], ids[start : start + 100]))
        assert not routed.by_challenger.any(), "shadow never decides"
    shadow.close()
    writer.close()
    database.upsert_labels([(i, 0) for i in ids], labelled_at=time.time())
    rows = {r.transaction_id: r for r in database.labelled_scores(0, 10_000)}
    assert len(rows) == len(ids)
    sampled = traffic_buckets(ids) < 0.3
    challenger_p = distilbert.predict_proba(features)
    champion_p = mlp.predict_proba(features)
    for i, tid in enumerate(ids):
        row = rows[tid]
        assert row.probability == pytest.approx(float(champion_p[i]), abs=1e-6)
        if sampled[i]:
            assert row.challenger_probability == pytest.approx(float(challenger_p[i]), abs=1e-6)
        else:
            assert row.challenger_probability is None and row.challenger is None
    assert shadow.stats.scored_rows == sampled.sum() and shadow.stats.skipped_rows == 0


class LogCollector:
    def __init__(self) -> None:
        self.batches: list[ScoredBatch] = []

    def __call__(self, batch: ScoredBatch) -> None:
        self.batches.append(batch)


def shadow_batch(n: int) -> ScoredBatch:
    return ScoredBatch([f"t{i}" for i in range(n)], 0.0, np.zeros(n), np.zeros(n, bool), None,
                       np.ones(n))  # fmt: skip


def test_a_slow_challenger_is_skipped_and_a_broken_one_loses_no_log_rows() -> None:
    release = threading.Event()

    def slow(features: np.ndarray) -> np.ndarray:
        release.wait(10)
        return np.full(len(features), 0.5)

    log = LogCollector()
    shadow = ShadowScorer(slow, log, max_pending_rows=10)
    rows = np.arange(8)
    shadow.submit(shadow_batch(8), rows, np.zeros((8, 30)))
    time.sleep(0.2)  # the thread has taken the first batch and waits in `slow`
    shadow.submit(shadow_batch(8), rows, np.zeros((8, 30)))
    shadow.submit(shadow_batch(8), rows, np.zeros((8, 30)))  # 16 pending > 10: skipped
    assert shadow.stats.skipped_rows == 8 and len(log.batches) == 1
    assert log.batches[0].challenger_probabilities is None, "logged at once, unscored"
    release.set()
    shadow.close()
    assert len(log.batches) == 3 and shadow.stats.scored_rows == 16

    def broken(features: np.ndarray) -> np.ndarray:
        raise RuntimeError("challenger graph failed")

    log = LogCollector()
    shadow = ShadowScorer(broken, log)
    shadow.submit(shadow_batch(5), np.arange(5), np.zeros((5, 30)))
    shadow.close()
    assert len(log.batches) == 1 and shadow.stats.failed_calls == 1
    assert "challenger graph failed" in (shadow.stats.last_error or "")


def test_online_metrics_equal_sklearns_and_the_cost_rule() -> None:
    rng = np.random.default_rng(3)
    labels = (rng.random(2000) < 0.05).astype(int)
    scores = np.clip(rng.normal(0.2 + 0.5 * labels, 0.2), 0, 1)
    amounts = rng.gamma(2.0, 50.0, 2000)
    metrics = score_metrics(labels, scores, amounts, 0.5, CostRule())
    flagged = scores >= 0.5
    assert metrics["auprc"] == pytest.approx(average_precision_score(labels, scores), abs=1e-12)
    assert metrics["precision"] == pytest.approx(precision_score(labels, flagged))
    assert metrics["recall"] == pytest.approx(recall_score(labels, flagged))
    missed = amounts[(labels == 1) & ~flagged].sum()
    false_alarms = ((labels == 0) & flagged).sum()
    assert metrics["expected_cost_per_transaction"] == pytest.approx(
        (missed + 5.0 * false_alarms) / 2000
    )
    constant = score_metrics(labels, scores, amounts, 0.5, CostRule(100.0, 1.0))
    assert constant["expected_cost_per_transaction"] == pytest.approx(
        (100.0 * ((labels == 1) & ~flagged).sum() + false_alarms) / 2000
    )
    one_class = score_metrics(np.zeros(10, int), scores[:10], amounts[:10], 0.5, CostRule())
    assert one_class["auprc"] is None and one_class["recall"] is None


def test_the_recall_alert_needs_both_a_drop_and_enough_frauds(tmp_path: Path) -> None:
    database = SqliteScoreDatabase(tmp_path / "scores.sqlite3")
    database.migrate()
    n_frauds = 40
    ids = [f"f{i}" for i in range(n_frauds)] + [f"g{i}" for i in range(400)]
    # Half the frauds score under the threshold: recall 0.5 against a promised 0.9.
    # Half the frauds score under the threshold: recall 0.5 against a promised 0.9.
    p = np.array([0.9 if i % 2 else 0.1 for i in range(n_frauds)] + [0.05] * 400)
    database.register_models(["fraud-mlp:v"])
    rows = [score_row(t, time.time(), "fraud-mlp:v", float(x)) for t, x in zip(ids, p, strict=True)]
    database.insert_scores(ScoreColumns.of_rows(rows))
    database.upsert_labels([(t, int(t.startswith("f"))) for t in ids], time.time())
    model = JudgedModel("champion", "fraud-mlp", "v", 0.5, 0.9, CostRule())
    for min_frauds, firing in ((30, True), (41, False)):
        config = PerformanceConfig(recall_alert_margin=0.1, recall_alert_min_frauds=min_frauds)
        document = OnlinePerformance(database, model, None, config).compute()
        (entry,) = document["models"]
        assert entry["recall"] == 0.5 and entry["frauds"] == n_frauds
        assert entry["recall_alert"]["firing"] is firing
    assert document["label_coverage"] == 1.0
    fine = JudgedModel("champion", "fraud-mlp", "v", 0.5, 0.55, CostRule())
    rows = database.labelled_scores(0, 10_000)
    assert not judge(fine, rows, PerformanceConfig())["recall_alert"]["firing"]


def test_feedback_and_performance_are_404_when_the_score_log_is_off() -> None:
    async def app(scope, receive, send) -> None:
        raise AssertionError("answered by the route")

    route = OutcomeRoutes(app, OutcomesSlot())
    status, body, _ = call_asgi(route, path="/performance", method="GET")
    assert status == 404 and b"FRAUD_SCORE_LOG=0" in body
    status, _, headers = call_asgi(route, path="/feedback", method="GET")
    assert status == 405 and headers[b"allow"] == b"POST"
