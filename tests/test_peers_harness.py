"""The peer comparison's pure parts: wrk parsing, the score-parity check, the report writer.

No peer venvs, servers or network: the wrk reports below are real output captured on the dev
VM (wrk 4.1 against the MLServer peer, and against a socket server that drops connections).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks.peers.measure import ParityError
from benchmarks.peers.measure import bad_body
from benchmarks.peers.measure import body
from benchmarks.peers.measure import check_parity
from benchmarks.peers.measure import parity_problems
from benchmarks.peers.measure import parse_wrk
from benchmarks.peers.measure import wrk_script
from benchmarks.peers.report import markdown
from benchmarks.peers.report import write_report
from benchmarks.peers.servers import SERVERS
from benchmarks.peers.venvs import STAMP
from benchmarks.peers.venvs import is_current
from benchmarks.peers.venvs import requirements_hash

WRK_OK = """\
Running 3s test @ http://127.0.0.1:18081/predict
  2 threads and 8 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     6.46ms    3.13ms  40.47ms   85.32%
    Req/Sec   638.97    170.34     1.14k    73.77%
  Latency Distribution
     50%    5.47ms
     75%    7.25ms
     90%   10.06ms
     99%   19.57ms
  3883 requests in 3.10s, 0.90MB read
Requests/sec:   1252.17
Transfer/sec:    297.19KB
"""

WRK_NON_2XX = """\
Running 2s test @ http://127.0.0.1:18081/predict
  2 threads and 8 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     5.60ms    2.03ms  22.35ms   82.19%
    Req/Sec   724.60    169.04     1.11k    70.00%
  Latency Distribution
     50%    5.61ms
     75%    6.52ms
     90%    7.36ms
     99%   13.63ms
  2886 requests in 2.00s, 1.51MB read
  Non-2xx or 3xx responses: 2886
Requests/sec:   1440.77
Transfer/sec:    769.70KB
"""

WRK_SOCKET_ERRORS = """\
Running 2s test @ http://127.0.0.1:18099/predict
  1 threads and 4 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     3.17ms    2.54ms  15.82ms   83.27%
    Req/Sec   546.35    115.83     0.91k    85.00%
  Latency Distribution
     50%    2.14ms
     75%    4.70ms
     90%    6.66ms
     99%   11.72ms
  1088 requests in 2.00s, 76.50KB read
  Socket errors: connect 0, read 2279, write 0, timeout 0
Requests/sec:    543.56
Transfer/sec:     38.22KB
"""

WRK_REFUSED = "unable to connect to 127.0.0.1:18081 Connection refused\n"


def test_parse_wrk_reads_rate_and_percentiles() -> None:
    r = parse_wrk(WRK_OK)
    assert r.requests == 3883
    assert r.seconds == pytest.approx(3.10)
    assert r.requests_per_s == pytest.approx(1252.17)
    assert (r.p50_ms, r.p75_ms, r.p90_ms, r.p99_ms) == pytest.approx((5.47, 7.25, 10.06, 19.57))
    assert r.errors == 0
    assert r.to_dict()["errors"] == 0


def test_parse_wrk_counts_non_2xx_and_socket_errors() -> None:
    bad = parse_wrk(WRK_NON_2XX)
    assert bad.non_2xx == 2886
    assert bad.errors == 2886
    dropped = parse_wrk(WRK_SOCKET_ERRORS)
    assert dropped.non_2xx == 0
    assert dropped.socket_errors == {"connect": 0, "read": 2279, "write": 0, "timeout": 0}
    assert dropped.errors == 2279
    assert dropped.requests_per_s == pytest.approx(543.56)


def test_parse_wrk_converts_every_unit_to_ms() -> None:
    text = (
        WRK_OK.replace("5.47ms", "456.00us")
        .replace("10.06ms", "1.50s")
        .replace("19.57ms", "2.00m")
        .replace("3.10s", "1.00m")
    )
    r = parse_wrk(text)
    assert r.p50_ms == pytest.approx(0.456)
    assert r.p90_ms == pytest.approx(1500.0)
    assert r.p99_ms == pytest.approx(120_000.0)
    assert r.seconds == pytest.approx(60.0)


@pytest.mark.parametrize(
    "text", [WRK_REFUSED, "", WRK_OK.replace("  Latency Distribution\n", "").split("     50%")[0]]
)
def test_parse_wrk_rejects_what_is_not_a_latency_report(text: str) -> None:
    with pytest.raises(ValueError):
        parse_wrk(text)


def test_wrk_script_posts_the_body_file(tmp_path: Path) -> None:
    script = wrk_script(tmp_path / "one.json")
    assert f'io.open("{tmp_path / "one.json"}", "rb")' in script
    assert 'wrk.method = "POST"' in script
    assert 'wrk.headers["Content-Type"] = "application/json"' in script


def _prediction(p: float, fraud: bool) -> dict[str, object]:
    return {"fraud_probability": p, "is_fraud": fraud, "model": "fraud-mlp", "model_version": "v1"}


REFERENCE = [_prediction(0.1, False), _prediction(0.9, True), _prediction(2.5e-6, False)]


def test_parity_accepts_differences_within_tolerance() -> None:
    answer = [dict(p) for p in REFERENCE]
    answer[0]["fraud_probability"] = 0.1 + 5e-7
    assert check_parity(REFERENCE, answer) == pytest.approx(5e-7)
    assert check_parity(REFERENCE, [dict(p) for p in REFERENCE]) == 0.0


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"fraud_probability": 0.1 + 2e-6}, "fraud_probability"),
        ({"fraud_probability": float("nan")}, "fraud_probability"),
        ({"is_fraud": True}, "is_fraud"),
        ({"is_fraud": 1}, "is_fraud"),  # a number is not the JSON boolean we answer
        ({"model_version": "v2"}, "model_version"),
    ],
)
def test_parity_rejects_a_mismatch(change: dict[str, object], expected: str) -> None:
    answer = [dict(p) for p in REFERENCE]
    answer[0].update(change)
    with pytest.raises(ParityError, match=expected):
        check_parity(REFERENCE, answer)


def test_parity_rejects_wrong_shapes() -> None:
    assert parity_problems(REFERENCE, REFERENCE[:2]) == ["2 predictions for 3 rows"]
    assert "not a JSON list" in parity_problems(REFERENCE, {"predictions": REFERENCE})[0]
    missing = [dict(p) for p in REFERENCE]
    del missing[1]["is_fraud"]
    assert parity_problems(REFERENCE, missing)[0].startswith("row 1: not a prediction object")


def test_bodies_follow_our_api() -> None:
    import numpy as np

    from benchmarks.peers.common import REQUEST
    from benchmarks.peers.common import ValidationError

    rows = np.arange(60, dtype=np.float64).reshape(2, 30)
    good = REQUEST.validate_json(body(rows))
    assert len(good.transactions) == 2
    assert good.transactions[1].Amount == 59.0
    with pytest.raises(ValidationError):
        REQUEST.validate_json(bad_body(rows[0]))
    with pytest.raises(ValidationError):  # extra fields are forbidden, as in our service
        REQUEST.validate_json(b'{"transactions": [], "extra": 1}')


def test_venv_is_current_only_with_the_same_requirements(tmp_path: Path) -> None:
    requirements = tmp_path / "requirements.txt"
    requirements.write_text("kserve==0.21.0\n")
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    (venv / "bin" / "python").touch()
    assert not is_current(venv, requirements)  # no stamp yet
    (venv / STAMP).write_text(requirements_hash(requirements) + "\n")
    assert is_current(venv, requirements)
    requirements.write_text("kserve==0.20.0\n")
    assert not is_current(venv, requirements)


def _results() -> dict[str, object]:
    wrk = parse_wrk(WRK_OK).to_dict()
    kserve = {
        "status": "ok",
        "framework": "kserve",
        "version": "0.21.0",
        "short": SERVERS["kserve"].short,
        "config": SERVERS["kserve"].config,
        "route": SERVERS["kserve"].route,
        "ready_path": SERVERS["kserve"].ready_path,
        "startup_s": 3.3,
        "parity": {"rows": 200, "max_abs_diff": 0.0, "bad_request_status": 400},
        "lone": {
            "fresh": {"requests": 300, "errors": 0, "p50_ms": 1.48, "p99_ms": 2.5, "mean_ms": 1.5},
            "after_burst": {
                "requests": 300,
                "errors": 0,
                "p50_ms": 1.61,
                "p99_ms": 2.9,
                "mean_ms": 1.7,
            },
        },
        "wrk": [{"connections": 8, **wrk}],
        "rows100": {"connections": 32, "rows_per_s": 21558.0, **wrk},
        "locust": [
            {
                "users": 8,
                "requests": 2000,
                "failures": 3,
                "failures_by_status": {"HTTP 503": 3},
                "requests_per_s": 547.0,
                "p50_ms": 14.0,
                "p99_ms": 27.0,
            }
        ],
        "rss_mb": {"total": 164.2, "largest": 164.2, "processes": 1},
    }
    torchserve = {
        "status": "skipped",
        "reason": "environment not built: pip failed",
        "framework": "torchserve",
        "short": SERVERS["torchserve"].short,
        "config": SERVERS["torchserve"].config,
        "route": SERVERS["torchserve"].route,
        "ready_path": SERVERS["torchserve"].ready_path,
    }
    return {
        "machine": {
            "host": "vm",
            "cpu": "x86_64",
            "logical_cpus": 2,
            "memory_gb": 23.4,
            "python": "3.11.7",
        },
        "started": "2026-01-01T00:00:00+00:00",
        "wall_s": 95.0,
        "reference": "OnnxScorer in the harness process",
        "settings": {
            "connections": [8],
            "wrk_seconds": 8,
            "warmup_seconds": 2,
            "burst_connections": 8,
            "after_minute": False,
            "rows100_connections": 32,
            "locust_users": [8],
            "locust_seconds": 6,
            "locust_mix": "1:0.7,4:0.1,8:0.1,16:0.1",
            "locust_mean_rows": 3.5,
            "lone_requests": 300,
            "parity_rows": 200,
            "tolerance": 1e-6,
            "data": "synthetic rows",
        },
        "servers": {"kserve": kserve, "torchserve": torchserve},
    }


def test_report_tables_hold_the_measured_figures(tmp_path: Path) -> None:
    results = _results()
    md = markdown(results)
    row = next(line for line in md.splitlines() if line.startswith("| kserve | kserve 0.21.0"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    # req/s, p50, p99, errors, lone fresh / after burst, rows/s @100, RSS
    assert cells[3:] == ["1,252", "5.5", "19.6", "0", "1.48 / 1.61", "21,558", "164 / 164"]
    locust = next(line for line in md.splitlines() if line.startswith("| kserve | 547"))
    assert [c.strip() for c in locust.strip("|").split("|")] == [
        "kserve",
        "547",
        "1,914",  # 547 req/s x 3.5 rows
        "14",
        "27",
        "3",
    ]
    assert "## wrk, 8 connections" in md
    assert "## Locust, 8 users" in md
    assert "- **torchserve** (skipped): environment not built: pip failed" in md
    assert "`/v1/models/fraud:predict`" in md

    base = write_report(results, tmp_path, "peers-test", png=False)
    assert json.loads(base.with_suffix(".json").read_text()) == results
    assert base.with_suffix(".md").read_text() == md
    assert not base.with_suffix(".png").exists()


def test_report_plot_is_written(tmp_path: Path) -> None:
    base = write_report(_results(), tmp_path, "peers-plot")
    png = base.with_suffix(".png").read_bytes()
    assert png.startswith(b"\x89PNG") and len(png) > 10_000
