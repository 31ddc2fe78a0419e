"""``router-rl federated`` (registered on a fresh Typer app; in-process loop)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from router_rl.cli.federated import register


@pytest.mark.slow
@pytest.mark.federated
def test_federated_cli_in_process(tmp_path: Path) -> None:
    app = typer.Typer()
    register(app)

    @app.command("noop")
    def _noop() -> None:  # a second command keeps "federated" a sub-command
        pass

    out = tmp_path / "fed"
    res = CliRunner().invoke(app, ["federated", "--out", str(out), "--agents", "test-generator,code-reviewer",
                                   "--rounds", "1"])
    assert res.exit_code == 0, res.output
    assert (out / "global_adapter" / "adapter_config.json").is_file()
    rounds = json.loads((out / "metrics.json").read_text())["rounds"]
    assert [r["round"] for r in rounds] == [0, 1]
    assert rounds[1]["eval_loss"] < rounds[0]["eval_loss"]
    seconds = json.loads((out / "metrics.json").read_text())["round_seconds"]
    assert list(seconds) == ["1"] and seconds["1"] > 0  # round 1's wall time (train + aggregate + evaluate)


def test_federated_cli_bad_agent_names_the_field(tmp_path: Path) -> None:
    app = typer.Typer()
    register(app)

    @app.command("noop")
    def _noop() -> None:
        pass

    res = CliRunner().invoke(app, ["federated", "--out", str(tmp_path), "--base-model", str(tmp_path),
                                   "--agents", "nope"])
    assert res.exit_code != 0
    assert "agent_types" in res.output


# --- strategy / SecAgg+ / DP flags and --config (the real `router-rl` app) -------------------------

def _main_app() -> typer.Typer:
    from router_rl.cli.main import app

    return app


def _one_line_error(res: object, flag: str) -> str:
    """The command failed with click's one-line error naming ``flag``; returns that line."""
    out = res.output  # type: ignore[attr-defined]
    assert res.exit_code != 0, out  # type: ignore[attr-defined]
    assert "Traceback" not in out, out
    (line,) = [ln for ln in out.splitlines() if ln.startswith("Error:")]
    assert flag in line, line
    return line


@pytest.mark.cli
@pytest.mark.parametrize(("argv", "flag", "says"), [
    (["--runner", "ray"], "--runner", "auto, in-process, grid, flower"),
    (["--strategy", "fedsgd"], "--strategy", "fedavg, fedprox, fedadam, fedyogi"),
    (["--runner", "in-process", "--strategy", "fedyogi"], "--runner", "FedAvg / FedProx only"),
    (["--runner", "in-process", "--dp"], "--runner", "DP need"),
    (["--agents", "test-generator,code-reviewer", "--secagg"], "--secagg", "at least 3 sampled clients"),
    (["--proximal-mu", "0.1"], "--proximal-mu", "only used with strategy='fedprox'"),
    (["--dp", "--dp-noise-multiplier", "-1"], "--dp-noise-multiplier", "greater than 0"),
])
def test_federated_flags_fail_in_one_line_naming_the_flag(tmp_path: Path, argv: list[str], flag: str,
                                                          says: str) -> None:
    res = CliRunner().invoke(_main_app(), ["federated", "--out", str(tmp_path / "o"), *argv])
    line = _one_line_error(res, flag)
    assert says in line
    assert not (tmp_path / "o" / "metrics.json").exists()


@pytest.mark.cli
def test_a_malformed_config_file_is_one_line_naming_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "pyproject.toml"
    bad.write_text('[tool.flwr.app.config]\nstrategy = "fedavg"\nnum-rounds = 0\n')
    line = _one_line_error(CliRunner().invoke(_main_app(), ["federated", "--out", str(tmp_path / "o"),
                                                            "--config", str(bad)]), "--rounds")
    assert str(bad) in " ".join(line.split()) or "pyproject.toml" in line
    bad.write_text("[tool.flwr.app.config\n")
    _one_line_error(CliRunner().invoke(_main_app(), ["federated", "--out", str(tmp_path / "o"),
                                                     "--config", str(bad)]), "--config")
    bad.write_text('[tool.flwr.app.config]\nstrategie = "fedavg"\n')
    assert "strategie" in _one_line_error(CliRunner().invoke(_main_app(), [
        "federated", "--out", str(tmp_path / "o"), "--config", str(bad)]), "--config")


@pytest.mark.slow
@pytest.mark.federated
def test_dp_and_secagg_flags_run_flowers_workflow_and_report_the_privacy_spent(tmp_path: Path) -> None:
    out = tmp_path / "fed"
    res = CliRunner().invoke(_main_app(), [
        "federated", "--out", str(out), "--rounds", "2", "--secagg", "--dp", "--dp-noise-multiplier", "0.8",
        "--dp-clipping-norm", "0.5", "--strategy", "fedadam"])
    assert res.exit_code == 0, res.output
    text = " ".join(res.output.split())
    assert "runner: grid (auto: strategy fedadam, SecAgg+, DP need Flower's workflow)" in text
    assert "strategy fedadam, SecAgg+ on, DP on" in text
    metrics = json.loads((out / "metrics.json").read_text())
    privacy = metrics["privacy"]
    assert privacy["noise_multiplier"] == 0.8 and privacy["clipping_norm"] == 0.5 and privacy["rounds"] == 2
    assert f"privacy spent: epsilon {privacy['epsilon']:.4g} at delta 1e-05 over 2 rounds" in text
    # more noise, less privacy spent (the figure is the accountant's, not a constant)
    res2 = CliRunner().invoke(_main_app(), [
        "federated", "--out", str(tmp_path / "fed2"), "--rounds", "2", "--dp", "--dp-noise-multiplier", "1.6",
        "--runner", "grid"])
    assert res2.exit_code == 0, res2.output
    assert "runner: grid (as asked)" in " ".join(res2.output.split())
    eps2 = json.loads((tmp_path / "fed2" / "metrics.json").read_text())["privacy"]["epsilon"]
    assert 0 < eps2 < privacy["epsilon"]


@pytest.mark.slow
@pytest.mark.federated
def test_config_file_settings_apply_and_flags_override_them(tmp_path: Path) -> None:
    cfg = tmp_path / "pyproject.toml"
    cfg.write_text('[tool.flwr.app.config]\nagent-types = "test-generator,code-reviewer"\nnum-rounds = 3\n'
                   'strategy = "fedprox"\nproximal-mu = 0.5\nmax-local-steps = 3\nn-tasks = 120\n'
                   'max-length = 48\nlr = 0.02\n')
    out = tmp_path / "fed"
    res = CliRunner().invoke(_main_app(), ["federated", "--out", str(out), "--config", str(cfg), "--rounds", "1"])
    assert res.exit_code == 0, res.output
    assert "runner: in-process (auto); strategy fedprox" in " ".join(res.output.split())
    metrics = json.loads((out / "metrics.json").read_text())
    assert [r["round"] for r in metrics["rounds"]] == [0, 1]  # --rounds 1 overrode the file's 3
    assert metrics["config"]["proximal_mu"] == 0.5 and metrics["config"]["agent_types"] == [
        "test-generator", "code-reviewer"]
