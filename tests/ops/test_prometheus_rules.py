"""The shipped Prometheus rules: valid (`promtool check`), unit-tested (`promtool test rules`), the plan's
thresholds."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml
from _ops_helpers import DEPLOY

RULES = DEPLOY / "prometheus" / "rules.yml"


def _tool(promtool: str, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([promtool, *args], capture_output=True, text=True, timeout=120, cwd=cwd, check=False)


def test_rules_and_config_are_valid(promtool: str) -> None:
    res = _tool(promtool, "check", "rules", str(RULES))
    assert res.returncode == 0 and "SUCCESS: 30 rules found" in res.stdout, res.stdout + res.stderr
    res = _tool(promtool, "check", "config", str(DEPLOY / "prometheus" / "prometheus.yml"))
    assert res.returncode == 0, res.stdout + res.stderr


@pytest.mark.slow
def test_rule_unit_tests_pass(promtool: str) -> None:
    res = _tool(promtool, "test", "rules", "rules_test.yml", cwd=DEPLOY / "prometheus")
    assert res.returncode == 0 and "SUCCESS" in res.stdout, res.stdout + res.stderr


@pytest.mark.slow
def test_a_wrong_threshold_fails_the_unit_tests(promtool: str, tmp_path: Path) -> None:
    (tmp_path / "rules.yml").write_text(RULES.read_text().replace("router_rl:error_ratio:rate5m > 0.05",
                                                                  "router_rl:error_ratio:rate5m > 0.15"))
    (tmp_path / "rules_test.yml").write_text((DEPLOY / "prometheus" / "rules_test.yml").read_text())
    res = _tool(promtool, "test", "rules", "rules_test.yml", cwd=tmp_path)
    assert res.returncode != 0 and "RouterErrorRateCritical" in res.stdout + res.stderr


def test_alerts_carry_the_plans_thresholds_and_severities() -> None:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    alerts = {r["alert"]: r for g in groups for r in g["rules"] if "alert" in r}
    expected = {
        "RouterQualityCritical": ("critical", "router_rl:quality_ratio:1h < 0.90"),
        "RouterQualityWarning": ("warning", "router_rl:quality_ratio:1h < 0.95 and router_rl:quality_ratio:1h >= 0.90"),
        "RouterUptimeCritical": ("critical", "router_rl:router_uptime:1d < 0.99"),
        "ProviderUptimeCritical": ("critical", "router_rl:provider_uptime:1d < 0.99"),
        "RouterErrorRateCritical": ("critical", "router_rl:error_ratio:rate5m > 0.05"),
        "RouterLatencyP95Warning": ("warning", "router_rl:latency_p95:5m > 5"),
        "RouterFallbackWarning": ("warning", "router_rl:fallback_ratio:rate5m > 0.05"),
    }
    for name, (severity, expr) in expected.items():
        assert alerts[name]["labels"]["severity"] == severity and alerts[name]["expr"] == expr, name
    info = ("RouterNewModel", "RouterNewStrategy", "RouterNewPolicyVersion")
    assert {alerts[n]["labels"]["severity"] for n in info} == {"info"}
    assert len(alerts) == len(expected) + 3
