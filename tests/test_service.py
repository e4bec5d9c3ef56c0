"""The real service: `bentoml serve` subprocesses, the real client, raw HTTP, bad input."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import bentoml
import httpx
import numpy as np
import pandas as pd
import pytest

from fraud_detection.catalog import STORE_NAMES
from fraud_detection.client import score_frame
from fraud_detection.drift_log import DriftLogFiles
from fraud_detection.schema import FEATURE_NAMES
from fraud_detection.scorer import OnnxScorer
from tests.conftest import REPO
from tests.conftest import RunningServer
from tests.conftest import failed_start_output
from training.data import generate_transactions


def transactions(n: int, seed: int = 7) -> list[dict[str, float]]:
    frame = generate_transactions(max(n, 2), fraud_rate=0.2, seed=seed).head(n)
    return frame[list(FEATURE_NAMES)].to_dict(orient="records")


def stored_scorer(home: Path, kind: str, version: str) -> OnnxScorer:
    """The model the server loaded, read straight from the store's directory."""
    return OnnxScorer.from_directory(home / "models" / STORE_NAMES[kind] / version)


def test_sync_client_scores_rows_in_order(
    server: RunningServer, client: bentoml.SyncHTTPClient
) -> None:
    rows = transactions(20)
    results = client.predict(transactions=rows)
    assert len(results) == len(rows)
    # Each row scored alone gives the same probability as inside the batch: order is kept.
    for row, result in zip(rows[:5], results[:5], strict=True):
        (alone,) = client.predict(transactions=[row])
        assert alone["fraud_probability"] == pytest.approx(result["fraud_probability"], abs=1e-6)
    for result in results:
        assert 0.0 <= result["fraud_probability"] <= 1.0
        assert result["model"] == STORE_NAMES[server.kind]
        assert result["model_version"]


def test_decision_uses_stored_threshold(server: RunningServer, trained_store: Path) -> None:
    rows = transactions(200)
    response = httpx.post(f"{server.url}/predict", json={"transactions": rows}, timeout=30)
    assert response.status_code == 200
    body = response.json()
    scorer = stored_scorer(trained_store, server.kind, body[0]["model_version"])
    served = np.array([r["fraud_probability"] for r in body])
    local = scorer.predict_proba(pd.DataFrame(rows)[list(FEATURE_NAMES)].to_numpy(np.float32))
    np.testing.assert_allclose(served, local, atol=1e-6)
    assert [r["is_fraud"] for r in body] == (local >= scorer.threshold).tolist()
    assert any(r["is_fraud"] for r in body), "a fraud-rich sample should raise some alarms"


def test_model_endpoint_reports_the_threshold_rule_and_value(
    server: RunningServer, trained_store: Path
) -> None:
    info = httpx.get(f"{server.url}/model/info", timeout=10).json()
    name, version = info["model"].split(":")
    scorer = stored_scorer(trained_store, server.kind, version)
    assert name == f"fraud-{server.kind}" and info["kind"] == server.kind
    assert info["threshold"]["rule"] == scorer.card.threshold.rule
    assert info["threshold"]["value"] == scorer.threshold
    assert info["calibration"]["method"] == "platt"
    assert "training_config" not in info, "no training internals (paths) on the public API"


def test_concurrent_requests_are_batched_and_answered_individually(server: RunningServer) -> None:
    rows = transactions(64, seed=11)

    def one(row: dict[str, float]) -> float:
        r = httpx.post(f"{server.url}/predict", json={"transactions": [row]}, timeout=30)
        assert r.status_code == 200, r.text
        return r.json()[0]["fraud_probability"]

    with ThreadPoolExecutor(max_workers=16) as pool:
        concurrent = list(pool.map(one, rows))
    together = httpx.post(f"{server.url}/predict", json={"transactions": rows}, timeout=30).json()
    np.testing.assert_allclose(concurrent, [r["fraud_probability"] for r in together], atol=1e-6)


def test_score_frame_helper_chunks_a_dataframe(
    server: RunningServer, client: bentoml.SyncHTTPClient
) -> None:
    frame = pd.DataFrame(transactions(25)).set_index(pd.RangeIndex(100, 125))
    frame["note"] = "ignored"
    scored = score_frame(client, frame, chunk_size=7)
    assert list(scored.index) == list(frame.index)
    whole = client.predict(transactions=frame[list(FEATURE_NAMES)].to_dict(orient="records"))
    np.testing.assert_allclose(
        scored["fraud_probability"], [r["fraud_probability"] for r in whole], atol=1e-6
    )


def test_health_endpoints(server: RunningServer) -> None:
    assert httpx.get(f"{server.url}/livez").status_code == 200
    assert httpx.get(f"{server.url}/readyz").status_code == 200


def test_openapi_document_describes_the_request(server: RunningServer) -> None:
    response = httpx.get(f"{server.url}/docs.json", timeout=30)
    assert response.status_code == 200, response.text
    spec = response.json()
    assert "/predict" in spec["paths"]
    transaction = next(v for k, v in spec["components"]["schemas"].items() if "Transaction" in k)
    assert list(transaction["properties"]) == [*FEATURE_NAMES, "transaction_id"]
    assert set(transaction["required"]) == set(FEATURE_NAMES), "the id is optional"


def read_drift_log(monitor_dir: Path) -> pd.DataFrame:
    return DriftLogFiles.under(monitor_dir).read()


def logged_rows(logged: pd.DataFrame, rows: list[dict[str, float]]) -> list[pd.DataFrame]:
    """For each request row, the drift-log lines with its features (float32 precision)."""
    if logged.empty:
        return [logged for _ in rows]
    features = logged[list(FEATURE_NAMES)].to_numpy()
    return [
        logged[
            np.isclose(features, [row[c] for c in FEATURE_NAMES], rtol=1e-6, atol=1e-6).all(axis=1)
        ]
        for row in rows
    ]


def test_drift_hook_logs_every_scored_row(server: RunningServer) -> None:
    rows = transactions(9, seed=3)
    response = httpx.post(f"{server.url}/predict", json={"transactions": rows}, timeout=30)
    assert response.status_code == 200
    # A background thread writes the log: give it a moment, without sleeping when it is done.
    deadline = time.monotonic() + 15
    while True:
        logged = read_drift_log(server.monitor_dir)
        matches = logged_rows(logged, rows)
        if all(len(m) for m in matches) or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert not logged.empty, f"no drift log under {server.monitor_dir}"
    assert set(FEATURE_NAMES) | {"fraud_probability", "timestamp"} <= set(logged.columns)
    for row, match, result in zip(rows, matches, response.json(), strict=True):
        assert len(match), f"row {row} missing from the drift log"
        assert match["fraud_probability"].iloc[-1] == pytest.approx(result["fraud_probability"])


GOOD = transactions(1)[0]
BAD_BODIES = [
    pytest.param({"transactions": []}, "transactions", id="empty-list"),
    pytest.param({"transactions": [{**GOOD, "V1": "1.5"}]}, "V1", id="string-for-float"),
    pytest.param({"transactions": [{**GOOD, "V2": True}]}, "V2", id="boolean-for-float"),
    pytest.param(
        {"transactions": [{k: v for k, v in GOOD.items() if k != "V3"}]}, "V3", id="missing-field"
    ),
    pytest.param({"transactions": [{**GOOD, "merchant": 1.0}]}, "merchant", id="extra-field"),
    pytest.param({"transactions": [{**GOOD, "Amount": -5.0}]}, "Amount", id="negative-amount"),
    pytest.param({"transactions": [{**GOOD, "V4": 1e300}]}, "V4", id="beyond-float32"),
    pytest.param({"transactions": [GOOD, {**GOOD, "V28": None}]}, "V28", id="null-second-row"),
    pytest.param({"rows": [GOOD]}, "transactions", id="wrong-top-level-key"),
    pytest.param({"transactions": GOOD}, "transactions", id="object-not-list"),
]


@pytest.mark.parametrize(("body", "field"), BAD_BODIES)
def test_bad_json_is_a_400_naming_the_field(server: RunningServer, body: dict, field: str) -> None:
    response = httpx.post(f"{server.url}/predict", json=body, timeout=30)
    assert response.status_code == 400, response.text
    assert field in json.dumps(response.json()["detail"])
    assert httpx.post(f"{server.url}/predict", json={"transactions": [GOOD]}).status_code == 200


@pytest.mark.parametrize(
    ("raw", "content_type", "status", "text"),
    [
        pytest.param(
            b'{"transactions": [{"Time": NaN}]}', "application/json", 400, "finite", id="nan"
        ),
        pytest.param(
            b'{"transactions": [{"Time": Infinity}]}', "application/json", 400, "finite", id="inf"
        ),
        pytest.param(
            b'{"transactions": [', "application/json", 400, "Invalid JSON", id="truncated-json"
        ),
        pytest.param(b"not json at all", "application/json", 400, "Invalid JSON", id="not-json"),
        pytest.param(
            b"\x80\x04K\x01.", "application/vnd.bentoml+pickle", 415, "pickle", id="pickle"
        ),
        pytest.param(
            b'{"transactions": []}',
            "multipart/form-data",
            415,
            "multipart",
            id="multipart-without-boundary",
        ),
        pytest.param(
            b"transactions=1", "application/x-www-form-urlencoded", 415, "json", id="form"
        ),
    ],
)
def test_malformed_bodies_are_4xx(
    server: RunningServer, raw: bytes, content_type: str, status: int, text: str
) -> None:
    response = httpx.post(
        f"{server.url}/predict", content=raw, headers={"Content-Type": content_type}, timeout=30
    )
    assert response.status_code == status, response.text
    assert text in response.text
    assert httpx.post(f"{server.url}/predict", json={"transactions": [GOOD]}).status_code == 200


def test_too_many_rows_is_a_400(trained_store: Path, tmp_path: Path) -> None:
    from tests.conftest import start_server

    running = start_server(trained_store, tmp_path, "mlp", FRAUD_MAX_ROWS="5", FRAUD_DRIFT_LOG="0")
    try:
        ok = httpx.post(
            f"{running.url}/predict", json={"transactions": transactions(5)}, timeout=30
        )
        assert ok.status_code == 200
        too_many = httpx.post(
            f"{running.url}/predict", json={"transactions": transactions(6)}, timeout=30
        )
        assert too_many.status_code == 400
        assert "transactions" in too_many.text and "at most 5" in too_many.text
        drift_log = tmp_path / "monitoring" / "fraud_transactions"
        assert not drift_log.exists(), "FRAUD_DRIFT_LOG=0 must write no drift log"
    finally:
        running.server.stop()


def test_missing_model_fails_at_start_naming_tag_and_command(tmp_path: Path) -> None:
    output = failed_start_output(tmp_path / "empty_home", "distilbert")
    assert "fraud-distilbert:latest" in output
    assert "python -m training model=distilbert" in output


def test_serving_path_imports_no_training_stack(trained_store: Path) -> None:
    code = (
        # The drift monitor (Evidently) is imported when a worker starts, not with the module.
        "import sys, service, fraud_detection.drift.monitor; "
        "heavy = ('torch', 'hydra', 'wandb', 'lightning', 'transformers', 'shap', 'numba'); "
        "bad = [m for m in heavy if m in sys.modules]; "
        "print(bad); sys.exit(1 if bad else 0)"
    )
    env = {**os.environ, "BENTOML_HOME": str(trained_store)}
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_explain_answers_scores_with_additive_attributions(
    server: RunningServer, client: bentoml.SyncHTTPClient
) -> None:
    rows = transactions(5)
    explained = client.explain(transactions=rows)
    predicted = client.predict(transactions=rows)
    assert len(explained) == len(rows)
    for explanation, prediction in zip(explained, predicted, strict=True):
        assert explanation["fraud_probability"] == pytest.approx(
            prediction["fraud_probability"], abs=1e-6
        )
        assert explanation["is_fraud"] == prediction["is_fraud"]
        assert explanation["model"] == STORE_NAMES[server.kind]
        assert set(explanation["shap_values"]) == set(FEATURE_NAMES)
        total = explanation["base_value"] + sum(explanation["shap_values"].values())
        assert total == pytest.approx(explanation["logit"], abs=1e-4)
        p = explanation["fraud_probability"]
        assert 1 / (1 + np.exp(-explanation["logit"])) == pytest.approx(p, abs=1e-6)
        reasons = explanation["reasons"]
        assert [r["contribution"] for r in reasons] == [
            explanation["shap_values"][r["feature"]] for r in reasons
        ]


@pytest.mark.parametrize(
    ("body", "named"),
    [
        ({"transactions": []}, "transactions"),
        ({"transactions": [{**transactions(1)[0], "V7": "high"}]}, "V7"),
        (
            {"transactions": [{k: v for k, v in transactions(1)[0].items() if k != "Amount"}]},
            "Amount",
        ),
    ],
)
def test_bad_explain_bodies_are_400_naming_the_field(
    server: RunningServer, body: dict, named: str
) -> None:
    response = httpx.post(f"{server.url}/explain", json=body, timeout=30)
    assert response.status_code == 400, response.text
    assert named in response.text


def test_explain_row_limit_is_a_400(trained_store: Path, tmp_path: Path) -> None:
    from tests.conftest import start_server

    running = start_server(trained_store, tmp_path, "mlp", FRAUD_EXPLAIN_MAX_ROWS="3")
    try:
        ok = httpx.post(
            f"{running.url}/explain", json={"transactions": transactions(3)}, timeout=60
        )
        assert ok.status_code == 200, ok.text
        too_many = httpx.post(
            f"{running.url}/explain", json={"transactions": transactions(4)}, timeout=30
        )
        assert too_many.status_code == 400
        assert "transactions" in too_many.text and "at most 3" in too_many.text
        # /predict keeps its own, larger limit.
        assert (
            httpx.post(
                f"{running.url}/predict", json={"transactions": transactions(4)}, timeout=30
            ).status_code
            == 200
        )
    finally:
        running.server.stop()


def test_root_leads_to_the_console_and_docs_moves(server: RunningServer) -> None:
    root = httpx.get(f"{server.url}/", timeout=10)
    assert root.status_code == 307 and root.headers["location"] == "/ui/"
    page = httpx.get(f"{server.url}/ui/", timeout=10)
    assert page.status_code == 200 and "Fraud console" in page.text
    config = httpx.get(f"{server.url}/ui/config.json", timeout=10).json()
    assert config["features"] == list(FEATURE_NAMES)
    assert config["max_rows"] == 10_000 and config["explain_max_rows"] == 100
    plotly_js = httpx.get(f"{server.url}/ui/plotly.min.js", timeout=10)
    assert plotly_js.status_code == 200 and len(plotly_js.content) > 1_000_000
    docs = httpx.get(f"{server.url}/docs", timeout=10)
    assert docs.status_code == 200 and "swagger-ui" in docs.text
    assert httpx.get(f"{server.url}/ui/nothing-here", timeout=10).status_code == 404
