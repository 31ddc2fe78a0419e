"""post_judgement against a real HTTP server on 127.0.0.1."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from router_rl.judge.feedback import FeedbackError, post_judgement
from router_rl.judge.score import Judgement


class _Recorder(ThreadingHTTPServer):
    received: list[tuple[str, dict[str, str], Any]]
    status: int


class _Handler(BaseHTTPRequestHandler):
    server: _Recorder

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["content-length"])))
        self.server.received.append((self.path, {k.lower(): v for k, v in self.headers.items()}, body))
        out = json.dumps({"ok": self.server.status < 300}).encode()
        self.send_response(self.server.status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def server() -> Iterator[_Recorder]:
    srv = _Recorder(("127.0.0.1", 0), _Handler)
    srv.received, srv.status = [], 200
    th = threading.Thread(target=srv.serve_forever, daemon=True)
    th.start()
    yield srv
    srv.shutdown()
    srv.server_close()


def _url(srv: _Recorder) -> str:
    return f"http://127.0.0.1:{srv.server_address[1]}/v1/feedback"


def test_posts_the_documented_payload(server: _Recorder) -> None:
    j = Judgement("tests", 0.8125, {"components": {"pass_rate": 1.0}})
    receipt = post_judgement(_url(server), "req-42", j, token="s3cret")
    assert receipt.status_code == 200 and receipt.body == {"ok": True}
    [(path, headers, body)] = server.received
    assert path == "/v1/feedback"
    assert body == {"request_id": "req-42", "quality": 0.8125, "source": "judge:tests",
                    "details": {"components": {"pass_rate": 1.0}}}
    assert headers["authorization"] == "Bearer s3cret"


def test_rejection_and_transport_errors_raise(server: _Recorder) -> None:
    j = Judgement("flaky", 0.5, {})
    server.status = 404
    with pytest.raises(FeedbackError, match="HTTP 404") as e:
        post_judgement(_url(server), "req-1", j)
    assert e.value.status_code == 404 and len(server.received) == 1
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there now
    with pytest.raises(FeedbackError, match="ConnectError"):
        post_judgement(f"http://127.0.0.1:{port}/v1/feedback", "req-1", j, timeout_s=2.0)


def test_bad_arguments() -> None:
    j = Judgement("tests", 1.0, {})
    with pytest.raises(ValueError, match="url"):
        post_judgement("ftp://x/y", "r", j)
    with pytest.raises(ValueError, match="request_id"):
        post_judgement("http://127.0.0.1:1/v1/feedback", " ", j)
    with pytest.raises(ValueError, match="score"):
        Judgement("tests", 1.5, {})
    with pytest.raises(ValueError, match="kind"):
        Judgement("vibes", 0.5, {})
