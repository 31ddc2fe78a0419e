"""Per-provider circuit breakers (closed / open / half-open) with an injectable clock.

A breaker opens when either

* ``consecutive_failures`` calls in a row failed, or
* the failure rate over the last ``window`` calls reached ``failure_rate_threshold`` (only once at
  least ``min_calls`` calls are in the window).

After ``reset_timeout_s`` an open breaker becomes half-open and lets through at most
``half_open_max_probes`` concurrent probe calls. ``half_open_successes`` successful probes close
it again; any failed probe re-opens it (and restarts the timeout).
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field, model_validator

Clock = Callable[[], float]


class BreakerState(StrEnum):
    """The three classic circuit-breaker states."""

    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class BreakerConfig(BaseModel):
    """Circuit-breaker parameters (validated on construction).

    Attributes:
        consecutive_failures: Failures in a row that open the breaker.
        window: Number of most recent calls the failure rate is computed over.
        failure_rate_threshold: Failure rate in ``(0, 1]`` over the window that opens the breaker.
        min_calls: Calls needed in the window before the failure rate is considered.
        reset_timeout_s: Seconds an open breaker waits before going half-open.
        half_open_max_probes: Concurrent probe calls allowed while half-open.
        half_open_successes: Successful probes needed to close again.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    consecutive_failures: int = Field(default=5, ge=1)
    window: int = Field(default=20, ge=1)
    failure_rate_threshold: float = Field(default=0.5, gt=0.0, le=1.0)
    min_calls: int = Field(default=10, ge=1)
    reset_timeout_s: float = Field(default=30.0, gt=0.0)
    half_open_max_probes: int = Field(default=1, ge=1)
    half_open_successes: int = Field(default=1, ge=1)

    @model_validator(mode="after")
    def _check(self) -> BreakerConfig:
        if self.min_calls > self.window:
            raise ValueError(f"min_calls ({self.min_calls}) must be <= window ({self.window})")
        return self


class CircuitBreaker:
    """A thread-safe circuit breaker for one provider.

    Usage: call :meth:`allow` before a call (it returns ``False`` when the call must be skipped
    and, in half-open state, reserves a probe slot), then exactly one of :meth:`record_success`
    or :meth:`record_failure` for every allowed call (or :meth:`release` if it was not made).

    Args:
        name: Provider name (for messages and metrics).
        config: Thresholds and timeouts.
        clock: Monotonic clock in seconds; inject a fake one in tests.
        on_change: Called as ``on_change(name, old, new)`` after every state transition.
    """

    def __init__(
        self,
        name: str,
        config: BreakerConfig | None = None,
        *,
        clock: Clock = time.monotonic,
        on_change: Callable[[str, BreakerState, BreakerState], None] | None = None,
    ) -> None:
        self.name = name
        self.config = config or BreakerConfig()
        self._clock = clock
        self._on_change = on_change
        self._lock = threading.Lock()
        self._state = BreakerState.CLOSED
        self._results: deque[bool] = deque(maxlen=self.config.window)  # True = failure
        self._consecutive = 0
        self._opened_at = 0.0
        self._probes_in_flight = 0
        self._probe_successes = 0
        self.transitions: list[tuple[BreakerState, BreakerState]] = []

    # --- state ------------------------------------------------------------------------------
    @property
    def state(self) -> BreakerState:
        """Current state (an open breaker past its timeout reports half-open)."""
        with self._lock:
            self._maybe_half_open()
            return self._state

    @property
    def consecutive_failures(self) -> int:
        """Failures in a row since the last success."""
        return self._consecutive

    def failure_rate(self) -> float:
        """Failure rate over the current window (0 when empty)."""
        with self._lock:
            return sum(self._results) / len(self._results) if self._results else 0.0

    def _set(self, new: BreakerState) -> None:
        old = self._state
        if old == new:
            return
        self._state = new
        self.transitions.append((old, new))
        if new == BreakerState.OPEN:
            self._opened_at = self._clock()
        if new == BreakerState.HALF_OPEN:
            self._probes_in_flight = 0
            self._probe_successes = 0
        if new == BreakerState.CLOSED:
            self._results.clear()
            self._consecutive = 0
        if self._on_change is not None:
            self._on_change(self.name, old, new)

    def _maybe_half_open(self) -> None:
        if self._state == BreakerState.OPEN and self._clock() - self._opened_at >= self.config.reset_timeout_s:
            self._set(BreakerState.HALF_OPEN)

    # --- protocol ---------------------------------------------------------------------------
    def allow(self) -> bool:
        """Whether a call may be made now (reserves a probe slot when half-open)."""
        return self._admit(reserve=True)

    def would_allow(self) -> bool:
        """Like :meth:`allow` but reserves nothing (for planning fallback chains)."""
        return self._admit(reserve=False)

    def _admit(self, *, reserve: bool) -> bool:
        """Whether a call may be made now; with ``reserve``, a half-open breaker takes a probe slot."""
        with self._lock:
            self._maybe_half_open()
            if self._state == BreakerState.CLOSED:
                return True
            if self._state == BreakerState.OPEN:
                return False
            if self._probes_in_flight >= self.config.half_open_max_probes:
                return False
            if reserve:
                self._probes_in_flight += 1
            return True

    def release(self) -> None:
        """Give back a probe slot reserved by :meth:`allow` for a call that was not made."""
        with self._lock:
            if self._state == BreakerState.HALF_OPEN and self._probes_in_flight > 0:
                self._probes_in_flight -= 1

    def record_success(self) -> None:
        """Record a successful call."""
        with self._lock:
            self._consecutive = 0
            if self._state == BreakerState.HALF_OPEN:
                self._probes_in_flight = max(0, self._probes_in_flight - 1)
                self._probe_successes += 1
                if self._probe_successes >= self.config.half_open_successes:
                    self._set(BreakerState.CLOSED)
                return
            if self._state == BreakerState.CLOSED:
                self._results.append(False)

    def record_failure(self) -> None:
        """Record a failed call (may open the breaker)."""
        with self._lock:
            self._consecutive += 1
            if self._state == BreakerState.HALF_OPEN:
                self._probes_in_flight = max(0, self._probes_in_flight - 1)
                self._set(BreakerState.OPEN)
                return
            if self._state == BreakerState.OPEN:
                return
            self._results.append(True)
            rate_trip = (
                len(self._results) >= self.config.min_calls
                and sum(self._results) / len(self._results) >= self.config.failure_rate_threshold
            )
            if self._consecutive >= self.config.consecutive_failures or rate_trip:
                self._set(BreakerState.OPEN)

    def force(self, state: BreakerState) -> None:
        """Force a state (admin / tests)."""
        with self._lock:
            self._set(state)
