"""``router-rl train --log`` and ``router-rl train-ppo --log`` on a simulated, joined log (CliRunner)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from _offpolicy_helpers import fit_logging_policy
from typer.testing import CliRunner

from router_rl.cli.main import app

runner = CliRunner()


def _error_line(output: str) -> str:
    lines = [ln for ln in output.splitlines() if ln.startswith("Error")]
    assert len(lines) == 1 and "Traceback" not in output, output
    return lines[0]


@pytest.fixture(scope="module")
def logged(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A LightGBM logging policy artifact and its joined 700-row log (75% labelled, 5% fallbacks)."""
    from router_rl.logs.join import join_logs
    from router_rl.logs.simulate import LogSimulationConfig, simulate_log
    from router_rl.policies.exploration import ExplorationConfig

    root = tmp_path_factory.mktemp("offpolicy_cli")
    fleet, tr, _, pol = fit_logging_policy(400, seed=6)
    art = pol.save(root / "logging_policy")
    sim = simulate_log(fleet, pol, n=700, exploration=ExplorationConfig(epsilon=0.2), split="train", seed=2,
                       config=LogSimulationConfig(feedback_rate=0.75, fallback_rate=0.05))
    sim.write(root / "sim")
    table, report = join_logs(root / "sim" / "decisions", root / "sim" / "feedback", catalog=sim.catalog)
    path = root / "logged.parquet"
    table.write_parquet(path)
    return {"root": root, "artifact": art, "log": path, "sim": sim, "policy": pol, "report": report, "tasks": tr.tasks}


def test_train_from_log_writes_a_servable_artifact_with_its_provenance(logged: dict[str, Any], tmp_path: Path) -> None:
    from router_rl.logs.data import load_logged
    from router_rl.policies import RoutingPolicy

    out = tmp_path / "learned"
    res = runner.invoke(app, ["train", "--log", str(logged["log"]), "--policy", "lgbm", "--encoder",
                              str(logged["artifact"]), "--clip", "20", "--opt", 'decision={"lam": 0.5}',
                              "-o", str(out)])
    assert res.exit_code == 0, res.output
    data = load_logged(logged["log"])
    pol = RoutingPolicy.load(out)
    info = pol.metadata["offpolicy"]
    assert info["correction"] == "iw" and info["clip"] == 20.0
    assert info["n_rows"] == data.n == 700
    assert info["n_labeled"] == data.n_labeled and info["n_unlabeled"] == data.n - data.n_labeled > 0
    assert info["n_fallback"] == int(data.fallback[np.isfinite(data.quality)].sum()) > 0
    assert info["logging_policy_versions"] == {logged["policy"].version: 700}
    assert info["encoder_fingerprint"] == logged["policy"].encoder.fingerprint == pol.encoder.fingerprint
    assert pol.catalog is not None and tuple(pol.catalog.models) == data.models
    assert "unlabelled (excluded)" in res.output and str(data.n - data.n_labeled) in res.output
    # save / load identity, and the artifact routes a raw request
    again = RoutingPolicy.load(pol.save(tmp_path / "again"))
    np.testing.assert_array_equal(again.action_distribution(data.X), pol.action_distribution(data.X))
    res = runner.invoke(app, ["route", "--policy", str(out), "--prompt", "fix the flaky test in test_io.py",
                              "--agent-type", "coder"])
    assert res.exit_code == 0, res.output
    assert "chosen:" in res.output


def test_train_from_log_corrections_differ_and_are_recorded(logged: dict[str, Any], tmp_path: Path) -> None:
    from router_rl.policies import RoutingPolicy

    probs = {}
    for corr in ("none", "dr"):
        out = tmp_path / corr
        res = runner.invoke(app, ["train", "--log", str(logged["log"]), "--policy", "knn", "--encoder",
                                  str(logged["artifact"]), "--correction", corr, "-o", str(out)])
        assert res.exit_code == 0, res.output
        pol = RoutingPolicy.load(out)
        assert pol.metadata["offpolicy"]["correction"] == corr
        probs[corr] = pol.predict_quality(logged["sim"].logged().X)  # type: ignore[attr-defined]
    assert not np.allclose(probs["none"], probs["dr"])


@pytest.mark.parametrize(
    ("extra", "flag", "needle"),
    [
        ([], "--encoder", "required with --log"),
        (["--correction", "ips", "--encoder", "ART"], "--correction", "ips is estimator-only"),
        (["--clip", "0.5", "--encoder", "ART"], "--clip", "clip"),
        (["--target", "quality=0.9", "--encoder", "ART"], "--target", "needs full-information validation data"),
        (["--traces", "x.parquet", "--encoder", "ART"], "--traces", "either --log or --traces"),
        (["--encoder", "OTHER"], "--encoder", "the log's features come from encoder(s)"),
        (["--policy", "nope", "--encoder", "ART"], "--policy", "unknown policy"),
    ],
)
def test_train_from_log_errors_are_one_line_naming_the_flag(
    logged: dict[str, Any], tmp_path: Path, extra: list[str], flag: str, needle: str
) -> None:
    from router_rl.features import EncoderConfig, FeatureEncoder

    other = tmp_path / "other.json"
    tasks = logged["tasks"]
    FeatureEncoder(EncoderConfig(seed=5).restricted_to(tasks.columns)).fit(tasks).save(other)
    extra = [str(logged["artifact"]) if e == "ART" else str(other) if e == "OTHER" else e for e in extra]
    args = ["train", "--log", str(logged["log"]), "-o", str(tmp_path / "o")]
    if "--policy" not in extra:
        args += ["--policy", "lgbm"]
    res = runner.invoke(app, args + extra)
    assert res.exit_code == 2, res.output
    line = _error_line(res.output)
    assert f"'{flag}'" in line and needle in line, line


def test_train_ppo_on_the_log(logged: dict[str, Any], tmp_path: Path) -> None:
    from router_rl.policies import RoutingPolicy

    out = tmp_path / "ppo"
    res = runner.invoke(app, ["train-ppo", "--log", str(logged["log"]), "--base", str(logged["artifact"]),
                              "--timesteps", "512", "--opt", "n_steps=256", "-o", str(out)])
    assert res.exit_code == 0, res.output
    assert "replay on the training log" in res.output
    pol = RoutingPolicy.load(out)
    assert pol.kind == "ppo"
    rep = pol.metadata["log_replay"]
    assert rep["rows"] == 700 and rep["labeled"] == logged["report"].labeled + logged["report"].no_answer
    assert rep["encoder_fingerprint"] == logged["policy"].encoder.fingerprint
    assert 0 < rep["base"]["n_matched"] <= rep["labeled"]
    X = logged["sim"].logged().X
    p = pol.action_distribution(X)
    np.testing.assert_allclose(p.sum(axis=1), 1.0)
