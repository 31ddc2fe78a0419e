"""A tiny real PPO artifact and a router config over the simulated fleet's models and providers.

The PPO router is the real pipeline at toy size: a LightGBM base fitted on ``sim-budgeted``
data, PPO warm-started on the real ``BudgetedRouting`` env and trained for a few hundred steps;
then its budget-price head is nudged (five SGD steps, as in ``tests/policies/test_ppo.py``)
towards the cheapest model at a nearly spent budget, so the router state visibly changes its
distributions (a test that compares "with state" to "without" can then fail).
"""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from router_rl.policies.ppo import PPOConfig, PPORouter

OVERRIDES: dict[str, Any] = {"data": {"n_tasks": 600, "seed": 3}, "horizon": 40}
TINY = PPOConfig(total_timesteps=256, n_steps=128, batch_size=64, n_epochs=1, net_arch=(16,), learning_rate=1e-3)
LOCAL = ("rnj-1:8b", "qwen2.5-coder:7b", "devstral-small-2:24b", "qwen2.5-coder:32b", "devstral-2:123b")
CLOUD = {"claude-sonnet-4.5": "anthropic", "openrouter/auto": "openrouter"}
PROMPTS = (
    "Write pytest unit tests for parse_date() covering leap years",
    "Review this diff for race conditions in the cache eviction\n@@ -1,3 +1,4 @@\n+lock.acquire()",
    "Refactor the payment service for the distributed consensus migration and a security audit",
    "Fix the flaky integration test of the login flow",
)


def train_tiny_ppo(out: Path) -> Path:
    """Train and save the tiny PPO artifact to ``out``; returns the folder."""
    import torch as th

    from router_rl.envs import BudgetedRouting, load_env_data, load_spec, make_from_spec
    from router_rl.envs.state import state_vector
    from router_rl.policies.ppo.train import fit_lgbm_base

    spec = load_spec("sim-budgeted").with_overrides(**OVERRIDES)
    data = load_env_data(spec)
    lgbm = fit_lgbm_base(data, rounds=20, seed=0)
    env = make_from_spec(spec, encoder=data.encoder, split="train")
    assert isinstance(env, BudgetedRouting)
    router = PPORouter.from_base(lgbm, config=TINY).fit_env(env, seed=0)
    # nudge the budget price at a nearly spent budget towards each task's cheapest model
    m = router.n_models
    F = data.features("test")
    low = state_vector(budget_remaining_frac=0.05, elapsed_frac=0.5, local_share=0.5,
                       breakers=[0.0] * len(router.providers))
    X = router.observe(F, low)
    cheap = th.as_tensor(router.prior_inputs(F)[:, m:].argmin(axis=1))
    policy = router.model.policy
    head = policy.action_net
    opt = th.optim.SGD(head.price.parameters(), lr=0.5)
    A = th.as_tensor(router.augment(X))
    for _ in range(5):
        loss = th.nn.functional.cross_entropy(head(policy.mlp_extractor.forward_actor(A)), cheap)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return router.save(out)


def replay_frame(models: tuple[str, ...], n_tasks: int = 10) -> Any:
    """An outcome frame the replay backend answers from (every model answers every task)."""
    import polars as pl

    rows = [
        {"task_id": f"t{t}", "model": m, "quality": 0.5 + 0.05 * j, "cost_usd": 0.001, "latency_s": 0.2,
         "input_tokens": 40, "output_tokens": 12, "prompt": f"task {t}"}
        for t in range(n_tasks) for j, m in enumerate(models)
    ]
    return pl.DataFrame(rows)


def sim_router_config(local_url: str, cloud_url: str, **overrides: Any) -> dict[str, Any]:
    """Router config serving the simulated fleet: providers named as in its catalog (anthropic, openrouter)."""
    cfg: dict[str, Any] = {
        "providers": [
            {"name": "local", "kind": "openai_compatible", "base_url": local_url, "location": "local",
             "gpu_usd_per_hour": 1.0, "max_retries": 0, "timeout_s": 10.0,
             "models": [{"model": m, "tokens_per_s": 100.0} for m in LOCAL]},
            *({"name": prov, "kind": "openai_compatible", "base_url": cloud_url, "location": "cloud",
               "max_retries": 0, "timeout_s": 10.0,
               "models": [{"model": m, "usd_per_m_input": 3.0, "usd_per_m_output": 15.0}]}
              for m, prov in CLOUD.items()),
        ],
        "tiers": {"simple": LOCAL[1], "moderate": LOCAL[1], "complex": LOCAL[3], "very_complex": "claude-sonnet-4.5"},
        "breaker": {"consecutive_failures": 3, "window": 10, "min_calls": 5, "reset_timeout_s": 3600.0},
        "fallback": {"latency_threshold_s": 5.0},
        "budgets": {"global": {"daily_usd": 0.002}, "on_exhausted": "allow_and_alert"},
        "strategy": "learned",
        "learned": {"sample": False},
    }
    for k, v in overrides.items():
        cfg[k] = {**cfg[k], **v} if isinstance(v, dict) and isinstance(cfg.get(k), dict) else v
    return cfg


def expected_probs(policy: Any, record: dict[str, Any], state_json: str) -> np.ndarray:
    """The distribution the PPO artifact gives ``record`` (encoder columns) under the logged router state."""
    from router_rl.envs.state import state_vector

    s = json.loads(state_json)
    X = policy.encoder.transform_records([record])
    S = state_vector(budget_remaining_frac=s["budget_remaining_frac"], elapsed_frac=s["elapsed_frac"],
                     local_share=s["local_share"], breakers=s["breakers"], providers=policy.providers)
    return np.asarray(policy.action_distribution(policy.observe(X, S))[0])


MORNING = datetime(2026, 12, 1, 6, 0, tzinfo=UTC).timestamp()  # elapsed share of the UTC day: 0.25
EVENING = datetime(2026, 12, 1, 18, 0, tzinfo=UTC).timestamp()  # 0.75
AGENT_TYPE = "test-generator"


def inp(prompt: str, rid: str, model: str = "router-rl/auto") -> Any:
    from router_rl.router.request import RouteInput

    return RouteInput(messages=[{"role": "user", "content": prompt}], request_id=rid, model=model,
                      agent_type=AGENT_TYPE)


def route_two_phases(router: Any, clock: list[float]) -> None:
    """Phase 1: fresh day, morning. Then spend ~90% of the budget on explicit cloud calls, open the
    anthropic breaker, move to the evening. Phase 2: the same prompts again."""

    async def go() -> None:
        try:
            for i, p in enumerate(PROMPTS):
                await router.route(inp(p, f"p1-{i}"))
            for i in range(6):  # 6 x 0.0003 USD of a 0.002 USD day
                await router.route(inp(PROMPTS[0], f"spend-{i}", model="claude-sonnet-4.5"))
            breaker = router.breakers["anthropic"]
            for _ in range(3):
                assert breaker.allow()
                breaker.record_failure()
            clock[0] = EVENING
            for i, p in enumerate(PROMPTS):
                await router.route(inp(p, f"p2-{i}"))
        finally:
            await router.aclose()

    asyncio.run(go())


def check_ppo_rows(df: Any, policy: Any, limit_usd: float) -> None:
    """Every learned row was decided by PPO under exactly the logged state, and that state is the router's."""
    local_before = 0
    spent_before = 0.0
    local = {"rnj-1:8b", "qwen2.5-coder:7b", "devstral-small-2:24b", "qwen2.5-coder:32b", "devstral-2:123b"}
    probs_by_phase: dict[str, dict[str, np.ndarray]] = {"p1": {}, "p2": {}}
    for served_before, row in enumerate(df.iter_rows(named=True)):
        if row["strategy"] == "learned":
            assert row["policy_version"] == policy.version and row["policy_version"].startswith("ppo@")
            assert row["fallback_reason"] is None and row["error"] is None
            s = json.loads(row["policy_state"])
            phase = row["request_id"][:2]
            assert s["elapsed_frac"] == (0.25 if phase == "p1" else 0.75)
            assert s["breakers"] == {"local": "closed", "anthropic": "closed" if phase == "p1" else "open",
                                     "openrouter": "closed"}
            assert s["local_share"] == pytest.approx(local_before / served_before if served_before else 0.0)
            assert s["budget_remaining_frac"] == pytest.approx(max(0.0, limit_usd - spent_before) / limit_usd)
            # the logged distribution is the artifact's under exactly this state
            prompt = PROMPTS[int(row["request_id"][3:])]
            record = {"prompt": prompt, "agent_type": AGENT_TYPE, "n_messages": 1}
            want = dict(zip(policy.models, expected_probs(policy, record, row["policy_state"]), strict=True))
            got = dict(zip(row["action_models"], row["action_probs"], strict=True))
            np.testing.assert_allclose([got[m] for m in policy.models], [want[m] for m in policy.models], atol=1e-6)
            assert row["chosen_model"] == max(want, key=lambda m: want[m])
            probs_by_phase[phase][prompt] = np.asarray([got[m] for m in policy.models])
        else:
            assert row["policy_state"] is None  # explicit requests send no state to any policy
        local_before += row["served_model"] in local
        spent_before += row["cost_usd"]
    assert set(probs_by_phase["p1"]) == set(probs_by_phase["p2"]) == set(PROMPTS)
    # the state changes PPO's answer: nearly spent budget + anthropic down -> other distributions
    diff = max(np.abs(probs_by_phase["p1"][p] - probs_by_phase["p2"][p]).max() for p in PROMPTS)
    assert diff > 1e-3
