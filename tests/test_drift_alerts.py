"""The alert rules and Cloud Monitoring policies parse and watch metrics the service exports."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from fraud_detection.drift.metrics import drift_metrics
from tests.conftest import REPO

MONITORING = REPO / "deploy/monitoring"
POLICIES = sorted(MONITORING.glob("cloud-monitoring-*.json"))


def rule_expressions() -> list[str]:
    rules = yaml.safe_load((MONITORING / "prometheus-rules.yaml").read_text())
    return [r["expr"] for group in rules["spec"]["groups"] for r in group["rules"]]


def policy_queries() -> list[str]:
    return [
        c["conditionPrometheusQueryLanguage"]["query"]
        for path in POLICIES
        for c in json.loads(path.read_text())["conditions"]
    ]


def referenced_metrics(expressions: list[str]) -> set[str]:
    return {m for e in expressions for m in re.findall(r"\bfraud_[a-z_]+\b", e)}


def exported_metrics() -> set[str]:
    """Names as scraped: prometheus_client adds ``_total`` to counters."""
    names = set()
    for m in vars(drift_metrics()).values():
        names.add(m._name + "_total" if m._type == "counter" else m._name)
    return names


def test_rules_and_policies_watch_exported_metrics() -> None:
    assert POLICIES, "no Cloud Monitoring policy files"
    for expressions in (rule_expressions(), policy_queries()):
        used = referenced_metrics(expressions)
        assert used and used <= exported_metrics(), used - exported_metrics()
    assert {"fraud_drift_detected", "fraud_predicted_fraud_rate"} <= referenced_metrics(
        policy_queries()
    )


@pytest.mark.parametrize("path", POLICIES, ids=lambda p: p.name)
def test_policy_is_a_promql_alert_policy(path: Path) -> None:
    policy = json.loads(path.read_text())
    assert policy["displayName"] and policy["combiner"] in {"OR", "AND"}
    for condition in policy["conditions"]:
        promql = condition["conditionPrometheusQueryLanguage"]
        assert re.fullmatch(r"\d+s", promql["duration"]), promql
        assert promql["alertRule"] and promql["ruleGroup"]
    assert f"--policy-from-file=deploy/monitoring/{path.name}" in policy["documentation"]["content"]


def test_promtool_accepts_the_rules(tmp_path: Path) -> None:
    if shutil.which("promtool") is None:
        pytest.skip("promtool is not installed")
    rules = yaml.safe_load((MONITORING / "prometheus-rules.yaml").read_text())
    plain = tmp_path / "rules.yaml"
    plain.write_text(yaml.safe_dump(rules["spec"]))
    subprocess.run(["promtool", "check", "rules", str(plain)], check=True)
