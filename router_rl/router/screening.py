"""Request screening: what is scanned for secrets / PII, and keeping that CPU work off the event loop.

Rule (documented in ``docs/router.md``): **every field that the router forwards to a provider
or writes to a log is scanned**, in full, never a prefix:

* ``messages[i].content`` (text parts of multi-part content are joined before the call, so
  each part is scanned as forwarded), ``stop[j]``;
* what lands in the decision log or in log lines: the agent id (``x-agent-id`` / ``user``),
  the agent type, the category, the request id (``x-request-id``);
* every ``metadata.*`` value (not forwarded, but an agent that puts a secret there is treated
  as sending a sensitive request).

A request with any flagged field is *sensitive*: it is only ever sent to local models. Flagged
identifying fields are never stored verbatim: the agent id, agent type and category become
``redacted:<sha256 prefix>`` and a flagged request id is replaced by a fresh one.

Large texts are scanned in overlapping windows of ``chunk_chars`` (overlap ``overlap_chars``),
so one detector call never runs long and a secret up to ``overlap_chars`` long is always wholly
inside some window; above ``offload_chars`` the whole screening (detector + complexity score)
runs in a small dedicated thread pool, so the event loop keeps answering other requests (a
regex call holds the GIL, which is why the windows are small: the loop waits at most one
window's scan).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from router_rl.router.request import RouteInput

#: Identifying fields that are replaced by a hash when they are flagged.
REDACTABLE = ("agent_id", "agent_type", "category")


@dataclass(frozen=True)
class Screen:
    """Result of screening one request.

    Attributes:
        inp: The request, with flagged identifying fields redacted (see module docstring).
        sensitive: Whether any scanned field was flagged.
        flagged: Paths of the flagged fields (e.g. ``("stop[1]", "metadata.category")``); never
            their values.
        level: Complexity level index (0 = simple .. 3 = very_complex).
        offloaded: Whether the work ran in the thread pool.
    """

    inp: RouteInput
    sensitive: bool
    flagged: tuple[str, ...]
    level: int
    offloaded: bool


def scanned_fields(inp: RouteInput) -> Iterator[tuple[str, str]]:
    """Every ``(field path, text)`` pair the screening checks (see the module docstring)."""
    for i, m in enumerate(inp.messages):
        yield f"messages[{i}].content", str(m.get("content", ""))
    for j, s in enumerate(inp.stop or []):
        yield f"stop[{j}]", s
    for name in ("agent_id", "agent_type", "category", "request_id"):
        v = getattr(inp, name)
        if v:
            yield name, str(v)
    for k, v in (inp.metadata or {}).items():
        yield f"metadata.{k}", v if isinstance(v, str) else json.dumps(v, default=str)
        yield f"metadata.{k}<key>", str(k)


def _redacted(value: str) -> str:
    return "redacted:" + hashlib.sha256(value.encode("utf-8", "surrogatepass")).hexdigest()[:12]


class RequestScreener:
    """Scan every forwarded / logged field and score complexity, off the event loop when large.

    Args:
        sensitive_fn: ``text -> bool`` detector (``router_rl.features.privacy.is_sensitive``).
        offload_chars: Total scanned characters above which the work runs in the thread pool.
        chunk_chars: Window size of one detector call on a long text.
        overlap_chars: Overlap of consecutive windows (the longest secret always caught whole).
        max_workers: Threads of the screening pool (bounds concurrent large screenings).
    """

    def __init__(
        self,
        sensitive_fn: Callable[[str], bool],
        *,
        offload_chars: int = 16_384,
        chunk_chars: int = 4_096,
        overlap_chars: int = 512,
        max_workers: int = 2,
    ) -> None:
        if not 0 < overlap_chars < chunk_chars:
            raise ValueError(f"overlap_chars must be in (0, chunk_chars={chunk_chars}), got {overlap_chars}")
        self._fn = sensitive_fn
        self.offload_chars = offload_chars
        self.chunk_chars = chunk_chars
        self.overlap_chars = overlap_chars
        self._max_workers = max_workers
        self._pool: ThreadPoolExecutor | None = None
        self.offloaded_count = 0

    def text_is_sensitive(self, text: str) -> bool:
        """Detector over ``text`` in overlapping windows (exact for secrets <= ``overlap_chars``)."""
        if len(text) <= self.chunk_chars:
            return bool(self._fn(text))
        step = self.chunk_chars - self.overlap_chars
        for start in range(0, len(text), step):
            if self._fn(text[start:start + self.chunk_chars]):
                return True
            if start + self.chunk_chars >= len(text):
                break
        return False

    def screen_sync(self, inp: RouteInput, *, offloaded: bool = False) -> Screen:
        """Screen in the calling thread."""
        from router_rl.features.complexity import complexity_score
        from router_rl.router.config import COMPLEXITY_LEVELS

        flagged = tuple(path for path, text in scanned_fields(inp) if text and self.text_is_sensitive(text))
        _, level = complexity_score(inp.prompt_text, max_tokens=inp.max_tokens, n_messages=len(inp.messages))
        out = inp
        if flagged:
            upd: dict[str, Any] = {f: _redacted(str(getattr(inp, f))) for f in REDACTABLE if f in flagged}
            if "request_id" in flagged:
                upd["request_id"] = None  # the router generates a fresh id
            if any(p.startswith("metadata.") for p in flagged):
                upd["metadata"] = {}
            out = replace(inp, **upd) if upd else inp
        return Screen(out, bool(flagged), flagged, COMPLEXITY_LEVELS.index(level.value), offloaded)

    def size(self, inp: RouteInput) -> int:
        """Characters the screening will scan."""
        return sum(len(t) for _, t in scanned_fields(inp))

    async def screen(self, inp: RouteInput) -> Screen:
        """Screen, in the thread pool when the request is larger than ``offload_chars``."""
        if self.size(inp) <= self.offload_chars:
            return self.screen_sync(inp)
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self._max_workers, thread_name_prefix="router-screen")
        self.offloaded_count += 1
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, lambda: self.screen_sync(inp, offloaded=True))

    def close(self) -> None:
        """Stop the thread pool (running screenings finish)."""
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None
