"""A new user's own long CSV through the documented CLI: import -> info -> train -> route -> evaluate
-> report -> benchmark, and one test per error message a user met on the way (issue #19)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import polars as pl
import pytest
from typer.testing import CliRunner, Result

from router_rl.cli.main import app
from router_rl.policies import RoutingPolicy
from router_rl.traces import load_traces

ROOT = Path(__file__).resolve().parents[2]
runner = CliRunner()
#: A small LightGBM: the tests check the path, not the router's quality.
LGBM_OPT = 'config={"num_boost_round": 10, "early_stopping_rounds": 5, "cv_folds": 2}'


def _ok(res: Result) -> str:
    assert res.exit_code == 0, res.output
    assert "Traceback" not in res.output
    return res.output


def _fails(res: Result, flag: str) -> str:
    """The command failed with click's one-line error naming ``flag``; returns that line."""
    assert res.exit_code != 0, res.output
    assert "Traceback" not in res.output and not isinstance(res.exception, KeyError | ValueError), res.output
    (line,) = [ln for ln in res.output.splitlines() if ln.startswith("Error:")]
    assert flag in line, line
    return line


def _train(traces: Path, out: Path, *extra: str) -> str:
    return _ok(runner.invoke(app, ["train", "--policy", "lightgbm", "-o", str(out), "--traces", str(traces),
                                   "--opt", LGBM_OPT, *extra]))


# --- the whole path ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("variant", "kw"),
    [
        ("repo_only", {}),
        ("prompt_split", {"prompt": True, "split": True}),
        ("prices", {"prices": True, "prompt": True}),
    ],
)
def test_whole_path_on_a_users_long_csv(
    variant: str, kw: dict[str, bool], long_csv: Callable[..., Path], tmp_path: Path
) -> None:
    src = long_csv(f"{variant}.csv", **kw)
    traces = tmp_path / f"{variant}.parquet"
    out = _ok(runner.invoke(app, ["traces", "import", "long", str(src), "-o", str(traces)]))
    assert "kept 1000/1000 rows, 200 tasks" in out
    ts = load_traces(traces)
    counts = dict(ts.matrix().tasks["split"].value_counts().iter_rows())
    if kw.get("split"):  # train/test kept from the file, val = 10% of train carved (seeded)
        assert counts == {"train": 144, "val": 16, "test": 40}
        assert "carved 16 of 160 train tasks (10%, seed 0) as val" in out
    else:
        assert counts == {"train": 140, "val": 20, "test": 40}
    if kw.get("prices"):
        assert ts.catalog["gpt-4o"].usd_per_m_input == 2.5 and ts.catalog["gpt-4o"].usd_per_m_output == 10.0
        assert ts.catalog["llama-3-8b"].location == "local"
        assert "api_calls" in ts.outcomes.columns and "api_calls" not in ts.matrix().tasks.columns
        assert "usd_per_m_input" not in ts.outcomes.columns
        assert "per-call outcome columns (not task features): ['api_calls']" in out

    info = _ok(runner.invoke(app, ["traces", "info", str(traces)]))
    assert "200 tasks, 5 models" in info and "best single model:" in info and "oracle:" in info
    if kw.get("prices"):
        assert "api_calls" in info

    pol_dir = tmp_path / "runs" / "lgbm"  # a folder named like the registered policy
    out = _train(traces, pol_dir)
    assert "quality_ratio" in out and "quality_share" not in out
    pol = RoutingPolicy.load(pol_dir)
    assert "repo" in pol.encoder.config.categorical_columns  # the user's task column is a feature

    out = _ok(runner.invoke(app, ["route", "--policy", str(pol_dir), "--prompt", "fix the test",
                                  "--feature", "repo=org/repo3"]))
    assert "chosen:" in out
    line = _fails(runner.invoke(app, ["route", "--policy", str(pol_dir), "--prompt", "x", "--feature", "team=qa"]),
                  "--feature")
    assert "'team' is not a feature of this policy" in line and "'repo'" in line

    _ok(runner.invoke(app, ["evaluate", "-t", str(traces), "-p", str(pol_dir), "-p", "knn", "-p", "random",
                            "--n-bootstrap", "20", "--json", str(tmp_path / "e.json")]))
    data = json.loads((tmp_path / "e.json").read_text())
    assert {str(pol_dir), "knn", "random"} <= set(data["policies"])  # the folder is keyed by its path
    assert data["n_tasks"] == 40

    rep_dir = tmp_path / "report"
    out = _ok(runner.invoke(app, ["report", "-t", str(traces), "-p", str(pol_dir), "-p", "cheapest",
                                  "--n-bootstrap", "20", "-o", str(rep_dir)]))
    assert (rep_dir / "report.md").exists() and "wrote" in out


def test_benchmark_takes_a_trace_file_by_path(long_csv: Callable[..., Path], tmp_path: Path) -> None:
    src = long_csv("bench.csv", prompt=True, split=True)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "experiments/benchmark.py", "--datasets", str(src), "--preset", "quick", "--seeds", "0",
           "1", "--policies", "lightgbm", "knn", "random", "--n-bootstrap", "20", "--out-dir", str(tmp_path)]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    data = json.loads((tmp_path / "benchmark.json").read_text())
    assert data["failures"] == [] and data["args"]["datasets"] == [str(src.resolve())]
    rows = {r["policy"]: r for r in data["results"]}
    assert set(rows) == {"lgbm", "knn", "random"} and all(r["n_seeds"] == 2 for r in rows.values())
    notes = data["datasets"][str(src.resolve())]["notes"]["0"]
    assert notes["n_tasks"] == {"train": 144, "val": 16, "test": 40}  # the file's split; val carved
    assert 0.0 < rows["lgbm"]["metrics"]["mean_quality"]["mean"] <= 1.0


def test_benchmark_refuses_what_is_neither_a_name_nor_a_file(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "experiments/benchmark.py", "--datasets", str(tmp_path / "no.parquet")],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    assert "--datasets: unknown" in proc.stderr and "existing trace files" in proc.stderr


# --- the error messages of the issue, one test each ---------------------------------------------------
def test_train_and_demo_carve_a_missing_val_with_a_message(long_csv: Callable[..., Path], tmp_path: Path) -> None:
    src = long_csv("tt.csv", split=True)
    traces = tmp_path / "tt.parquet"  # an old-style file: train/test only, no val
    ts = load_traces(src)
    ts.outcomes = ts.outcomes.with_columns(pl.when(pl.col("split") == "val").then(pl.lit("train"))
                                           .otherwise(pl.col("split")).alias("split"))
    ts.save(traces)
    out = _train(traces, tmp_path / "p")
    assert "no task in split 'val': carved 16 of 160 train tasks (10%, seed 0) as val" in out
    assert "lightgbm on validation (16 tasks)" in out
    out = _ok(runner.invoke(app, ["demo", "-t", str(traces), "--n-bootstrap", "20", "-o", str(tmp_path / "demo")]))
    assert "carved 16 of 160 train tasks" in out and "policy artifact:" in out


def test_missing_test_split_fails_in_one_line_with_the_fix(tmp_path: Path) -> None:
    from router_rl.traces import simulate_fleet

    ts = simulate_fleet(150, seed=0)
    ts.outcomes = ts.outcomes.with_columns(pl.lit("train").alias("split"))
    traces = tmp_path / "all_train.parquet"
    ts.save(traces)
    line = _fails(runner.invoke(app, ["evaluate", "-t", str(traces), "-p", "random", "--n-bootstrap", "10"]),
                  "--traces")
    assert "no task in split 'test'" in line and "--split-column none --split train=0.7,val=0.1,test=0.2" in line


def test_import_split_flags(long_csv: Callable[..., Path], tmp_path: Path) -> None:
    src = long_csv("s.csv", split=True)
    out = tmp_path / "o.parquet"
    _ok(runner.invoke(app, ["traces", "import", "long", str(src), "-o", str(out), "--split-column", "none",
                            "--split", "train=0.5,val=0.25,test=0.25", "--seed", "3"]))
    ts = load_traces(out)
    assert dict(ts.matrix().tasks["split"].value_counts().iter_rows()) == {"train": 100, "val": 50, "test": 50}
    assert ts.meta["split_spec"] == {"fractions": [0.5, 0.25, 0.25], "column": "none"}
    line = _fails(runner.invoke(app, ["traces", "import", "long", str(src), "-o", str(out), "--split", "tr=1"]),
                  "--split")
    assert "train=0.7,val=0.1,test=0.2" in line
    line = _fails(runner.invoke(app, ["traces", "import", "long", str(src), "-o", str(out), "--split",
                                      "train=0.5,test=0.2"]), "--split")
    assert "sum to 1" in line
    res = runner.invoke(app, ["traces", "import", "long", str(src), "-o", str(out), "--split-column", "fold"])
    assert res.exit_code == 1 and "split column 'fold' (--split-column) not found" in res.output
    line = _fails(runner.invoke(app, ["traces", "import", "routerbench", str(src), "-o", str(out), "--catalog",
                                      str(src)]), "--catalog")
    assert "only the 'long' importer" in line


def test_per_model_price_columns_and_a_catalog_file(long_csv: Callable[..., Path], tmp_path: Path) -> None:
    src = long_csv("p.csv", prices=True)
    cat = tmp_path / "catalog.yaml"
    cat.write_text("models:\n  - {model: llama-3-8b, provider: vllm, gpu_usd_per_hour: 1.2, tokens_per_s: 60,"
                   " context_window: 32768}\n  - {model: unknown-model, location: cloud}\n")
    out = tmp_path / "o.parquet"
    text = _ok(runner.invoke(app, ["traces", "import", "long", str(src), "-o", str(out), "--catalog", str(cat)]))
    assert "lists models absent from the data (ignored): ['unknown-model']" in text
    c = load_traces(out).catalog
    assert c["llama-3-8b"].gpu_usd_per_hour == 1.2 and c["llama-3-8b"].tokens_per_s == 60.0
    assert c["llama-3-8b"].context_window == 32768 and c["gpt-4o"].usd_per_m_input == 2.5
    # a catalog value the file contradicts is an error naming both
    bad = tmp_path / "bad.csv"
    bad.write_text("model,usd_per_m_input\ngpt-4o,3.0\n")
    res = runner.invoke(app, ["traces", "import", "long", str(src), "-o", str(out), "--catalog", str(bad)])
    assert res.exit_code == 1 and "usd_per_m_input=2.5 in the file but 3.0 in the catalog" in res.output


def test_inconsistent_task_column_names_the_column_and_the_flags(tmp_path: Path) -> None:
    src = tmp_path / "inc.csv"
    pl.DataFrame({"task_id": ["a", "a", "b", "b"], "model": ["gpt-4o", "llama-3-8b"] * 2,
                  "quality": [1.0, 0.0, 1.0, 1.0], "cost_usd": [0.1, 0.0, 0.1, 0.0],
                  "judge": ["x", "y", "x", "x"]}).write_csv(src)
    out = tmp_path / "o.parquet"
    res = runner.invoke(app, ["traces", "import", "long", str(src), "-o", str(out)])
    assert res.exit_code == 1 and "affected column(s) ['judge']" in res.output
    assert "--drop-invalid" in res.output and "--cell-column NAME" in res.output
    assert "pass drop_invalid=True" not in res.output
    res = runner.invoke(app, ["traces", "import", "long", str(src), "-o", str(out), "--drop-invalid"])
    assert res.exit_code == 0, res.output
    assert "task_column_inconsistent=2 (columns judge)" in res.output  # the dropped task, with its column
    _ok(runner.invoke(app, ["traces", "import", "long", str(src), "-o", str(out), "--cell-column", "judge"]))
    ts = load_traces(out)
    assert ts.n_tasks == 2 and "judge" not in ts.matrix().tasks.columns


def test_evaluate_and_report_take_drop_invalid(tmp_path: Path) -> None:
    from router_rl.traces import simulate_fleet

    df = simulate_fleet(150, seed=1).outcomes.drop("split", "gt_p_success", "gt_p_error", "gt_expected_quality",
                                                  strict=False)
    df = df.with_columns(pl.when(pl.int_range(pl.len()) == 3).then(1.5).otherwise(pl.col("quality")).alias("quality"))
    src = tmp_path / "dirty.csv"
    df.write_csv(src)
    res = runner.invoke(app, ["evaluate", "-t", str(src), "-p", "random", "--n-bootstrap", "10"])
    line = _fails(res, "--traces")
    assert "[quality_range]" in line and "--drop-invalid" in line
    out = _ok(runner.invoke(app, ["evaluate", "-t", str(src), "-p", "random", "--n-bootstrap", "10",
                                  "--drop-invalid"]))
    assert "quality_range=1" in out and "Offline evaluation on test" in out
    _ok(runner.invoke(app, ["report", "-t", str(src), "-p", "random", "--n-bootstrap", "10", "--drop-invalid",
                            "-o", str(tmp_path / "r")]))


def test_unknown_policy_is_one_line_and_lightgbm_is_an_alias(tmp_path: Path) -> None:
    line = _fails(runner.invoke(app, ["train", "--policy", "xgboost", "-o", str(tmp_path / "x"), "--n-tasks", "200"]),
                  "--policy")
    assert "unknown policy 'xgboost'" in line and "'lgbm'" in line and "lightgbm=lgbm" in line
    line = _fails(runner.invoke(app, ["evaluate", "-t", str(tmp_path / "none.parquet"), "-p", "random"]), "--traces")
    assert "none.parquet" in line
    from router_rl.traces import simulate_fleet

    traces = tmp_path / "sim.parquet"
    simulate_fleet(150, seed=0).save(traces)
    line = _fails(runner.invoke(app, ["evaluate", "-t", str(traces), "-p", "xgboost"]), "--policies")
    assert "unknown policy 'xgboost'" in line and "lightgbm=lgbm" in line
    line = _fails(runner.invoke(app, ["train", "--policy", "knn", "-o", str(tmp_path / "k"), "--traces", str(traces),
                                      "--opt", "k=-1"]), "--opt")
    assert "k" in line
    line = _fails(runner.invoke(app, ["train", "--policy", "knn", "-o", str(tmp_path / "k"), "--traces", str(traces),
                                      "--target", "qualty=0.9"]), "--target")
    line = _fails(runner.invoke(app, ["route", "--policy", str(tmp_path), "--prompt", "hi"]), "--policy")
    assert "not a policy artifact" in line
    line = _fails(runner.invoke(app, ["evaluate", "-t", str(traces), "-p", "random", "--split", "dev"]), "--split")


def test_artifact_folder_named_like_a_policy_and_the_oracle_row_once(tmp_path: Path) -> None:
    from router_rl.traces import simulate_fleet

    traces = tmp_path / "sim.parquet"
    simulate_fleet(200, seed=0).save(traces)
    _ok(runner.invoke(app, ["train", "--policy", "knn", "-o", str(tmp_path / "knn"), "--traces", str(traces)]))
    js = tmp_path / "e.json"
    out = _ok(runner.invoke(app, ["evaluate", "-t", str(traces), "-p", str(tmp_path / "knn"), "-p", "knn", "-p",
                                  "oracle", "--n-bootstrap", "10", "--json", str(js)]))
    assert set(json.loads(js.read_text())["policies"]) == {str(tmp_path / "knn"), "knn", "oracle"}
    lines = [ln.strip() for ln in out.splitlines()]
    n_oracle = sum(ln == "policy: oracle" or ln.startswith("│ oracle ") for ln in lines)
    assert n_oracle == 1, out
    line = _fails(runner.invoke(app, ["evaluate", "-t", str(traces), "-p", "knn", "-p", "knn"]), "--policies")
    assert "given twice" in line


def test_import_help_lists_the_kinds() -> None:
    out = " ".join(_ok(runner.invoke(app, ["traces", "import", "--help"])).split())
    assert "KIND is one of: long" in out
    for kind in ("routerbench", "llmrouter", "routerdc", "bfcl", "llmperf", "--split", "--split-column", "--catalog"):
        assert kind in out


def test_info_of_a_csv_says_what_the_import_did(long_csv: Callable[..., Path], tmp_path: Path) -> None:
    src = long_csv("i.csv", prices=True, split=True)
    out = _ok(runner.invoke(app, ["traces", "info", str(src)]))
    assert "note: per-call outcome columns (not task features): ['api_calls']" in out
    assert "note: no task in 'val': carved 16 of 160 train tasks (10%, seed 0) as val" in out
    df = pl.read_csv(src).with_columns(pl.when(pl.int_range(pl.len()) == 0).then(-1.0).otherwise(pl.col("cost_usd"))
                                       .alias("cost_usd"))
    df.write_csv(src)
    res = runner.invoke(app, ["traces", "info", str(src)])
    assert res.exit_code == 1 and "[cost_negative]" in res.output and "--drop-invalid" in res.output
    out = _ok(runner.invoke(app, ["traces", "info", str(src), "--drop-invalid"]))
    assert "199 tasks" in out and "cost_negative=1" in out
