"""A short real run of the quality benchmark: same folds for every model, files written."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from benchmarks.quality import base_rate_weights
from benchmarks.quality import fold_metrics
from benchmarks.quality import main
from training.data import generate_transactions


def test_base_rate_weights_give_the_full_dataset_prevalence() -> None:
    labels = np.array([1] * 30 + [0] * 970)
    weights = base_rate_weights(labels)
    prevalence = weights[labels == 1].sum() / weights.sum()
    assert prevalence == pytest.approx(492 / (492 + 284_315))


def test_base_rate_auprc_is_lower_than_the_sample_auprc() -> None:
    rng = np.random.default_rng(0)
    labels = (rng.random(5000) < 0.02).astype(int)
    scores = rng.normal(labels * 2.0, 1.0)
    metrics = fold_metrics(labels, 1 / (1 + np.exp(-scores)))
    assert metrics["auprc_base_rate"] < metrics["auprc"]  # rarer frauds, lower precision


def test_quality_benchmark_writes_table_json_and_plot(tmp_path: Path) -> None:
    data = tmp_path / "creditcard.csv.gz"
    generate_transactions(3000, fraud_rate=0.03, seed=1).to_csv(data, index=False)
    main(
        [
            "--data", str(data), "--folds", "2", "--repeats", "1",
            "--models",
            "mlp,mlp_networks,mlp_single,distilbert,logistic_regression,hist_gradient_boosting",
            "--override", "model.max_epochs=2", "--override", "ensemble.folds=2",
            "--output-dir", str(tmp_path), "--name", "q",
        ]
    )  # fmt: skip
    report = json.loads((tmp_path / "q.json").read_text())
    assert set(report["summary"]) == {
        "mlp", "mlp_networks", "mlp_single", "distilbert", "logistic_regression",
        "hist_gradient_boosting",
    }  # fmt: skip
    for name, folds in report["per_fold"].items():
        assert len(folds) == 2, name
        # a near-perfect ranking puts both at 1.0, up to rounding
        assert all(0.0 <= f["auprc_base_rate"] <= f["auprc"] + 1e-9 <= 1.0 + 1e-9 for f in folds)
    assert report["data"] == {"file": "creditcard.csv.gz", "rows": 3000, "frauds": 90}
    # The served blend is compared with the networks alone, the single network and the
    # trees on the same folds, per fold (corrected t) and pooled (row bootstrap).
    pairs = {(c["challenger"], c["incumbent"], c["metric"]) for c in report["comparisons"]}
    assert ("mlp", "mlp_networks", "pooled_auprc_base_rate") in pairs
    assert ("mlp", "mlp_single", "auprc_base_rate") in pairs
    assert ("mlp", "hist_gradient_boosting", "pooled_auprc_base_rate") in pairs
    for c in report["comparisons"]:
        assert c["ci95_low"] <= c["mean"] <= c["ci95_high"]
        # Pooled rows say how many frauds would decide them (None: the margin is not positive).
        if c["metric"] == "pooled_auprc_base_rate":
            assert (c["frauds_to_resolve"] is None) == (c["mean"] <= 0)
            assert c["frauds_to_resolve"] is None or c["frauds_to_resolve"] >= 90
    assert {t["target"].split(":")[0] for t in report["targets"]} == {
        "mlp beats mlp_networks", "mlp beats mlp_single", "mlp beats hist_gradient_boosting",
        "distilbert beats hist_gradient_boosting",
    }  # fmt: skip
    table = (tmp_path / "q.md").read_text()
    assert "| hist_gradient_boosting |" in table and "AUPRC @ 0.172%" in table
    assert "frauds to decide" in table
    assert (tmp_path / "q.png").stat().st_size > 10_000
