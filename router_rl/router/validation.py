"""Request validation of the OpenAI-compatible front: JSON decoding and the chat-completions schema.

Every refusal is a :class:`BadRequest` (HTTP 400) whose message and ``param`` name the field;
nothing raises past these functions on any input (``tests/router/test_router_fuzz.py``).
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

from router_rl.router.errors import RouterRequestError
from router_rl.router.request import RouteInput

#: Fields the router acts on itself.
ROUTER_FIELDS = frozenset(
    {"model", "messages", "stream", "max_tokens", "max_completion_tokens", "temperature", "stop", "user", "n",
     "stream_options", "metadata"}
)
#: Sampling fields forwarded unchanged to the chosen model (``CompletionRequest.extra``).
FORWARDED_FIELDS = frozenset({"top_p", "seed", "presence_penalty", "frequency_penalty"})
ALLOWED_BODY_FIELDS = ROUTER_FIELDS | FORWARDED_FIELDS
#: Keys accepted in one chat message.
MESSAGE_FIELDS = frozenset({"role", "content"})
MAX_BODY_BYTES = 8 * 1024 * 1024
#: Deepest JSON nesting accepted in a request body (the chat schema needs 5).
MAX_JSON_DEPTH = 32


class BadRequest(RouterRequestError):
    """Malformed request body."""

    status = 400



def _text(content: Any, i: int) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # OpenAI content parts: keep the text parts
        parts = []
        for j, p in enumerate(content):
            if not isinstance(p, dict) or p.get("type") != "text" or not isinstance(p.get("text"), str):
                raise BadRequest(f"messages[{i}].content[{j}]: only text parts are supported",
                                 param=f"messages[{i}].content")
            parts.append(p["text"])
        return "".join(parts)
    if content is None:
        return ""
    raise BadRequest(f"messages[{i}].content: expected a string or a list of text parts",
                     param=f"messages[{i}].content")


class _NonFinite:
    """Placeholder the decoder puts where a body holds NaN / Infinity / an overflowing float."""

    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text


def _finite_float(text: str) -> float | _NonFinite:
    v = float(text)
    return v if math.isfinite(v) else _NonFinite(text)


def _path(parts: list[str | int]) -> str:
    out = ""
    for p in parts:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else p)
    return out or "<body>"


def _deep_key(raw: bytes) -> str | None:
    """Top-level key under which ``raw`` first nests deeper than :data:`MAX_JSON_DEPTH` (a bounded scan)."""
    depth, in_str, esc, start, last, key = 0, False, False, 0, None, None
    for i, b in enumerate(raw):
        if in_str:
            if esc:
                esc = False
            elif b == 0x5C:
                esc = True
            elif b == 0x22:
                in_str, last = False, raw[start:i]
        elif b == 0x22:
            in_str, start = True, i + 1
        elif b == 0x3A and depth == 1 and last is not None:  # ':' after a top-level key
            key = last.decode("utf-8", "replace")
        elif b in (0x5B, 0x7B):
            depth += 1
            if depth > MAX_JSON_DEPTH:
                return key
        elif b in (0x5D, 0x7D):
            depth -= 1
    return None


_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")


def parse_json_body(raw: bytes) -> Any:
    """Decode a JSON request body, refusing what no OpenAI field can hold.

    Refused with :class:`BadRequest` (HTTP 400, naming the field where there is one): bodies over
    :data:`MAX_BODY_BYTES`, invalid UTF-8 / JSON, ``NaN`` / ``Infinity`` / overflowing numbers,
    nesting deeper than :data:`MAX_JSON_DEPTH`, strings holding lone UTF-16 surrogates
    (``"\\ud800"``), which no provider accepts and no log can encode.
    """
    if len(raw) > MAX_BODY_BYTES:
        raise BadRequest(f"request body larger than {MAX_BODY_BYTES} bytes")
    try:
        body = json.loads(raw, parse_constant=_NonFinite, parse_float=_finite_float)
    except RecursionError:
        key = _deep_key(raw[:65_536])
        where = f"{key}: " if key else "request body "
        raise BadRequest(f"{where}nests deeper than {MAX_JSON_DEPTH} levels", param=key) from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise BadRequest(f"request body is not valid JSON (line {getattr(e, 'lineno', '?')})") from None
    except ValueError as e:  # e.g. an integer literal over Python's digit limit
        raise BadRequest(f"request body holds an unparseable number: {str(e)[:80]}") from None
    # valid UTF-8 decodes to no surrogate: only a \\uD800-\\uDFFF escape can make one, so without
    # such an escape (false positives only cost the check) no string needs encoding to be checked
    surrogates = _SURROGATE_ESCAPE.search(raw) is not None
    stack: list[tuple[Any, list[str | int]]] = [(body, [])]
    while stack:  # iterative: depth and string checks without recursion
        node, at = stack.pop()
        if len(at) > MAX_JSON_DEPTH:
            raise BadRequest(f"{_path(at[:MAX_JSON_DEPTH])}: nests deeper than {MAX_JSON_DEPTH} levels",
                             param=_path(at[:1]))
        if isinstance(node, str):
            if not surrogates:
                continue
            try:
                node.encode("utf-8")
            except UnicodeEncodeError:
                raise BadRequest(f"{_path(at)}: string holds a lone UTF-16 surrogate; expected valid Unicode",
                                 param=_path(at)) from None
        elif isinstance(node, dict):
            for k, v in node.items():
                try:
                    if surrogates:
                        k.encode("utf-8")
                except UnicodeEncodeError:
                    raise BadRequest(f"{_path(at)}: a key holds a lone UTF-16 surrogate", param=_path(at)) from None
                stack.append((v, [*at, k]))
        elif isinstance(node, list):
            stack.extend((v, [*at, i]) for i, v in enumerate(node))
        elif isinstance(node, _NonFinite):
            raise BadRequest(f"{_path(at)}: {node.text} is not a finite number", param=_path(at))
        elif isinstance(node, int) and not isinstance(node, bool) and abs(node) > 2**63:
            raise BadRequest(f"{_path(at)}: integer out of range", param=_path(at))
    return body


def parse_chat_body(body: Any, headers: dict[str, str]) -> tuple[RouteInput, bool, bool]:
    """Validate a chat-completions body into a :class:`RouteInput`.

    Returns:
        ``(input, stream, include_usage)``.

    Raises:
        BadRequest: naming the offending field.
    """
    if not isinstance(body, dict):
        raise BadRequest("request body must be a JSON object")
    unknown = sorted(set(body) - ALLOWED_BODY_FIELDS)
    if unknown:  # never silently dropped: tools, response_format, logprobs... are refused
        raise BadRequest(
            f"unknown or unsupported field(s) {unknown}; supported: {sorted(ALLOWED_BODY_FIELDS)}", param=unknown[0]
        )
    params: dict[str, Any] = {}
    for k in sorted(FORWARDED_FIELDS & set(body)):
        v = body[k]
        if v is None:
            continue
        if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
            raise BadRequest(f"{k}: expected a finite number", param=k)
        params[k] = v
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise BadRequest("model: expected a non-empty string", param="model")
    msgs = body.get("messages")
    if not isinstance(msgs, list) or not msgs:
        raise BadRequest("messages: expected a non-empty array of {role, content} objects", param="messages")
    messages: list[dict[str, str]] = []
    for i, m in enumerate(msgs):
        if not isinstance(m, dict) or not isinstance(m.get("role"), str):
            raise BadRequest(f"messages[{i}]: expected an object with a string 'role'", param=f"messages[{i}]")
        if m["role"] not in ("system", "user", "assistant", "developer", "tool"):
            raise BadRequest(f"messages[{i}].role: unknown role {m['role']!r}", param=f"messages[{i}].role")
        extra = sorted(set(m) - MESSAGE_FIELDS)
        if extra:  # name, tool_calls, tool_call_id... are refused, never silently dropped or forwarded unscanned
            raise BadRequest(
                f"messages[{i}].{extra[0]}: unsupported message field; supported: {sorted(MESSAGE_FIELDS)}",
                param=f"messages[{i}].{extra[0]}",
            )
        messages.append({"role": m["role"], "content": _text(m.get("content"), i)})
    stream = body.get("stream", False)
    if not isinstance(stream, bool):
        raise BadRequest("stream: expected a boolean", param="stream")
    mt_field = "max_completion_tokens" if body.get("max_completion_tokens") is not None else "max_tokens"
    max_tokens = body.get(mt_field)
    if max_tokens is not None and (isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1):
        raise BadRequest(f"{mt_field}: expected a positive integer", param=mt_field)
    temperature = body.get("temperature")
    if temperature is not None and (
        isinstance(temperature, bool) or not isinstance(temperature, int | float) or not 0 <= temperature <= 2
    ):
        raise BadRequest("temperature: expected a number in [0, 2]", param="temperature")
    stop = body.get("stop")
    if isinstance(stop, str):
        stop = [stop]
    if stop is not None and (not isinstance(stop, list) or not all(isinstance(s, str) for s in stop)):
        raise BadRequest("stop: expected a string or an array of strings", param="stop")
    n = body.get("n", 1)
    if isinstance(n, bool) or n != 1:
        raise BadRequest("n: only n=1 is supported", param="n")
    user = body.get("user")
    if user is not None and not isinstance(user, str):
        raise BadRequest("user: expected a string", param="user")
    meta = body.get("metadata") or {}
    if not isinstance(meta, dict):
        raise BadRequest("metadata: expected an object", param="metadata")
    for k in ("agent_type", "category"):
        if meta.get(k) is not None and not isinstance(meta[k], str):
            raise BadRequest(f"metadata.{k}: expected a string", param=f"metadata.{k}")
    complexity = declared_complexity(headers.get("x-task-complexity"), meta.get("complexity"))
    so = body.get("stream_options") or {}
    if not isinstance(so, dict):
        raise BadRequest("stream_options: expected an object", param="stream_options")
    if not isinstance(so.get("include_usage", False), bool):
        raise BadRequest("stream_options.include_usage: expected a boolean", param="stream_options.include_usage")
    inp = RouteInput(
        messages=messages,
        model=model,
        request_id=headers.get("x-request-id") or None,
        agent_id=headers.get("x-agent-id") or user or None,
        agent_type=headers.get("x-agent-type") or meta.get("agent_type") or None,
        category=headers.get("x-task-category") or meta.get("category") or None,
        complexity=complexity,
        max_tokens=max_tokens,
        temperature=float(temperature) if temperature is not None else None,
        stop=stop,
        params=params,
        metadata=dict(meta),
    )
    return inp, stream, bool(so.get("include_usage", False))


#: Complexity levels an agent may declare with a request (``metadata.complexity`` or ``x-task-complexity``).
DECLARED_COMPLEXITIES: tuple[str, ...] = ("SIMPLE", "MODERATE", "COMPLEX", "VERY_COMPLEX")


def declared_complexity(header: str | None, meta: object) -> str | None:
    """The declared complexity, upper-cased (header first), or ``None``.

    Raises:
        BadRequest: not one of :data:`DECLARED_COMPLEXITIES` (case-insensitive), naming the field.
    """
    for value, param in ((header, "x-task-complexity"), (meta, "metadata.complexity")):
        if value is None or value == "":
            continue
        if not isinstance(value, str) or value.strip().upper() not in DECLARED_COMPLEXITIES:
            raise BadRequest(f"{param}: expected one of {list(DECLARED_COMPLEXITIES)}, got {value!r}", param=param)
        return value.strip().upper()
    return None
