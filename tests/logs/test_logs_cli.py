"""``router-rl traces simulate-log`` and ``router-rl logs join / info`` through typer's CliRunner."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
from typer.testing import CliRunner

from router_rl.cli.main import app
from router_rl.logs.data import load_logged
from router_rl.logs.simulate import LogSimulationConfig, simulate_log
from router_rl.logs.truth import load_truth
from router_rl.policies.base import RoutingPolicy
from router_rl.policies.exploration import ExplorationConfig
from router_rl.traces import load_traces
from router_rl.traces.traceset import TraceSet

runner = CliRunner()


def _error_line(output: str) -> str:
    lines = [ln for ln in output.splitlines() if ln.startswith("Error")]
    assert len(lines) == 1 and "Traceback" not in output, output
    return lines[0]


def test_simulate_log_join_round_trip_is_exact(tmp_path: Path, fleet: TraceSet, lgbm_policy: Any) -> None:
    traces = tmp_path / "fleet.parquet"
    fleet.save(traces)
    art = tmp_path / "policy"
    lgbm_policy.save(art)
    out = tmp_path / "log"
    res = runner.invoke(app, ["traces", "simulate-log", "--traces", str(traces), "--policy", str(art),
                              "--epsilon", "0.2", "--temperature", "1.5", "-n", "600", "--seed", "7",
                              "--fallback-rate", "0.1", "--no-answer-rate", "0.3", "--feedback-rate", "0.7",
                              "-o", str(out)])
    assert res.exit_code == 0, res.output
    assert "wrote 600 decisions" in res.output
    for name in ("decisions", "feedback", "truth.parquet", "catalog.json", "meta.json"):
        assert (out / name).exists(), name
    logged = tmp_path / "logged.parquet"
    res = runner.invoke(app, ["logs", "join", str(out / "decisions"), "--feedback", str(out / "feedback"),
                              "--catalog", str(out / "catalog.json"), "-o", str(logged), "--json"])
    assert res.exit_code == 0, res.output
    rep = json.loads(res.output)
    assert rep["rows"] == 600 and rep["rows"] == rep["labeled"] + rep["no_answer"] + rep["unlabeled"]
    # the same simulation in-process: the joined file gives exactly its arrays
    sim = simulate_log(load_traces(traces, seed=7), RoutingPolicy.load(art), n=600,
                       exploration=ExplorationConfig(epsilon=0.2, temperature=1.5), split="test", seed=7,
                       config=LogSimulationConfig(fallback_rate=0.1, no_answer_rate=0.3, feedback_rate=0.7))
    got, want = load_logged(logged), sim.logged()
    for f in ("X", "actions", "propensities", "logging_probs", "quality", "cost_usd", "latency_s",
              "outcome_actions", "fallback"):
        np.testing.assert_array_equal(getattr(got, f), getattr(want, f), err_msg=f)
    assert got.request_ids.tolist() == want.request_ids.tolist()
    assert rep["labeled"] == sim.feedback.height and rep["fallbacks"] == int(got.fallback.sum())
    truth = load_truth(out / "truth.parquet").align(got.request_ids)
    lab = got.labeled_mask
    np.testing.assert_array_equal(got.quality[lab], truth.quality[np.arange(got.n), got.actions][lab])
    res = runner.invoke(app, ["logs", "info", str(logged), "--json"])
    assert res.exit_code == 0, res.output
    info = json.loads(res.output)
    assert info["n"] == 600 and info["n_labeled"] == got.n_labeled and info["n_fallback"] == int(got.fallback.sum())


def test_simulate_fleet_with_a_rule_policy_and_the_report_table(tmp_path: Path) -> None:
    out = tmp_path / "log"
    res = runner.invoke(app, ["traces", "simulate-log", "--simulate-fleet", "150", "--policy", "rules",
                              "--epsilon", "0.3", "-n", "300", "--seed", "1", "--split", "all", "-o", str(out)])
    assert res.exit_code == 0, res.output
    meta = json.loads((out / "meta.json").read_text())
    assert meta["policy_kind"] == "rules" and meta["counts"]["decisions"] == 300 and meta["split"] is None
    res = runner.invoke(app, ["logs", "join", str(out / "decisions"), "--feedback", str(out / "feedback"),
                              "-o", str(tmp_path / "l.parquet")])
    assert res.exit_code == 0, res.output
    text = " ".join(res.output.split())
    assert "rows written" in text and "feedback sources: simulated=300" in text
    assert "wrote 300 rows to" in text


def test_flag_errors_are_one_line_naming_the_flag(tmp_path: Path) -> None:
    cases = [
        (["traces", "simulate-log", "--policy", "rules", "-o", str(tmp_path / "x")], "--traces"),
        (["traces", "simulate-log", "--simulate-fleet", "50", "--traces", "a.parquet", "--policy", "rules",
          "-o", str(tmp_path / "x")], "--traces"),
        (["traces", "simulate-log", "--simulate-fleet", "50", "--policy", "nope", "-o", str(tmp_path / "x")],
         "--policy"),
        (["traces", "simulate-log", "--simulate-fleet", "50", "--policy", "oracle", "-o", str(tmp_path / "x")],
         "--policy"),
        (["traces", "simulate-log", "--simulate-fleet", "50", "--policy", "rules", "--epsilon", "1.5",
          "-o", str(tmp_path / "x")], "--epsilon"),
        (["traces", "simulate-log", "--simulate-fleet", "50", "--policy", "rules", "--fallback-rate", "2",
          "-o", str(tmp_path / "x")], "--fallback-rate"),
        (["traces", "simulate-log", "--simulate-fleet", "50", "--policy", "rules", "--split", "dev",
          "-o", str(tmp_path / "x")], "--split"),
        (["logs", "join", str(tmp_path), "--label-rule", "vote", "-o", str(tmp_path / "l.parquet")], "--label-rule"),
        (["logs", "join", str(tmp_path), "--label-rule", "priority", "-o", str(tmp_path / "l.parquet")],
         "--source-priority"),
        (["logs", "join", str(tmp_path / "none"), "-o", str(tmp_path / "l.parquet")], "DECISION_DIR"),
        (["logs", "join", str(tmp_path), "--feedback", str(tmp_path / "none"), "-o", str(tmp_path / "l.parquet")],
         "--feedback"),
    ]
    for args, flag in cases:
        res = runner.invoke(app, args)
        assert res.exit_code != 0, args
        assert flag in _error_line(res.output), (args, res.output)
