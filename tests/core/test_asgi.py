"""ThreadedASGIServer: the one "ASGI app in a thread" helper (real uvicorn on 127.0.0.1)."""

from __future__ import annotations

import httpx
import pytest

from router_rl.core.asgi import ThreadedASGIServer


class _App:
    """A minimal ASGI app recording its lifespan events and answering ``/ping``."""

    def __init__(self) -> None:
        self.events: list[str] = []

    async def __call__(self, scope: dict, receive, send) -> None:  # type: ignore[no-untyped-def]
        if scope["type"] == "lifespan":
            while True:
                msg = await receive()
                kind = msg["type"].split(".")[1]
                self.events.append(kind)
                await send({"type": f"lifespan.{kind}.complete"})
                if kind == "shutdown":
                    return
        body = f"pong {scope['path']}".encode()
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
        await send({"type": "http.response.body", "body": body})


def test_port_known_before_start_serves_and_runs_the_lifespan() -> None:
    app = _App()
    srv = ThreadedASGIServer(app)
    assert srv.port > 0 and srv.base_url == f"http://127.0.0.1:{srv.port}"
    assert not srv.running and app.events == []
    with srv:
        assert srv.running and srv.started and app.events == ["startup"]
        r = httpx.get(srv.base_url + "/ping", timeout=5)
        assert r.status_code == 200 and r.text == "pong /ping"
    assert not srv.running and app.events == ["startup", "shutdown"]
    with pytest.raises(httpx.ConnectError):
        httpx.get(srv.base_url + "/ping", timeout=2)


def test_request_exit_then_wait_stopped_and_lifespan_off() -> None:
    app = _App()
    srv = ThreadedASGIServer(app, lifespan="off").start()
    srv.request_exit()
    assert srv.wait_stopped(10)
    assert app.events == []  # lifespan off: no startup / shutdown sent
    srv.stop()  # idempotent after the thread ended


def test_refuses_a_non_loopback_host_and_a_taken_port() -> None:
    with pytest.raises(ValueError, match="not a loopback address"):
        ThreadedASGIServer(_App(), host="0.0.0.0")
    with ThreadedASGIServer(_App()) as first, pytest.raises(OSError):
        ThreadedASGIServer(_App(), port=first.port)
