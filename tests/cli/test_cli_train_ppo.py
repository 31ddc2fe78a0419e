"""``router-rl train-ppo`` and ``router-rl route`` on a PPO artifact (small, fast settings)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from router_rl.cli.main import app
from router_rl.policies import RoutingPolicy
from router_rl.policies.ppo import PPORouter

FAST = [
    "--traces", "sim", "--n-tasks", "400", "--env-opt", "horizon=30",
    "--env-opt", 'budget={"per_task_usd": 0.004}', "--timesteps", "256",
    "--opt", "n_steps=128", "--opt", "batch_size=64", "--opt", "net_arch=[16]", "--opt", "price_arch=[8]",
    "--lgbm-rounds", "15", "--eval-days", "3",
]


def _text(output: str) -> str:
    """CLI output with rich's box borders and line wrapping removed."""
    return " ".join(output.replace("│", " ").split())


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    out = tmp_path_factory.mktemp("cli_ppo") / "ppo"
    res = CliRunner().invoke(app, ["train-ppo", "-o", str(out), *FAST])
    assert res.exit_code == 0, res.output
    return out, res.output


def test_train_ppo_saves_a_loadable_artifact_and_reports_heldout_vs_base(trained: tuple[Path, str]) -> None:
    out, output = trained
    assert "held-out days (3 x 30 requests" in output and "ppo − base" in output
    assert "learned budget price" in output
    pol = RoutingPolicy.load(out)
    assert isinstance(pol, PPORouter) and pol.base is not None and pol.base.kind == "lgbm"
    assert pol.metadata["timesteps"] == 256 and pol.config.price_arch == (8,)
    held = json.loads((out / "policy.json").read_text())["metadata"]["heldout"]
    assert held["days"] == 3 and set(held) >= {"base", "ppo"}
    for side in ("base", "ppo"):
        assert held[side]["reward"] > 0 and 0.0 <= held[side]["quality"] <= 1.0
    # the artifact routes env observations like the trained router did
    X = pol.observe(np.zeros((2, pol.feature_dim), dtype=np.float32), pol.fresh_state())
    assert pol.action_distribution(X).shape == (2, pol.n_models)


def test_route_on_a_ppo_artifact_uses_a_fresh_window_state(trained: tuple[Path, str]) -> None:
    out, _ = trained
    runner = CliRunner()
    res = runner.invoke(app, ["route", "--policy", str(out), "--prompt", "write unit tests for the date parser"])
    assert res.exit_code == 0, res.output
    assert "chosen:" in res.output and "base policy:" in res.output
    assert "budget remaining 1.00, elapsed 0.00" in res.output and "budget price" in res.output
    res = runner.invoke(app, ["route", "--policy", str(out), "--prompt", "x", "--budget-remaining", "1.5"])
    assert res.exit_code != 0 and "budget_remaining_frac" in _text(res.output)


def test_train_ppo_from_a_given_base_and_clear_errors(trained: tuple[Path, str], tmp_path: Path) -> None:
    out, _ = trained
    runner = CliRunner()
    res = runner.invoke(app, ["train-ppo", "-o", str(tmp_path / "p2"), "--base", str(out / "base"), *FAST])
    assert res.exit_code == 0, res.output
    p2 = RoutingPolicy.load(tmp_path / "p2")
    assert isinstance(p2, PPORouter) and p2.base is not None
    assert p2.base.metadata["encoder_fingerprint"] == p2.metadata["encoder_fingerprint"]
    res = runner.invoke(app, ["train-ppo", "-o", str(tmp_path / "p3"), "--base", str(out), *FAST])
    assert res.exit_code != 0 and "a PPO artifact cannot be the base" in _text(res.output)
    res = runner.invoke(app, ["train-ppo", "-o", str(tmp_path / "p4"), "--env", "sim-bandit", "--timesteps", "128"])
    assert res.exit_code != 0 and "needs a 'budgeted' env spec" in _text(res.output)
    res = runner.invoke(app, ["train-ppo", "-o", str(tmp_path / "p5"), "--opt", "prior=softmax"])
    assert res.exit_code != 0 and "PPOConfig.prior" in _text(res.output)
    assert not (tmp_path / "p3").exists() and not (tmp_path / "p5").exists()
