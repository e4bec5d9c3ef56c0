"""The benchmark harness: request mixes, and one short real run of the runner end to end."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.report import check_targets
from benchmarks.request_mix import RequestMix
from benchmarks.request_mix import parse_mix
from fraud_detection.api_models import Transaction

REPO = Path(__file__).resolve().parents[1]


def test_parse_mix_normalises_shares() -> None:
    assert parse_mix("1:3,4:1") == {1: 0.75, 4: 0.25}
    assert parse_mix("256") == {256: 1.0}
    with pytest.raises(ValueError, match="bad request mix"):
        parse_mix("0:1")


def test_request_mix_follows_the_mix_with_valid_bodies() -> None:
    mix = RequestMix.build({1: 0.5, 8: 0.5}, n_bodies=20, seed=3)
    assert sorted(mix.rows_per_body) == [1] * 10 + [8] * 10
    assert mix.mean_rows == 4.5
    for body, rows in zip(mix.bodies, mix.rows_per_body, strict=True):
        records = json.loads(body)["transactions"]
        assert len(records) == rows
        for record in records:
            Transaction.model_validate(record)


def test_request_mix_round_trips_through_a_file(tmp_path: Path) -> None:
    mix = RequestMix.build({2: 1.0}, n_bodies=5)
    mix.save(tmp_path / "bodies")
    assert RequestMix.load_bodies(tmp_path / "bodies") == mix.bodies


def test_targets_are_read_from_the_measured_levels() -> None:
    def level(users: int, rps: float, p99: float, failures: int = 0) -> dict[str, object]:
        return {
            "users": users,
            "requests_per_s": rps,
            "rows_per_s": 2 * rps,
            "p99_ms": p99,
            "failures": failures,
            "rss_mb_worker": 300.0,
        }

    results = {
        "variants": {
            "noop": {"levels": [level(32, 100.0, 10.0)]},
            "mlp-batching": {"levels": [level(32, 85.0, 40.0)]},
        }
    }
    checks = {c.target.split(" @")[0]: c for c in check_targets(results)}
    assert checks["MLP batching req/s >= 0.8 x no-op ceiling"].met
    assert checks["MLP batching req/s >= 0.8 x no-op ceiling"].measured == "0.85x"
    assert not checks["MLP batching p99 <= 3 x ceiling p99"].met


def test_serving_benchmark_runs_end_to_end(trained_store: Path, tmp_path: Path) -> None:
    """A short real run: servers started and stopped by the runner, Locust, raw ORT, report."""
    env = {"BENTOML_HOME": str(trained_store)}
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmarks.serving",
            "--variants",
            "noop,mlp-batching,mlp-fastapi-torch",
            "--users",
            "2",
            "--duration",
            "2",
            "--warmup",
            "0",
            "--raw-batches",
            "1,8",
            "--raw-seconds",
            "0.2",
            "--out",
            str(tmp_path),
            "--name",
            "smoke",
        ],
        cwd=REPO,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    results = json.loads((tmp_path / "smoke.json").read_text())
    for name in ("noop", "mlp-batching", "mlp-fastapi-torch"):
        (level,) = results["variants"][name]["levels"]
        assert level["users"] == 2
        assert level["requests"] > 0 and level["failures"] == 0, level
        assert level["p50_ms"] <= level["p99_ms"]
        assert level["rss_mb_total"] > 0
    assert [r["batch_size"] for r in results["raw"]["mlp"]["results"]] == [1, 8]
    assert any(t["target"].startswith("mlp batching ahead of FastAPI") for t in results["targets"])
    assert "| mlp-batching | 2 |" in (tmp_path / "smoke.md").read_text()
    assert (tmp_path / "smoke.png").stat().st_size > 10_000


def test_graph_cost_times_each_stored_graph_at_each_batch_size(trained_store: Path) -> None:
    from benchmarks.graph_cost import graph_cost
    from benchmarks.graph_cost import graph_cost_rows
    from benchmarks.request_mix import load_rows

    (mlp,) = (trained_store / "models" / "fraud-mlp").glob("*/")
    (distilbert,) = (trained_store / "models" / "fraud-distilbert").glob("*/")
    cost = graph_cost(
        {"mlp": mlp, "distilbert": distilbert},
        load_rows(None, 300, seed=0),
        batch_sizes=(1, 300),
        rounds=2,
        rows_per_round=600,
    )
    assert list(cost) == ["mlp", "distilbert"] and all(list(c) == [1, 300] for c in cost.values())
    assert all(v > 0 for c in cost.values() for v in c.values())
    # The tiny DistilBERT's attention over 30 tokens costs more than the MLP at any size.
    assert cost["distilbert"][300] > cost["mlp"][300]
    table = graph_cost_rows(cost)
    assert table[0] == "| graph | 1 rows | 300 rows |" and table[2].startswith("| mlp | ")
