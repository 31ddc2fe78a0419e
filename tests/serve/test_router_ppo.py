"""A PPO artifact behind the live router, in-process: routed by PPO with the router's real state, logged.

Real parts only: the tiny PPO artifact (``conftest.ppo_dir``), replay backends on 127.0.0.1, the
router's budget tracker and breakers; the wall clock is injected so the elapsed share is exact.
"""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from _ppo_helpers import (
    AGENT_TYPE,
    LOCAL,
    MORNING,
    PROMPTS,
    check_ppo_rows,
    expected_probs,
    inp,
    route_two_phases,
    sim_router_config,
)

from router_rl.core.errors import ConfigError
from router_rl.policies.base import RoutingPolicy
from router_rl.replay.server import ReplayBackendServer
from router_rl.router.breaker import BreakerConfig, CircuitBreaker
from router_rl.router.budget import BudgetConfig, BudgetTracker
from router_rl.router.config import parse_config
from router_rl.router.engine import HybridRouter
from router_rl.router.policy_client import InProcessPolicyClient
from router_rl.router.policy_state import PolicyStateTracker
from router_rl.traces.decision_log import read_decision_log

pytestmark = pytest.mark.slow  # the session PPO artifact trains for ~10 s

Backends = tuple[ReplayBackendServer, ReplayBackendServer]


def test_router_serves_ppo_in_process_with_the_state_it_logs(
    ppo_dir: Path, sim_backends: Backends, tmp_path: Path
) -> None:
    local, cloud = sim_backends
    cfg = parse_config(sim_router_config(
        local.base_url, cloud.base_url, learned={"policy_dir": str(ppo_dir)},
        logging={"decision_log_dir": str(tmp_path / "log"), "flush_interval_s": 60},
    ))
    clock = [MORNING]
    router = HybridRouter(cfg, wall_clock=lambda: clock[0])
    assert isinstance(router.policy_client, InProcessPolicyClient)
    assert router.policy_client.state_spec is not None
    assert router.policy_client.state_spec.providers == ["anthropic", "openrouter"]
    route_two_phases(router, clock)
    df = read_decision_log(tmp_path / "log")
    assert df.height == 2 * len(PROMPTS) + 6
    check_ppo_rows(df, RoutingPolicy.load(ppo_dir), limit_usd=0.002)
    m = router.metrics.render().decode()
    assert "router_rl_policy_errors_total{" not in m  # no request fell back


def _cfg(local: str, cloud: str, ppo_dir: Path, **kw: Any) -> Any:
    return parse_config(sim_router_config(local, cloud, learned={"policy_dir": str(ppo_dir)}, **kw))


def test_router_refuses_ppo_it_cannot_give_the_state_it_needs(ppo_dir: Path, sim_backends: Backends) -> None:
    local, cloud = sim_backends
    # providers named otherwise than in the training catalog: no breaker state for anthropic
    raw = sim_router_config(local.base_url, cloud.base_url, learned={"policy_dir": str(ppo_dir)})
    raw["providers"][1]["name"] = "claude"
    with pytest.raises(ConfigError, match=r"learned: .*providers \['anthropic', 'openrouter'\].*no provider named "
                                          r"\['anthropic'\]"):
        HybridRouter(parse_config(raw))
    # no global daily budget: the remaining budget fraction cannot be sent
    with pytest.raises(ConfigError, match=r"budgets.global.daily_usd: policy ppo@.* reads the remaining fraction"):
        HybridRouter(_cfg(local.base_url, cloud.base_url, ppo_dir, budgets={"global": {"daily_usd": None}}))


def test_refused_state_is_a_logged_fallback_never_a_silent_one(
    ppo_dir: Path, sim_backends: Backends, tmp_path: Path
) -> None:
    """A client that sends no state (here: an engine whose spec was hidden) is refused per request, loudly."""
    local, cloud = sim_backends
    cfg = _cfg(local.base_url, cloud.base_url, ppo_dir,
               logging={"decision_log_dir": str(tmp_path / "log"), "flush_interval_s": 60})
    client = InProcessPolicyClient.from_dir(ppo_dir)

    class NoState(InProcessPolicyClient):
        @property
        def wants_state(self) -> bool:
            return False

    router = HybridRouter(cfg, policy_client=NoState(client.engine))

    async def go() -> None:
        try:
            await router.route(inp(PROMPTS[0], "r0"))
        finally:
            await router.aclose()

    asyncio.run(go())
    row = read_decision_log(tmp_path / "log").row(0, named=True)
    assert row["fallback_reason"] == "policy_refused" and row["policy_version"].endswith("balanced(fallback)")
    assert row["policy_state"] is None
    assert 'router_rl_policy_errors_total{reason="refused"} 1.0' in router.metrics.render().decode()


def test_policy_state_tracker_budget_day_and_local_share() -> None:
    clock = [datetime(2026, 12, 1, 12, 0, tzinfo=UTC).timestamp()]
    budget = BudgetTracker(BudgetConfig.model_validate({"global": {"daily_usd": 2.0}}), clock=lambda: clock[0])
    breakers = {"a": CircuitBreaker("a", BreakerConfig(consecutive_failures=1), clock=lambda: 0.0)}
    t = PolicyStateTracker(budget, breakers, {"loc": True, "cld": False}, lambda: clock[0])
    s = t.snapshot()
    assert (s.budget_remaining_frac, s.elapsed_frac, s.local_share, s.breakers) == (1.0, 0.5, 0.0, {"a": "closed"})
    budget.record("x", 1.5)
    t.record_served("loc")
    t.record_served("loc")
    t.record_served("cld")
    breakers["a"].allow()
    breakers["a"].record_failure()
    s = t.snapshot()
    assert s.budget_remaining_frac == pytest.approx(0.25) and s.local_share == pytest.approx(2 / 3)
    assert s.breakers == {"a": "open"}
    budget.record("x", 5.0)  # over the limit: 0, never negative
    assert t.snapshot().budget_remaining_frac == 0.0
    clock[0] = datetime(2026, 12, 2, 0, 0, tzinfo=UTC).timestamp()  # a new UTC day: fresh window
    s = t.snapshot()
    assert (s.budget_remaining_frac, s.elapsed_frac, s.local_share) == (1.0, 0.0, 0.0)
    t.record_served("cld")
    assert t.snapshot().local_share == 0.0
    # no global daily budget: the fraction is unknown (None), not a made-up 1.0
    t2 = PolicyStateTracker(BudgetTracker(BudgetConfig()), breakers, {}, lambda: clock[0])
    assert t2.snapshot().budget_remaining_frac is None


def test_concurrent_requests_each_log_the_state_ppo_used(
    ppo_dir: Path, sim_backends: Backends, tmp_path: Path
) -> None:
    """40 requests in flight together: every row's distribution is PPO's under exactly its logged state,
    and the tracker's counts end equal to the log's."""
    local, cloud = sim_backends
    cfg = _cfg(local.base_url, cloud.base_url, ppo_dir,
               logging={"decision_log_dir": str(tmp_path / "log"), "flush_interval_s": 60})
    router = HybridRouter(cfg, wall_clock=lambda: MORNING)

    async def go() -> Any:
        try:
            await asyncio.gather(*(router.route(inp(PROMPTS[i % len(PROMPTS)], f"c{i}")) for i in range(40)))
            return router.policy_state.snapshot()
        finally:
            await router.aclose()

    final = asyncio.run(go())
    df = read_decision_log(tmp_path / "log")
    policy = RoutingPolicy.load(ppo_dir)
    assert df.height == 40 and set(df["policy_version"]) == {policy.version}
    assert df["fallback_reason"].null_count() == 40
    for row in df.iter_rows(named=True):
        rec = {"prompt": PROMPTS[int(row["request_id"][1:]) % len(PROMPTS)], "agent_type": AGENT_TYPE, "n_messages": 1}
        want = expected_probs(policy, rec, row["policy_state"])
        got = dict(zip(row["action_models"], row["action_probs"], strict=True))
        np.testing.assert_allclose([got[m] for m in policy.models], want, atol=1e-6)
        assert 0.0 <= json.loads(row["policy_state"])["local_share"] <= 1.0
    n_local = sum(m in LOCAL for m in df["served_model"])
    assert final.local_share == pytest.approx(n_local / 40)
    assert final.budget_remaining_frac == pytest.approx(max(0.0, 0.002 - df["cost_usd"].sum()) / 0.002)
