"""``router-rl policies|promote|rollback`` via typer's CliRunner: exit codes, the printed numbers, one-line errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import FAST_GATE
from typer.testing import CliRunner

from router_rl.cli.main import app

runner = CliRunner()
pytestmark = pytest.mark.cli


@pytest.fixture()
def gate_file(tmp_path: Path) -> Path:
    p = tmp_path / "gate.yaml"
    p.write_text(yaml.safe_dump(FAST_GATE))
    return p


def _flat(text: str) -> str:
    return " ".join(text.split())


@pytest.mark.slow
def test_promote_refuse_show_list_rollback(world: dict[str, Any], tmp_path: Path, gate_file: Path) -> None:
    reg = tmp_path / "reg"
    base = ["promote", "--registry", str(reg), "--log", str(world["log"]), "--gate", str(gate_file)]
    res = runner.invoke(app, [*base, "--candidate", str(world["paths"]["good"]), "--json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.output)
    assert out["version"] == "v0001" and out["action"] == "set_live" and out["incumbent"] == "logged"
    assert out["verdict"]["passed"] is True and out["log"]["n_rows"] == 2000
    res = runner.invoke(app, [*base, "--candidate", str(world["paths"]["cheapest"])])
    assert res.exit_code == 1, res.output
    text = res.output
    assert text.startswith("REFUSE (")
    assert "refused v0002 (registered, not live; record 000005-promotion.json):" in text
    assert "(needs > 0) FAIL" in text and "quality_ratio_lower = " in text and "(needs >= 0.95) FAIL" in text
    res = runner.invoke(app, ["policies", "list", "--registry", str(reg)])
    assert res.exit_code == 0, res.output
    lines = res.output.splitlines()
    assert lines[0].startswith(f"registry {reg}: live v0001, canary none, previous none")
    assert lines[1].split()[:3] == ["v0001", "live", "lgbm"] and lines[2].split()[:3] == ["v0002", "-", "cheapest"]
    res = runner.invoke(app, ["policies", "show", "v0002", "--registry", str(reg)])
    assert res.exit_code == 0, res.output
    assert "v0002: cheapest (-), registered" in res.output
    assert "promotion records (1 latest):" in res.output and "v0002 vs v0001: REFUSED -> refused" in res.output
    assert "why: utility_gain_lower = " in res.output and "files: 3 (sha256 ok)" in res.output
    res = runner.invoke(app, ["policies", "show", "live", "--registry", str(reg), "--json"])
    shown = json.loads(res.output)
    assert shown["version"] == "v0001" and shown["status"] == "live"
    assert [p["candidate"] for p in shown["promotions"]] == ["v0001"]
    assert [c["kind"] for c in shown["changes"]] == ["set_live"]
    res = runner.invoke(app, ["rollback", "--registry", str(reg), "--reason", "by hand"])
    assert res.exit_code == 1 and res.output.startswith("nothing rolled back: ") and "no previous version" in res.output
    from router_rl.registry import PolicyRegistry

    PolicyRegistry(reg).set_live("v0002", reason="test", actor="test")
    res = runner.invoke(app, ["rollback", "--registry", str(reg), "--reason", "quality dropped"])
    assert res.exit_code == 0 and res.output.strip() == "rolled back v0002 -> v0001 (live now v0001)"
    assert PolicyRegistry(reg).records("rollback")[-1]["reason"] == "quality dropped"


@pytest.mark.slow  # the shared `world` fixture trains LightGBM
def test_usage_errors_are_one_line_naming_the_flag(world: dict[str, Any], tmp_path: Path, gate_file: Path) -> None:
    reg = tmp_path / "reg"
    good, log = str(world["paths"]["good"]), str(world["log"])
    bad_gate = tmp_path / "bad.yaml"
    bad_gate.write_text("quality_floor: 0.9\nmin_rowz: 10\n")
    wrong_type = tmp_path / "wrong.yaml"
    wrong_type.write_text("confidence: 1.5\n")
    plain = tmp_path / "plain"
    plain.mkdir()
    (plain / "x.txt").write_text("x")
    cases = [
        (["--candidate", good, "--log", str(tmp_path / "no.parquet")], "--log", "no.parquet: no such file"),
        (["--candidate", str(tmp_path / "nodir"), "--log", log], "--candidate", "nodir: not a folder"),
        (["--candidate", str(plain), "--log", log], "--candidate", "not a loadable policy artifact"),
        (["--candidate", good, "--log", log, "--gate", str(bad_gate)], "--gate",
         "GateConfig.min_rowz: unknown setting"),
        (["--candidate", good, "--log", log, "--gate", str(wrong_type)], "--gate", "GateConfig.confidence"),
        (["--candidate", good, "--log", log, "--gate", str(tmp_path / "none.yaml")], "--gate", "cannot read"),
        (["--candidate", good, "--log", log, "--gate", str(gate_file), "--incumbent", "v0042"], "--incumbent",
         "unknown version 'v0042'"),
    ]
    for args, flag, needle in cases:
        res = runner.invoke(app, ["promote", "--registry", str(reg), *args])
        flat = _flat(res.output)
        assert res.exit_code == 2 and f"Invalid value for {flag}:" in flat and needle in flat, (args, res.output)
        assert "Traceback" not in res.output
    res = runner.invoke(app, ["promote", "--registry", str(plain), "--candidate", good, "--log", log])
    assert res.exit_code == 2 and "Invalid value for --registry:" in _flat(res.output)
    assert "not a policy registry" in _flat(res.output)
    res = runner.invoke(app, ["policies", "list", "--registry", str(tmp_path / "absent")])
    assert res.exit_code == 2 and "does not exist" in _flat(res.output)
    runner.invoke(app, ["policies", "init", "--registry", str(tmp_path / "r2")])
    res = runner.invoke(app, ["policies", "show", "v0001", "--registry", str(tmp_path / "r2")])
    assert res.exit_code == 2 and "Invalid value for VERSION:" in _flat(res.output) and "none registered" in res.output
    res = runner.invoke(app, ["policies", "register", "--registry", str(tmp_path / "r2"), "--artifact", good])
    assert res.exit_code == 0 and res.output.startswith("registered v0001 (lgbm) from ")
    res = runner.invoke(app, ["rollback", "--registry", str(tmp_path / "r2"), "--reason", "  "])
    assert res.exit_code == 2 and "Invalid value for --reason:" in _flat(res.output)


def test_help_lists_every_command() -> None:
    out = subprocess.run([sys.executable, "-m", "router_rl", "--help"], capture_output=True, text=True, check=True)
    names = {ln.split()[0] for ln in out.stdout.split("Commands:")[1].splitlines() if ln.strip()}
    assert names >= {"demo", "train", "route", "train-ppo", "evaluate", "report", "ope", "promote", "rollback",
                     "traces", "logs", "envs", "policies", "router", "serve", "federated", "engines", "judge"}
    sub = subprocess.run([sys.executable, "-m", "router_rl", "policies", "--help"], capture_output=True, text=True,
                         check=True)
    assert {"list", "show", "init", "register"} <= set(sub.stdout.split())
