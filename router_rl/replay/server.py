"""Replay backend: an OpenAI/Anthropic/Ollama-compatible HTTP server answering from an outcome matrix.

Rehearse a routing policy without spending money: every model of the matrix is served; a call
is mapped to a task (header ``x-router-rl-task-id``, else the prompt text matched against the
tasks' ``prompt`` column, else a SHA-256 hash of the prompt modulo the number of tasks), and
the recorded outcome of that (task, model) cell is replayed:

* content ``"ok quality=0.8123 task=<id>"`` (first word ``fail`` when quality < the threshold),
  the quality also in header ``x-router-rl-quality`` and in the JSON field ``router_rl``;
* the recorded latency x ``time_scale`` (streams: 30% before the first token);
* the recorded token usage (estimates where unknown);
* recorded errors as HTTP errors (``http_429`` -> 429, ``timeout`` -> 504, ``context...`` ->
  400, anything else -> 500).

Faults (:mod:`router_rl.replay.faults`) are injected per model / provider / API and can be
changed at runtime: ``GET/PUT/POST/DELETE /admin/faults``. ``PUT /admin/quality {"model", "factor"}``
injects a quality regression (that model's recorded quality x factor from then on; ``GET`` lists
them). ``GET/DELETE /admin/stats`` shows
every request the server saw (for retry counting), ``POST /admin/kill`` stops the server and
``GET /health`` answers liveness.

Layout: :mod:`~router_rl.replay.backend` (state: task lookup, outcomes, log),
:mod:`~router_rl.replay.wire` (bodies and the one paced SSE generator), :mod:`~router_rl.replay.app`
(routes) and this module (hosting: :class:`ReplayBackendServer` in a thread on
:class:`router_rl.core.asgi.ThreadedASGIServer`, :func:`serve` in the foreground). The names of
the other modules are re-exported here (the import path users already have).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from router_rl.core.asgi import LOOPBACK, ThreadedASGIServer
from router_rl.core.errors import ConfigError
from router_rl.replay.app import ReplayASGIApp, build_app
from router_rl.replay.backend import QUALITY_HEADER, TASK_HEADER, ReplayBackend
from router_rl.replay.faults import FaultRule, load_faults

__all__ = [
    "QUALITY_HEADER",
    "TASK_HEADER",
    "ReplayASGIApp",
    "ReplayBackend",
    "ReplayBackendServer",
    "build_app",
    "load_backend",
    "run_replay_backend",
    "serve",
]


class ReplayBackendServer:
    """Run a :class:`ReplayBackend` under uvicorn in a background thread on 127.0.0.1.

    Example::

        with ReplayBackendServer(ReplayBackend.simulated(100, seed=0, time_scale=0.01)) as srv:
            print(srv.base_url)   # http://127.0.0.1:<port>

    ``POST /admin/kill`` stops it (see :meth:`wait_stopped`).

    Args:
        backend: The backend to serve.
        port: TCP port (0 = a free one).
        startup_timeout_s: How long :meth:`start` waits for the server.
    """

    def __init__(self, backend: ReplayBackend, *, port: int = 0, startup_timeout_s: float = 10.0) -> None:
        self.backend = backend
        self._port = port
        self.startup_timeout_s = startup_timeout_s
        self._server: ThreadedASGIServer | None = None

    @property
    def port(self) -> int:
        """The bound port (after :meth:`start`)."""
        if self._server is None:
            raise RuntimeError("ReplayBackendServer is not started")
        return self._server.port

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:<port>`` (append ``/v1`` for OpenAI clients)."""
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> ReplayBackendServer:
        """Bind, start the thread and wait until the server accepts connections."""
        server = ThreadedASGIServer(
            build_app(self.backend), port=self._port, lifespan="off", timeout_graceful_shutdown=1,
            timeout_keep_alive=5, startup_timeout_s=self.startup_timeout_s, name="replay-backend",
        )
        self._server = server
        self.backend.on_kill = server.request_exit
        try:
            server.start()
        except RuntimeError as e:
            raise RuntimeError(f"replay backend did not start on 127.0.0.1:{server.port}") from e
        return self

    @property
    def running(self) -> bool:
        """Whether the server thread is alive."""
        return self._server is not None and self._server.running

    def wait_stopped(self, timeout_s: float = 10.0) -> bool:
        """Wait for the server thread to end (e.g. after ``/admin/kill``); True if it did."""
        return True if self._server is None else self._server.wait_stopped(timeout_s)

    def stop(self, timeout_s: float = 10.0) -> None:
        """Ask the server to exit and join the thread (forced after ``timeout_s``)."""
        if self._server is not None:
            self._server.stop(timeout_s)

    def __enter__(self) -> ReplayBackendServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def serve(backend: ReplayBackend, *, host: str = "127.0.0.1", port: int = 8088, allow_remote: bool = False) -> None:
    """Serve ``backend`` in the foreground until Ctrl-C or ``POST /admin/kill``.

    Args:
        backend: What to serve.
        host: Bind address; loopback only unless ``allow_remote``.
        port: TCP port.
        allow_remote: Permit a non-loopback ``host`` (the admin endpoints are unauthenticated).
    """
    import uvicorn

    if host not in LOOPBACK and not allow_remote:
        raise ConfigError("replay.host", f"{host!r} is not a loopback address; pass allow_remote=True to expose it")
    config = uvicorn.Config(build_app(backend), host=host, port=port, log_level="info", access_log=False,
                            lifespan="off", timeout_graceful_shutdown=2, ws="none")
    server = uvicorn.Server(config)

    def _exit() -> None:
        server.should_exit = True

    backend.on_kill = _exit
    server.run()


def load_backend(
    traces_path: str | Path | None,
    *,
    faults: str | Path | list[FaultRule | dict[str, Any]] | None = None,
    seed: int = 0,
    time_scale: float = 1.0,
    n_tasks: int = 200,
    **kw: Any,
) -> ReplayBackend:
    """A backend from a trace file (or a simulated fleet of ``n_tasks`` when ``traces_path`` is None)."""
    rules = load_faults(faults) if isinstance(faults, str | Path) else faults
    if traces_path is None:
        return ReplayBackend.simulated(n_tasks, seed=seed, faults=rules, time_scale=time_scale, **kw)
    return ReplayBackend.from_path(traces_path, faults=rules, seed=seed, time_scale=time_scale, **kw)


def run_replay_backend(
    traces_path: str | Path | None,
    host: str = "127.0.0.1",
    port: int = 8088,
    faults: str | Path | list[FaultRule | dict[str, Any]] | None = None,
    seed: int = 0,
    *,
    time_scale: float = 1.0,
    n_tasks: int = 200,
    api_key_env: str | None = None,
    allow_remote: bool = False,
) -> None:
    """Entry point of ``router-rl replay-backend``: load traces and serve them in the foreground.

    Args:
        traces_path: Trace file (see :func:`router_rl.traces.load_traces`); None = simulated fleet.
        host: Bind address (loopback unless ``allow_remote``).
        port: TCP port.
        faults: Fault rules or a JSON/YAML file of them.
        seed: Seed of the simulated fleet and of fault probability draws.
        time_scale: Multiplier of recorded latencies.
        n_tasks: Size of the simulated fleet when ``traces_path`` is None.
        api_key_env: Environment variable holding a key clients must send (optional).
        allow_remote: Permit a non-loopback ``host``.
    """
    import os

    key = None
    if api_key_env:
        key = os.environ.get(api_key_env)
        if not key:
            raise ConfigError("replay.api_key_env", f"environment variable {api_key_env} is not set or empty")
    backend = load_backend(traces_path, faults=faults, seed=seed, time_scale=time_scale, n_tasks=n_tasks, api_key=key)
    serve(backend, host=host, port=port, allow_remote=allow_remote)
