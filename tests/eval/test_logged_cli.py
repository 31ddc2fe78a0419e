"""``router-rl ope`` through typer's CliRunner on a simulated, joined router log."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from _logged_helpers import joined_sim_log
from typer.testing import CliRunner

from router_rl.cli.main import app

runner = CliRunner()
FAST = ["--n-bootstrap", "50", "--folds", "2", "--reward-model-param", "pca_components=8"]


@pytest.fixture(scope="module")
def logdir(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A LightGBM logger (saved) exploring 10% on a 300-task fleet: 800 joined decisions, 10% failing over."""
    from router_rl.features import EncoderConfig, FeatureEncoder
    from router_rl.logs.simulate import LogSimulationConfig
    from router_rl.policies import make_policy

    d = tmp_path_factory.mktemp("ope_cli")
    m, tr, _, table, _ = joined_sim_log(
        d, n_tasks=300, fleet_seed=5, num_boost_round=20, early_stopping_rounds=5, n=800, epsilon=0.1, log_seed=2,
        log_config=LogSimulationConfig(feedback_rate=0.9, fallback_rate=0.1),
    )
    table.drop("action_locations").write_parquet(d / "no_locations.parquet")
    foreign = make_policy("random", m.models)
    foreign.attach_encoder(FeatureEncoder(EncoderConfig(n_word_hash=32).restricted_to(tr.tasks.columns)).fit(tr.tasks))
    foreign.save(d / "foreign")
    return {
        "dir": d,
        "log": str(d / "logged.parquet"),
        "models": m.models,
        "n_labeled": int(table["quality"].is_not_null().sum()),
    }


def test_ope_prints_every_estimator_and_writes_json(logdir: dict[str, Any]) -> None:
    d = logdir["dir"]
    out = d / "ope.json"
    res = runner.invoke(
        app,
        ["ope", "--log", logdir["log"], "--policies", str(d / "logger"), "random", "--json", str(out), *FAST],
    )
    assert res.exit_code == 0, res.output
    text = res.output
    assert f"log: 800 decisions ({logdir['n_labeled']} labeled), 7 models" in text
    for metric in ("quality", "cost_usd", "local_share", "utility"):
        assert f"{metric} (value and difference vs logged, 95% intervals)" in text
    for est in ("dm", "ips", "snips", "dr", "switch_dr", "on_policy", "exact"):
        assert est in text
    assert "importance weights and support (propensity < 0.001)" in text
    assert f"wrote {out}" in text
    rep = json.loads(out.read_text())
    assert rep["schema_version"] == 1
    assert list(rep["policies"]) == ["logger", "random"]
    assert rep["policies"]["logger"]["kind"] == "lgbm" and rep["policies"]["logger"]["spec"] == str(d / "logger")
    assert rep["reward_models"]["quality"] == {
        "kind": "lightgbm",
        "folds": 2,
        "params": {**rep["reward_models"]["quality"]["params"], "pca_components": 8},
        "seed": 0,
    }
    assert rep["config"]["n_bootstrap"] == 50 and rep["config"]["incumbent"] == "logged"
    q = rep["policies"]["random"]["metrics"]["quality"]
    assert q["n"] == logdir["n_labeled"] and q["n_excluded"] == 800 - logdir["n_labeled"]
    assert q["difference"]["dr"]["lower"] <= q["difference"]["dr"]["value"] <= q["difference"]["dr"]["upper"]
    assert rep["policies"]["random"]["weights"]["max_weight"] > 1
    assert rep["policies"]["random"]["support"]["group_by"] == ["category", "complexity"]
    assert rep["warnings"] == []


def test_fallback_rows_are_credited_to_the_chosen_model(logdir: dict[str, Any]) -> None:
    import numpy as np
    import polars as pl

    d, model = logdir["dir"], logdir["models"][1]
    out = d / "fb.json"
    res = runner.invoke(app, ["ope", "--log", logdir["log"], "-p", f"single:model={model}", "--json", str(out), *FAST])
    assert res.exit_code == 0, res.output
    rep = json.loads(out.read_text())
    t = pl.read_parquet(logdir["log"])
    assert rep["log"]["n_fallback"] == int(t["fallback_used"].sum()) > 0
    lab = t.filter(pl.col("quality").is_not_null())
    chosen = (lab["chosen_model"] == model).to_numpy()
    w = np.where(chosen, 1.0 / lab["propensity"].to_numpy(), 0.0)
    ips = rep["policies"][f"single:model={model}"]["metrics"]["quality"]["estimates"]["ips"]["value"]
    assert ips == pytest.approx(float((w * lab["quality"].to_numpy()).mean()))
    assert (t["chosen_model"] != t["outcome_model"]).sum() > 0  # the fallbacks really answered with another model


def test_ope_against_another_incumbent_and_support_warning(logdir: dict[str, Any]) -> None:
    d = logdir["dir"]
    out = d / "inc.json"
    single = f"single:model={logdir['models'][0]}"
    res = runner.invoke(
        app,
        [
            "ope", "--log", logdir["log"], "-p", single, "-p", "random", "--incumbent", "random",
            "--support-threshold", "0.05", "--json", str(out), *FAST,
        ],
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    assert "value and difference vs random" in res.output
    assert f"warning: {single}:" in res.output and "IPS/SNIPS/DR are biased there" in res.output
    rep = json.loads(out.read_text())
    assert rep["incumbent"] == {"name": "random", "metrics": None}
    assert rep["policies"]["random"]["metrics"]["quality"]["difference"] is None
    assert rep["policies"][single]["support"]["violated"] is True


@pytest.mark.parametrize(
    ("extra", "flag", "needle"),
    [
        (["--incumbent", "nope"], "--incumbent", "expected 'logged' or one of the policies"),
        (["--folds", "1"], "--folds", "folds"),
        (["--reward-model", "forest"], "--reward-model", "reward_model"),
        (["--alpha", "2"], "--alpha", "alpha"),
        (["--reward-model-param", "seed=3"], "--reward-model-param", "set from `seed`"),
        (["--reward-model-param", "oops"], "--reward-model-param", "expected KEY=VALUE"),
    ],
)
def test_bad_settings_name_the_flag(logdir: dict[str, Any], extra: list[str], flag: str, needle: str) -> None:
    res = runner.invoke(app, ["ope", "--log", logdir["log"], "-p", "random", *FAST, *extra])
    assert res.exit_code == 2, res.output
    flat = " ".join(res.output.split())
    assert f"Invalid value for {flag}:" in flat and needle in flat
    assert "Traceback" not in res.output


def test_bad_inputs_name_the_flag(logdir: dict[str, Any], tmp_path: Path) -> None:
    d = logdir["dir"]
    cases = [
        (["--log", str(tmp_path / "missing.parquet"), "-p", "random"], "--log", "does not exist"),
        (["--log", str(d / "no_locations.parquet"), "-p", "random"], "--log", "action_locations"),
        (["--log", logdir["log"], "-p", "lgbm"], "--policies", "can be built from a log alone"),
        (["--log", logdir["log"], "-p", str(d / "foreign")], "--policies", "was trained with feature encoder"),
        (["--log", logdir["log"], "-p", "single"], "--policies", "give the model"),
    ]
    for args, flag, needle in cases:
        res = runner.invoke(app, ["ope", *args, *FAST])
        flat = " ".join(res.output.split())
        assert res.exit_code == 2 and f"Invalid value for {flag}:" in flat and needle in flat, res.output
