"""``router-rl demo``: the README's main job, end to end on a small simulated fleet."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from router_rl.cli.main import app
from router_rl.policies import RoutingPolicy


@pytest.mark.slow
def test_demo_trains_evaluates_and_writes_report(tmp_path: Path) -> None:
    out = tmp_path / "demo"
    res = CliRunner().invoke(app, ["demo", "--n-tasks", "800", "--n-bootstrap", "20", "-o", str(out)])
    assert res.exit_code == 0, res.output
    assert "best single model" in res.output and "independence gates phase2" in res.output
    ev = json.loads((out / "evaluation.json").read_text())
    assert {"lgbm", "lgbm@local>=0.8", "cells@quality>=0.95", "rules", "cheapest"} <= set(ev["policies"])
    # both operating points put most traffic on local models (the locality term); the first screen
    # names each point's calibration and the gate that binds before the big table
    assert ev["policies"]["lgbm@local>=0.8"]["metrics"]["local_share"] > 0.6
    # the mission point (80 validation tasks here: a noisy floor) still sends a real share local
    assert ev["policies"]["lgbm"]["metrics"]["local_share"] > 0.2
    assert ev["policies"]["lgbm"]["deployed"]["decision"]["nu"] > 0
    first = res.output.index("Operating points")
    assert first < res.output.index("Offline evaluation on test")
    assert "lgbm (quality>=0.95: λ=" in res.output and " binds at " in res.output
    assert (out / "report" / "report.md").is_file()
    pol = RoutingPolicy.load(out / "policy")
    assert pol.kind == "lgbm" and pol.encoder is not None
