"""Client-side coalescing of the LEARNED strategy's remote calls: many waiting callers, one ``/route`` call.

The wire protocol carries many records per ``POST /route`` and the engine evaluates them in one
encoder + policy call, so the router does not need one HTTP round trip per request. A
:class:`RouteCoalescer` queues the records of concurrent callers and sends them together:

* at most ``max_in_flight`` calls are outstanding; when a slot is free, every record waiting
  (up to ``max_batch``) leaves in one call, so a lone request is never held back (it waits one
  event-loop turn, to pick up callers that arrived in the same turn) and under load each call
  carries what queued during the previous one;
* every caller keeps its own deadline, ``timeout_s`` from its own arrival: past it the caller
  gets :class:`~router_rl.serve.client.RemotePolicyError` ``timeout`` although its batch call may
  go on for the others (its record is dropped from the queue if it was not sent yet, counted in
  :attr:`CoalescerStats.abandoned`); a batch call's own time limit is its latest caller deadline;
* a batch-level failure (timeout, connection, HTTP error, invalid answer) fails every caller of
  the batch with that reason;
* a refusal (HTTP 422) refuses the whole call (the deployment and the engine refuse a request
  when any of its records lacks the state the policy needs, naming the first one), so a refused
  batch of several records is re-sent one record per call, concurrently, each within its caller's
  deadline: only the records the policy really refuses are answered ``refused``
  (:attr:`CoalescerStats.retried_alone` counts the records re-sent);
* :meth:`RouteCoalescer.aclose` fails every caller still waiting with reason ``closed`` at once.

:class:`ThreadedRouteCoalescer` runs one on its own event loop in an I/O thread, so a busy
router loop does not delay reading the endpoint's answers (the router's default).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from router_rl.serve.client import RemotePolicyClient, RemotePolicyError
from router_rl.serve.protocol import RouteRequest, RouteResponse, TaskRecord


@dataclass(frozen=True)
class RouteRow:
    """One record's answer, cut from a batch answer.

    Attributes:
        policy_version: Version of the policy that answered the batch.
        models: Column order of ``probs``.
        probs: The record's distribution.
        batch_size: Number of records in the ``/route`` call that answered it.
    """

    policy_version: str
    models: tuple[str, ...]
    probs: tuple[float, ...]
    batch_size: int


@dataclass
class CoalescerStats:
    """Counters of a :class:`RouteCoalescer` (read them in benchmarks and tests).

    Attributes:
        calls: ``/route`` calls started (batches, plus single-record re-sends after a refusal).
        records: Records sent in those calls.
        abandoned: Records never sent because their caller had already given up (deadline or
            cancellation) when their turn came.
        retried_alone: Records re-sent one per call after their batch was refused (HTTP 422).
        largest_batch: The most records one call carried.
    """

    calls: int = 0
    records: int = 0
    abandoned: int = 0
    retried_alone: int = 0
    largest_batch: int = 0


@dataclass
class _Pending:
    record: TaskRecord
    deadline: float
    future: asyncio.Future[RouteRow]


class RouteCoalescer:
    """Send the records of concurrent callers to one endpoint in shared ``/route`` calls.

    Args:
        client: The endpoint's HTTP client (its keep-alive pool is reused; closed by its owner).
        max_batch: Most records per call (the protocol allows 4096).
        max_in_flight: Most calls outstanding at once.
        clock: Monotonic clock in seconds (deadlines).

    Raises:
        ValueError: ``max_batch`` not in 1..4096 or ``max_in_flight`` < 1.
    """

    def __init__(
        self,
        client: RemotePolicyClient,
        *,
        max_batch: int = 64,
        max_in_flight: int = 2,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not 1 <= max_batch <= 4096:
            raise ValueError(f"RouteCoalescer.max_batch: expected 1..4096, got {max_batch}")
        if max_in_flight < 1:
            raise ValueError(f"RouteCoalescer.max_in_flight: expected >= 1, got {max_in_flight}")
        self.client = client
        self.max_batch = max_batch
        self.max_in_flight = max_in_flight
        self._clock = clock
        self._queue: deque[_Pending] = deque()
        self._in_flight: dict[asyncio.Task[None], list[_Pending]] = {}
        self._pump_scheduled = False
        self._closed = False
        self.stats = CoalescerStats()

    @property
    def queued(self) -> int:
        """Records waiting for a call slot (including callers that already gave up)."""
        return len(self._queue)

    @property
    def in_flight(self) -> int:
        """``/route`` calls outstanding."""
        return len(self._in_flight)

    async def route_one(self, record: TaskRecord, timeout_s: float, *, deadline: float | None = None) -> RouteRow:
        """The answer for one record, within ``timeout_s`` from now (this caller's own deadline).

        Args:
            record: The record.
            timeout_s: Time allowed from now.
            deadline: The caller's deadline on ``clock`` when it arrived earlier than now (the
                I/O thread's case); overrides ``timeout_s``.

        Raises:
            RemotePolicyError: ``timeout`` (no answer by the deadline), ``closed`` (the coalescer
                was closed while the record waited), or the reason its batch call failed with.
        """
        if self._closed:
            raise RemotePolicyError("closed", f"{self.client.base_url}: the policy client is closed")
        if not timeout_s > 0:
            raise ValueError(f"RouteCoalescer.route_one: timeout_s must be > 0, got {timeout_s}")
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[RouteRow] = loop.create_future()
        end = self._clock() + timeout_s if deadline is None else deadline
        self._queue.append(_Pending(record, end, fut))
        self._schedule(loop)
        try:
            # on timeout or cancellation wait_for cancels ``fut``: a queued record is then not sent
            return await asyncio.wait_for(fut, max(0.0, end - self._clock()))
        except TimeoutError:
            raise RemotePolicyError(
                "timeout", f"POST {self.client.base_url}/route: no answer within {timeout_s}s "
                f"({self.in_flight} call(s) in flight, {self.queued} record(s) queued)"
            ) from None

    def _schedule(self, loop: asyncio.AbstractEventLoop) -> None:
        if not self._pump_scheduled and not self._closed:
            self._pump_scheduled = True
            loop.call_soon(self._pump)

    def _pump(self) -> None:
        """Start calls while a slot is free and records wait (callers that gave up are skipped)."""
        self._pump_scheduled = False
        while self._queue and len(self._in_flight) < self.max_in_flight and not self._closed:
            batch: list[_Pending] = []
            while self._queue and len(batch) < self.max_batch:
                p = self._queue.popleft()
                if p.future.done():
                    self.stats.abandoned += 1
                else:
                    batch.append(p)
            if not batch:
                return
            task = asyncio.get_running_loop().create_task(self._send(batch))
            self._in_flight[task] = batch
            task.add_done_callback(self._sent)

    def _sent(self, task: asyncio.Task[None]) -> None:
        batch = self._in_flight.pop(task, [])
        if not task.cancelled() and task.exception() is not None:  # a bug in _send: never leave a caller hanging
            err = RemotePolicyError("invalid", f"{self.client.base_url}/route: {task.exception()!r}")
            for p in batch:
                _fail(p, err)
        if self._queue:
            self._schedule(asyncio.get_running_loop())

    async def _send(self, batch: list[_Pending]) -> None:
        timeout = max(p.deadline for p in batch) - self._clock()
        if timeout <= 0:  # every caller's deadline has passed (their own wait_for fires)
            self.stats.abandoned += len(batch)
            return
        self.stats.calls += 1
        self.stats.records += len(batch)
        self.stats.largest_batch = max(self.stats.largest_batch, len(batch))
        request = RouteRequest.model_construct(records=[p.record for p in batch])  # records validated already
        try:
            resp = await self.client.route(request, timeout_s=timeout)
        except RemotePolicyError as e:
            if e.reason == "refused" and len(batch) > 1:
                await self._alone(batch)
                return
            for p in batch:
                _fail(p, e)
            return
        _answer(batch, resp)

    async def _alone(self, batch: list[_Pending]) -> None:
        """Re-send each record of a refused batch in its own call (only the refused ones fail)."""

        async def one(p: _Pending) -> None:
            left = p.deadline - self._clock()
            if p.future.done() or left <= 0:
                return
            self.stats.calls += 1
            self.stats.records += 1
            self.stats.retried_alone += 1
            try:
                resp = await self.client.route(RouteRequest.model_construct(records=[p.record]), timeout_s=left)
            except RemotePolicyError as e:
                _fail(p, e)
            else:
                _answer([p], resp)

        await asyncio.gather(*(one(p) for p in batch))

    async def aclose(self) -> None:
        """Fail every waiting caller with reason ``closed`` and stop the calls in flight."""
        self._closed = True
        err = RemotePolicyError("closed", f"{self.client.base_url}: the policy client was closed while waiting")
        while self._queue:
            _fail(self._queue.popleft(), err)
        tasks = list(self._in_flight)
        for batch in self._in_flight.values():
            for p in batch:
                _fail(p, err)
        for t in tasks:
            t.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)


def _fail(p: _Pending, err: RemotePolicyError) -> None:
    if not p.future.done():
        p.future.set_exception(RemotePolicyError(err.reason, err.detail))  # one exception object per caller


def _answer(batch: list[_Pending], resp: RouteResponse) -> None:
    models = tuple(resp.models)
    for p, row in zip(batch, resp.probs, strict=True):  # the client checked one row per record
        if not p.future.done():
            p.future.set_result(RouteRow(resp.policy_version, models, tuple(row), len(batch)))


class ThreadedRouteCoalescer:
    """A :class:`RouteCoalescer` on its own event loop in a daemon I/O thread.

    The router's event loop is shared by every request in flight; at 100 concurrent clients on a
    small machine one turn of it can take longer than the policy timeout, and a policy answer
    read on that loop is seen only after the turn. Here the HTTP client, the batching and each
    caller's deadline run on the I/O thread's loop, which only does this: a record is answered
    if the endpoint answered within ``timeout_s`` of the caller's arrival (measured on the I/O
    thread), and ``timeout`` otherwise. The caller's own wait on the router's loop is bounded by
    the same deadline; when that loop is late its timer is seen late too, and an answer that
    arrived in time wins (``asyncio.wait_for`` returns a result that is ready when it resumes).

    Args:
        base_url: The endpoint (``/route`` is appended).
        client_timeout_s: Default time limit of the HTTP client's calls.
        max_batch: Most records per call.
        max_in_flight: Most calls outstanding.
        max_connections: Size of the keep-alive pool.
    """

    def __init__(self, base_url: str, *, client_timeout_s: float, max_batch: int = 64, max_in_flight: int = 2,
                 max_connections: int = 32) -> None:
        self.base_url = base_url
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="router-policy-io", daemon=True)
        self._thread.start()

        async def build() -> RouteCoalescer:  # the HTTP client belongs to the I/O loop
            client = RemotePolicyClient(base_url, timeout_s=client_timeout_s, max_connections=max_connections)
            return RouteCoalescer(client, max_batch=max_batch, max_in_flight=max_in_flight)

        try:
            self.inner = asyncio.run_coroutine_threadsafe(build(), self._loop).result(timeout=30.0)
        except BaseException:
            self._stop()
            raise
        self._closed = False

    @property
    def stats(self) -> CoalescerStats:
        """The inner coalescer's counters."""
        return self.inner.stats

    @property
    def queued(self) -> int:
        """Records waiting for a call slot."""
        return self.inner.queued

    @property
    def in_flight(self) -> int:
        """``/route`` calls outstanding."""
        return self.inner.in_flight

    async def route_one(self, record: TaskRecord, timeout_s: float) -> RouteRow:
        """As :meth:`RouteCoalescer.route_one`, from any event loop.

        Raises:
            RemotePolicyError: ``timeout``, ``closed`` or the batch call's failure reason.
        """
        if self._closed:
            raise RemotePolicyError("closed", f"{self.base_url}: the policy client is closed")
        deadline = time.monotonic() + timeout_s
        cf: concurrent.futures.Future[RouteRow] = asyncio.run_coroutine_threadsafe(
            self.inner.route_one(record, timeout_s, deadline=deadline), self._loop)
        try:
            return await asyncio.wait_for(asyncio.wrap_future(cf), timeout_s)
        except asyncio.CancelledError:
            cf.cancel()  # the caller gave up: the I/O loop drops the record if it was not sent yet
            raise
        except TimeoutError:
            cf.cancel()
            raise RemotePolicyError(
                "timeout", f"POST {self.base_url}/route: no answer within {timeout_s}s "
                f"({self.in_flight} call(s) in flight, {self.queued} record(s) queued)"
            ) from None

    async def aclose(self) -> None:
        """Fail waiting callers with ``closed``, close the HTTP client, stop the I/O thread."""
        if self._closed:
            return
        self._closed = True

        async def close() -> None:
            await self.inner.aclose()
            await self.inner.client.aclose()

        try:
            await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(close(), self._loop))
        finally:
            self._stop()
            await asyncio.to_thread(self._thread.join, 10.0)
            if not self._thread.is_alive():
                self._loop.close()

    def _stop(self) -> None:
        if self._loop.is_running():
            self._loop.call_soon_threadsafe(self._loop.stop)
