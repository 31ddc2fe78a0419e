"""``router-rl envs ...`` commands through the real typer app."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from router_rl.cli.main import app

runner = CliRunner()


def test_envs_list_and_show() -> None:
    res = runner.invoke(app, ["envs", "list"], env={"COLUMNS": "250"})
    assert res.exit_code == 0, res.output
    assert "router_rl/sim-bandit-v0" in res.output and "router_rl/bfcl-budgeted-v0" in res.output
    res = runner.invoke(app, ["envs", "show", "sim-budgeted"])
    assert res.exit_code == 0 and "on_exceed: forced_cheapest" in res.output


@pytest.mark.slow  # first SB3 (torch) import in a fresh process takes several seconds
def test_envs_check_and_rollout() -> None:
    res = runner.invoke(app, ["envs", "check", "sim-bandit"], env={"COLUMNS": "200"})
    assert res.exit_code == 0, res.output
    assert "0 warnings" in res.output
    res = runner.invoke(app, ["envs", "rollout", "sim-bandit", "--policy", "model:claude-sonnet-4.5",
                              "--episodes", "2"], env={"COLUMNS": "200"})
    assert res.exit_code == 0, res.output
    assert "sim-bandit [test] policy=model:claude-sonnet-4.5: return" in res.output
    bad = runner.invoke(app, ["envs", "rollout", "sim-bandit", "--policy", "model:gpt-9"])
    assert bad.exit_code != 0 and "unknown model 'gpt-9'" in bad.output


def test_demo_sequential_prints_both_experiments() -> None:
    res = runner.invoke(app, ["envs", "demo-sequential"], env={"COLUMNS": "200"})
    assert res.exit_code == 0, res.output
    assert "22.00" in res.output and "38.00" in res.output
