"""PPORouter: warm start == LightGBM, save/load, determinism, input validation, quick experiment."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from router_rl.core.errors import ConfigError
from router_rl.envs import BudgetedRouting, load_env_data, load_spec, make_from_spec
from router_rl.envs.state import state_vector
from router_rl.policies.base import PolicyCapabilityError, PolicyLoadError, RoutingPolicy
from router_rl.policies.ppo import PPOConfig, PPORouter

REPO = Path(__file__).resolve().parents[2]
OVERRIDES: dict[str, Any] = {"data": {"n_tasks": 600, "seed": 3}, "horizon": 40}
SMALL = PPOConfig(total_timesteps=512, n_steps=128, batch_size=64, n_epochs=2, net_arch=(16,), learning_rate=1e-3)


@pytest.fixture(scope="module")
def setup() -> dict[str, Any]:
    from router_rl.policies.lgbm import LGBMConfig, LGBMPolicy

    spec = load_spec("sim-budgeted").with_overrides(**OVERRIDES)
    data = load_env_data(spec)
    lgbm = LGBMPolicy(data.train.models, config=LGBMConfig(num_boost_round=30, cv_folds=2))
    lgbm.fit(data.features("train"), data.train, seed=0)
    lgbm.attach_encoder(data.encoder)
    return {"spec": spec, "data": data, "lgbm": lgbm}


def _env(setup: dict[str, Any], split: str = "train") -> BudgetedRouting:
    env = make_from_spec(setup["spec"], encoder=setup["data"].encoder, split=split)
    assert isinstance(env, BudgetedRouting)
    return env


def _router(setup: dict[str, Any], config: PPOConfig = SMALL) -> PPORouter:
    return PPORouter.from_base(setup["lgbm"], config=config)


def _heldout_obs(setup: dict[str, Any], router: PPORouter) -> tuple[np.ndarray, np.ndarray]:
    """Held-out (test split) tasks with a full budget, nothing elapsed and every breaker closed."""
    F = setup["data"].features("test")
    s = state_vector(
        budget_remaining_frac=1.0,
        elapsed_frac=0.0,
        local_share=0.0,
        breakers=dict.fromkeys(router.providers, "closed"),
        providers=router.providers,
    )
    return F, router.observe(F, s)


def test_warm_start_reproduces_lgbm_decisions(setup: dict[str, Any]) -> None:
    router = _router(setup).warm_start(_env(setup), seed=0)
    assert router.providers == ("anthropic", "openrouter")
    assert router.feature_dim == setup["data"].encoder.dim and router.state_dim == 3 + 2
    F, X = _heldout_obs(setup, router)
    lgbm_actions = setup["lgbm"].act(F)[0]
    ppo_actions = router.act(X)[0]
    assert len(set(lgbm_actions.tolist())) >= 2  # a non-trivial check: LightGBM uses several models
    np.testing.assert_array_equal(ppo_actions, lgbm_actions)  # 100% argmax agreement
    # the initial distribution is softmax(LightGBM utility / τ): the price and the residual are zero
    assert router.prior_kind == "utility"
    p = router.action_distribution(X)
    np.testing.assert_allclose(p.sum(axis=1), 1.0)
    m = router.n_models
    util = setup["lgbm"].decide(F).utility
    z = router.prior_inputs(F)[:, :m]
    ok = np.isfinite(util)
    assert (~ok).any()  # privacy-sensitive tasks: cloud models are blocked ...
    np.testing.assert_allclose(z[ok], util[ok], atol=2e-4)
    assert np.all(z[~ok] < np.where(ok, util, np.inf).min(axis=1, keepdims=True).repeat(m, 1)[~ok])  # ... stay last
    logits = z / SMALL.prior_temperature
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    np.testing.assert_allclose(p, e / e.sum(axis=1, keepdims=True), atol=1e-5)
    np.testing.assert_array_equal(router.budget_price(X), 0.0)
    # the same holds along real env observations (any budget / breaker state), before training
    env = _env(setup, "test")
    obs, _ = env.reset(seed=5)
    for _ in range(10):
        a = int(router.act(obs[None, :])[0][0])
        assert a == int(setup["lgbm"].act(obs[None, : router.feature_dim])[0][0])
        obs, *_ = env.step(a)


def test_log_prob_prior_warm_start_also_reproduces_the_base(setup: dict[str, Any]) -> None:
    cfg = PPOConfig(**(SMALL.to_dict() | {"prior": "log_prob", "net_arch": (16,), "price_arch": (8,)}))
    router = _router(setup, cfg).warm_start(_env(setup), seed=0)
    assert router.prior_kind == "log_prob" and router.model_cost is not None
    assert router.model_cost.max() == pytest.approx(1.0)  # env mean cost per model, normalised
    F, X = _heldout_obs(setup, router)
    np.testing.assert_array_equal(router.act(X)[0], setup["lgbm"].act(F)[0])
    p = router.action_distribution(X)
    m = router.n_models
    chosen = p[np.arange(len(p)), setup["lgbm"].act(F)[0]]
    assert np.all(chosen >= 1.0 / (1.0 + (m - 1) * SMALL.prior_floor) - 1e-6)


def test_a_positive_budget_price_moves_decisions_to_cheaper_models(setup: dict[str, Any]) -> None:
    import torch as th

    router = _router(setup).warm_start(_env(setup), seed=0)
    m = router.n_models
    F = setup["data"].features("test")
    low = state_vector(budget_remaining_frac=0.1, elapsed_frac=0.3, local_share=0.0, breakers=[0.0, 0.0])
    X = router.observe(F, low)
    cost = router.prior_inputs(F)[:, m:]
    a0 = router.act(X)[0]
    c0 = cost[np.arange(len(a0)), a0].mean()
    assert c0 > cost.min(axis=1).mean() * 1.5  # LightGBM (λ=0) spends well above the cheapest choice
    # the budget is nearly gone: reinforce the cheapest model of each task (what the env's forced
    # cheapest rule will do anyway); only the price head may move
    policy = router.model.policy
    head = policy.action_net
    opt = th.optim.SGD(head.price.parameters(), lr=0.5)
    A = th.as_tensor(router.augment(X))
    cheap = th.as_tensor(cost.argmin(axis=1))
    for _ in range(5):
        logits = head(policy.mlp_extractor.forward_actor(A))
        loss = th.nn.functional.cross_entropy(logits, cheap)
        opt.zero_grad()
        loss.backward()
        opt.step()
    delta = router.budget_price(X)
    assert np.all(delta > 0)  # the price went up ...
    a1 = router.act(X)[0]
    c1 = cost[np.arange(len(a1)), a1].mean()
    assert c1 < c0  # ... and the decisions got cheaper
    moved = a1 != a0
    assert moved.any() and np.all(cost[moved, a1[moved]] < cost[moved, a0[moved]])
    # the price is a function of the router state only: every task gets the same δ
    np.testing.assert_allclose(delta, delta[0], rtol=1e-6)


def test_training_moves_the_policy_and_is_deterministic(setup: dict[str, Any]) -> None:
    r1 = _router(setup).fit_env(lambda: _env(setup), seed=7)
    r2 = _router(setup).fit_env(lambda: _env(setup), seed=7)
    r3 = _router(setup).fit_env(lambda: _env(setup), seed=8)
    v1, v2, v3 = r1.parameters_vector(), r2.parameters_vector(), r3.parameters_vector()
    np.testing.assert_array_equal(v1, v2)
    assert not np.array_equal(v1, v3)
    _, X = _heldout_obs(setup, r1)
    np.testing.assert_array_equal(r1.action_distribution(X), r2.action_distribution(X))
    # training changed the residual: the distribution is no longer the warm-start one
    r0 = _router(setup).warm_start(_env(setup), seed=7)
    assert np.abs(r1.action_distribution(X) - r0.action_distribution(X)).max() > 1e-4
    assert r1.metadata["timesteps"] == SMALL.total_timesteps


def test_save_load_round_trip_gives_identical_actions(setup: dict[str, Any], tmp_path: Path) -> None:
    router = _router(setup).fit_env(_env(setup), seed=1)
    d = router.save(tmp_path / "ppo")
    assert {"policy.json", "ppo.zip", "base", "encoder.json", "catalog.json"} <= {p.name for p in d.iterdir()}
    meta = json.loads((d / "policy.json").read_text())
    assert meta["kind"] == "ppo"
    assert meta["state"]["providers"] == ["anthropic", "openrouter"]
    loaded = RoutingPolicy.load(d, encoder_fingerprint=setup["data"].encoder.fingerprint)
    assert isinstance(loaded, PPORouter)
    _, X = _heldout_obs(setup, router)
    env = _env(setup, "test")
    obs, _ = env.reset(seed=3)
    X = np.vstack([X, obs[None, :]])
    np.testing.assert_array_equal(loaded.action_distribution(X), router.action_distribution(X))
    np.testing.assert_array_equal(loaded.act(X)[0], router.act(X)[0])
    np.testing.assert_array_equal(loaded.parameters_vector(), router.parameters_vector())
    np.testing.assert_array_equal(loaded.budget_price(X), router.budget_price(X))
    assert loaded.config == router.config and loaded.encoder is not None
    assert meta["state"]["ppo_format"] == 2 and meta["state"]["prior"] == "utility"


def test_load_rejects_a_broken_artifact(setup: dict[str, Any], tmp_path: Path) -> None:
    router = _router(setup).warm_start(_env(setup), seed=0)
    d = router.save(tmp_path / "ppo")
    meta = json.loads((d / "policy.json").read_text())
    old = dict(meta, state={k: v for k, v in meta["state"].items() if k != "ppo_format"})
    (d / "policy.json").write_text(json.dumps(old))
    with pytest.raises(PolicyLoadError, match=r"PPO artifact layout 1.*retrain"):
        RoutingPolicy.load(d)
    (d / "policy.json").write_text(json.dumps(meta))
    (d / "ppo.zip").unlink()
    with pytest.raises(PolicyLoadError, match=r"ppo\.zip"):
        RoutingPolicy.load(d)


def test_bad_inputs_name_the_problem(setup: dict[str, Any]) -> None:
    router = _router(setup).warm_start(_env(setup), seed=0)
    with pytest.raises(ValueError, match=rf"expected observations of shape \(n, {router.obs_dim}\)"):
        router.action_distribution(np.zeros((2, 5), dtype=np.float32))
    X = np.zeros((1, router.obs_dim), dtype=np.float32)
    X[0, 3] = np.nan
    with pytest.raises(ValueError, match="row 0, column 3"):
        router.action_distribution(X)
    with pytest.raises(ConfigError, match=r"PPOConfig\.batch_size"):
        PPOConfig(n_steps=100, batch_size=64)
    with pytest.raises(ConfigError, match=r"PPOConfig\.prior_floor"):
        PPOConfig(prior_floor=0.0)
    with pytest.raises(ConfigError, match=r"PPOConfig\.prior\b"):
        PPOConfig(prior="softmax")
    with pytest.raises(ConfigError, match=r"PPOConfig\.prior_temperature"):
        PPOConfig(prior_temperature=0.0)
    with pytest.raises(ConfigError, match=r"PPOConfig\.budget_jitter"):
        PPOConfig(budget_jitter=1.0)
    with pytest.raises(ConfigError, match="unknown setting"):
        PPOConfig.from_dict({"budget_prize": True})
    from router_rl.policies.baselines import CheapestPolicy

    cheapest = CheapestPolicy(setup["lgbm"].models).fit(setup["data"].features("train"), setup["data"].train)
    with pytest.raises(ConfigError, match="'utility' needs a quality-predicting base"):
        PPORouter.from_base(cheapest, config=PPOConfig(prior="utility"))
    assert PPORouter.from_base(cheapest).prior_kind == "log_prob"
    with pytest.raises(ValueError, match="budget_remaining_frac"):
        state_vector(budget_remaining_frac=1.5, elapsed_frac=0.0, local_share=0.0)
    with pytest.raises(ValueError, match="lacks providers"):
        state_vector(budget_remaining_frac=1, elapsed_frac=0, local_share=0, breakers={"x": 0}, providers=["y"])
    with pytest.raises(ValueError, match="expected one of"):
        state_vector(budget_remaining_frac=1, elapsed_frac=0, local_share=0, breakers=["broken"])
    with pytest.raises(PolicyCapabilityError, match="fit_env"):
        _router(setup).fit(setup["data"].features("train"), setup["data"].train, seed=0)
    with pytest.raises(RuntimeError, match="observation layout unknown"):
        _router(setup).action_distribution(np.zeros((1, 3)))


def test_state_vector_matches_the_env_layout(setup: dict[str, Any]) -> None:
    s = state_vector(
        budget_remaining_frac=0.25,
        elapsed_frac=0.5,
        local_share=0.75,
        breakers={"openrouter": "open", "anthropic": "half_open"},
        providers=("anthropic", "openrouter"),
    )
    np.testing.assert_array_equal(s, np.array([0.25, 0.5, 0.75, 0.5, 1.0], dtype=np.float32))
    env = _env(setup)
    obs, _ = env.reset(seed=0)
    router = _router(setup).warm_start(env, seed=0)
    start = state_vector(budget_remaining_frac=1.0, elapsed_frac=0.0, local_share=0.0, breakers=[0.0, 0.0])
    np.testing.assert_array_equal(obs[router.feature_dim :], start)


@pytest.mark.slow
def test_quick_experiment_runs_and_reports_every_field(tmp_path: Path) -> None:
    out = tmp_path / "runs"
    proc = subprocess.run(
        [sys.executable, str(REPO / "experiments" / "ppo_vs_greedy.py"), "--quick", "--out-dir", str(out)],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads((out / "results.json").read_text())
    assert (out / "results.md").read_text().count("|") > 10
    metrics = ("reward", "quality", "cost_usd", "budget_violations", "failed_requests")
    assert set(result["scenarios"]) == {"pacing", "outage", "daymix"}
    for name in ("pacing", "daymix"):  # the non-RL budget answers: calibrated λ, paced λ
        pols = result["scenarios"][name]["policies"]
        assert {"greedy_calibrated", "greedy_paced", "ppo_calibrated"} <= set(pols)
        greedy_over = pols["greedy"]["summary"]["budget_violations"]["mean"]
        for p in ("greedy_calibrated", "greedy_paced"):
            assert pols[p]["summary"]["budget_violations"]["mean"] < greedy_over
        gains = result["scenarios"][name]["pacing_gain_per_seed"]
        assert len(gains) == len(result["args"]["seeds"]) and set(gains) <= {1.0, 3.0, 10.0}
    assert "greedy_paced" not in result["scenarios"]["outage"]["policies"]
    for scen in result["scenarios"].values():
        assert {"greedy", "ppo"} <= set(scen["policies"])
        for pol in scen["policies"].values():
            assert len(pol["per_seed"]["reward"]) == len(result["args"]["seeds"]) >= 2
            for m in metrics:
                s = pol["summary"][m]
                assert s["lo"] <= s["mean"] <= s["hi"]
        for m in metrics:
            assert {"mean", "lo", "hi"} <= set(scen["diff_ppo_minus_greedy"][m])


FIXTURE = Path(__file__).parent / "fixtures" / "ppo_v2_artifact"


def test_artifact_written_before_the_package_split_loads_identically() -> None:
    """``fixtures/ppo_v2_artifact`` was saved by the single-module ``policies/ppo.py`` (and its
    LightGBM base by the dataclass ``LGBMConfig``); it must load and decide exactly as then."""
    router = RoutingPolicy.load(FIXTURE)
    assert isinstance(router, PPORouter) and router.base is not None and router.base.kind == "lgbm"
    assert router.config.net_arch == (8,) and router.config.price_arch == (4,)
    with np.load(FIXTURE / "expected.npz") as z:
        np.testing.assert_allclose(router.action_distribution(z["X"]), z["p"], rtol=0, atol=1e-12)
        np.testing.assert_allclose(router.base.action_distribution(z["F"]), z["lgbm_p"], rtol=0, atol=1e-12)


def test_importing_the_ppo_package_is_cheap() -> None:
    code = (
        "import sys, json, router_rl.policies.ppo as p; p.PPOConfig(); "
        "print(json.dumps([m for m in ('torch', 'gymnasium', 'stable_baselines3', 'lightgbm') if m in sys.modules]))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []


def test_train_ppo_pipeline_is_one_library_call(setup: dict[str, Any]) -> None:
    """The function the CLI and the experiment call: given base + data, no held-out days; then
    the same call evaluates held-out days and records them, reproducibly for a seed."""
    from router_rl.policies.ppo import train_ppo

    lgbm = setup["lgbm"]
    res = train_ppo(setup["spec"], config=SMALL, base=lgbm, data=setup["data"], eval_days=0, seed=0)
    assert res.heldout is None and res.base is lgbm and res.router.metadata["env_spec"] == setup["spec"].name
    direct = _router(setup).fit_env(
        lambda: make_from_spec(setup["spec"], encoder=setup["data"].encoder, split="train"), seed=0
    )
    np.testing.assert_array_equal(res.router.parameters_vector(), direct.parameters_vector())
    steps: list[str] = []
    res2 = train_ppo(setup["spec"], config=SMALL, base=lgbm, data=setup["data"], eval_days=2, seed=0,
                     progress=steps.append)
    assert res2.heldout is not None and set(res2.heldout) == {"base", "ppo"}
    assert res2.router.metadata["heldout"]["days"] == 2 and any("held-out" in s for s in steps)
    with pytest.raises(ConfigError, match="needs a 'budgeted' env spec"):
        train_ppo(load_spec("sim-bandit"), config=SMALL)
    with pytest.raises(PolicyLoadError, match="a PPO artifact cannot be the base"):
        train_ppo(setup["spec"], config=SMALL, base=res.router, data=setup["data"])
