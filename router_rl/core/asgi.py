"""``ThreadedASGIServer``: an ASGI app served by uvicorn in a background thread.

The one "ASGI app in a thread" helper of router_rl (the replay backend's
``ReplayBackendServer`` runs on it; the router's ``RouterServer`` offers the same API). The socket
is bound at construction, so :attr:`ThreadedASGIServer.port` (``port=0`` picks a free one) and
:attr:`ThreadedASGIServer.base_url` are known before :meth:`ThreadedASGIServer.start`.
uvicorn is imported inside the constructor.

Example::

    with ThreadedASGIServer(app) as srv:
        httpx.get(srv.base_url + "/health")
"""

from __future__ import annotations

import socket
import threading
import time
from typing import Any, Literal, Self

#: Hosts :class:`ThreadedASGIServer` binds without ``allow_remote``.
LOOPBACK: tuple[str, ...] = ("127.0.0.1", "localhost", "::1")


class ThreadedASGIServer:
    """Serve ``app`` with uvicorn in a daemon thread (tests, benchmarks, local rehearsals).

    Args:
        app: Any ASGI application.
        host: Interface to bind (loopback unless ``allow_remote``).
        port: TCP port; 0 = a free one (read :attr:`port`).
        log_level: uvicorn log level.
        lifespan: uvicorn lifespan mode (``"on"`` runs the app's startup / shutdown handlers).
        timeout_graceful_shutdown: Seconds uvicorn waits for open connections on shutdown.
        timeout_keep_alive: Idle keep-alive seconds of a connection.
        startup_timeout_s: How long :meth:`start` waits for the server to accept connections.
        name: Thread name (``<name>-<port>``).
        allow_remote: Permit a non-loopback ``host``.

    Raises:
        ValueError: A non-loopback ``host`` without ``allow_remote``.
        OSError: The port cannot be bound.
    """

    def __init__(
        self,
        app: Any,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        log_level: str = "warning",
        lifespan: Literal["on", "off", "auto"] = "on",
        timeout_graceful_shutdown: int = 5,
        timeout_keep_alive: int = 5,
        startup_timeout_s: float = 20.0,
        name: str = "asgi-server",
        allow_remote: bool = False,
    ) -> None:
        import uvicorn

        if host not in LOOPBACK and not allow_remote:
            raise ValueError(f"host {host!r} is not a loopback address; pass allow_remote=True to expose it")
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self._sock = socket.socket(family, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            self._sock.bind((host, port))
        except OSError:
            self._sock.close()
            raise
        self.app = app
        self.host = host
        self.port: int = int(self._sock.getsockname()[1])
        self.startup_timeout_s = float(startup_timeout_s)
        config = uvicorn.Config(
            app, log_level=log_level, access_log=False, lifespan=lifespan,
            timeout_graceful_shutdown=timeout_graceful_shutdown, timeout_keep_alive=timeout_keep_alive, ws="none",
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [self._sock]}, daemon=True, name=f"{name}-{self.port}"
        )

    @property
    def base_url(self) -> str:
        """``http://host:port`` (IPv6 hosts in brackets)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    @property
    def started(self) -> bool:
        """Whether uvicorn has started accepting connections."""
        return bool(self._server.started)

    @property
    def running(self) -> bool:
        """Whether the server thread is alive."""
        return self._thread.is_alive()

    def start(self, timeout_s: float | None = None) -> Self:
        """Start the thread and wait until the server accepts connections.

        Args:
            timeout_s: Wait at most this long (default: ``startup_timeout_s``).

        Raises:
            RuntimeError: The server did not start in time or its thread died (it is stopped).
        """
        self._thread.start()
        deadline = time.monotonic() + (self.startup_timeout_s if timeout_s is None else timeout_s)
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self.stop(timeout_s=2.0)
                raise RuntimeError(f"ASGI server {self._thread.name} did not start on {self.base_url}")
            time.sleep(0.01)
        return self

    def request_exit(self) -> None:
        """Ask the server to shut down gracefully (returns at once; thread-safe)."""
        self._server.should_exit = True

    def wait_stopped(self, timeout_s: float = 10.0) -> bool:
        """Wait for the server thread to end (e.g. after :meth:`request_exit`); True if it did."""
        if self._thread.ident is not None:
            self._thread.join(timeout_s)
        return not self.running

    def stop(self, timeout_s: float = 15.0) -> None:
        """Graceful shutdown (the app's lifespan shutdown runs), forced after ``timeout_s``; closes the socket."""
        self.request_exit()
        if self._thread.ident is not None:
            self._thread.join(timeout_s)
            if self._thread.is_alive():
                self._server.force_exit = True
                self._thread.join(timeout_s)
        self._sock.close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
