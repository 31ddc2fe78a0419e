"""The local-serving cost and latency model: formulas, queueing, and what it does to the fleet."""

from __future__ import annotations

import math

import numpy as np
import pytest

from router_rl.core.errors import ConfigError
from router_rl.eval.mission import oracle_cost_share
from router_rl.traces import simulate_fleet
from router_rl.traces.serving import LocalServingConfig, erlang_c, roofline_tokens_per_s
from router_rl.traces.simulate import SimulationConfig, default_catalog

BATCHED = LocalServingConfig()
SINGLE = LocalServingConfig(mode="single_stream")


def _mm_c_wait_probability(c: int, a: float) -> float:
    """Erlang C from its textbook closed form (factorials)."""
    top = a**c / math.factorial(c) * c / (c - a)
    return top / (sum(a**k / math.factorial(k) for k in range(c)) + top)


@pytest.mark.parametrize(("c", "a"), [(1, 0.5), (2, 1.0), (8, 5.6), (16, 14.0), (3, 0.0)])
def test_erlang_c_matches_the_closed_form(c: int, a: float) -> None:
    assert erlang_c(c, a) == pytest.approx(_mm_c_wait_probability(c, a), rel=1e-12)


def test_erlang_c_known_values_and_bad_input() -> None:
    assert erlang_c(1, 0.7) == pytest.approx(0.7)  # M/M/1: P(wait) = rho
    assert erlang_c(2, 1.0) == pytest.approx(1 / 3)
    with pytest.raises(ValueError, match="offered load"):
        erlang_c(4, 4.0)
    with pytest.raises(ValueError, match="servers"):
        erlang_c(0, 0.1)


def test_batched_speed_and_price_follow_the_stated_formulas() -> None:
    tps = np.array([100.0, 40.0])
    s_b = BATCHED.stream_tokens_per_s(tps)
    np.testing.assert_allclose(s_b, tps / (1 + 7 / 32))
    np.testing.assert_allclose(BATCHED.server_tokens_per_s(tps), 8 * s_b)
    gpu = BATCHED.gpu_seconds(np.array([1000.0]), np.array([400.0]), tps)
    np.testing.assert_allclose(gpu, (400 / (8 * s_b) + 1000 / (100 * tps)) / 0.7)
    # a request's own time is slower per stream than alone, but it pays for ~1/B of the GPU
    assert (BATCHED.service_seconds(np.array([1000.0]), np.array([400.0]), tps)
            > SINGLE.service_seconds(np.array([1000.0]), np.array([0.0]), tps)).all()
    assert (gpu < SINGLE.gpu_seconds(np.array([1000.0]), np.array([400.0]), tps) / 3).all()
    # the same answer as "GPU price / requests completed per hour"
    spec = default_catalog()["qwen2.5-coder:7b"]
    per_hour = BATCHED.requests_per_hour(1000.0, 400.0, spec.tokens_per_s or 0.0)
    assert spec.cost(1000, 400, serving=BATCHED) == pytest.approx(spec.gpu_usd_per_hour / per_hour)


def test_single_stream_is_the_earlier_pricing() -> None:
    spec = default_catalog()["devstral-2:123b"]
    assert spec.cost(1200, 500, serving=SINGLE) == pytest.approx(spec.cost(1200, 500))
    assert SINGLE.wait_probability() == 0.0
    waits = SINGLE.queue_wait(np.ones((10, 2)), np.random.default_rng(0))
    assert (waits == 0).all()


def test_queue_waits_have_the_erlang_rate_and_mean() -> None:
    service = np.full((200_000, 1), 4.0)
    waits = BATCHED.queue_wait(service, np.random.default_rng(3))
    p = BATCHED.wait_probability()
    assert (waits > 0).mean() == pytest.approx(p, abs=0.005)
    assert waits[waits > 0].mean() == pytest.approx(4.0 / (8 * 0.3), rel=0.02)


def test_roofline_reproduces_the_measured_single_stream_speed() -> None:
    # Llama-3.1-8B bf16 (16.1 GB) on one H100 SXM: ~154 tok/s measured (docs/traces.md)
    assert roofline_tokens_per_s(16.1, 3350.0) == pytest.approx(160.2, abs=0.5)
    with pytest.raises(ValueError, match="weight_gb"):
        roofline_tokens_per_s(0.0, 3350.0)


def test_config_is_validated() -> None:
    with pytest.raises(ConfigError, match="utilisation"):
        LocalServingConfig(utilisation=1.0)
    with pytest.raises(ConfigError, match="mode"):
        LocalServingConfig(mode="gpu-per-request")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="concurrency"):
        SimulationConfig.from_dict({"local_serving": {"concurrency": 0}})


def test_serving_moves_only_local_cost_and_latency() -> None:
    a = simulate_fleet(400, seed=4).matrix()
    b = simulate_fleet(400, seed=4, config=SimulationConfig(local_serving=SINGLE)).matrix()
    loc = a.is_local()
    for name in ("quality", "input_tokens", "output_tokens", "error"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
    np.testing.assert_array_equal(a.cost[:, ~loc], b.cost[:, ~loc])
    np.testing.assert_array_equal(a.latency[:, ~loc], b.latency[:, ~loc])
    ratio = a.cost[:, loc].sum(0) / b.cost[:, loc].sum(0)
    assert (ratio < 0.25).all() and (ratio > 0.1).all()


def test_the_cost_goal_is_reachable_only_with_batched_serving() -> None:
    """>= 60% lower cost at the mission point: within a good router's reach when local models batch."""
    batched = simulate_fleet(3000, seed=5)
    single = simulate_fleet(3000, seed=5, config=SimulationConfig(local_serving=SINGLE))
    ref = "claude-sonnet-4.5"
    assert oracle_cost_share(batched.matrix(), batched.ground_truth_matrix(), reference=ref) <= 0.3
    assert oracle_cost_share(single.matrix(), single.ground_truth_matrix(), reference=ref) > 0.4
    # a 100% floor no router reaches: inf, not a made-up number
    assert oracle_cost_share(batched.matrix(), batched.ground_truth_matrix(), reference=ref, floor=1.2) == np.inf
