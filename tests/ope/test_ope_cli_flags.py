"""``router-rl ope`` interval flags: --interval, --bias-allowance, --tuned-switch, --tau-grid."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from router_rl.cli.main import app

runner = CliRunner()
FAST = ["--n-bootstrap", "50", "--folds", "2", "--reward-model", "ridge"]


@pytest.fixture(scope="module")
def log_path(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A uniform-random logger (no training) with 20% exploration on a 200-task fleet: 400 joined decisions."""
    from router_rl.features import EncoderConfig, FeatureEncoder
    from router_rl.logs.join import join_logs
    from router_rl.logs.simulate import simulate_log
    from router_rl.policies import make_policy
    from router_rl.policies.exploration import ExplorationConfig
    from router_rl.traces import simulate_fleet

    d = tmp_path_factory.mktemp("ope_flags")
    fleet = simulate_fleet(200, seed=3)
    tr = fleet.matrix().split("train")
    enc = FeatureEncoder(EncoderConfig(n_word_hash=16).restricted_to(tr.tasks.columns)).fit(tr.tasks)
    logger = make_policy("random", tr.models)
    logger.attach_encoder(enc)
    log = simulate_log(fleet, logger, n=400, exploration=ExplorationConfig(epsilon=0.2), split="test", seed=1)
    log.write(d / "sim")
    table, _ = join_logs(d / "sim" / "decisions", d / "sim" / "feedback", catalog=log.catalog)
    table.write_parquet(d / "logged.parquet")
    return str(d / "logged.parquet")


def _run(log_path: str, tmp: Path, *extra: str) -> tuple[Any, dict[str, Any]]:
    out = tmp / "rep.json"
    res = runner.invoke(app, ["ope", "--log", log_path, "-p", "random", "--json", str(out), *FAST, *extra])
    assert res.exit_code == 0, res.output
    return res, json.loads(out.read_text())


@pytest.mark.cli
@pytest.mark.slow
def test_default_is_betting_and_flags_reach_the_report(log_path: str, tmp_path: Path) -> None:
    _, rep = _run(log_path, tmp_path)
    assert rep["config"]["interval"] == "betting"
    q = rep["policies"]["random"]["metrics"]["quality"]
    assert {e["interval"] for e in q["estimates"].values()} == {"betting"}
    assert {e["n_bootstrap"] for e in q["estimates"].values()} == {None}
    assert rep["incumbent"]["metrics"]["quality"]["estimates"]["on_policy"]["interval"] == "betting"
    _, rep = _run(log_path, tmp_path, "--interval", "studentized", "--no-bias-allowance")
    assert rep["config"]["interval"] == "studentized" and rep["config"]["bias_allowance"] is False
    q = rep["policies"]["random"]["metrics"]["quality"]
    assert q["estimates"]["dm"]["interval"] == "studentized" and q["estimates"]["dm"]["n_bootstrap"] == 50
    _, rep = _run(log_path, tmp_path, "--interval", "percentile")
    assert rep["policies"]["random"]["metrics"]["quality"]["estimates"]["dm"]["interval"] == "percentile+bias"


@pytest.mark.cli
@pytest.mark.slow
def test_tuned_switch_and_its_grid(log_path: str, tmp_path: Path) -> None:
    res, rep = _run(log_path, tmp_path, "--tuned-switch", "--tau-grid", "1,10,inf")
    assert rep["estimators"][-1] == "switch_dr(tuned)" and "switch_dr(tuned)" in res.output
    assert rep["config"]["tuned_switch"] is True and rep["config"]["tau_grid"] == [1.0, 10.0, None]  # inf -> null
    _, rep = _run(log_path, tmp_path)
    assert "switch_dr(tuned)" not in rep["estimators"]


@pytest.mark.cli
@pytest.mark.slow
@pytest.mark.parametrize(
    ("extra", "flag", "needle"),
    [
        (["--interval", "bca"], "--interval", "'betting', 'studentized' or 'percentile'"),
        (["--tau-grid", "1,x"], "--tau-grid", "expected comma-separated numbers"),
        (["--tau-grid", "1,-2", "--tuned-switch"], "--tau-grid", "must be >= 0"),
        (["--tau-grid", "1,10"], "--tau-grid", "given without tuned_switch"),
        (["--tau", "-1"], "--tau", "tau"),
    ],
)
def test_bad_interval_flags_name_the_flag(log_path: str, extra: list[str], flag: str, needle: str) -> None:
    res = runner.invoke(app, ["ope", "--log", log_path, "-p", "random", *FAST, *extra])
    assert res.exit_code == 2, res.output
    flat = " ".join(res.output.split())
    assert f"Invalid value for {flag}:" in flat and needle in flat, flat
    assert "Traceback" not in res.output
