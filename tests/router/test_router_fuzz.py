"""Property-based fuzzing of the chat-completions schema against the real server.

Every malformed body gets a 4xx with an OpenAI error naming the field, never a 5xx, and the
same keep-alive connection then serves a valid request (it used to be dropped after a 500).
"""

from __future__ import annotations

import http.client
import json
from collections.abc import Iterator
from typing import Any

import pytest
from _router_helpers import API_TOKEN, CLOUD_KEY, CLOUD_KEY_ENV, SIMPLE_PROMPT, router_config
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from router_rl.replay.server import ReplayBackendServer
from router_rl.router.config import parse_config
from router_rl.router.engine import HybridRouter
from router_rl.router.server import RouterServer, build_server_app

VALID: dict[str, Any] = {"model": "router-rl/auto", "messages": [{"role": "user", "content": SIMPLE_PROMPT}],
                         "max_tokens": 16}
HEADERS = {"authorization": f"Bearer {API_TOKEN}", "content-type": "application/json"}
FIELDS = ("model", "messages", "stream", "max_tokens", "max_completion_tokens", "temperature", "stop", "user", "n",
          "stream_options", "metadata", "top_p", "seed", "presence_penalty", "frequency_penalty")

# any JSON value, including non-finite floats and strings with lone surrogates
_scalars = (st.none() | st.booleans() | st.integers(min_value=-(2**70), max_value=2**70)
            | st.floats(allow_nan=True, allow_infinity=True)
            | st.text(alphabet=st.characters(codec=None, categories=None), max_size=20))
_json = st.recursive(_scalars, lambda inner: st.lists(inner, max_size=4)
                     | st.dictionaries(st.text(max_size=8), inner, max_size=4), max_leaves=12)


@pytest.fixture(scope="module")
def conn_url(local_backend: ReplayBackendServer, cloud_backend: ReplayBackendServer) -> Iterator[tuple[str, int]]:
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(CLOUD_KEY_ENV, CLOUD_KEY)
        mp.setenv("ROUTER_RL_API_TOKENS", API_TOKEN)
        cfg = parse_config(router_config(local_backend.base_url, cloud_backend.base_url))
        router = HybridRouter.from_config(cfg)
        with RouterServer(build_server_app(router)) as srv:
            yield srv.host, srv.port


class _Conn:
    """One HTTP/1.1 keep-alive connection; fails if the server closes it."""

    def __init__(self, host: str, port: int) -> None:
        self.c = http.client.HTTPConnection(host, port, timeout=30)
        self.c.connect()
        self.sock = self.c.sock

    def post(self, raw: bytes) -> tuple[int, dict[str, Any] | None, bool]:
        self.c.request("POST", "/v1/chat/completions", body=raw, headers=HEADERS)
        r = self.c.getresponse()
        data = r.read()
        try:
            body = json.loads(data)
        except ValueError:
            body = None
        return r.status, body, bool(r.will_close)

    def same_socket(self) -> bool:
        return self.c.sock is self.sock and self.sock is not None


def _check(conn: _Conn, raw: bytes, field: str | None) -> None:
    status, body, closing = conn.post(raw)
    assert status < 500, (status, body, raw[:200])
    assert not closing, "the server asked to close the keep-alive connection"
    if status >= 400:
        assert body is not None and set(body["error"]) == {"message", "type", "param", "code"}, body
        if field is not None:
            err = body["error"]
            assert field in (err["param"] or "") or field in err["message"], (field, err)
    status2, body2, _ = conn.post(json.dumps(VALID).encode())
    assert status2 == 200 and conn.same_socket(), (status2, body2)


@settings(max_examples=120, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(field=st.sampled_from((*FIELDS, "bogus_field")), value=_json)
def test_fuzzed_field_values_never_5xx_and_keep_the_connection(conn_url: tuple[str, int], field: str,
                                                                value: Any) -> None:
    conn = _Conn(*conn_url)
    try:
        raw = json.dumps({**VALID, field: value}, allow_nan=True).encode()
        _check(conn, raw, field)
    finally:
        conn.c.close()


@settings(max_examples=60, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(msg=st.dictionaries(st.sampled_from(["role", "content", "name", "x"]), _json, max_size=3))
def test_fuzzed_messages_never_5xx(conn_url: tuple[str, int], msg: dict[str, Any]) -> None:
    conn = _Conn(*conn_url)
    try:
        _check(conn, json.dumps({**VALID, "messages": [msg]}, allow_nan=True).encode(), "messages")
    finally:
        conn.c.close()


@pytest.mark.parametrize(("raw", "field"), [
    (json.dumps({**VALID, "top_p": float("inf")}).encode(), None),  # "Infinity" literal
    (json.dumps({**VALID, "top_p": float("nan")}).encode(), None),
    (json.dumps({**VALID, "temperature": 1e999}).encode().replace(b"Infinity", b"1e999"), None),
    (json.dumps({**VALID, "messages": [{"role": "user", "content": "\ud800"}]}).encode(), "messages[0].content"),
    (json.dumps({**VALID, "user": "a\udfffb"}).encode(), "user"),
    (json.dumps({**VALID, "metadata": {"\ud800": 1}}).encode(), "metadata"),
    (b'{"model": "router-rl/auto", "messages": ' + b"[" * 1200 + b"]" * 1200 + b"}", "messages"),
    (b"[" * 100_000 + b"]" * 100_000, None),
    (b'{"model": "router-rl/auto", "seed": 1' + b"0" * 5000 + b"}", None),
    (b"\xff\xfe{not utf8", None),
    (b"", None),
    (json.dumps({**VALID, "n": True}).encode(), "n"),
    (json.dumps({**VALID, "stream_options": {"include_usage": "yes"}}).encode(), "stream_options"),
])
def test_known_poison_bodies_get_400_and_the_connection_survives(conn_url: tuple[str, int], raw: bytes,
                                                                 field: str | None) -> None:
    conn = _Conn(*conn_url)
    try:
        status, body, _ = conn.post(raw)
        assert status == 400, (status, body)
        conn_status = conn.post(json.dumps(VALID).encode())[0]
        assert conn_status == 200 and conn.same_socket()
        if field is not None:
            assert body is not None and field in (body["error"]["param"] or "") + body["error"]["message"]
    finally:
        conn.c.close()
