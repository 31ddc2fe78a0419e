"""USD budgets per agent and global, per UTC day and month.

Spend is recorded after each call (actual cost); :meth:`BudgetTracker.check` is asked before a
call and says which budget, if any, is exhausted. What happens then is the configured
:class:`ExhaustedBehaviour` (applied by the router, not here).
"""

from __future__ import annotations

import threading
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field


class ExhaustedBehaviour(StrEnum):
    """What the router does when a budget is exhausted."""

    LOCAL_ONLY = "local_only"  # keep serving, but only from local models
    REJECT = "reject"  # answer HTTP 429
    ALLOW_AND_ALERT = "allow_and_alert"  # keep serving anything, log an alert + count a metric


class BudgetLimits(BaseModel):
    """Daily / monthly USD limits (``None`` = unlimited)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    daily_usd: float | None = Field(default=None, ge=0)
    monthly_usd: float | None = Field(default=None, ge=0)


class BudgetConfig(BaseModel):
    """Budget settings.

    Attributes:
        global_limits: Limits on the whole fleet's spend.
        per_agent: Default limits applied to every agent id.
        agents: Per-agent overrides of ``per_agent``, keyed by agent id.
        on_exhausted: Behaviour when any applicable limit is reached.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    global_limits: BudgetLimits = Field(default_factory=BudgetLimits, alias="global")
    per_agent: BudgetLimits = Field(default_factory=BudgetLimits)
    agents: dict[str, BudgetLimits] = Field(default_factory=dict)
    on_exhausted: ExhaustedBehaviour = ExhaustedBehaviour.LOCAL_ONLY


@dataclass(frozen=True)
class BudgetStatus:
    """Result of a budget check.

    Attributes:
        exhausted: Whether some applicable limit is reached.
        scope: Which one (e.g. ``"agent:qe-1:daily"``, ``"global:monthly"``) or ``None``.
        spent_usd: Spend in that scope (0 when not exhausted).
        limit_usd: The limit reached (0 when not exhausted).
    """

    exhausted: bool
    scope: str | None = None
    spent_usd: float = 0.0
    limit_usd: float = 0.0


def _periods(ts: float) -> tuple[str, str]:
    d = datetime.fromtimestamp(ts, tz=UTC)
    return d.strftime("%Y-%m-%d"), d.strftime("%Y-%m")


class BudgetTracker:
    """Thread-safe spend accounting against :class:`BudgetConfig`.

    Args:
        config: Limits and behaviour.
        clock: Wall clock in epoch seconds (UTC periods are derived from it); inject in tests.
    """

    def __init__(self, config: BudgetConfig | None = None, *, clock: Callable[[], float] = time.time) -> None:
        self.config = config or BudgetConfig()
        self._clock = clock
        self._lock = threading.Lock()
        # (scope, period key) -> USD
        self._spent: dict[tuple[str, str], float] = defaultdict(float)

    @property
    def behaviour(self) -> ExhaustedBehaviour:
        """The configured behaviour when exhausted."""
        return self.config.on_exhausted

    def _limits_for(self, agent_id: str) -> BudgetLimits:
        return self.config.agents.get(agent_id, self.config.per_agent)

    def record(self, agent_id: str, usd: float) -> None:
        """Add ``usd`` of spend for ``agent_id`` (and globally) in the current day and month."""
        if usd < 0:
            raise ValueError(f"BudgetTracker.record: usd must be >= 0, got {usd!r}")
        day, month = _periods(self._clock())
        with self._lock:
            for scope in ("global", f"agent:{agent_id}"):
                self._spent[(scope, day)] += usd
                self._spent[(scope, month)] += usd

    def spent(self, agent_id: str | None = None, *, period: str = "daily") -> float:
        """USD spent in the current day (``period="daily"``) or month (``"monthly"``)."""
        day, month = _periods(self._clock())
        key = day if period == "daily" else month
        scope = "global" if agent_id is None else f"agent:{agent_id}"
        with self._lock:
            return self._spent.get((scope, key), 0.0)

    def check(self, agent_id: str) -> BudgetStatus:
        """Whether any limit applying to ``agent_id`` (or the global one) is already reached."""
        day, month = _periods(self._clock())
        checks = (
            ("global", "daily", day, self.config.global_limits.daily_usd),
            ("global", "monthly", month, self.config.global_limits.monthly_usd),
            (f"agent:{agent_id}", "daily", day, self._limits_for(agent_id).daily_usd),
            (f"agent:{agent_id}", "monthly", month, self._limits_for(agent_id).monthly_usd),
        )
        with self._lock:
            for scope, period, key, limit in checks:
                if limit is None:
                    continue
                spent = self._spent.get((scope, key), 0.0)
                if spent >= limit:
                    return BudgetStatus(True, f"{scope}:{period}", spent, limit)
        return BudgetStatus(False)
