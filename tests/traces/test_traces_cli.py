"""``router-rl traces`` commands through typer's CliRunner."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest
from typer.testing import CliRunner

from router_rl.cli.main import app
from router_rl.traces import load_traces

runner = CliRunner()


def test_simulate_then_info(tmp_path: Path) -> None:
    out = tmp_path / "sim.parquet"
    res = runner.invoke(app, ["traces", "simulate", "-o", str(out), "--n-tasks", "120", "--seed", "4"])
    assert res.exit_code == 0, res.output
    ts = load_traces(out)
    assert ts.n_tasks == 120 and ts.meta["seed"] == 4
    res = runner.invoke(app, ["traces", "info", str(out)])
    assert res.exit_code == 0, res.output
    assert "120 tasks, 7 models" in res.output
    assert "claude-sonnet-4.5" in res.output and "best single model:" in res.output and "oracle:" in res.output


def test_import_long_and_bad_file(tmp_path: Path) -> None:
    src = tmp_path / "in.csv"
    pl.DataFrame({"task_id": ["a", "a"], "model": ["gpt-4o", "llama-3-8b"], "quality": [1.0, 2.0],
                  "cost_usd": [0.1, 0.0]}).write_csv(src)
    out = tmp_path / "o.parquet"
    res = runner.invoke(app, ["traces", "import", "long", str(src), "-o", str(out)])
    assert res.exit_code == 1
    assert "in.csv" in res.output and "quality" in res.output and "[quality_range]" in res.output
    assert not out.exists()
    res = runner.invoke(app, ["traces", "import", "long", str(src), "-o", str(out), "--drop-invalid"])
    assert res.exit_code == 1  # the only task is dropped: an empty trace set is an error
    flat = " ".join(res.output.split())  # rich wraps long lines
    assert "no valid rows left" in flat and "kept 0/2 rows" in flat


def test_unknown_kind(tmp_path: Path) -> None:
    res = runner.invoke(app, ["traces", "import", "nope", str(tmp_path), "-o", str(tmp_path / "x.parquet")])
    assert res.exit_code != 0 and "unknown kind" in res.output


@pytest.mark.data
def test_import_real_dataset(datasets_root: Path, tmp_path: Path) -> None:
    out = tmp_path / "rb.parquet"
    path = str(datasets_root / "routerbench-subset-via-routerdc")
    res = runner.invoke(app, ["traces", "import", "routerbench", path, "-o", str(out)])
    assert res.exit_code == 1 and "quality_missing" in res.output and "drop_invalid" in res.output
    res = runner.invoke(app, ["traces", "import", "routerbench", path, "-o", str(out), "--drop-invalid", "--seed", "1"])
    assert res.exit_code == 0, res.output
    assert "kept 34650/34958 rows" in " ".join(res.output.split())
    assert load_traces(out).meta["split_seed"] == 1
    lp = tmp_path / "lp.parquet"
    res = runner.invoke(app, ["traces", "import", "llmperf", str(datasets_root / "llmperf-provider-latency"),
                              "-o", str(lp)])
    assert res.exit_code == 0, res.output
    assert pl.read_parquet(lp).height == 2845 and (tmp_path / "lp_summary.parquet").exists()
