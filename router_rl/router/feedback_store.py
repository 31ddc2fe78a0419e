"""The durable, deduplicating feedback store: rows of ``FEEDBACK_SCHEMA`` in atomic part files.

A feedback row is acknowledged only once it is on disk: :meth:`FeedbackStore.submit` returns
after the part file holding it was written, fsync'ed and renamed into place
(:class:`router_rl.traces.parts.PartWriter`), in a dedicated worker thread, never on the event
loop. Concurrent submissions are group-committed: while one part is being written, the rows that
arrive meanwhile are queued and written together in the next part.

Deduplication by ``feedback_id`` (the idempotency key): the keys of every stored row are loaded
from the existing parts at start-up, so it survives restarts. A key that is being written (not
yet acknowledged) counts too: a concurrent duplicate waits until the original is on disk and is
then answered ``duplicate``, so no acknowledgement ever precedes durability. A key reused with
different content (request id, source, quality or details) is refused (:class:`KeyConflict`),
never silently dropped. One router process per feedback folder: two processes sharing one do not
see each other's keys (readers should still deduplicate by ``feedback_id``).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from router_rl.router.errors import RouterRequestError
from router_rl.traces.feedback import FeedbackError, validate_feedback_row
from router_rl.traces.parts import PartWriter, read_parts
from router_rl.traces.schema import FEEDBACK_SCHEMA

log = logging.getLogger(__name__)

STORED = "stored"
DUPLICATE = "duplicate"


class FeedbackStoreError(FeedbackError):
    """A feedback row or part file is invalid, or the store is closed (names the file / field)."""


class KeyConflict(RouterRequestError):
    """An idempotency key already names a different feedback (HTTP 409)."""

    status = 409
    code = "idempotency_key_reused"


class FeedbackWriteFailed(RouterRequestError):
    """The part file could not be written; nothing of the request was acknowledged (HTTP 503)."""

    status = 503
    type = "service_unavailable"
    code = "feedback_store_error"


def content_digest(request_id: str, source: str, quality: float, details: str | None) -> str:
    """What an idempotency key must keep naming: sha256 of (request id, source, quality, details)."""
    blob = json.dumps([request_id, source, repr(float(quality)), details], ensure_ascii=False)
    return hashlib.sha256(blob.encode()).hexdigest()


@dataclass(frozen=True)
class PendingRow:
    """One feedback row to store, with its content digest."""

    row: dict[str, Any]
    digest: str

    @property
    def key(self) -> str:
        """The idempotency key (``feedback_id``)."""
        return str(self.row["feedback_id"])


class FeedbackStore:
    """Deduplicating, group-committing writer of the feedback folder (one per router process).

    Args:
        directory: Folder of ``part-*.parquet`` files (created when missing).
        before_commit: Called in the worker thread before each part is written (the router
            flushes its decision log there, so a stored feedback's decision row is on disk too).

    Raises:
        FeedbackStoreError: an existing part file is unreadable or breaks the schema (names it).
    """

    def __init__(self, directory: str | Path, *, before_commit: Callable[[], None] | None = None) -> None:
        self.directory = Path(directory)
        self._writer = PartWriter(
            self.directory, schema=FEEDBACK_SCHEMA, validate=validate_feedback_row, what="feedback",
            batch_size=1 << 40, flush_interval_s=None, error=FeedbackStoreError,
        )
        self._before_commit = before_commit
        self._digests: dict[str, str] = {}  # key -> digest of stored rows
        self._pending: dict[str, tuple[str, asyncio.Future[None]]] = {}  # key -> (digest, commit) being written
        self._queue: list[tuple[list[dict[str, Any]], asyncio.Future[None]]] = []
        self._committer: asyncio.Task[None] | None = None
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="feedback-commit")
        self._closed = False
        self.rows_loaded = self._load()
        self.commits = 0

    def _load(self) -> int:
        t = time.perf_counter()
        df = read_parts(self.directory, schema=FEEDBACK_SCHEMA, what="feedback", error=FeedbackStoreError)
        for r in df.select("feedback_id", "request_id", "source", "quality", "details").iter_rows():
            self._digests.setdefault(r[0], content_digest(r[1], r[2], r[3], r[4]))
        log.info("feedback store %s: %d row(s), %d key(s) loaded in %.2fs", self.directory, df.height,
                 len(self._digests), time.perf_counter() - t)
        return df.height

    def __len__(self) -> int:
        return len(self._digests)

    def known_digest(self, key: str) -> str | None:
        """Content digest stored (or being stored) under ``key``; ``None`` when the key is new."""
        if key in self._digests:
            return self._digests[key]
        p = self._pending.get(key)
        return p[0] if p is not None else None

    async def submit(self, rows: Sequence[PendingRow]) -> list[str]:
        """Store the new rows (all or none) and return ``stored`` / ``duplicate`` per row.

        Returns once every new row, and every earlier row a duplicate refers to, is on disk.

        Raises:
            KeyConflict: a key already names different content (nothing is stored; the message
                names the item index when there are several rows).
            FeedbackWriteFailed: the part file could not be written (nothing acknowledged).
        """
        if self._closed:
            raise FeedbackWriteFailed("the feedback store is closed (the router is shutting down)")
        seen: dict[str, str] = {}
        for i, pr in enumerate(rows):  # first every check, then any change: all-or-nothing
            have = seen.get(pr.key) or self.known_digest(pr.key)
            if have is not None and have != pr.digest:
                where = f"items[{i}].idempotency_key" if len(rows) > 1 else "idempotency_key"
                raise KeyConflict(
                    f"{where}: this key already names a different feedback (request_id, source, quality or "
                    "details differ); use a new key for a new feedback", param=where,
                )
            seen.setdefault(pr.key, pr.digest)
        out: list[str] = []
        new: list[dict[str, Any]] = []
        waits: list[asyncio.Future[None]] = []
        batch_keys: set[str] = set()
        for pr in rows:
            if pr.key in self._digests or pr.key in batch_keys:
                out.append(DUPLICATE)
            elif pr.key in self._pending:
                waits.append(self._pending[pr.key][1])
                out.append(DUPLICATE)
            else:
                batch_keys.add(pr.key)
                new.append(pr.row)
                out.append(STORED)
        if new:
            loop = asyncio.get_running_loop()
            fut: asyncio.Future[None] = loop.create_future()
            fut.add_done_callback(_retrieve)
            for pr in rows:
                if pr.key in batch_keys and pr.key not in self._pending:
                    self._pending[pr.key] = (pr.digest, fut)
            self._queue.append((new, fut))
            if self._committer is None or self._committer.done():
                self._committer = loop.create_task(self._commit_loop())
            waits.append(fut)
        for w in waits:
            await asyncio.shield(w)
        return out

    async def _commit_loop(self) -> None:
        loop = asyncio.get_running_loop()
        while self._queue:
            batch, self._queue = self._queue, []
            rows = [r for rs, _ in batch for r in rs]
            err: BaseException | None = None
            try:
                await loop.run_in_executor(self._pool, self._write, rows)
            except Exception as e:  # every waiter is told; the error is logged
                log.error("feedback store %s: writing %d row(s) failed: %s", self.directory, len(rows),
                          type(e).__name__)
                err = e
            for r in rows:
                key = str(r["feedback_id"])
                digest, _ = self._pending.pop(key)
                if err is None:
                    self._digests[key] = digest
            for _, f in batch:
                if f.done():
                    continue
                if err is None:
                    f.set_result(None)
                else:
                    f.set_exception(FeedbackWriteFailed(
                        f"the feedback store could not write its part file ({type(err).__name__}); nothing of "
                        "this request was stored: retry (the idempotency key makes a retry safe)"
                    ))
            if err is None:
                self.commits += 1

    def _write(self, rows: list[dict[str, Any]]) -> None:
        if self._before_commit is not None:
            self._before_commit()
        self._writer.extend(rows)
        self._writer.flush()

    async def aclose(self) -> None:
        """Finish the commits in flight, then stop the worker thread."""
        self._closed = True
        while self._committer is not None and not self._committer.done():
            await asyncio.shield(self._committer)
        self._pool.shutdown(wait=True)
        self._writer.close()


def _retrieve(f: asyncio.Future[None]) -> None:
    if not f.cancelled():
        f.exception()  # marks the exception retrieved (every waiter re-raises it on its own)
