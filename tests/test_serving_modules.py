"""Serving modules without a server: settings, provider choice, request-to-array conversion."""

from __future__ import annotations

import datetime as dt
import json
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from pydantic import ValidationError

from fraud_detection.api_models import EXAMPLE_TRANSACTION
from fraud_detection.api_models import Transaction
from fraud_detection.api_models import transactions_to_array
from fraud_detection.drift_log import LOG_COLUMNS
from fraud_detection.drift_log import DriftLogFiles
from fraud_detection.drift_log import DriftLogWriter
from fraud_detection.schema import FEATURE_NAMES
from fraud_detection.schema import N_FEATURES
from fraud_detection.scorer import select_providers
from fraud_detection.settings import ServingSettings


def test_settings_defaults_and_overrides() -> None:
    assert ServingSettings.from_env({}) == ServingSettings()
    settings = ServingSettings.from_env(
        {"FRAUD_MODEL": "distilbert", "FRAUD_MAX_BATCH_SIZE": "64", "FRAUD_DRIFT_LOG": "0"}
    )
    assert settings.model_tag == "fraud-distilbert:latest"
    assert settings.max_batch_size == 64 and settings.drift_log is False
    tuned = ServingSettings.from_env(
        {"FRAUD_BATCHING": "off", "FRAUD_WORKERS": "2", "FRAUD_ACCESS_LOG": "0"}
    )
    assert (tuned.batching, tuned.workers, tuned.access_log) == (False, 2, False)
    assert tuned.service_config()["tracing"] == {"excluded_urls": "/predict"}
    traced = ServingSettings.from_env({"FRAUD_TRACING": "1"}).service_config()
    assert "tracing" not in traced and traced["workers"] == 1
    with pytest.raises(ValueError, match="FRAUD_BATCHING='maybe' is not a flag"):
        ServingSettings.from_env({"FRAUD_BATCHING": "maybe"})
    with pytest.raises(ValueError, match="FRAUD_WORKERS must be >= 1"):
        ServingSettings.from_env({"FRAUD_WORKERS": "0"})


def test_models_are_named_by_kind_or_by_stored_tag() -> None:
    pinned = ServingSettings.from_env(
        {"FRAUD_MODEL": "fraud-mlp:abc", "FRAUD_CHALLENGER": "distilbert"}
    )
    assert (pinned.model_kind, pinned.model_tag) == ("mlp", "fraud-mlp:abc")
    assert pinned.challenger_tag == "fraud-distilbert:latest"
    older = ServingSettings.from_env({"FRAUD_CHALLENGER": "fraud-mlp:older"})
    assert older.challenger_tag == "fraud-mlp:older", "an older version of the same kind"
    assert ServingSettings.from_env({}).score_db_url.endswith("monitoring/fraud_scores.sqlite3")
    pg = "postgresql://u:secret@db/fraud"
    assert ServingSettings.from_env({"FRAUD_DB_URL": pg}).score_db_url == pg
    assert "secret" not in repr(ServingSettings.from_env({"FRAUD_DB_URL": pg}))


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({"FRAUD_MODEL": "xgboost"}, "FRAUD_MODEL='xgboost'"),
        ({"FRAUD_MAX_ROWS": "many"}, "FRAUD_MAX_ROWS='many'"),
        ({"FRAUD_MAX_LATENCY_MS": "0"}, "FRAUD_MAX_LATENCY_MS must be >= 1"),
        ({"FRAUD_CHALLENGER": "fraud-xgb:v1"}, "FRAUD_CHALLENGER='fraud-xgb:v1'"),
        ({"FRAUD_CHALLENGER": "fraud-mlp"}, "FRAUD_CHALLENGER names the champion itself"),
        ({"FRAUD_CHALLENGER": "distilbert", "FRAUD_SHADOW_SHARE": "1.5"}, "FRAUD_SHADOW_SHARE"),
        ({"FRAUD_CANARY_SHARE": "0.1"}, "FRAUD_CANARY_SHARE needs a FRAUD_CHALLENGER"),
        ({"FRAUD_CHALLENGER": "distilbert", "FRAUD_SCORE_LOG": "0"}, "needs the score log"),
        ({"FRAUD_FEEDBACK_MAX_ITEMS": "0"}, "FRAUD_FEEDBACK_MAX_ITEMS must be >= 1"),
    ],
)
def test_bad_settings_name_the_variable(environ: dict[str, str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ServingSettings.from_env(environ)


def test_cuda_first_when_available_cpu_always() -> None:
    assert select_providers(["CPUExecutionProvider"]) == ["CPUExecutionProvider"]
    assert select_providers(
        ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]
    ) == ["CUDAExecutionProvider", "CPUExecutionProvider"]


def test_transactions_become_rows_in_schema_order() -> None:
    rows = [Transaction(**{**EXAMPLE_TRANSACTION, "V7": float(i)}) for i in range(3)]
    array = transactions_to_array(rows)
    assert array.dtype == np.float32 and array.shape == (3, len(FEATURE_NAMES))
    np.testing.assert_array_equal(array[:, FEATURE_NAMES.index("V7")], [0.0, 1.0, 2.0])
    assert array[0, FEATURE_NAMES.index("Amount")] == 42.5


def test_integers_are_numbers_but_strings_are_not() -> None:
    assert Transaction(**{**EXAMPLE_TRANSACTION, "Time": 7}).Time == 7.0
    with pytest.raises(ValidationError, match="Time"):
        Transaction(**{**EXAMPLE_TRANSACTION, "Time": "7"})


def test_drift_log_never_blocks_and_counts_what_it_drops(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    release = threading.Event()
    written: list[int] = []

    def slow_write(self: DriftLogWriter, batches: list) -> None:
        release.wait(10)
        written.append(sum(len(scores) for _, _, scores in batches))

    monkeypatch.setattr(DriftLogWriter, "write", slow_write)
    log = DriftLogWriter(DriftLogFiles(tmp_path), max_pending_batches=1, flush_seconds=0.01)
    rows = np.zeros((4, N_FEATURES), dtype=np.float32)
    time.sleep(0.05)
    started = time.perf_counter()
    for _ in range(5):  # the writer holds what it took, the backlog one more; the rest overflow
        log.observe(rows, np.zeros(4, dtype=np.float32))
        time.sleep(0.03)
    assert time.perf_counter() - started < 1.0, "observe must not wait for the writer"
    release.set()
    log.close()
    assert log.dropped_rows > 0
    assert sum(written) + log.dropped_rows == 5 * 4, "every row is either written or counted"


def test_drift_log_failure_is_counted_not_raised(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("a file where the log folder should be")
    log = DriftLogWriter(DriftLogFiles(tmp_path / "file" / "logs"), flush_seconds=0.05)
    log.observe(np.zeros((2, N_FEATURES), dtype=np.float32), np.zeros(2, dtype=np.float32))
    log.close()
    assert log.failures == 1 and log.written_rows == 0


def test_drift_log_writes_one_block_per_flush_interval(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    written: list[int] = []
    monkeypatch.setattr(
        DriftLogWriter,
        "write",
        lambda self, batches: written.append(sum(len(s) for _, _, s in batches)),
    )
    log = DriftLogWriter(DriftLogFiles(tmp_path), flush_seconds=0.5)
    for _ in range(20):  # single-row requests arriving within one interval
        log.observe(np.zeros((1, N_FEATURES), dtype=np.float32), np.zeros(1, dtype=np.float32))
    log.close()
    assert written == [20]


def test_drift_log_reads_back_what_it_wrote(tmp_path: Path) -> None:
    files = DriftLogFiles(tmp_path / "data")
    rng = np.random.default_rng(4)
    features, scores = rng.normal(size=(7, N_FEATURES)), rng.random(7)
    before = time.time()
    log = DriftLogWriter(files, worker=3)
    log.observe(features[:3], scores[:3])
    log.observe(features[3:], scores[3:])
    log.close()
    (path,) = files.files()
    assert path.name.startswith("rows.3.")
    assert json.loads((files.directory / "columns.json").read_text())["columns"] == list(
        LOG_COLUMNS
    )
    with path.open("ab") as out:  # a record cut short, as by a crash mid-write
        out.write(b"\0" * 17)
    frame = files.read()
    np.testing.assert_array_equal(frame[list(FEATURE_NAMES)].to_numpy(), features)
    np.testing.assert_array_equal(frame["fraud_probability"].to_numpy(), scores)
    stamps = frame["timestamp"].map(lambda t: t.timestamp())
    assert (stamps >= before - 1e-3).all() and (stamps <= time.time()).all()


def test_drift_log_keeps_the_last_days_only(tmp_path: Path) -> None:
    files = DriftLogFiles(tmp_path)
    files.prepare()
    today = dt.date(2026, 11, 29)
    for age in range(10):
        files.path(1, today - dt.timedelta(days=age)).write_bytes(b"")
    removed = files.prune(7, today)
    assert len(removed) == 3 and len(files.files()) == 7
    assert files.path(1, today - dt.timedelta(days=6)).exists()


class FlakyClient:
    """Answers 503 `busy` times, then scores; counts calls."""

    def __init__(self, busy: int, status: int = 503) -> None:
        self.busy, self.status, self.calls = busy, status, 0

    def predict(self, transactions: list[dict[str, float]]) -> list[dict[str, object]]:
        from http import HTTPStatus

        from bentoml.exceptions import BentoMLException

        self.calls += 1
        if self.calls <= self.busy:
            raise BentoMLException("busy", error_code=HTTPStatus(self.status))
        return [{"fraud_probability": 0.5} for _ in transactions]


def test_client_retries_overload_with_backoff_and_nothing_else() -> None:
    from bentoml.exceptions import BentoMLException

    from fraud_detection.client import predict_with_retry

    waits: list[float] = []
    client = FlakyClient(busy=2)
    assert predict_with_retry(client, [{}], sleep=waits.append) == [{"fraud_probability": 0.5}]
    assert client.calls == 3 and len(waits) == 2 and waits[1] > waits[0] * 0.99
    with pytest.raises(BentoMLException):
        predict_with_retry(FlakyClient(busy=9), [{}], retries=2, sleep=waits.append)
    bad_request = FlakyClient(busy=1, status=400)
    with pytest.raises(BentoMLException):
        predict_with_retry(bad_request, [{}], sleep=waits.append)
    assert bad_request.calls == 1, "a 400 is not retried"
