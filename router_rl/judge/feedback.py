"""Post a judgement to the router as feedback, so the judged request becomes a labelled row.

Payload (``POST <url>``, JSON, one request per judgement)::

    {"request_id": "<the router's request id>",
     "quality": <score in [0, 1]>,
     "source": "judge:<kind>",          # judge:tests | judge:flaky | judge:coverage-gaps
     "details": {...}}                  # the judgement's JSON details

The router's ``/v1/feedback`` endpoint arrives with the learning-loop issue; this is the client
side. Any non-2xx answer or transport error raises :class:`FeedbackError` (nothing is dropped
silently); an optional bearer token goes in the ``Authorization`` header and is never logged.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlparse

import httpx

from router_rl.judge.score import Judgement


class FeedbackError(RuntimeError):
    """The feedback could not be delivered (the message says where and why).

    Attributes:
        status_code: The HTTP status when the server answered, else ``None``.
    """

    def __init__(self, message: str, status_code: int | None = None) -> None:
        super().__init__(message)
        self.status_code = status_code


@dataclass(frozen=True)
class FeedbackReceipt:
    """The server's answer to a delivered feedback.

    Attributes:
        status_code: HTTP status (2xx).
        body: Parsed JSON body, or ``None`` when the body was empty or not JSON.
    """

    status_code: int
    body: Any


def feedback_payload(request_id: str, judgement: Judgement) -> dict[str, Any]:
    """The documented payload for one judgement.

    Raises:
        ValueError: When ``request_id`` is empty.
    """
    if not isinstance(request_id, str) or not request_id.strip():
        raise ValueError("request_id: expected a non-empty string")
    return {
        "request_id": request_id,
        "quality": judgement.score,
        "source": judgement.source,
        "details": judgement.details,
    }


def post_judgement(
    url: str,
    request_id: str,
    judgement: Judgement,
    *,
    token: str | None = None,
    timeout_s: float = 5.0,
    client: httpx.Client | None = None,
) -> FeedbackReceipt:
    """POST ``judgement`` as feedback for ``request_id`` to ``url`` (the router's ``/v1/feedback``).

    Args:
        url: Full feedback URL, ``http://`` or ``https://``.
        request_id: The routed request the judgement is about.
        judgement: The judge's verdict.
        token: Optional bearer token.
        timeout_s: Request timeout.
        client: An ``httpx.Client`` to reuse (a fresh one otherwise).

    Returns:
        The :class:`FeedbackReceipt`.

    Raises:
        ValueError: On a bad URL or request id.
        FeedbackError: On a transport error or a non-2xx answer.
    """
    parsed = urlparse(url)
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        raise ValueError(f"url: expected an http(s) URL, got {url!r}")
    payload = feedback_payload(request_id, judgement)
    headers = {"content-type": "application/json"}
    if token:
        headers["authorization"] = f"Bearer {token}"
    own = client is None
    c = client or httpx.Client(timeout=timeout_s)
    try:
        resp = c.post(url, content=json.dumps(payload), headers=headers, timeout=timeout_s)
    except httpx.HTTPError as e:
        raise FeedbackError(f"feedback to {url} failed: {type(e).__name__}: {e}") from None
    finally:
        if own:
            c.close()
    if not 200 <= resp.status_code < 300:
        raise FeedbackError(
            f"feedback to {url} rejected: HTTP {resp.status_code}: {resp.text[:200]}", status_code=resp.status_code
        )
    try:
        body = resp.json() if resp.content else None
    except ValueError:
        body = None
    return FeedbackReceipt(resp.status_code, body)
