"""The router state a stateful learned policy (PPO) sees with each request.

:class:`PolicyStateTracker` turns the router's budget tracker, circuit breakers and served
requests into a :class:`~router_rl.serve.protocol.RouterState`, the same quantities as the state
part of a ``BudgetedRouting`` observation (:mod:`router_rl.envs.state`):

* ``budget_remaining_frac``: unspent share of the **global daily** budget
  (``budgets.global.daily_usd``), ``max(0, limit - spent - reserved) / limit`` (the env's day
  budget; ``reserved``: what calls in flight have reserved);
  ``None`` when no global daily budget is configured;
* ``elapsed_frac``: elapsed share of the UTC day (the budget window) on the router's wall clock;
* ``local_share``: share of today's served requests answered by a local model (0 before the
  first one), counted by :meth:`PolicyStateTracker.record_served`;
* ``breakers``: provider name -> breaker state (``closed`` / ``half_open`` / ``open``).

:meth:`PolicyStateTracker.check_supports` refuses, at router start, a policy needing state the
router cannot supply (a provider it has no breaker for, a budget fraction without a budget).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from datetime import UTC, datetime

from router_rl.core.errors import ConfigError
from router_rl.router.breaker import CircuitBreaker
from router_rl.router.budget import BudgetTracker
from router_rl.serve.protocol import RouterState, StateSpec

DAY_S = 86_400.0


class PolicyStateTracker:
    """Gather the :class:`RouterState` sent to the learned policy.

    Args:
        budget: The router's budget tracker (its global daily limit is the budget window).
        breakers: Provider name -> circuit breaker.
        is_local: Model id -> whether it is a local model.
        wall_clock: Epoch seconds (the budget tracker's clock).
    """

    def __init__(
        self,
        budget: BudgetTracker,
        breakers: Mapping[str, CircuitBreaker],
        is_local: Mapping[str, bool],
        wall_clock: Callable[[], float],
    ) -> None:
        self._budget = budget
        self._breakers = breakers
        self._is_local = is_local
        self._wall = wall_clock
        self._lock = threading.Lock()
        self._day = ""
        self._served = 0
        self._local = 0

    @property
    def daily_limit_usd(self) -> float | None:
        """The global daily budget (the state's budget window), ``None`` when unset."""
        return self._budget.config.global_limits.daily_usd

    def record_served(self, model: str) -> None:
        """Count one request answered by ``model`` in today's local share."""
        day = datetime.fromtimestamp(self._wall(), tz=UTC).strftime("%Y-%m-%d")
        with self._lock:
            if day != self._day:
                self._day, self._served, self._local = day, 0, 0
            self._served += 1
            self._local += int(bool(self._is_local.get(model, False)))

    def snapshot(self) -> RouterState:
        """The router state now."""
        now = self._wall()
        d = datetime.fromtimestamp(now, tz=UTC)
        midnight = d.replace(hour=0, minute=0, second=0, microsecond=0).timestamp()
        elapsed = min(1.0, max(0.0, (now - midnight) / DAY_S))
        limit = self.daily_limit_usd
        remaining: float | None = None
        if limit is not None:
            spent = self._budget.spent(None, period="daily") + self._budget.reserved(None, period="daily")
            remaining = 0.0 if limit <= 0 else min(1.0, max(0.0, limit - spent) / limit)
        with self._lock:
            today = d.strftime("%Y-%m-%d") == self._day
            share = self._local / self._served if today and self._served else 0.0
        return RouterState(
            budget_remaining_frac=remaining,
            elapsed_frac=elapsed,
            local_share=share,
            breakers={name: b.state.value for name, b in self._breakers.items()},
        )

    def check_supports(self, spec: StateSpec | None, *, setting: str, policy: str) -> None:
        """Refuse a policy that needs state this router cannot supply.

        Args:
            spec: What the policy needs (``None``: stateless, always fine).
            setting: Config setting of the policy (for the message).
            policy: The policy's version (for the message).

        Raises:
            ConfigError: a breaker of a provider the router does not have, or the remaining
                budget fraction without ``budgets.global.daily_usd``.
        """
        if spec is None:
            return
        missing = [p for p in spec.providers if p not in self._breakers]
        if missing:
            raise ConfigError(
                setting,
                f"policy {policy} reads the circuit-breaker state of providers {spec.providers}, but the router "
                f"has no provider named {missing} (its providers: {sorted(self._breakers)}); name the router's "
                "providers as in the catalog the policy was trained on",
            )
        if "budget_remaining_frac" in spec.fields and self.daily_limit_usd is None:
            raise ConfigError(
                "budgets.global.daily_usd",
                f"policy {policy} ({setting}) reads the remaining fraction of a daily budget; set a global daily "
                "budget so the router can send it",
            )
