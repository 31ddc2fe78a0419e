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
