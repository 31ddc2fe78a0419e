"""Outcome feedback: ``POST /v1/feedback`` events, their validation, and the service behind the route.

An agent (or a judge, or a human) reports how good the answer of a routed request was::

    {"request_id": "3f2a...", "quality": 0.8, "source": "judge:pytest",
     "details": {"passed": 12, "failed": 3}, "ts": "2026-12-01T10:00:00Z", "idempotency_key": "..."}

or a batch ``{"items": [event, ...]}``. The rules (documented in *Outcome feedback* of
``docs/router.md``):

* Unknown fields are refused; every refusal is an OpenAI error body whose ``param`` names the
  field (``items[3].quality`` in a batch). Bad values: 422; an unknown request id: 404; a request
  refused before routing (``strategy = "rejected"`` in the decision log): 409; a reused
  idempotency key with other content: 409; feedback disabled: 501 naming the setting.
* A batch is all-or-nothing: the first invalid item refuses the whole batch, nothing is stored.
* Idempotency: ``idempotency_key`` (or the ``Idempotency-Key`` header, single form only); without
  one the key is ``sha256:<sha256 of the canonical event>`` (request id, source, quality,
  canonical details JSON and the client's ``ts``, null when not given), so the same feedback sent
  twice is stored once.
* ``details`` may hold text: it is never logged, and every string value the privacy screen flags
  (alone, or together with its key: ``"password": "..."``) is replaced by ``"[redacted]"`` before
  it is stored; the response lists the redacted paths. A flagged *key* refuses the feedback (422).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import math
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from router_rl.core.errors import ConfigError
from router_rl.router.errors import RouterRequestError
from router_rl.router.feedback_store import FeedbackStore, PendingRow, content_digest
from router_rl.router.request_index import RequestIndex
from router_rl.traces.parts import PartFileError

if TYPE_CHECKING:
    from router_rl.router.engine import HybridRouter
    from router_rl.router.telemetry import RouterMetrics

log = logging.getLogger(__name__)

#: Fields of one feedback event.
EVENT_FIELDS = frozenset({"request_id", "quality", "source", "details", "ts", "idempotency_key"})
REQUIRED_FIELDS = ("request_id", "quality", "source")
MAX_REQUEST_ID_CHARS = 256
#: ``source``: a short identifier such as ``judge:pytest``, ``agent``, ``human``.
SOURCE_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:/@+-]{0,63}")
#: ``idempotency_key``: up to 128 characters (a UUID is ideal).
KEY_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:/@+=-]{0,127}")
#: Request ids echoed in error messages only when they look like ids.
_ECHO_RE = re.compile(r"[A-Za-z0-9_.:-]{1,128}")
#: Earliest accepted ``ts`` (2000-01-01T00:00:00Z).
MIN_TS = 946_684_800.0
COMPLETION_PREFIX = "chatcmpl-"
REDACTED = "[redacted]"
#: Bodies larger than this (bytes) are validated and screened in a worker thread.
OFFLOAD_BYTES = 32_768
#: Distinct ``source`` labels of the Prometheus counter; later sources count as ``other``.
MAX_SOURCE_LABELS = 32


class FeedbackInvalid(RouterRequestError):
    """A feedback field is missing, unknown or out of range (HTTP 422)."""

    status = 422
    code = "invalid_value"


class UnknownRequestId(RouterRequestError):
    """The request id was never logged by this router (HTTP 404)."""

    status = 404
    type = "not_found_error"
    code = "unknown_request_id"


class RequestNotServed(RouterRequestError):
    """The request was refused before routing: no decision to label (HTTP 409)."""

    status = 409
    code = "request_not_routed"


class FeedbackDisabled(RouterRequestError):
    """The endpoint is off; the message names the setting (HTTP 501)."""

    status = 501
    type = "not_implemented"
    code = "feedback_disabled"


@dataclass(frozen=True)
class FeedbackEvent:
    """One validated feedback event (before the request-id lookup).

    Attributes:
        request_id: The routed request (a ``chatcmpl-`` completion id is resolved later).
        quality: In ``[0, 1]``.
        source: Who judged (``judge:pytest``, ``agent``, ``human``).
        details: Canonical JSON of the (redacted) details object, or ``None``.
        ts: The client's observation time, or ``None`` (then the receive time is stored).
        idempotency_key: The client's key, or ``None`` (then a content hash is the key).
        redacted: Paths of ``details`` values replaced by ``[redacted]``.
    """

    request_id: str
    quality: float
    source: str
    details: str | None
    ts: datetime | None
    idempotency_key: str | None
    redacted: tuple[str, ...] = ()

    def default_key(self, request_id: str) -> str:
        """``sha256:`` of the canonical event (request id, source, quality, details, client ts)."""
        ts = self.ts.isoformat() if self.ts is not None else None
        blob = json.dumps([request_id, self.source, repr(self.quality), self.details, ts], ensure_ascii=False)
        return "sha256:" + hashlib.sha256(blob.encode()).hexdigest()


def _p(where: str, name: str) -> str:
    return f"{where}{name}" if not where else f"{where}.{name}"


def parse_ts(v: Any, param: str, *, now: float, max_skew_s: float) -> datetime:
    """An RFC 3339 string with an offset (``Z`` allowed) or epoch seconds, not in the future.

    Raises:
        FeedbackInvalid: naming ``param``.
    """
    if isinstance(v, bool) or not isinstance(v, int | float | str):
        raise FeedbackInvalid(f"{param}: expected an RFC 3339 timestamp string or epoch seconds", param=param)
    if isinstance(v, str):
        s = v.strip()
        if len(s) > 40 or not re.fullmatch(r"\d{4}-\d\d-\d\d[Tt ]\d\d:\d\d:\d\d(\.\d{1,9})?([Zz]|[+-]\d\d:\d\d)", s):
            raise FeedbackInvalid(f"{param}: expected an RFC 3339 timestamp with an offset, like "
                                  "2026-12-01T10:00:00Z", param=param)
        frac = re.search(r"\.(\d+)", s)
        if frac and len(frac.group(1)) > 6:  # Python parses at most microseconds
            s = s.replace(frac.group(0), "." + frac.group(1)[:6], 1)
        try:
            dt = datetime.fromisoformat(s.replace("z", "Z").replace("t", "T"))
        except ValueError:
            raise FeedbackInvalid(f"{param}: not a valid date/time", param=param) from None
        epoch = dt.timestamp()
    else:
        epoch = float(v)
        if not math.isfinite(epoch) or epoch > 1e11:
            raise FeedbackInvalid(f"{param}: expected epoch seconds (not milliseconds)", param=param)
        dt = datetime.fromtimestamp(epoch, tz=UTC)
    if epoch < MIN_TS:
        raise FeedbackInvalid(f"{param}: before 2000-01-01T00:00:00Z", param=param)
    if epoch > now + max_skew_s:
        raise FeedbackInvalid(
            f"{param}: {epoch - now:.0f} s in the future (at most {max_skew_s:g} s of clock skew is allowed)",
            param=param,
        )
    return dt.astimezone(UTC)


class DetailsScreen:
    """Redact what the privacy screen flags in a ``details`` object (see the module docstring).

    Args:
        is_sensitive: ``text -> bool`` (the router's request screener).
    """

    def __init__(self, is_sensitive: Callable[[str], bool]) -> None:
        self.flag = is_sensitive

    def __call__(self, obj: dict[str, Any], param: str) -> tuple[dict[str, Any], list[str]]:
        """``(redacted copy, redacted paths)``.

        Raises:
            FeedbackInvalid: an object key is flagged (the param names its parent, never the key).
        """
        redacted: list[str] = []

        def value(key: str | None, v: Any, path: str) -> Any:
            if isinstance(v, str):
                if self.flag(v) or (key is not None and self.flag(json.dumps({key: v}, ensure_ascii=False))):
                    redacted.append(path)
                    return REDACTED
                return v
            if isinstance(v, int) and not isinstance(v, bool) and abs(v) >= 10**11 and self.flag(str(v)):
                redacted.append(path)  # a long number may be a card number
                return REDACTED
            if isinstance(v, dict):
                return obj_(v, path)
            if isinstance(v, list):
                return [value(None, x, f"{path}[{i}]") for i, x in enumerate(v)]
            return v

        def obj_(o: dict[str, Any], path: str) -> dict[str, Any]:
            out: dict[str, Any] = {}
            for k, v in o.items():
                if self.flag(k):
                    raise FeedbackInvalid(
                        f"{path}: an object key is flagged by the privacy screen (secret / personal data); "
                        "keys are never redacted, remove it", param=path,
                    )
                out[k] = value(k, v, f"{path}.{k}")
            return out

        return obj_(obj, param), redacted


def parse_event(
    obj: Any,
    *,
    where: str,
    now: float,
    max_skew_s: float,
    max_details_bytes: int,
    screen: DetailsScreen,
    header_key: str | None = None,
) -> FeedbackEvent:
    """Validate one feedback object (``where`` prefixes every param, e.g. ``items[2]``).

    Raises:
        FeedbackInvalid: naming the field.
    """
    if not isinstance(obj, dict):
        raise FeedbackInvalid(f"{where or 'body'}: expected a JSON object", param=where or None)
    unknown = sorted(set(obj) - EVENT_FIELDS)
    if unknown:
        u = unknown[0] if _ECHO_RE.fullmatch(unknown[0]) and not screen.flag(unknown[0]) else "<field>"
        raise FeedbackInvalid(f"{_p(where, u)}: unknown field; supported: {sorted(EVENT_FIELDS)}",
                              param=_p(where, u) if u != "<field>" else where or None)
    for k in REQUIRED_FIELDS:
        if obj.get(k) is None:
            raise FeedbackInvalid(f"{_p(where, k)}: required", param=_p(where, k))
    rid = obj["request_id"]
    if not isinstance(rid, str) or not 0 < len(rid) <= MAX_REQUEST_ID_CHARS:
        raise FeedbackInvalid(f"{_p(where, 'request_id')}: expected a non-empty string of at most "
                              f"{MAX_REQUEST_ID_CHARS} characters", param=_p(where, "request_id"))
    q = obj["quality"]
    if isinstance(q, bool) or not isinstance(q, int | float) or not math.isfinite(q) or not 0 <= q <= 1:
        raise FeedbackInvalid(f"{_p(where, 'quality')}: expected a number in [0, 1]", param=_p(where, "quality"))
    src = obj["source"]
    if not isinstance(src, str) or not SOURCE_RE.fullmatch(src):
        raise FeedbackInvalid(
            f"{_p(where, 'source')}: expected 1-64 characters of letters, digits and _.:/@+- starting with a letter "
            "or digit (e.g. judge:pytest, agent, human)", param=_p(where, "source"))
    if screen.flag(src):
        raise FeedbackInvalid(f"{_p(where, 'source')}: flagged by the privacy screen; use a plain source name",
                              param=_p(where, "source"))
    key = obj.get("idempotency_key")
    if key is not None and header_key is not None and key != header_key:
        raise FeedbackInvalid(f"{_p(where, 'idempotency_key')}: differs from the Idempotency-Key header",
                              param=_p(where, "idempotency_key"))
    key = key if key is not None else header_key
    kp = _p(where, "idempotency_key") if obj.get("idempotency_key") is not None else "Idempotency-Key"
    if key is not None:
        if not isinstance(key, str) or not KEY_RE.fullmatch(key):
            raise FeedbackInvalid(f"{kp}: expected 1-128 characters of letters, digits and _.:/@+=- (a UUID is "
                                  "ideal)", param=kp)
        if screen.flag(key):
            raise FeedbackInvalid(f"{kp}: flagged by the privacy screen; use a random UUID", param=kp)
    details = obj.get("details")
    redacted: list[str] = []
    canon: str | None = None
    if details is not None:
        dp = _p(where, "details")
        if not isinstance(details, dict):
            raise FeedbackInvalid(f"{dp}: expected a JSON object", param=dp)
        raw = json.dumps(details, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        if len(raw.encode()) > max_details_bytes:
            raise FeedbackInvalid(f"{dp}: larger than {max_details_bytes} bytes (canonical JSON)", param=dp)
        clean, redacted = screen(details, dp)
        canon = json.dumps(clean, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    ts = obj.get("ts")
    dt = parse_ts(ts, _p(where, "ts"), now=now, max_skew_s=max_skew_s) if ts is not None else None
    return FeedbackEvent(rid, float(q), src, canon, dt, key, tuple(redacted))


class SourceLabels:
    """Bounded Prometheus label values for client-chosen sources (first ones kept, then ``other``)."""

    def __init__(self, limit: int = MAX_SOURCE_LABELS) -> None:
        self._seen: set[str] = set()
        self._limit = limit

    def __call__(self, source: str) -> str:
        """The label of ``source``."""
        if source in self._seen:
            return source
        if len(self._seen) < self._limit:
            self._seen.add(source)
            return source
        return "other"


class FeedbackService:
    """Validation, request-id lookup and storage behind ``POST /v1/feedback``.

    Args:
        store: The durable store.
        index: Known request ids.
        is_sensitive: ``text -> bool`` privacy detector (the router's screener).
        metrics: Router metrics (``router_rl_feedback_total{source,outcome}``), optional.
        max_batch: Most items per batch.
        max_details_bytes: Largest ``details`` (canonical JSON bytes).
        max_clock_skew_s: Future ``ts`` allowance.
        wall_clock: Epoch clock (receive time, future check).
        on_stored: Called with ``(request_id, quality)`` of every newly stored label (never a
            duplicate) once it is durable: the live policies' evidence
            (:meth:`router_rl.router.live_policy.LivePolicies.on_feedback`).
    """

    def __init__(
        self,
        store: FeedbackStore,
        index: RequestIndex,
        *,
        is_sensitive: Callable[[str], bool],
        metrics: RouterMetrics | None = None,
        max_batch: int = 1000,
        max_details_bytes: int = 16_384,
        max_clock_skew_s: float = 300.0,
        wall_clock: Callable[[], float] = time.time,
        on_stored: Callable[[list[tuple[str, float]]], None] | None = None,
    ) -> None:
        self.store = store
        self._on_stored = on_stored
        self.index = index
        self._flag = is_sensitive
        self._screen = DetailsScreen(is_sensitive)
        self._metrics = metrics
        self.max_batch = max_batch
        self.max_details_bytes = max_details_bytes
        self.max_clock_skew_s = max_clock_skew_s
        self._wall = wall_clock
        self._labels = SourceLabels()

    def parse(self, body: Any, header_key: str | None = None) -> tuple[list[FeedbackEvent], bool]:
        """``(events, is_batch)`` of a request body.

        Raises:
            FeedbackInvalid: naming the field (``items[i].<field>`` in a batch).
        """
        now = self._wall()
        kw: dict[str, Any] = {"now": now, "max_skew_s": self.max_clock_skew_s,
                              "max_details_bytes": self.max_details_bytes, "screen": self._screen}
        if isinstance(body, dict) and "items" in body:
            extra = sorted(set(body) - {"items"})
            if extra:
                raise FeedbackInvalid("a batch body holds only 'items'; put each event's fields in its item",
                                      param="items")
            if header_key is not None:
                raise FeedbackInvalid("Idempotency-Key: header applies to the single form only; give each item "
                                      "its idempotency_key", param="Idempotency-Key")
            items = body["items"]
            if not isinstance(items, list) or not items:
                raise FeedbackInvalid("items: expected a non-empty array of feedback objects", param="items")
            if len(items) > self.max_batch:
                raise FeedbackInvalid(f"items: {len(items)} items, at most {self.max_batch} per batch "
                                      "(feedback.max_batch)", param="items")
            return [parse_event(it, where=f"items[{i}]", **kw) for i, it in enumerate(items)], True
        return [parse_event(body, where="", header_key=header_key, **kw)], False

    def _resolve(self, ev: FeedbackEvent, where: str) -> str:
        rid = ev.request_id
        status = self.index.status(rid)
        if status is None and rid.startswith(COMPLETION_PREFIX):
            rid = rid[len(COMPLETION_PREFIX):]
            status = self.index.status(rid)
        param = _p(where, "request_id")
        shown = f" {ev.request_id!r}" if _ECHO_RE.fullmatch(ev.request_id) and not self._flag(ev.request_id) else ""
        if status is None:
            raise UnknownRequestId(
                f"{param}: unknown request id{shown}: this router never logged it (send the x-request-id response "
                "header, or the completion id, of the answer)", param=param)
        if status == "rejected":
            raise RequestNotServed(
                f"{param}: request{shown} was refused before routing (strategy 'rejected' in the decision log); "
                "there is no routing decision to label", param=param)
        return rid

    def _count(self, source: str, outcome: str, n: int = 1) -> None:
        if self._metrics is not None:
            self._metrics.feedback.labels(source=source, outcome=outcome).inc(n)

    async def handle(self, body: Any, *, header_key: str | None = None, body_bytes: int = 0) -> dict[str, Any]:
        """Validate, resolve and store; returns the response body.

        Raises:
            FeedbackInvalid, UnknownRequestId, RequestNotServed, KeyConflict, FeedbackWriteFailed.
        """
        try:
            if body_bytes > OFFLOAD_BYTES:  # screening megabytes of details must not stall the loop
                events, batch = await asyncio.to_thread(self.parse, body, header_key)
            else:
                events, batch = self.parse(body, header_key)
        except RouterRequestError:
            self._count("invalid", "rejected")
            raise
        labels = [self._labels(ev.source) for ev in events]
        try:
            received = datetime.fromtimestamp(self._wall(), tz=UTC)
            rows: list[PendingRow] = []
            for i, ev in enumerate(events):
                rid = self._resolve(ev, f"items[{i}]" if batch else "")
                key = ev.idempotency_key or ev.default_key(rid)
                row = {"feedback_id": key, "request_id": rid, "quality": ev.quality, "source": ev.source,
                       "details": ev.details, "ts": ev.ts or received, "received_ts": received}
                rows.append(PendingRow(row, content_digest(rid, ev.source, ev.quality, ev.details)))
            outcomes = await self.store.submit(rows)
        except RouterRequestError:
            for lb in labels:
                self._count(lb, "rejected")
            raise
        results = []
        for ev, pr, outcome, lb in zip(events, rows, outcomes, labels, strict=True):
            self._count(lb, outcome)
            results.append({"object": "feedback", "id": pr.key, "request_id": pr.row["request_id"],
                            "source": ev.source, "status": outcome, "redacted": list(ev.redacted)})
        log.debug("feedback: %d event(s) (%d stored)", len(results), outcomes.count("stored"))
        if self._on_stored is not None:
            stored = [(str(pr.row["request_id"]), float(ev.quality))
                      for ev, pr, outcome in zip(events, rows, outcomes, strict=True) if outcome == "stored"]
            if stored:
                try:
                    self._on_stored(stored)
                except Exception as e:  # the labels are stored: a bug in the evidence must not fail the answer
                    log.error("ALERT feedback: %d stored label(s) not added to the live policy evidence: %s: %s",
                              len(stored), type(e).__name__, e)
        if not batch:
            return results[0]
        return {"object": "list", "data": results, "stored": outcomes.count("stored"),
                "duplicate": outcomes.count("duplicate")}

    async def aclose(self) -> None:
        """Close the store (commits in flight finish)."""
        await self.store.aclose()


class DisabledFeedback:
    """The endpoint when feedback is off: every call answers 501 naming the setting."""

    def __init__(self, reason: str) -> None:
        self.reason = reason

    async def handle(self, body: Any, *, header_key: str | None = None, body_bytes: int = 0) -> dict[str, Any]:
        """Always refuses.

        Raises:
            FeedbackDisabled: naming the setting.
        """
        raise FeedbackDisabled(self.reason)

    async def aclose(self) -> None:
        """Nothing to close."""


def build_feedback(router: HybridRouter, *, wall_clock: Callable[[], float] = time.time
                   ) -> FeedbackService | DisabledFeedback:
    """The feedback endpoint of ``router`` from ``router.config.feedback`` (see the module docstring).

    Raises:
        ConfigError: ``feedback.dir`` is the decision-log folder, or an existing decision-log /
            feedback part file is unreadable (names the setting and the file).
    """
    cfg = router.config.feedback
    if not cfg.enabled:
        return DisabledFeedback("feedback is disabled on this router (feedback.enabled: false)")
    dl = router.decision_log
    if dl is None:
        return DisabledFeedback(
            "feedback needs the decision log (its request ids are the ones feedback may refer to): "
            "set logging.decision_log_dir in the router config"
        )
    directory = router.config.feedback.dir or Path(dl.directory).parent / "feedback"
    if Path(directory).resolve() == Path(dl.directory).resolve():
        raise ConfigError("feedback.dir", f"{directory} is the decision-log folder; feedback needs its own folder")
    try:
        index = RequestIndex.attach(dl)
    except PartFileError as e:
        raise ConfigError("logging.decision_log_dir", f"feedback cannot index the decision log: {e}") from None

    def flush_decisions() -> None:
        if dl.pending:
            dl.flush()

    try:
        store = FeedbackStore(directory, before_commit=flush_decisions)
    except PartFileError as e:
        raise ConfigError("feedback.dir", f"cannot load the feedback store: {e}") from None
    return FeedbackService(store, index, is_sensitive=router.screener.text_is_sensitive, metrics=router.metrics,
                           max_batch=cfg.max_batch, max_details_bytes=cfg.max_details_bytes,
                           max_clock_skew_s=cfg.max_clock_skew_s, wall_clock=wall_clock,
                           on_stored=router.decider.policies.on_feedback)
