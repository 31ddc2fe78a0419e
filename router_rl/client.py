"""A small helper for agents behind the router: read a request id, send outcome feedback.

::

    import openai
    from router_rl.client import FeedbackClient, request_id_of

    llm = openai.OpenAI(base_url="http://127.0.0.1:8080/v1", api_key=TOKEN)
    answer = llm.chat.completions.create(model="router-rl/auto", messages=[...])
    with FeedbackClient("http://127.0.0.1:8080/v1", api_key=TOKEN) as fb:
        fb.send(request_id_of(answer), quality=0.8, source="judge:pytest", details={"passed": 12})

(:class:`AsyncFeedbackClient` is the same for asyncio agents.)

The same through plain HTTP is documented in *Outcome feedback* of ``docs/router.md``. Only
``httpx`` is needed (the OpenAI SDK is not imported: responses are read by duck typing).
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx

COMPLETION_PREFIX = "chatcmpl-"
#: Statuses worth retrying (the request is idempotent: the same body is deduplicated server-side).
RETRY_STATUSES = frozenset({502, 503, 504})


class FeedbackError(Exception):
    """The router refused the feedback (or could not be reached).

    Attributes:
        status: HTTP status (``None``: no response, e.g. connection refused).
        code: The OpenAI error ``code`` (``unknown_request_id``, ``invalid_value``, ...).
        param: The field the router names (``quality``, ``items[3].source``, ...).
        message: The router's message.
    """

    def __init__(self, message: str, *, status: int | None = None, code: str | None = None,
                 param: str | None = None) -> None:
        self.status = status
        self.code = code
        self.param = param
        self.message = message
        where = f"HTTP {status}" if status is not None else "no response"
        super().__init__(f"{where}: {message}" + (f" (code {code})" if code else ""))


@dataclass(frozen=True)
class FeedbackResult:
    """The router's answer for one feedback event.

    Attributes:
        id: The stored ``feedback_id`` (the idempotency key).
        request_id: The request it labels.
        source: Its source.
        status: ``stored`` or ``duplicate`` (already stored under that key: nothing new written).
        redacted: Paths of ``details`` values the privacy screen replaced by ``[redacted]``.
    """

    id: str
    request_id: str
    source: str
    status: str
    redacted: tuple[str, ...] = ()

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> FeedbackResult:
        """From one response object of ``/v1/feedback``."""
        return cls(str(d["id"]), str(d["request_id"]), str(d["source"]), str(d["status"]),
                   tuple(d.get("redacted") or ()))


def _strip(completion_id: str) -> str:
    return completion_id[len(COMPLETION_PREFIX):] if completion_id.startswith(COMPLETION_PREFIX) else completion_id


def request_id_of(response: Any) -> str:
    """The router's request id of a chat answer.

    Accepts an OpenAI SDK ``ChatCompletion`` or ``ChatCompletionChunk`` (its ``id`` is
    ``chatcmpl-<request id>``), an SDK ``Stream`` (from its HTTP response header) or raw response
    (``with_raw_response``), an ``httpx.Response`` (the ``x-request-id`` header, else the body's
    ``id``), a ``dict`` (a decoded body or chunk) or a completion id string.

    Raises:
        ValueError: no request id in ``response`` (says what was given).
    """
    if isinstance(response, str):
        if not response:
            raise ValueError("request_id_of: empty string")
        return _strip(response)
    if isinstance(response, httpx.Response):
        rid = response.headers.get("x-request-id")
        if rid:
            return rid
        try:
            body = response.json()
        except ValueError:
            body = None
        if isinstance(body, dict) and isinstance(body.get("id"), str):
            return _strip(body["id"])
        raise ValueError(f"request_id_of: HTTP {response.status_code} response has no x-request-id header and "
                         "no completion id in its body")
    if isinstance(response, Mapping):
        rid = response.get("id")
        if isinstance(rid, str) and rid:
            return _strip(rid)
        raise ValueError("request_id_of: dict has no string 'id' (expected a chat.completion body or chunk)")
    rid = getattr(response, "id", None)
    if isinstance(rid, str) and rid:
        return _strip(rid)
    headers = getattr(response, "headers", None)  # SDK raw response (with_raw_response)
    if headers is None:  # SDK Stream: the HTTP response it reads (the SDK may bundle its own httpx)
        headers = getattr(getattr(response, "response", None), "headers", None)
    if headers is not None:
        h = headers.get("x-request-id")
        if h:
            return str(h)
    raise ValueError(f"request_id_of: cannot find a request id in a {type(response).__name__} (expected a "
                     "ChatCompletion, a chunk, a Stream, an httpx.Response, a dict or a completion id)")


def _ts(ts: datetime | float | int | str | None) -> float | str | None:
    if ts is None or isinstance(ts, str):
        return ts
    if isinstance(ts, datetime):
        if ts.tzinfo is None:
            raise ValueError("ts: a naive datetime is ambiguous; give it a timezone (e.g. datetime.now(UTC))")
        return ts.astimezone(UTC).isoformat().replace("+00:00", "Z")
    if isinstance(ts, bool) or not isinstance(ts, int | float):
        raise ValueError(f"ts: expected a datetime, epoch seconds or an RFC 3339 string, got {type(ts).__name__}")
    return float(ts)


def feedback_event(
    request_id: str,
    quality: float,
    source: str,
    *,
    details: Mapping[str, Any] | None = None,
    ts: datetime | float | str | None = None,
    idempotency_key: str | None = None,
) -> dict[str, Any]:
    """The JSON object of one feedback event (``None`` fields left out)."""
    ev: dict[str, Any] = {"request_id": request_id, "quality": quality, "source": source}
    if details is not None:
        ev["details"] = dict(details)
    t = _ts(ts)
    if t is not None:
        ev["ts"] = t
    if idempotency_key is not None:
        ev["idempotency_key"] = idempotency_key
    return ev


class FeedbackClient:
    """Send outcome feedback to the router (``POST /v1/feedback``), with safe retries.

    Args:
        base_url: The router's OpenAI base URL (``http://host:port/v1``, as given to the SDK);
            ``/v1`` is appended when missing.
        api_key: The bearer token (the same as for chat).
        timeout_s: Per-request timeout.
        max_retries: Retries after a transport error or a 502/503/504 (safe: the router stores
            the same feedback once).
        backoff_s: First retry delay (doubled each retry).
        transport: An httpx transport (tests).
    """

    def __init__(
        self,
        base_url: str,
        *,
        api_key: str | None = None,
        timeout_s: float = 10.0,
        max_retries: int = 2,
        backoff_s: float = 0.25,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.url = _feedback_url(base_url)
        self.max_retries = max_retries
        self.backoff_s = backoff_s
        headers = {"authorization": f"Bearer {api_key}"} if api_key else {}
        self._http = httpx.Client(timeout=timeout_s, headers=headers, transport=transport)

    def _post(self, body: dict[str, Any]) -> dict[str, Any]:
        delay = self.backoff_s
        for attempt in range(self.max_retries + 1):
            last = attempt == self.max_retries
            try:
                r = self._http.post(self.url, json=body)
            except httpx.TransportError as e:
                if last:
                    raise FeedbackError(f"cannot reach {self.url}: {type(e).__name__}: {e}") from e
            else:
                if r.status_code == 200:
                    out: dict[str, Any] = r.json()
                    return out
                if last or r.status_code not in RETRY_STATUSES:
                    raise _error(r)
            time.sleep(delay)
            delay *= 2
        raise AssertionError("unreachable")

    def send(
        self,
        request_id: str,
        quality: float,
        source: str,
        *,
        details: Mapping[str, Any] | None = None,
        ts: datetime | float | str | None = None,
        idempotency_key: str | None = None,
    ) -> FeedbackResult:
        """Send one feedback event.

        Args:
            request_id: The request id (:func:`request_id_of` of the answer).
            quality: In ``[0, 1]``.
            source: Who judged: ``judge:pytest``, ``agent``, ``human``...
            details: A JSON object (kept with the label; never logged by the router).
            ts: When the outcome was observed (aware datetime, epoch seconds or RFC 3339).
            idempotency_key: Your key; without one the router keys the event by its content.

        Raises:
            FeedbackError: the router refused it (carries its status, code, param, message).
        """
        ev = feedback_event(request_id, quality, source, details=details, ts=ts, idempotency_key=idempotency_key)
        return FeedbackResult.from_json(self._post(ev))

    def send_batch(self, events: Iterable[Mapping[str, Any]]) -> list[FeedbackResult]:
        """Send several events (objects of :func:`feedback_event`) in one all-or-nothing request.

        Raises:
            FeedbackError: the router refused the batch (``param`` names ``items[i].<field>``;
                nothing of the batch was stored).
        """
        items = [dict(e) for e in events]
        body = self._post({"items": items})
        return [FeedbackResult.from_json(d) for d in body["data"]]

    def close(self) -> None:
        """Close the connection pool."""
        self._http.close()

    def __enter__(self) -> FeedbackClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class AsyncFeedbackClient:
    """:class:`FeedbackClient` for asyncio agents (``httpx.AsyncClient``; same arguments and errors)."""

    def __init__(
        self,
        base_url: str,
        *,
        api_key: str | None = None,
        timeout_s: float = 10.0,
        max_retries: int = 2,
        backoff_s: float = 0.25,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.url = _feedback_url(base_url)
        self.max_retries = max_retries
        self.backoff_s = backoff_s
        headers = {"authorization": f"Bearer {api_key}"} if api_key else {}
        self._http = httpx.AsyncClient(timeout=timeout_s, headers=headers, transport=transport)

    async def _post(self, body: dict[str, Any]) -> dict[str, Any]:
        import asyncio

        delay = self.backoff_s
        for attempt in range(self.max_retries + 1):
            last = attempt == self.max_retries
            try:
                r = await self._http.post(self.url, json=body)
            except httpx.TransportError as e:
                if last:
                    raise FeedbackError(f"cannot reach {self.url}: {type(e).__name__}: {e}") from e
            else:
                if r.status_code == 200:
                    out: dict[str, Any] = r.json()
                    return out
                if last or r.status_code not in RETRY_STATUSES:
                    raise _error(r)
            await asyncio.sleep(delay)
            delay *= 2
        raise AssertionError("unreachable")

    async def send(
        self,
        request_id: str,
        quality: float,
        source: str,
        *,
        details: Mapping[str, Any] | None = None,
        ts: datetime | float | str | None = None,
        idempotency_key: str | None = None,
    ) -> FeedbackResult:
        """Send one feedback event (see :meth:`FeedbackClient.send`).

        Raises:
            FeedbackError: the router refused it.
        """
        ev = feedback_event(request_id, quality, source, details=details, ts=ts, idempotency_key=idempotency_key)
        return FeedbackResult.from_json(await self._post(ev))

    async def send_batch(self, events: Iterable[Mapping[str, Any]]) -> list[FeedbackResult]:
        """Send several events in one all-or-nothing request (see :meth:`FeedbackClient.send_batch`).

        Raises:
            FeedbackError: the router refused the batch.
        """
        body = await self._post({"items": [dict(e) for e in events]})
        return [FeedbackResult.from_json(d) for d in body["data"]]

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self._http.aclose()

    async def __aenter__(self) -> AsyncFeedbackClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


def _feedback_url(base_url: str) -> str:
    base = base_url.rstrip("/")
    if not base.endswith("/v1"):
        base += "/v1"
    return base + "/feedback"


def _error(r: httpx.Response) -> FeedbackError:
    try:
        err = r.json().get("error") or {}
    except (ValueError, AttributeError):
        err = {}
    msg = err.get("message") if isinstance(err, dict) else None
    if not msg:
        msg = r.text[:200] or r.reason_phrase
    return FeedbackError(str(msg), status=r.status_code, code=err.get("code"), param=err.get("param"))
