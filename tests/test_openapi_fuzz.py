"""Schemathesis against the service's own OpenAPI document: no 5xx, no off-schema response."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import httpx

from fraud_detection.api_models import EXAMPLE_TRANSACTION
from tests.conftest import start_server


def test_schemathesis_finds_no_server_error_or_schema_violation(
    trained_store: Path, tmp_path: Path
) -> None:
    # The CLI installed next to this interpreter (the dev extra), not whatever is on PATH.
    cli = Path(sys.executable).parent / "schemathesis"
    assert cli.exists(), "schemathesis is a dev dependency: pip install -e '.[dev]'"
    running = start_server(trained_store, tmp_path, "mlp")
    try:
        # The first /explain imports shap and compiles its numba code (~12 s on 2 cores, by
        # design: a service nobody asks for explanations never pays it); the fuzzer's
        # 10-second timeout is for the answers after it.
        warm = httpx.post(
            f"{running.url}/explain", json={"transactions": [EXAMPLE_TRANSACTION]}, timeout=120
        )
        assert warm.status_code == 200, warm.text
        documented = httpx.get(f"{running.url}/docs.json", timeout=30).json()["paths"]
        assert {"/feedback", "/performance", "/review", "/review/{transaction_id}"} <= set(
            documented
        ), "the routes served outside BentoML's API are documented, so they are fuzzed"
        result = subprocess.run(
            [
                cli,
                "run",
                f"{running.url}/docs.json",
                "--checks",
                "not_a_server_error,response_schema_conformance",
                "--max-examples",
                "150",
                "--seed",
                "7",
            ],
            capture_output=True,
            text=True,
            timeout=600,
        )
    finally:
        running.server.stop()
    assert result.returncode == 0, result.stdout[-4000:]
    assert "No issues found" in result.stdout
    operations = sum(len(methods) for methods in documented.values())
    tested = re.search(r"Tested: (\d+)", result.stdout)
    assert tested is not None and int(tested[1]) == operations, "every operation was fuzzed"
