"""USD budgets per agent and global, per UTC day and month, with reservations.

Before a provider call the router *reserves* the call's expected cost
(:meth:`BudgetTracker.reserve`: input tokens at the model's input price plus ``max_tokens`` (or
``default_output_tokens``) at its output price); the reservation is refused when spent +
reserved + this estimate would pass a limit. After the call it *settles* the reservation at the
actual cost. So however many calls run concurrently, the spend of a period is bounded by::

    limit + sum over admitted calls of max(0, actual cost - reserved cost)

which is ``limit`` itself when every call's reservation covers it (``max_tokens`` given, token
estimate not below the provider's count). With ``ledger_path`` set, reservations and settlements
are committed to a SQLite ledger (:mod:`router_rl.router.ledger`) and reloaded on start, so a
restart or a SIGKILL does not reset the spend (an interrupted call counts at its reservation).
What happens when a budget is exhausted is the configured :class:`ExhaustedBehaviour` (applied
by the router, not here).
"""

from __future__ import annotations

import functools
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from router_rl.router.ledger import SpendLedger


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
        ledger_path: SQLite spend ledger (durable across restarts and SIGKILL); ``None`` keeps
            spend in memory only.
        ledger_synchronous: ``normal`` (survives a process crash) or ``full`` (and power loss).
        default_output_tokens: Output tokens a reservation assumes when a request gives no
            ``max_tokens``.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    global_limits: BudgetLimits = Field(default_factory=BudgetLimits, alias="global")
    per_agent: BudgetLimits = Field(default_factory=BudgetLimits)
    agents: dict[str, BudgetLimits] = Field(default_factory=dict)
    on_exhausted: ExhaustedBehaviour = ExhaustedBehaviour.LOCAL_ONLY
    ledger_path: Path | None = None
    ledger_synchronous: Literal["normal", "full"] = "normal"
    default_output_tokens: int = Field(default=1024, ge=1)

    @property
    def has_limits(self) -> bool:
        """Whether any limit is set."""
        lims = [self.global_limits, self.per_agent, *self.agents.values()]
        return any(x.daily_usd is not None or x.monthly_usd is not None for x in lims)


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


@dataclass
class Reservation:
    """Expected cost held against the budgets while a call runs (settle or release it once)."""

    agent_id: str
    usd: float
    day: str
    month: str
    row_id: int | None = None
    done: bool = False


def _periods(ts: float) -> tuple[str, str]:
    return _periods_of_second(int(ts // 1))  # a UTC day / month starts on a whole second


@functools.lru_cache(maxsize=8)
def _periods_of_second(second: int) -> tuple[str, str]:
    d = datetime.fromtimestamp(second, tz=UTC)
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
        # (scope, period key) -> USD settled / currently reserved
        self._spent: dict[tuple[str, str], float] = defaultdict(float)
        self._reserved: dict[tuple[str, str], float] = defaultdict(float)
        self.ledger: SpendLedger | None = None
        self.recovered_unsettled = 0
        if self.config.ledger_path is not None:
            self.ledger = SpendLedger(self.config.ledger_path, synchronous=self.config.ledger_synchronous)
            day, month = _periods(self._clock())
            for t in self.ledger.totals(day, month):
                self._spent[(f"agent:{t.agent}", t.period)] += t.usd
                self._spent[("global", t.period)] += t.usd
            self.recovered_unsettled = self.ledger.unsettled()

    def close(self) -> None:
        """Close the ledger."""
        if self.ledger is not None:
            self.ledger.close()

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
        ts = self._clock()
        day, month = _periods(ts)
        with self._lock:
            for scope in ("global", f"agent:{agent_id}"):
                self._spent[(scope, day)] += usd
                self._spent[(scope, month)] += usd
            if self.ledger is not None:
                self.ledger.record(ts, day, month, agent_id, usd)

    def _applicable(self, agent_id: str, day: str, month: str) -> list[tuple[str, str, str, float]]:
        lim = self._limits_for(agent_id)
        out = []
        for scope, period, key, limit in (
            ("global", "daily", day, self.config.global_limits.daily_usd),
            ("global", "monthly", month, self.config.global_limits.monthly_usd),
            (f"agent:{agent_id}", "daily", day, lim.daily_usd),
            (f"agent:{agent_id}", "monthly", month, lim.monthly_usd),
        ):
            if limit is not None:
                out.append((scope, period, key, limit))
        return out

    def reserve(self, agent_id: str, usd: float, *, force: bool = False) -> Reservation | BudgetStatus:
        """Hold ``usd`` against every budget of ``agent_id``, atomically.

        Args:
            agent_id: The calling agent.
            usd: The call's expected cost (>= 0).
            force: Admit even past a limit (``allow_and_alert``, local models under
                ``local_only``); the reservation is still counted.

        Returns:
            The reservation, or the :class:`BudgetStatus` of the first limit it would pass.
        """
        if usd < 0:
            raise ValueError(f"BudgetTracker.reserve: usd must be >= 0, got {usd!r}")
        ts = self._clock()
        day, month = _periods(ts)
        with self._lock:
            if not force:
                for scope, period, key, limit in self._applicable(agent_id, day, month):
                    held = self._spent.get((scope, key), 0.0) + self._reserved.get((scope, key), 0.0)
                    if held + usd > limit:
                        return BudgetStatus(True, f"{scope}:{period}", held, limit)
            for scope in ("global", f"agent:{agent_id}"):
                self._reserved[(scope, day)] += usd
                self._reserved[(scope, month)] += usd
            row = self.ledger.reserve(ts, day, month, agent_id, usd) if self.ledger is not None else None
        return Reservation(agent_id, usd, day, month, row)

    def settle(self, res: Reservation, actual_usd: float) -> None:
        """Replace a reservation by the call's actual cost (0 for a failed call). Idempotent."""
        if actual_usd < 0:
            raise ValueError(f"BudgetTracker.settle: usd must be >= 0, got {actual_usd!r}")
        with self._lock:
            if res.done:
                return
            res.done = True
            for scope in ("global", f"agent:{res.agent_id}"):
                for key in (res.day, res.month):
                    self._reserved[(scope, key)] = max(0.0, self._reserved[(scope, key)] - res.usd)
                    self._spent[(scope, key)] += actual_usd
            if self.ledger is not None and res.row_id is not None:
                self.ledger.settle(res.row_id, actual_usd)

    def reserved(self, agent_id: str | None = None, *, period: str = "daily") -> float:
        """USD currently reserved by running calls in the current day / month."""
        day, month = _periods(self._clock())
        key = day if period == "daily" else month
        scope = "global" if agent_id is None else f"agent:{agent_id}"
        with self._lock:
            return self._reserved.get((scope, key), 0.0)

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
                spent = self._spent.get((scope, key), 0.0) + self._reserved.get((scope, key), 0.0)
                if spent >= limit:
                    return BudgetStatus(True, f"{scope}:{period}", spent, limit)
        return BudgetStatus(False)
