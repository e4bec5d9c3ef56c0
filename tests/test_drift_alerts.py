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
from fraud_detection.performance.metrics import performance_metrics
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
    performance = performance_metrics()
    metrics = [
        *vars(drift_metrics()).values(),
        *performance.model_gauges.values(),
        *(m for k, m in vars(performance).items() if k != "model_gauges"),
    ]
    return {m._name + "_total" if m._type == "counter" else m._name for m in metrics}


def test_rules_and_policies_watch_exported_metrics() -> None:
    assert POLICIES, "no Cloud Monitoring policy files"
    for expressions in (rule_expressions(), policy_queries()):
        used = referenced_metrics(expressions)
        assert used and used <= exported_metrics(), used - exported_metrics()
    assert {
        "fraud_drift_detected",
        "fraud_predicted_fraud_rate",
        "fraud_online_recall_alert",
    } <= referenced_metrics(policy_queries())


@pytest.mark.parametrize("path", POLICIES, ids=lambda p: p.name)
def test_policy_is_a_promql_alert_policy(path: Path) -> None:
    policy = json.loads(path.read_text())
    assert policy["displayName"] and policy["combiner"] in {"OR", "AND"}
    for condition in policy["conditions"]:
        promql = condition["conditionPrometheusQueryLanguage"]
        assert re.fullmatch(r"\d+s", promql["duration"]), promql
        assert promql["alertRule"] and promql["ruleGroup"]
    assert f"--policy-from-file=deploy/monitoring/{path.name}" in policy["documentation"]["content"]


def plain_rules(tmp_path: Path) -> Path:
    """The rule groups as a plain Prometheus rule file (what promtool reads)."""
    if shutil.which("promtool") is None:
        pytest.skip("promtool is not installed (apt-get install prometheus; .ci/run does)")
    rules = yaml.safe_load((MONITORING / "prometheus-rules.yaml").read_text())
    plain = tmp_path / "rules.yaml"
    plain.write_text(yaml.safe_dump(rules["spec"]))
    return plain


def test_promtool_accepts_the_rules(tmp_path: Path) -> None:
    subprocess.run(["promtool", "check", "rules", str(plain_rules(tmp_path))], check=True)


RECALL_ALERT_TEST = """
rule_files: [rules.yaml]
evaluation_interval: 1m
tests:
  - interval: 1m
    input_series:
      - series: 'fraud_online_recall_alert{role="champion",model="fraud-mlp:v1"}'
        values: '0x30 1x120'
      - series: 'fraud_online_recall_alert{role="challenger",model="fraud-distilbert:v2"}'
        values: '1x150'
    alert_rule_test:
      - eval_time: 80m
        alertname: FraudChampionRecallBelowValidation
        exp_alerts: []
      - eval_time: 100m
        alertname: FraudChampionRecallBelowValidation
        exp_alerts:
          - exp_labels: {severity: critical, model: "fraud-mlp:v1"}
            exp_annotations:
              summary: fraud-mlp:v1 catches fewer frauds than it did on validation
              description: >-
                Recall on labelled live transactions is below validation recall minus the
                margin. Compare with the challenger in GET /performance (paired), and see
                make promote for the evidence on the same transactions.
"""


def test_the_recall_alert_fires_after_an_hour_for_the_champion_only(tmp_path: Path) -> None:
    plain_rules(tmp_path)
    (tmp_path / "test.yaml").write_text(RECALL_ALERT_TEST)
    done = subprocess.run(
        ["promtool", "test", "rules", "test.yaml"], cwd=tmp_path, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stdout + done.stderr
