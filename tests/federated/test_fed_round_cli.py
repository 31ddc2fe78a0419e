"""``router-rl federated-round``: a scheduled SFT round over real trajectory stores (fresh Typer app)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from router_rl.cli.federated import register

pytestmark = [pytest.mark.cli, pytest.mark.federated]


def _app() -> typer.Typer:
    app = typer.Typer()
    register(app)
    return app


@pytest.mark.slow
def test_round_runs_only_when_due_and_continues_from_the_last_global_adapter(
    datasets_root: Path, tmp_path: Path
) -> None:
    from router_rl.engines.tiny import build_tiny_engine_model
    from router_rl.federated.trajectories import write_routerbench_store

    base = build_tiny_engine_model(tmp_path / "tiny", seed=0).hf_dir
    rb = datasets_root / "routerbench-subset-via-routerdc"
    write_routerbench_store(tmp_path / "arc", "arc", max_prompts=25, seed=0, dataset_dir=rb)
    write_routerbench_store(tmp_path / "wg", "winogrande", max_prompts=25, seed=0, dataset_dir=rb)
    out = tmp_path / "fed"
    args = ["federated-round", "--store", f"arc={tmp_path / 'arc'}", "--store", f"wg={tmp_path / 'wg'}",
            "--base-model", str(base), "--out", str(out), "--local-steps", "4", "--max-length", "80"]
    res = CliRunner().invoke(_app(), args)  # default --min-new 1000: not due
    assert res.exit_code == 0, res.output
    assert "round 1 not due: waiting for arc, wg" in res.output and not (out / "global_adapter").exists()

    res = CliRunner().invoke(_app(), [*args, "--min-new", "100"])
    assert res.exit_code == 0, res.output
    assert "round 1: held-out loss" in res.output
    r1 = json.loads((out / "round-1.json").read_text())["rounds"]
    state = json.loads((out / "schedule.json").read_text())
    assert [r["round"] for r in state["rounds"]] == [1] and state["rounds"][0]["result"]["eval_loss"] < \
        state["rounds"][0]["result"]["eval_loss_before"]
    # nothing new: round 2 waits
    res = CliRunner().invoke(_app(), [*args, "--min-new", "100"])
    assert "round 2 not due" in res.output
    # more trajectories arrive on both nodes: round 2 starts from round 1's global adapter
    write_routerbench_store(tmp_path / "arc", "arc", max_prompts=25, seed=5, dataset_dir=rb)
    write_routerbench_store(tmp_path / "wg", "winogrande", max_prompts=25, seed=5, dataset_dir=rb)
    res = CliRunner().invoke(_app(), [*args, "--min-new", "100"])
    assert res.exit_code == 0, res.output
    r2 = json.loads((out / "round-2.json").read_text())["rounds"]
    # round 2's "before" is evaluated with round 1's global adapter (not the initial one)
    assert r2[0]["eval_loss"] < r1[0]["eval_loss"]


def test_bad_store_flag_is_one_line_naming_the_flag(tmp_path: Path) -> None:
    runner = CliRunner(env={"COLUMNS": "400"})  # no wrapping of long paths in the error box
    res = runner.invoke(_app(), ["federated-round", "--store", "nodir", "--base-model", str(tmp_path)])
    assert res.exit_code != 0 and "--store" in res.output and "NAME=DIR" in res.output
    res = runner.invoke(_app(), ["federated-round", "--store", f"a={tmp_path / 'none'}",
                                      "--base-model", str(tmp_path)])
    assert res.exit_code != 0 and "--store" in res.output and "no decisions/ folder" in res.output
    assert "Traceback" not in res.output
