"""`router-rl tune lgbm|ppo` end to end on a local Ray: tiny searches, ASHA, the written config trains.

The session's local Ray head for the module (tests/conftest.py; its start-up is the slow part); the
searches join it. Trials run one at a
time (``--max-concurrent 1``), so ASHA's decisions follow from the reported values alone and are
checked against its rule.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

from router_rl.cli.main import app
from router_rl.tune.best import read_tuned_config

pytestmark = [pytest.mark.ray, pytest.mark.slow]


@pytest.fixture(scope="module")
def local_ray(ray_head: Any) -> Iterator[None]:
    """This process joins the session's Ray head (4 CPUs); the searches run their trials there."""
    ray = pytest.importorskip("ray")
    pytest.importorskip("ray.tune")
    ray.init(address=ray_head.gcs_address, log_to_driver=False)
    try:
        yield
    finally:
        ray.shutdown()


def _invoke(args: list[str]) -> Any:
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output + (repr(res.exception) if res.exception else "")
    return res


def _asha_stops(history: list[list[float]]) -> list[bool]:
    """ASHA's rule for trials run one after another, 2 rungs, reduction factor 2: stop at rung 1 when
    the value is below the median of the earlier trials' rung-1 values."""
    out = []
    for k, h in enumerate(history):
        earlier = [history[j][0] for j in range(k)]
        out.append(bool(earlier) and h[0] < float(np.nanpercentile(earlier, 50)))
    return out


def test_tune_lgbm_end_to_end_and_the_config_trains(local_ray: None, tmp_path: Path) -> None:
    from router_rl.policies import RoutingPolicy
    from router_rl.policies.lgbm import LGBMConfig, LGBMPolicy
    from router_rl.traces import simulate_fleet
    from router_rl.tune.lgbm import cost_axis_max, lgbm_validation_metrics, split_and_encode, validation_lambdas
    from router_rl.tune.space import trial_seeds

    best = tmp_path / "best.yaml"
    args = ["tune", "lgbm", "-o", str(best), "--n-tasks", "400", "--trials", "4", "--rungs", "2", "--seed", "3",
            "--space", "num_leaves=int:3:15", "--space", "learning_rate=loguniform:0.03:0.3",
            "--fixed", "num_boost_round=16", "--fixed", "early_stopping_rounds=4",
            "--max-concurrent", "1", "--storage", str(tmp_path / "ray")]
    res = _invoke(args)
    assert f"wrote {best}" in res.output
    tuned = read_tuned_config(best)
    rec = tuned.tune
    assert tuned.trainer == "lgbm" and rec.split == "val" and rec.metric == "val_aiq" and rec.trials == 4
    assert rec.base_seed == 3 and rec.trial_seed == trial_seeds(3, 4)[rec.trial]
    assert set(rec.search_space) == {"num_leaves", "learning_rate"}
    assert tuned.config["num_boost_round"] == 16 and 3 <= tuned.config["num_leaves"] <= 15

    # every trial is in the file: its seed and values are the seeded samples, ASHA stopped exactly
    # the trials its rule stops, and the best is the best complete trial
    from router_rl.tune.lgbm import parse_lgbm_space
    from router_rl.tune.space import sample_trials

    space = parse_lgbm_space(["num_leaves=int:3:15", "learning_rate=loguniform:0.03:0.3"])
    specs = sample_trials(space, n_trials=4, base_seed=3, config_cls=LGBMConfig,
                          fixed={"num_boost_round": 16, "early_stopping_rounds": 4})
    log = rec.trial_log
    assert [t.index for t in log] == [0, 1, 2, 3] and all(t.error is None for t in log)
    assert [t.seed for t in log] == trial_seeds(3, 4) == [sp.seed for sp in specs]
    assert [t.params for t in log] == [json.loads(json.dumps(sp.params)) for sp in specs]
    stops = _asha_stops([t.history for t in log])
    assert [t.rungs_done for t in log] == [1 if s else 2 for s in stops]
    assert sum(stops) == rec.stopped_early
    complete = [t for t in log if t.rungs_done == 2]
    assert rec.score == max(t.score for t in complete if t.score is not None) == log[rec.trial].score
    assert all(t.score == t.history[-1] for t in log)
    tr, va, X_tr, X_va, _ = split_and_encode(simulate_fleet(400, seed=3), seed=3, source="sim")

    # the reported score is the validation split's: refit the best trial here and recompute it
    cfg = LGBMConfig.from_dict(tuned.config)
    pol = LGBMPolicy(tr.models, config=cfg)
    pol.fit(X_tr, tr, seed=rec.trial_seed)
    m = lgbm_validation_metrics(pol, X_va, va, lambdas=validation_lambdas(), cost_max=cost_axis_max(va))
    assert m["val_aiq"] == pytest.approx(rec.score, abs=1e-9)

    # the written config trains through `router-rl train --config`, and --opt wins over the file
    art = tmp_path / "pol"
    _invoke(["train", "--policy", "lgbm", "--config", str(best), "--n-tasks", "400", "--seed", "3",
             "-o", str(art), "--opt", 'config={"max_bin": 63}'])
    trained = RoutingPolicy.load(art)
    assert isinstance(trained, LGBMPolicy)
    assert trained.config == LGBMConfig.from_dict({**tuned.config, "max_bin": 63})
    assert json.loads((art / "policy.json").read_text())["kind"] == "lgbm"


def test_tune_ppo_end_to_end_and_the_config_trains(local_ray: None, tmp_path: Path) -> None:
    from router_rl.policies import RoutingPolicy
    from router_rl.policies.ppo import PPOConfig

    best = tmp_path / "ppo.json"
    env_opt = ["--env-opt", "horizon=40"]
    res = _invoke(["tune", "ppo", "-o", str(best), "--traces", "sim", "--n-tasks", "500", *env_opt,
                   "--trials", "2", "--rungs", "2", "--timesteps", "256", "--fixed", "n_steps=128",
                   "--fixed", "batch_size=64", "--space", "learning_rate=loguniform:0.0003:0.003",
                   "--lgbm-rounds", "8", "--val-days", "2", "--max-concurrent", "1", "--seed", "1",
                   "--storage", str(tmp_path / "ray")])
    assert f"wrote {best}" in res.output
    tuned = read_tuned_config(best)
    assert tuned.trainer == "ppo" and tuned.tune.metric == "val_reward" and tuned.tune.split == "val"
    assert tuned.config["total_timesteps"] == 256 and tuned.config["n_steps"] == 128
    assert tuned.tune.extra["val_days"] == 2 and tuned.tune.extra["val_tasks"] > 0
    assert np.isfinite(tuned.tune.score)
    art = tmp_path / "ppo"
    _invoke(["train-ppo", "--config", str(best), "--traces", "sim", "--n-tasks", "500", *env_opt,
             "--lgbm-rounds", "8", "--eval-days", "2", "--seed", "1", "-o", str(art)])
    router = RoutingPolicy.load(art)
    assert router.kind == "ppo"
    assert router.config == PPOConfig.from_dict(tuned.config)  # type: ignore[attr-defined]
    assert router.metadata["timesteps"] == 256
