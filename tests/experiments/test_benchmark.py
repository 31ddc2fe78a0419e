"""experiments/benchmark.py: quick runs write complete, reproducible results."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
COLUMNS = (
    "quality_ratio", "cost_share", "cost_share_at_95", "op_test_cost_share", "op_test_quality_ratio",
    "aiq", "apgr", "local_share", "oracle_gap",
)


@pytest.fixture(scope="module")
def bench(load_script: Any) -> ModuleType:
    """The benchmark script imported by path (it is a script, not a package module)."""
    return load_script("experiments/benchmark.py")


def _row(summary: dict, dataset: str, policy: str) -> dict:
    (row,) = [r for r in summary["results"] if r["dataset"] == dataset and r["policy"] == policy]
    return row


@pytest.mark.slow
def test_quick_simulated_writes_every_field(bench: ModuleType, tmp_path: Path) -> None:
    summary = bench.main(["--quick", "--sim-tasks", "1000", "--out-dir", str(tmp_path)])
    data = json.loads((tmp_path / "benchmark_quick.json").read_text())
    assert data["schema_version"] == 1
    assert data["failures"] == [], data["failures"]
    assert data["args"]["seeds"] == [0, 1] and data["args"]["datasets"] == ["simulated"]
    assert {r["policy"] for r in data["results"]} == set(bench.POLICIES)
    for r in data["results"]:
        assert r["n_seeds"] == 2 and set(r["per_seed"]) == {"0", "1"}
        for key in ("quality_ratio", "cost_share", "aiq", "local_share", "oracle_gap"):
            cell = r["metrics"][key]
            assert cell["n"] == 2 and cell["lo"] <= cell["mean"] <= cell["hi"], (r["policy"], key, cell)
        assert set(COLUMNS) <= set(r["metrics"]), r["policy"]
    # utility routers have a λ sweep, hence frontier and calibrated operating point
    for pol in ("lgbm", "knn", "mf"):
        m = _row(data, "simulated", pol)["metrics"]
        assert m["cost_share_at_95"] is not None or m["op_test_cost_share"] is not None
        assert m["apgr"] is not None
    # numbers that must hold by construction
    single = _row(data, "simulated", "single")["metrics"]
    assert single["quality_ratio"]["mean"] == pytest.approx(1.0) and single["cost_share"]["mean"] == pytest.approx(1.0)
    cheap = _row(data, "simulated", "cheapest")["metrics"]
    assert cheap["cost_share"]["mean"] < 0.2 and cheap["local_share"]["mean"] == 1.0
    oracle = _row(data, "simulated", "oracle")["metrics"]
    assert oracle["oracle_gap"]["mean"] == pytest.approx(0.0)
    for r in data["results"]:
        assert r["metrics"]["quality_ratio"]["mean"] <= oracle["quality_ratio"]["mean"] + 1e-9, r["policy"]
    assert _row(data, "simulated", "lgbm")["metrics"]["aiq"]["mean"] > _row(data, "simulated", "random")["metrics"][
        "aiq"
    ]["mean"]
    # per-seed values aggregate to the reported mean
    lg = _row(data, "simulated", "lgbm")
    vals = [lg["per_seed"][s]["quality_ratio"] for s in ("0", "1")]
    assert lg["metrics"]["quality_ratio"]["mean"] == pytest.approx(sum(vals) / 2, rel=1e-5)  # 6 digits stored
    md = (tmp_path / "benchmark_quick.md").read_text()
    assert "## simulated" in md and "| lgbm |" in md and "Independence gates" in md and "None: every policy" in md
    # lgbm vs mf on AIQ, paired by seed (columns: vs knn, vs mlp, vs mf)
    mf = _row(data, "simulated", "mf")
    d = [lg["per_seed"][s]["aiq"] - mf["per_seed"][s]["aiq"] for s in ("0", "1")]
    row = next(line for line in md.splitlines() if line.startswith("| simulated |")).split("|")
    assert row[4].strip().startswith(f"{sum(d) / 2:+.3f} ± ") and f"({sum(x > 0 for x in d)}/2)" in row[4]
    assert summary["results"] == data["results"]


@pytest.mark.slow
def test_same_seed_same_results(bench: ModuleType) -> None:
    args = bench.parse_args(["--quick", "--sim-tasks", "600", "--policies", "lgbm", "knn", "random", "cascade"])
    a = bench.run_job("simulated", 3, args)
    b = bench.run_job("simulated", 3, args)
    c = bench.run_job("simulated", 4, args)
    assert a["failures"] == [] and set(a["policies"]) == {"lgbm", "knn", "random", "cascade"}
    for k in ("policies", "single_models", "oracle", "notes", "reference_model"):
        assert a[k] == b[k], k
    assert a["policies"] != c["policies"]


def test_failing_policy_is_listed_not_hidden(bench: ModuleType, tmp_path: Path) -> None:
    summary = bench.main(
        ["--quick", "--sim-tasks", "500", "--seeds", "0", "--policies", "random", "nosuchpolicy", "--out-dir",
         str(tmp_path)]
    )
    (fail,) = summary["failures"]
    assert fail["policy"] == "nosuchpolicy" and fail["stage"] == "fit" and "unknown policy" in fail["error"]
    assert _row(summary, "simulated", "random")["n_seeds"] == 1
    assert _row(summary, "simulated", "nosuchpolicy")["n_seeds"] == 0
    md = (tmp_path / "benchmark_quick.md").read_text()
    assert "`nosuchpolicy` (fit)" in md and "failed in every seed" in md


def test_args_validation_and_quick_overrides(bench: ModuleType) -> None:
    with pytest.raises(SystemExit, match="--datasets: unknown"):
        bench.parse_args(["--datasets", "nope"])
    with pytest.raises(SystemExit, match="--preset"):
        bench.parse_args(["--preset", "fast"])
    a = bench.parse_args(["--quick", "--seeds", "7", "--policies", "rule"])
    assert a.seeds == [7] and a.policies == ["rules"] and a.preset == "quick" and a.sim_tasks == 1500
    full = bench.parse_args([])
    assert full.datasets == list(bench.DATASETS) and len(full.seeds) >= 5 and full.address == ""
    for bad, why in (("{", "Expecting"), ("[1]", "expected a JSON object"), ('{"num_leafs": 3}', "num_leafs")):
        with pytest.raises(SystemExit, match=f"--lgbm-config: .*{why}"):
            bench.parse_args(["--lgbm-config", bad])


def test_lgbm_config_variant_reaches_the_fitted_policy(bench: ModuleType) -> None:
    variant = '{"linear_stack": true, "num_leaves": 5}'
    args = bench.parse_args(["--quick", "--sim-tasks", "400", "--lgbm-config", variant])
    splits = bench.load_splits("simulated", 0, args)
    from router_rl.eval.runner import default_features

    feats = default_features(splits.train)
    pol = bench.build_policy("lgbm", splits, feats, 0, args.preset, args.lgbm_config)
    assert pol.config.linear_stack is True and pol.config.num_leaves == 5
    assert pol.config.num_boost_round == bench.PRESETS["quick"]["lgbm"]["config"]["num_boost_round"]  # preset kept
    assert pol.metadata["metrics"]["linear_stack"] is True
    assert bench.build_policy("lgbm", splits, feats, 0, args.preset).config.linear_stack is None  # default untouched


def test_t_interval(bench: ModuleType) -> None:
    ci = bench.t_interval([1.0, 2.0, 3.0])
    assert ci["mean"] == pytest.approx(2.0) and ci["n"] == 3
    assert ci["hi"] - ci["mean"] == pytest.approx(4.302652729911275 / 3**0.5)
    assert bench.t_interval([5.0]) == {"mean": 5.0, "lo": 5.0, "hi": 5.0, "n": 1}


@pytest.mark.slow
@pytest.mark.data
def test_quick_routerbench_task(bench: ModuleType, datasets_root: Path, tmp_path: Path) -> None:
    pols = ["lgbm", "knn", "random", "cheapest", "single", "oracle"]
    summary = bench.main(
        ["--quick", "--datasets", "routerbench_mbpp", "--policies", *pols, "--out-dir", str(tmp_path)]
    )
    assert summary["failures"] == []
    info = summary["datasets"]["routerbench_mbpp"]
    notes = info["notes"]["0"]
    assert notes["dropped"] == {"quality_missing": 154, "task_column_inconsistent": 154}
    assert notes["removed_tasks"] == 14
    assert sum(notes["n_tasks"].values()) == 427  # only MBPP tasks
    assert set(info["reference_model"].values()) == {"gpt-4-1106-preview"}
    lg = _row(summary, "routerbench_mbpp", "lgbm")["metrics"]
    assert set(COLUMNS) <= set(lg) and lg["aiq"]["n"] == 2
    # fixed RouterBench test split: deterministic baselines do not vary with the seed
    ch = _row(summary, "routerbench_mbpp", "cheapest")["metrics"]["cost_share"]
    assert ch["lo"] == pytest.approx(ch["hi"])
    md = (tmp_path / "benchmark_quick.md").read_text()
    assert "RouterBench targets" in md and "| mbpp | <= 20% | 29.0% |" in md


@pytest.mark.slow
@pytest.mark.ray
def test_ray_local_matches_in_process(bench: ModuleType, tmp_path: Path, ray_joined: Any) -> None:
    """``--address local`` on a Ray that is already up (the session's head) uses it and leaves it running."""
    import ray

    flags = ["--quick", "--sim-tasks", "500", "--seeds", "0", "1", "--policies", "lgbm", "random", "single"]
    local = bench.main([*flags, "--out-dir", str(tmp_path / "local")])
    ray_run = bench.main([*flags, "--address", "local", "--out-dir", str(tmp_path / "ray")])
    assert ray_run["failures"] == [] and ray_run["args"]["address"] == "local"
    assert ray_run["results"] == local["results"]
    assert ray_run["datasets"] == local["datasets"]
    assert ray.is_initialized()


def test_script_entry_point_runs_without_ray(tmp_path: Path) -> None:
    import subprocess

    code = (
        "import runpy, sys\n"
        f"sys.argv = ['benchmark.py', '--quick', '--sim-tasks', '300', '--seeds', '0', '--policies', 'random',"
        f" 'single', '--out-dir', {str(tmp_path)!r}]\n"
        "runpy.run_path('experiments/benchmark.py', run_name='__main__')\n"
        "assert 'ray' not in sys.modules, 'the in-process run must not import ray'\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    data = json.loads((tmp_path / "benchmark_quick.json").read_text())
    assert {r["policy"] for r in data["results"]} == {"random", "single"}
    assert data["run"]["command"].endswith("--out-dir " + str(tmp_path))
