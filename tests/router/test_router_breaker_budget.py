"""Circuit breaker transitions (injected clock) and budget accounting."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from router_rl.router.breaker import BreakerConfig, BreakerState, CircuitBreaker
from router_rl.router.budget import BudgetConfig, BudgetTracker, ExhaustedBehaviour


class FakeClock:
    def __init__(self, t: float = 1000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def _breaker(**kw: object) -> tuple[CircuitBreaker, FakeClock, list[tuple[str, str, str]]]:
    clock = FakeClock()
    changes: list[tuple[str, str, str]] = []
    cfg = BreakerConfig.model_validate(
        {"consecutive_failures": 3, "window": 10, "min_calls": 4, "reset_timeout_s": 30.0, **kw}
    )
    b = CircuitBreaker("p", cfg, clock=clock, on_change=lambda n, o, s: changes.append((n, o.value, s.value)))
    return b, clock, changes


def test_consecutive_failures_open_then_half_open_then_close() -> None:
    b, clock, changes = _breaker()
    for _ in range(2):
        assert b.allow()
        b.record_failure()
    assert b.state == BreakerState.CLOSED
    assert b.allow()
    b.record_failure()
    assert b.state == BreakerState.OPEN
    assert not b.allow()
    clock.t += 29.9
    assert b.state == BreakerState.OPEN and not b.allow()
    clock.t += 0.2
    assert b.state == BreakerState.HALF_OPEN
    assert b.allow()  # the single probe
    assert not b.allow()  # a second concurrent probe is refused
    b.record_success()
    assert b.state == BreakerState.CLOSED
    assert changes == [("p", "closed", "open"), ("p", "open", "half_open"), ("p", "half_open", "closed")]


def test_failed_probe_reopens_and_restarts_timeout() -> None:
    b, clock, _ = _breaker()
    for _ in range(3):
        b.allow()
        b.record_failure()
    clock.t += 31
    assert b.allow()
    b.record_failure()
    assert b.state == BreakerState.OPEN
    clock.t += 29
    assert not b.allow()
    clock.t += 2
    assert b.state == BreakerState.HALF_OPEN


def test_failure_rate_window_opens_without_consecutive_failures() -> None:
    b, _, _ = _breaker(consecutive_failures=100, failure_rate_threshold=0.5, window=6, min_calls=6)
    # alternate F S F S F: rate 3/5 but fewer than min_calls
    for i in range(5):
        b.allow()
        b.record_failure() if i % 2 == 0 else b.record_success()
    assert b.state == BreakerState.CLOSED
    b.allow()
    b.record_success()  # 3/6 = 0.5 reached only on a failure
    assert b.state == BreakerState.CLOSED
    b.allow()
    b.record_failure()  # window now S F S F S F -> 3/6 >= 0.5
    assert b.state == BreakerState.OPEN


def test_half_open_needs_several_successes_and_release_frees_probe() -> None:
    b, clock, _ = _breaker(half_open_max_probes=2, half_open_successes=2)
    for _ in range(3):
        b.allow()
        b.record_failure()
    clock.t += 30
    assert b.allow() and b.allow() and not b.allow()
    b.release()
    assert b.would_allow()
    b.record_success()
    assert b.state == BreakerState.HALF_OPEN
    assert b.allow()
    b.record_success()
    assert b.state == BreakerState.CLOSED


def test_breaker_config_validation_names_field() -> None:
    with pytest.raises(ValidationError, match="min_calls"):
        BreakerConfig(window=5, min_calls=6)
    with pytest.raises(ValidationError, match="failure_rate_threshold"):
        BreakerConfig(failure_rate_threshold=1.5)


def test_budget_per_agent_and_global_daily_monthly() -> None:
    clock = FakeClock(1_767_225_600.0)  # 2026-01-01T00:00:00Z
    cfg = BudgetConfig.model_validate(
        {
            "global": {"monthly_usd": 1.0},
            "per_agent": {"daily_usd": 0.10},
            "agents": {"vip": {"daily_usd": 0.50}},
            "on_exhausted": "reject",
        }
    )
    t = BudgetTracker(cfg, clock=clock)
    assert t.behaviour == ExhaustedBehaviour.REJECT
    t.record("a", 0.06)
    assert not t.check("a").exhausted
    t.record("a", 0.05)
    st = t.check("a")
    assert st.exhausted and st.scope == "agent:a:daily" and st.limit_usd == pytest.approx(0.10)
    t.record("vip", 0.2)
    assert not t.check("vip").exhausted  # override is higher
    assert not t.check("b").exhausted
    clock.t += 86_400  # next day: daily budgets reset
    assert not t.check("a").exhausted
    assert t.spent(period="monthly") == pytest.approx(0.31)
    t.record("vip", 0.45)
    t.record("b", 0.09)
    t.record("c", 0.09)
    t.record("d", 0.09)
    st = t.check("zzz")
    assert st.exhausted and st.scope == "global:monthly"
    clock.t += 31 * 86_400  # next month
    assert not t.check("zzz").exhausted
    with pytest.raises(ValueError, match="usd must be >= 0"):
        t.record("a", -1.0)
