"""Serving modules without a server: settings, provider choice, request-to-array conversion."""

from __future__ import annotations

import numpy as np
import pytest
from pydantic import ValidationError

from fraud_detection.api_models import EXAMPLE_TRANSACTION
from fraud_detection.api_models import Transaction
from fraud_detection.api_models import transactions_to_array
from fraud_detection.schema import FEATURE_NAMES
from fraud_detection.scorer import select_providers
from fraud_detection.settings import ServingSettings


def test_settings_defaults_and_overrides() -> None:
    assert ServingSettings.from_env({}) == ServingSettings()
    settings = ServingSettings.from_env(
        {"FRAUD_MODEL": "distilbert", "FRAUD_MAX_BATCH_SIZE": "64", "FRAUD_DRIFT_LOG": "0"}
    )
    assert settings.model_tag == "fraud-distilbert:latest"
    assert settings.max_batch_size == 64 and settings.drift_log is False


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({"FRAUD_MODEL": "xgboost"}, "FRAUD_MODEL='xgboost'"),
        ({"FRAUD_MAX_ROWS": "many"}, "FRAUD_MAX_ROWS='many'"),
        ({"FRAUD_MAX_LATENCY_MS": "0"}, "FRAUD_MAX_LATENCY_MS must be >= 1"),
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
