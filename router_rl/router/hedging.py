"""Hedged attempts: start the next candidate when the current one is silent, first answer wins.

:func:`race` runs a chain of attempts: the first starts at once; a failure (an attempt returning
``None``) starts the next immediately; silence for ``hedge_after_s`` starts the next *alongside*
(at most ``max_hedges`` times per chain, and only while the shared :class:`HedgeBudget` has a
token). The first success wins. Attempts still running then are handed to ``on_loser``: they
are not cancelled (their real outcome is what a circuit breaker should learn); only when the
race itself is cancelled or fails are the running attempts cancelled.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")


class HedgeBudget:
    """Token bucket bounding hedges to ``per_request`` per request on average (``burst`` at most at once).

    Args:
        per_request: Tokens added per routed request (0 < x <= 1).
        burst: Bucket capacity (also its initial content).
    """

    def __init__(self, per_request: float, burst: float) -> None:
        self.per_request = per_request
        self.burst = burst
        self.tokens = burst

    def on_request(self) -> None:
        """Credit one request."""
        self.tokens = min(self.burst, self.tokens + self.per_request)

    def take(self) -> bool:
        """Spend a token for one hedge, if there is one."""
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False


async def race(
    start_next: Callable[[], tuple[str, Awaitable[T | None]] | None],
    *,
    hedge_after_s: float | None,
    max_hedges: int,
    budget: HedgeBudget,
    on_hedge: Callable[[str], None],
    on_loser: Callable[[str, asyncio.Future[T | None]], None],
    discard: Callable[[T], Awaitable[None]] | None = None,
) -> tuple[T, str] | None:
    """Run attempts until one succeeds.

    Args:
        start_next: Returns ``(name, awaitable)`` of the next attempt, or ``None`` when the chain
            is exhausted. An attempt's awaitable returns its result, or ``None`` on failure.
        hedge_after_s: Silence after which the next attempt starts alongside (``None``: never).
        max_hedges: Hedged starts per race at most.
        budget: Shared hedge token bucket.
        on_hedge: Called with the hedged attempt's name.
        on_loser: Called with each attempt still running when another won.
        discard: Closes a success that lost (arrived in the same instant as the winner's).

    Returns:
        ``(result, name)`` of the winner, or ``None`` when every attempt failed.
    """
    pending: dict[asyncio.Future[T | None], str] = {}

    def launch() -> str | None:
        nxt = start_next()
        if nxt is None:
            return None
        name, aw = nxt
        pending[asyncio.ensure_future(aw)] = name
        return name

    timeout, hedges = hedge_after_s, 0
    launch()
    try:
        while pending:
            done, _ = await asyncio.wait(pending, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
            if not done:  # silence for hedge_after_s: start the next candidate alongside
                if hedges < max_hedges and budget.tokens >= 1.0:
                    name = launch()
                    if name is not None:
                        budget.take()
                        hedges += 1
                        on_hedge(name)
                        continue
                timeout = None  # no hedge left: wait for an answer or a failure
                continue
            winner: tuple[T, str] | None = None
            for fut in done:
                name = pending.pop(fut)
                r = fut.result()
                if r is not None and winner is None:
                    winner = (r, name)
                elif r is not None and discard is not None:
                    await discard(r)
            if winner is not None:
                for fut, name in pending.items():
                    on_loser(name, fut)
                pending.clear()
                return winner
            if not pending:
                launch()
        return None
    finally:
        for fut in pending:  # the race itself was cancelled or failed
            fut.cancel()
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)
