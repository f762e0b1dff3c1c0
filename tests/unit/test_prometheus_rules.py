"""The alert rules, checked and unit-tested by Debian's real promtool (`make system-packages`
installs the prometheus package, whose promtool this runs)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "deploy/prometheus/near-failover.rules.yml"
RULE_TESTS = ROOT / "tests/prometheus/near-failover.test.yml"
# The alerts the issue asks for, by the name an operator sees.
ALERTS = {
    "NearFailoverNoSigner", "NearFailoverTwoSigners", "NearFailoverKickoutProjected", "NearFailoverStandbyNotReady",
    "NearFailoverLeaseStoreDown", "NearFailoverFailsafeActive", "NearFailoverPausedTooLong", "NearFailoverWatchdogDown",
}


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    binary = shutil.which("promtool")
    if binary is None:
        pytest.fail("promtool is missing: install Debian's prometheus package (`make system-packages`)")
    return subprocess.run([binary, *args], capture_output=True, text=True, timeout=120, cwd=RULE_TESTS.parent)


def rules() -> list[dict[str, object]]:
    return [rule for group in yaml.safe_load(RULES.read_text())["groups"] for rule in group["rules"]]


def test_promtool_check_rules() -> None:
    done = promtool("check", "rules", str(RULES))
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"SUCCESS: {len(rules())} rules found" in done.stdout


def test_promtool_test_rules_covers_every_alert() -> None:
    alerts = {str(rule["alert"]) for rule in rules() if "alert" in rule}
    assert alerts == ALERTS
    tested = {case["alertname"] for test in yaml.safe_load(RULE_TESTS.read_text())["tests"] for case in test.get("alert_rule_test", [])}
    assert tested == alerts, f"alerts without a promtool unit test: {alerts - tested}"
    done = promtool("test", "rules", RULE_TESTS.name)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout


def test_every_alert_says_what_to_do() -> None:
    for rule in rules():
        if "alert" in rule:
            annotations = rule["annotations"]
            assert isinstance(annotations, dict) and annotations.get("summary") and len(annotations.get("description", "")) > 80, rule["alert"]
            assert rule["labels"]["severity"] in ("warning", "critical"), rule["alert"]  # type: ignore[index]
