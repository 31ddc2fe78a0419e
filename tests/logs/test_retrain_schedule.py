"""Scheduled retraining: the triggers (new labels, cron), the state file, failures retried, the CLI."""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl
import pytest
from typer.testing import CliRunner

from router_rl.cli.main import app
from router_rl.core.errors import ConfigError
from router_rl.logs.partition import compact
from router_rl.logs.partition_join import join_partitioned
from router_rl.logs.retrain import Cron, RetrainConfig, count_labeled, is_due, run_scheduled
from router_rl.logs.synthetic import synthetic_log, write_parts

runner = CliRunner()
NOW = datetime(2026, 11, 5, 12, 0, tzinfo=UTC)
# the "training command": reads the slice it is given and writes an artifact (a real subprocess)
TRAIN = [sys.executable, "-c",
         "import sys, polars as pl; df = pl.read_parquet(sys.argv[1]); "
         "open(sys.argv[2], 'w').write(str(df.height)); sys.exit(int(sys.argv[3]))"]


def _joined(tmp: Path, n: int, seed: int, *, out: Path | None = None) -> Path:
    log = synthetic_log(n, days=3, seed=seed, start=datetime(2026, 11, 2, tzinfo=UTC))
    write_parts(log.decisions, tmp / f"dec{seed}", rows_per_part=500)
    write_parts(log.feedback, tmp / f"fb{seed}", rows_per_part=500)
    compact(tmp / f"dec{seed}", tmp / "p/decisions")
    compact(tmp / f"fb{seed}", tmp / "p/feedback", table="feedback")
    out = out or tmp / "logged"
    join_partitioned(tmp / "p/decisions", tmp / "p/feedback", out)
    return out


def _cfg(tmp: Path, logged: Path, exit_code: int = 0, **kw: object) -> RetrainConfig:
    return RetrainConfig(logged=str(logged), out_dir=str(tmp / "runs"),
                         command=[*TRAIN, "{log}", "{out}", str(exit_code)], **kw)


def test_cron_fields_and_matching() -> None:
    c = Cron.parse("30 3 * * 1-5")
    assert c.matches(datetime(2026, 11, 30, 3, 30))  # a Monday
    assert not c.matches(datetime(2026, 11, 29, 3, 30))  # a Sunday
    assert Cron.parse("*/15 * * * 0").matches(datetime(2026, 11, 29, 7, 45))
    assert Cron.parse("0 0 * * 7").weekdays == frozenset({0})
    last = Cron.parse("0 */6 * * *").last_match(datetime(2026, 11, 5, 1, 0), datetime(2026, 11, 5, 13, 20))
    assert last == datetime(2026, 11, 5, 12, 0)
    assert Cron.parse("0 3 * * *").last_match(datetime(2026, 11, 5, 3, 0), datetime(2026, 11, 5, 13, 0)) is None
    for bad, what in (("61 * * * *", "minute"), ("* * *", "5 fields"), ("*/0 * * * *", "step")):
        with pytest.raises(ValueError, match=what):
            Cron.parse(bad)


def test_config_needs_a_trigger_and_names_bad_fields(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="min_new_labeled: give min_new_labeled and/or cron"):
        RetrainConfig(logged="x", out_dir="y", command=["true"])
    with pytest.raises(ConfigError, match="cron"):
        RetrainConfig(logged="x", out_dir="y", command=["true"], cron="every day")
    f = tmp_path / "r.yaml"
    f.write_text("logged: x\nout_dir: y\ncommand: [echo]\nmin_new_labeled: 5\nwindow_dayz: 3\n")
    with pytest.raises(ConfigError, match=r"r\.yaml: .*window_dayz"):
        RetrainConfig.from_file(f)


def test_new_labels_trigger_a_run_and_the_state_advances(tmp_path: Path) -> None:
    logged = _joined(tmp_path, 2000, seed=1)
    n1 = count_labeled(logged)
    assert 0 < n1 < 2000
    cfg = _cfg(tmp_path, logged, min_new_labeled=500, window_days=30)
    state = tmp_path / "state.json"
    r = run_scheduled(cfg, state, now=NOW)
    assert r.due and r.ran and r.returncode == 0 and r.reason == "first run (no state yet)" and r.rows == n1
    assert Path(r.run_dir or "", "artifact").read_text() == str(n1)
    assert pl.read_parquet(Path(r.run_dir or "", "logged.parquet"))["quality"].is_not_null().all()
    s = json.loads(state.read_text())
    assert s["labeled_at_last_run"] == n1 and s["runs"] == 1 and s["last_status"] == "ok"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".tmp-")]
    later = NOW + timedelta(hours=1)
    r2 = run_scheduled(cfg, state, now=later)
    assert not r2.due and not r2.ran and r2.new_labeled == 0 and "0 new labeled rows < min_new_labeled 500" in r2.reason
    _joined(tmp_path, 2000, seed=2)  # a second batch of traffic and labels, joined again
    r3 = run_scheduled(cfg, state, now=later)
    assert r3.due and r3.new_labeled == count_labeled(logged) - n1 >= 500
    assert json.loads(state.read_text())["runs"] == 2


def test_cron_trigger_window_and_a_failed_command_is_retried(tmp_path: Path) -> None:
    logged = _joined(tmp_path, 1500, seed=3)
    state = tmp_path / "state.json"
    ok = _cfg(tmp_path, logged, cron="0 3 * * *", window_days=2)
    assert run_scheduled(ok, state, now=NOW).ran
    s = json.loads(state.read_text())
    assert not is_due(ok, s, labeled=10**6, now=NOW + timedelta(hours=10))[0]  # 12:00 -> 22:00: no 03:00
    due, why = is_due(ok, s, labeled=0, now=NOW + timedelta(hours=16))
    assert due and "matched 2026-11-06T03:00:00+00:00" in why
    # window_days=2 ending 2026-11-05: only the labeled rows of 11-04 and 11-05 were used
    days = pl.read_parquet(Path(s["last_run_dir"], "logged.parquet"))["ts"].dt.date().cast(pl.Utf8).unique()
    assert sorted(days) == ["2026-11-04"]
    bad = _cfg(tmp_path, logged, exit_code=3, cron="0 3 * * *", window_days=2)
    r = run_scheduled(bad, state, now=NOW + timedelta(days=1))
    assert r.ran and r.returncode == 3
    s2 = json.loads(state.read_text())
    assert s2["last_status"] == "failed (exit 3)" and s2["last_run_at"] == s["last_run_at"]
    assert run_scheduled(bad, state, now=NOW + timedelta(days=1, minutes=5), dry_run=True).due  # still due: retried


@pytest.mark.cli
def test_cli_retrain(tmp_path: Path) -> None:
    logged = _joined(tmp_path, 1000, seed=4)
    cfg = tmp_path / "retrain.yaml"
    cfg.write_text(json.dumps({"logged": str(logged), "out_dir": str(tmp_path / "runs"),
                               "command": [*TRAIN, "{log}", "{out}", "0"], "min_new_labeled": 100}))
    state = tmp_path / "state.json"
    res = runner.invoke(app, ["logs", "retrain", "--config", str(cfg), "--state", str(state),
                              "--now", "2026-11-05T12:00:00", "--json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.output)
    assert out["ran"] and out["returncode"] == 0 and out["rows"] == count_labeled(logged)
    res = runner.invoke(app, ["logs", "retrain", "--config", str(cfg), "--state", str(state)])
    assert res.exit_code == 0 and res.output.startswith("not due: 0 new labeled rows"), res.output
    res = runner.invoke(app, ["logs", "retrain", "--config", str(cfg), "--state", str(state), "--now", "noon"])
    assert res.exit_code == 2 and "--now" in res.output and "Traceback" not in res.output
    state.write_text("{broken")
    res = runner.invoke(app, ["logs", "retrain", "--config", str(cfg), "--state", str(state)])
    assert res.exit_code == 2 and "--state" in res.output


@pytest.mark.slow
def test_a_due_run_trains_a_real_policy(tmp_path: Path, fleet: object, lgbm_policy: object) -> None:
    """simulate-log -> compact -> partitioned join -> retrain running `router-rl train --log` (real LightGBM)."""
    from router_rl.logs.simulate import LogSimulationConfig, simulate_log
    from router_rl.policies.base import RoutingPolicy
    from router_rl.policies.exploration import ExplorationConfig

    sim = simulate_log(fleet, lgbm_policy, n=500, exploration=ExplorationConfig(epsilon=0.2), split="test", seed=5,
                       config=LogSimulationConfig(feedback_rate=0.8))
    sim.write(tmp_path / "sim")
    compact(tmp_path / "sim/decisions", tmp_path / "p/decisions")
    compact(tmp_path / "sim/feedback", tmp_path / "p/feedback", table="feedback")
    join_partitioned(tmp_path / "p/decisions", tmp_path / "p/feedback", tmp_path / "logged", catalog=sim.catalog)
    art = tmp_path / "logging-policy"
    lgbm_policy.save(art)  # type: ignore[attr-defined]
    cfg = RetrainConfig(logged=str(tmp_path / "logged"), out_dir=str(tmp_path / "runs"), min_new_labeled=100,
                        window_days=3650, command=[sys.executable, "-m", "router_rl", "train", "--log", "{log}",
                                                   "--policy", "lgbm", "--encoder", str(art), "-o", "{out}"])
    now = sim.decisions["ts"].max() + timedelta(hours=1)  # type: ignore[operator]
    r = run_scheduled(cfg, tmp_path / "state.json", now=now)
    assert r.ran and r.returncode == 0, Path(r.run_dir or "", "command.log").read_text()
    pol = RoutingPolicy.load(Path(r.run_dir or "", "artifact"))
    assert pol.metadata["offpolicy"]["n_labeled"] == r.rows == sim.feedback["request_id"].n_unique()
    assert not run_scheduled(cfg, tmp_path / "state.json", now=now).due
