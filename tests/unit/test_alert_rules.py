"""The shipped alert rules and Grafana board (deploy/): promtool checks the rules and runs their
unit tests (deploy/prometheus/alerts.test.yml), every alert has a runbook in the README and in
docs/operating.md, and the board has a panel for each thing an SRE asks for. That every metric
they name exists in Ferry's real exposition: tests/integration/test_alert_metrics.py.

promtool comes with Debian's ``prometheus`` package (.ci/run installs it); without it these skip,
and with ``CI=true`` they fail.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
RULES = REPO / "deploy" / "prometheus" / "alerts.yml"
RULE_TESTS = REPO / "deploy" / "prometheus" / "alerts.test.yml"
BOARD = REPO / "deploy" / "grafana" / "ferry.json"
_METRIC = re.compile(r"\bferry_[a-z0-9_]+\b")
ALERTS = {"FerryNoLiveWorker", "FerryFailureRateHigh", "FerryConnectionPausedLong",
          "FerryConnectionThrottledLong", "FerryWebhooksFailing", "FerryQueueWaitHigh"}


def rules() -> list[dict[str, Any]]:
    return [rule for group in yaml.safe_load(RULES.read_text())["groups"] for rule in group["rules"]]


def board_exprs() -> dict[str, list[str]]:
    """Each panel's title and its queries."""
    board = json.loads(BOARD.read_text())
    return {p["title"]: [t["expr"] for t in p["targets"]] for p in board["panels"]}


def used_metrics() -> dict[str, set[str]]:
    """Every metric a rule or a panel names (a series name in PromQL: ``ferry_…``), by where."""
    found = {f"alert {r['alert']}": set(_METRIC.findall(r["expr"])) for r in rules()}
    found.update({f"panel {title}": {m for e in exprs for m in _METRIC.findall(e)}
                  for title, exprs in board_exprs().items()})
    return found


def promtool() -> str:
    found = shutil.which("promtool")
    if found is None:
        if os.environ.get("CI") == "true":
            pytest.fail("promtool is missing (Debian's prometheus package; .ci/run installs it)")
        pytest.skip("promtool not installed (apt-get install prometheus)")
    return found


def test_promtool_finds_the_rules_valid() -> None:
    checked = subprocess.run([promtool(), "check", "rules", str(RULES)], capture_output=True, text=True,
                             timeout=60)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert f"SUCCESS: {len(ALERTS)} rules found" in checked.stdout


def test_the_rules_unit_tests_pass() -> None:
    tested = subprocess.run([promtool(), "test", "rules", RULE_TESTS.name], cwd=RULE_TESTS.parent,
                            capture_output=True, text=True, timeout=60)
    assert tested.returncode == 0, tested.stdout + tested.stderr
    covered = {t["alertname"] for case in yaml.safe_load(RULE_TESTS.read_text())["tests"]
               for t in case["alert_rule_test"] if t["exp_alerts"]}
    assert covered == ALERTS, "every alert has a test in which it fires"


def test_every_alert_has_a_runbook_in_the_readme_and_in_operating() -> None:
    readme = (REPO / "README.md").read_text()
    operating = (REPO / "docs" / "operating.md").read_text()
    headings = {re.sub(r"[^a-z0-9 -]", "", h.lower()).replace(" ", "-")
                for h in re.findall(r"^#+ (.+)$", operating, re.MULTILINE)}
    assert {r["alert"] for r in rules()} == ALERTS
    for rule in rules():
        assert f"`{rule['alert']}`" in readme, f"{rule['alert']} has no line in the README's alert table"
        anchor = rule["annotations"]["runbook"].split("#", 1)[1]
        assert anchor in headings, f"{rule['alert']}: docs/operating.md has no section #{anchor}"


def test_the_board_shows_what_an_sre_asks_for() -> None:
    exprs = board_exprs()
    wanted = {"Jobs by status": "ferry_jobs", "Step latency p50 / p95 by step": "ferry_step_duration_seconds_bucket",
              "Retries and 429s by connection": "ferry_throttled_total", "Queue wait p50 / p95":
              "ferry_queue_wait_seconds_bucket", "Bytes uploaded by connection": "ferry_bytes_uploaded_total",
              "Live workers": "ferry_workers", "Webhook deliveries": "ferry_webhook_deliveries_total"}
    for title, metric in wanted.items():
        assert any(metric in e for e in exprs[title]), title
    assert all(used_metrics().values()), "every rule and panel names a Ferry metric"
