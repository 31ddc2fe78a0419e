"""A routed stream after its first token: relays the provider's chunks and reports how it ended.

The session knows nothing of the router: whoever opens it passes ``on_end`` (breaker, span, cost
and decision-log row of the request, called exactly once when the stream ends, however it ends)
and ``on_discard`` (for a session that lost a hedge race and is never iterated).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

from router_rl.providers.base import ProviderError, StreamChunk, Usage
from router_rl.router.request import RoutingDecision

log = logging.getLogger("router_rl.router")


async def aclose_quietly(agen: AsyncIterator[Any]) -> None:
    """Close an async generator; an error while closing a broken stream is logged at debug, not raised."""
    close = getattr(agen, "aclose", None)
    if close is not None:
        try:
            await close()
        except Exception:  # closing a broken stream must not mask the original failure
            log.debug("error while closing a broken stream", exc_info=True)


@dataclass
class StreamEvent:
    """One event of a routed stream: a text delta, or (last) an error."""

    delta: str = ""
    finish_reason: str | None = None
    error: str | None = None


@dataclass(frozen=True)
class StreamEnd:
    """How a stream ended (what ``on_end`` receives).

    Attributes:
        finished: The provider's stream ended normally.
        broken: The provider failed after the first token (``error`` says how).
        error: ``stream_broken_after_first_token:<kind>``, ``client_disconnected`` or ``None``.
        usage: The last usage the provider reported (``None``: none).
        text_chars: Characters of text streamed.
        text: The assembled answer text (only when the session keeps it, else ``None``).
        duration_s: From the attempt's start to the end of the stream.
    """

    finished: bool
    broken: bool
    error: str | None
    usage: Usage | None
    text_chars: int
    text: str | None
    duration_s: float


class StreamSession:
    """An open routed stream. Iterate it once; ``on_end`` accounts for it when it ends.

    Args:
        request_id: Request id.
        decision: The routing decision.
        model: Model streaming the answer.
        agen: The provider's chunk iterator (after ``head``).
        head: Chunks already read (up to the first token).
        clock: Monotonic clock.
        t_start: When the attempt started (``clock`` time).
        on_end: ``(session, end) -> usage``: accounts for the ended stream, returns the usage to
            report (estimated when the provider sent none).
        on_discard: Releases what an unused session holds (breaker slot, span).
        keep_text: Assemble the answer text (``StreamEnd.text``).

    Attributes:
        request_id: Request id.
        decision: The routing decision.
        served_model: Model streaming the answer.
        fallback_reason: Why another model than the chosen one streams it, if so.
        error: Set when the stream broke after the first token (also sent as the last event).
        usage: The reported usage, once the stream ended.
    """

    def __init__(
        self,
        *,
        request_id: str,
        decision: RoutingDecision,
        model: str,
        agen: AsyncIterator[StreamChunk],
        head: list[StreamChunk],
        clock: Callable[[], float],
        t_start: float,
        on_end: Callable[[StreamSession, StreamEnd], Usage | None],
        on_discard: Callable[[], None],
        keep_text: bool = False,
    ) -> None:
        self.request_id = request_id
        self.decision = decision
        self.served_model = model
        self.fallback_reason: str | None = None
        self.error: str | None = None
        self.usage: Usage | None = None
        self._agen = agen
        self._head = head
        self._clock = clock
        self._t = t_start
        self._on_end = on_end
        self._on_discard = on_discard
        self._keep_text = keep_text
        self._done = False
        self._usage: Usage | None = None
        self._chars = 0
        self._parts: list[str] = []

    async def discard(self) -> None:
        """Close a session nobody will iterate (it lost a hedge race)."""
        self._on_discard()
        await aclose_quietly(self._agen)

    async def events(self) -> AsyncIterator[StreamEvent]:
        """Yield the stream's events; the last one carries ``error`` if the stream broke."""
        if self._done:
            raise RuntimeError("StreamSession.events() can only be iterated once")
        self._done = True
        finished = False
        try:
            for c in self._head:
                if (ev := self._take(c)) is not None:
                    yield ev
            try:
                async for c in self._agen:
                    if (ev := self._take(c)) is not None:
                        yield ev
                finished = True
            except ProviderError as e:
                self.error = f"stream_broken_after_first_token:{e.kind.value}"
                log.error("request %s: stream from %s broke after the first token (%s)", self.request_id,
                          self.served_model, e.kind.value)
                yield StreamEvent(error=self.error)
        finally:
            dt = self._clock() - self._t
            broken = self.error is not None
            if not finished:
                self.error = self.error or "client_disconnected"
                await aclose_quietly(self._agen)
            end = StreamEnd(finished=finished, broken=broken, error=None if finished else self.error,
                            usage=self._usage, text_chars=self._chars,
                            text="".join(self._parts) if self._keep_text else None, duration_s=dt)
            self.usage = self._on_end(self, end)

    def _take(self, c: StreamChunk) -> StreamEvent | None:
        """Record one chunk (usage, text); the event to relay, if it carries any."""
        self._usage = c.usage or self._usage
        self._chars += len(c.delta)
        if self._keep_text:
            self._parts.append(c.delta)
        return StreamEvent(c.delta, c.finish_reason) if c.delta or c.finish_reason else None
