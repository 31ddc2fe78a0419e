"""`router-rl tune` input errors (one line naming the flag, before Ray starts) and `train --config` (no Ray)."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from router_rl.cli.main import app
from router_rl.tune.best import TunedConfig, TuneRecord, write_tuned_config


def _error_line(args: list[str]) -> str:
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 2, res.output
    lines = [ln for ln in res.output.splitlines() if ln.startswith("Error")]
    assert len(lines) == 1 and "Traceback" not in res.output, res.output
    return lines[0]


@pytest.mark.parametrize(
    ("extra", "flag", "needle"),
    [
        (["--space", "num_leaves=gauss:1:9"], "--space", "num_leaves: unknown kind 'gauss'"),
        (["--space", "leaves=int:3:9"], "--space", "'leaves' is not a setting of this trainer"),
        (["--space", "num_leaves=int:0:1"], "--space", "num_leaves: Input should be greater than or equal to 2"),
        (["--space", "learning_rate=loguniform:0:1"], "--space", "learning_rate: loguniform needs LOW > 0"),
        (["--fixed", "num_leaves=true"], "--fixed", "num_leaves"),
        (["--trials", "0"], "--trials", "greater than or equal to 1"),
        (["--reduction-factor", "1"], "--reduction-factor", "greater than or equal to 2"),
    ],
)
def test_tune_lgbm_bad_input_is_one_line_naming_the_flag(tmp_path: Path, extra: list[str], flag: str,
                                                         needle: str) -> None:
    line = _error_line(["tune", "lgbm", "-o", str(tmp_path / "b.yaml"), *extra])
    assert f"'{flag}'" in line and needle in line
    assert not (tmp_path / "b.yaml").exists()


@pytest.mark.parametrize(
    ("extra", "flag", "needle"),
    [
        (["--space", "batch_size=choice:7"], "--space", "batch_size: must divide n_steps * n_envs = 256, got 7"),
        (["--space", "gamma=uniform:0.9:1.5"], "--space", "gamma: Input should be less than or equal to 1"),
        (["--fixed", "n_steps=0"], "--fixed", "n_steps"),
        (["--timesteps", "0"], "--timesteps", "expected >= 1"),
    ],
)
def test_tune_ppo_bad_input_is_one_line_naming_the_flag(tmp_path: Path, extra: list[str], flag: str,
                                                        needle: str) -> None:
    line = _error_line(["tune", "ppo", "-o", str(tmp_path / "b.json"), *extra])
    assert f"'{flag}'" in line and needle in line


def test_tune_out_must_be_yaml_or_json(tmp_path: Path) -> None:
    line = _error_line(["tune", "lgbm", "-o", str(tmp_path / "best.txt")])
    assert "'--out'" in line and "expected a .yaml, .yml or .json" in line


def _tuned(trainer: str, config: dict) -> TunedConfig:
    rec = TuneRecord(metric="val_aiq" if trainer == "lgbm" else "val_reward", mode="max", score=0.5, trial=0,
                     trial_seed=1, base_seed=0, trials=2, stopped_early=0, rungs=2, scheduler="ASHA", data="sim",
                     search_space={"num_leaves": "int:3:9"}, created="2026-12-01T00:00:00Z")
    return TunedConfig(trainer=trainer, config=config, tune=rec)  # type: ignore[arg-type]


@pytest.mark.slow
def test_train_reads_a_tuned_config(tmp_path: Path) -> None:
    from router_rl.policies import RoutingPolicy
    from router_rl.policies.lgbm import LGBMConfig, LGBMPolicy

    best = write_tuned_config(tmp_path / "best.yaml",
                              _tuned("lgbm", {"num_leaves": 5, "num_boost_round": 12, "cv_folds": 2}))
    res = CliRunner().invoke(app, ["train", "--policy", "lgbm", "--config", str(best), "--n-tasks", "300",
                                   "-o", str(tmp_path / "pol"), "--opt", 'config={"learning_rate": 0.2}'])
    assert res.exit_code == 0, res.output
    pol = RoutingPolicy.load(tmp_path / "pol")
    assert isinstance(pol, LGBMPolicy)
    assert pol.config == LGBMConfig(num_leaves=5, num_boost_round=12, cv_folds=2, learning_rate=0.2)


def test_train_refuses_a_config_for_another_trainer_or_policy(tmp_path: Path) -> None:
    ppo = write_tuned_config(tmp_path / "ppo.json", _tuned("ppo", {"total_timesteps": 256}))
    lg = write_tuned_config(tmp_path / "lg.json", _tuned("lgbm", {"num_leaves": 5}))
    line = _error_line(["train", "--policy", "lgbm", "--config", str(ppo), "-o", str(tmp_path / "x")])
    assert "'--config'" in line and "written by `tune ppo`" in line
    line = _error_line(["train", "--policy", "knn", "--config", str(lg), "-o", str(tmp_path / "x")])
    assert "'--config'" in line and "not 'knn'" in line
    line = _error_line(["train-ppo", "--config", str(lg), "-o", str(tmp_path / "x")])
    assert "'--config'" in line and "written by `tune lgbm`" in line
    bad = tmp_path / "bad.json"
    bad.write_text('{"trainer": "lgbm", "config": {"num_leafs": 3}}')
    line = _error_line(["train", "--policy", "lgbm", "--config", str(bad), "-o", str(tmp_path / "x")])
    assert "'--config'" in line and "bad.json" in line
    line = _error_line(["train", "--policy", "lgbm", "--config", str(tmp_path / "absent.yaml"), "-o",
                        str(tmp_path / "x")])
    assert "'--config'" in line and "no such file" in line


def test_train_ppo_settings_order(tmp_path: Path) -> None:
    from router_rl.cli.ppo import DEFAULT_TIMESTEPS, _ppo_settings

    best = write_tuned_config(tmp_path / "ppo.yaml", _tuned("ppo", {"total_timesteps": 512, "n_steps": 128,
                                                                    "batch_size": 64}))
    assert _ppo_settings(None, [], None) == {"total_timesteps": DEFAULT_TIMESTEPS}
    assert _ppo_settings(None, [], best) == {"total_timesteps": 512, "n_steps": 128, "batch_size": 64}
    assert _ppo_settings(1024, ["batch_size=32"], best) == {"total_timesteps": 1024, "n_steps": 128,
                                                            "batch_size": 32}
