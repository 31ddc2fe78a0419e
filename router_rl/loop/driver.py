"""The traffic driver: the fleet's request mix sent to the router over HTTP, with concurrency.

Each request is one task of the world (prompt as the single user message, ``max_tokens`` of the
task, ``x-agent-type`` / ``x-task-category`` headers, and a request id the driver chooses:
``x-request-id``), sent to ``POST /v1/chat/completions`` with model ``router-rl/auto`` by at
most ``concurrency`` workers. Every answer is recorded as an :class:`Answer`: the ids, HTTP
status, which model the router chose and which served, the policy version that decided (headers
``x-router-chosen-model``, ``x-router-model``, ``x-router-policy``), and the quality the replay
backend reported in the content. A failed request (transport error, non-200) is recorded with
its error, never dropped: the loop counts them (target: zero, also during swaps and rollbacks).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any


@dataclass
class Answer:
    """One request of the driver and what came back.

    Attributes:
        request_id: The id the driver sent (``x-request-id``) and the router answered with.
        row: The matrix row (task) of the request.
        task_id: Its task id.
        status: HTTP status (0 = no answer: transport error).
        chosen_model / served_model: ``x-router-chosen-model`` / ``x-router-model``.
        policy_version: ``x-router-policy`` (the version that decided).
        strategy: ``x-router-strategy`` (who actually decided).
        reported_quality: The quality in the replay content (``quality=...``), None on failure.
        error: Why the request failed (None: it did not).
        t: Seconds since the driver started when the answer arrived.
    """

    request_id: str
    row: int
    task_id: str
    status: int
    chosen_model: str | None = None
    served_model: str | None = None
    policy_version: str | None = None
    strategy: str | None = None
    reported_quality: float | None = None
    error: str | None = None
    t: float = 0.0

    @property
    def ok(self) -> bool:
        """Answered with 200 and a served model."""
        return self.status == 200 and self.served_model is not None and self.error is None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return asdict(self)


def _quality_of(content: str) -> float | None:
    try:
        return float(content.split("quality=")[1].split()[0])
    except (IndexError, ValueError):
        return None


def request_body(task: dict[str, Any]) -> dict[str, Any]:
    """The chat body of one task's request."""
    body: dict[str, Any] = {"model": "router-rl/auto", "messages": [{"role": "user", "content": str(task["prompt"])}]}
    mt = task.get("max_tokens")
    if mt is not None and int(mt) >= 1:
        body["max_tokens"] = int(mt)
    return body


def request_headers(task: dict[str, Any], request_id: str) -> dict[str, str]:
    """Headers of one task's request (agent type, category, request id)."""
    h = {"x-request-id": request_id}
    if task.get("agent_type"):
        h["x-agent-type"] = str(task["agent_type"])
    if task.get("category"):
        h["x-task-category"] = str(task["category"])
    return h


async def drive(
    base_url: Callable[[], str] | str,
    token: str,
    tasks: Sequence[dict[str, Any]],
    rows: Sequence[int],
    request_ids: Sequence[str],
    *,
    concurrency: int = 16,
    timeout_s: float = 60.0,
    on_answer: Callable[[Answer], Awaitable[None] | None] | None = None,
    on_progress: Callable[[int], Awaitable[None] | None] | None = None,
) -> list[Answer]:
    """Send one request per task, at most ``concurrency`` at a time; answers in request order.

    Args:
        base_url: The router's base URL, or a callable returning it (read per request).
        token: Bearer token.
        tasks: Task rows (``prompt``, ``agent_type``, ``category``, ``max_tokens``, ``task_id``).
        rows: Matrix row of each task.
        request_ids: The id of each request (unique).
        concurrency: Workers.
        timeout_s: Per-request timeout.
        on_answer: Called with each answer as it arrives (e.g. the oracle's feedback queue).
        on_progress: Called with the number of requests *sent* so far, before each send (the
            rounds use it to act mid-round, e.g. a regression after k requests).

    Raises:
        ValueError: lengths differ, or request ids repeat.
    """
    import time

    import httpx

    n = len(tasks)
    if len(rows) != n or len(request_ids) != n:
        raise ValueError(f"drive: {n} tasks, {len(rows)} rows, {len(request_ids)} request ids (must match)")
    if len(set(request_ids)) != n:
        raise ValueError("drive: request ids must be unique")
    answers: list[Answer | None] = [None] * n
    url_of = base_url if callable(base_url) else (lambda: base_url)
    nxt = 0
    lock = asyncio.Lock()
    t0 = time.perf_counter()
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency, keepalive_expiry=2.0)
    async with httpx.AsyncClient(timeout=timeout_s, limits=limits,
                                 headers={"authorization": f"Bearer {token}"}) as http:

        async def worker() -> None:
            nonlocal nxt
            while True:
                async with lock:
                    i = nxt
                    if i >= n:
                        return
                    nxt += 1
                    if on_progress is not None:
                        res = on_progress(i)
                        if asyncio.iscoroutine(res):
                            await res
                task = tasks[i]
                a = Answer(request_id=request_ids[i], row=int(rows[i]), task_id=str(task["task_id"]), status=0)
                try:
                    r = await http.post(url_of().rstrip("/") + "/v1/chat/completions", json=request_body(task),
                                        headers=request_headers(task, request_ids[i]))
                    a.status = r.status_code
                    a.chosen_model = r.headers.get("x-router-chosen-model")
                    a.served_model = r.headers.get("x-router-model")
                    a.policy_version = r.headers.get("x-router-policy")
                    a.strategy = r.headers.get("x-router-strategy")
                    rid = r.headers.get("x-request-id")
                    if r.status_code != 200:
                        a.error = f"http_{r.status_code}"
                    elif rid != request_ids[i]:
                        a.error = f"request id {rid!r} returned for {request_ids[i]!r}"
                    else:
                        a.reported_quality = _quality_of(r.json()["choices"][0]["message"]["content"])
                except httpx.HTTPError as e:
                    a.error = f"{type(e).__name__}: {e}"
                a.t = time.perf_counter() - t0
                answers[i] = a
                if on_answer is not None:
                    res = on_answer(a)
                    if asyncio.iscoroutine(res):
                        await res

        await asyncio.gather(*(worker() for _ in range(max(1, min(concurrency, n)))))
    out = [a for a in answers if a is not None]
    assert len(out) == n
    return out
