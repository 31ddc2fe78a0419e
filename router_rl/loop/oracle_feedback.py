"""Oracle feedback: the realised quality of the model that served, posted after a delay (the judge's stand-in).

For every answered request the oracle looks up the quality of (task, served model) in the world's
matrix, times the regression factor in force for that model in the current round, and posts it to
the router's ``POST /v1/feedback`` through :class:`router_rl.client.AsyncFeedbackClient`, ``delay_s``
after the answer, in batches of at most ``batch_size`` (source ``oracle:matrix``, idempotency key
= request id, so a resend is stored once). It also compares its quality with the quality the
replay backend reported in the answer's content (4 decimals): a disagreement means the backend
and the truth disagree, and is counted (``mismatches``) and reported, never hidden.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from router_rl.loop.driver import Answer
    from router_rl.loop.world import LoopWorld

#: ``source`` of the oracle's feedback rows.
ORACLE_SOURCE = "oracle:matrix"


@dataclass
class OracleStats:
    """What the oracle sent.

    Attributes:
        sent: Feedback events stored or acknowledged as duplicates.
        batches: Batch requests sent.
        skipped_failed: Answers without a served model (nothing to label; the join gives them 0 when
            the router logged no outcome).
        mismatches: Answers whose reported quality differs from the truth by more than 1e-4.
        errors: Batches the router refused (message per batch).
    """

    sent: int = 0
    batches: int = 0
    skipped_failed: int = 0
    mismatches: int = 0
    errors: list[str] = field(default_factory=list)


class OracleFeedback:
    """Posts the matrix's realised quality of each served answer after ``delay_s`` (see module docstring).

    Args:
        world: The world (truth of every (task, model)).
        base_url: The router's base URL, or a callable returning it (read per batch).
        token: Bearer token.
        delay_s: Seconds between an answer and its feedback.
        batch_size: Events per batch request.
    """

    def __init__(
        self, world: LoopWorld, base_url: Any, token: str, *, delay_s: float = 0.5, batch_size: int = 100
    ) -> None:
        self.world = world
        self._url = base_url if callable(base_url) else (lambda: base_url)
        self.token = token
        self.delay_s = float(delay_s)
        self.batch_size = int(batch_size)
        self.stats = OracleStats()
        self._pending: list[tuple[float, dict[str, Any]]] = []
        self._round = 1
        self._wake = asyncio.Event()
        self._closing = False
        self._task: asyncio.Task[None] | None = None

    def set_round(self, round_: int) -> None:
        """Regression factors of round ``round_`` apply to the answers submitted from now on."""
        self._round = int(round_)

    def true_quality(self, answer: Answer) -> float:
        """The world's quality of (task, served model) in the current round."""
        assert answer.served_model is not None
        j = self.world.models.index(answer.served_model)
        return float(self.world.quality(np.asarray([answer.row]), self._round)[0, j])

    def submit(self, answer: Answer) -> None:
        """Queue feedback for ``answer`` (skipped, and counted, when nothing answered)."""
        if not answer.ok:
            self.stats.skipped_failed += 1
            return
        q = self.true_quality(answer)
        if answer.reported_quality is None or abs(answer.reported_quality - q) > 1e-4:
            self.stats.mismatches += 1
        ev = {"request_id": answer.request_id, "quality": q, "source": ORACLE_SOURCE,
              "idempotency_key": f"oracle-{answer.request_id}"}
        self._pending.append((time.monotonic() + self.delay_s, ev))
        self._wake.set()

    async def __aenter__(self) -> OracleFeedback:
        self._task = asyncio.create_task(self._run())
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def flush(self) -> None:
        """Wait until every queued event is due and sent."""
        while self._pending:
            self._wake.set()
            await asyncio.sleep(0.05)

    async def close(self) -> None:
        """Send what is queued (after its delay), then stop."""
        await self.flush()
        self._closing = True
        self._wake.set()
        if self._task is not None:
            await self._task
            self._task = None

    async def _run(self) -> None:
        from router_rl.client import AsyncFeedbackClient, FeedbackError

        while not self._closing:
            await self._wake.wait()
            self._wake.clear()
            while self._pending:
                now = time.monotonic()
                due = [p for p in self._pending if p[0] <= now][: self.batch_size]
                if not due:
                    await asyncio.sleep(min(p[0] for p in self._pending) - now)
                    continue
                async with AsyncFeedbackClient(self._url(), api_key=self.token, max_retries=3) as fb:
                    try:
                        res = await fb.send_batch([ev for _, ev in due])
                        self.stats.sent += len(res)
                    except FeedbackError as e:
                        self.stats.errors.append(f"{e.status} {e.code}: {e}")
                self.stats.batches += 1
                ids = {id(p) for p in due}
                self._pending = [p for p in self._pending if id(p) not in ids]
