"""``python -m llama_cpp.server`` as a managed child process on a loopback port.

The server is llama-cpp-python's OpenAI-compatible server (``/v1/models``, ``/v1/chat/completions``
with streaming and ``usage``, ``/v1/completions``). It is started from a JSON config file listing
one or more models, each under an alias the router routes to (a model with a LoRA adapter is one
more alias, e.g. ``tiny+qe``; the server swaps the loaded model when a request names another alias).
It is stopped by PID: SIGTERM to its process group, SIGKILL after a grace period.

The engine runs one generation at a time (its internal lock): concurrent requests queue inside it.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

from router_rl.core.errors import RouterRLError

_LOOPBACK = ("127.0.0.1", "localhost", "::1")


class EngineStartError(RouterRLError):
    """The engine process exited or did not answer in time (the message carries its log tail)."""


@dataclass(frozen=True)
class EngineModel:
    """One model the engine serves.

    Attributes:
        alias: The model id clients send (``model`` field) and ``/v1/models`` lists.
        gguf: The GGUF weights.
        lora: Optional GGUF LoRA adapter applied on top (``base+adapter`` as its own alias).
        n_ctx: Context window in tokens (prompt + completion).
        n_threads: CPU threads for generation.
        seed: Sampling seed.
        extra: More ``llama_cpp.server`` model settings, passed through as given.
    """

    alias: str
    gguf: Path
    lora: Path | None = None
    n_ctx: int = 256
    n_threads: int = 1
    seed: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    def settings(self) -> dict[str, Any]:
        """The ``models[]`` entry of the server's config file."""
        out: dict[str, Any] = {
            "model": str(self.gguf),
            "model_alias": self.alias,
            "n_ctx": self.n_ctx,
            "n_threads": self.n_threads,
            "n_threads_batch": self.n_threads,
            "n_batch": min(512, self.n_ctx),
            "seed": self.seed,
            "verbose": False,
        }
        if self.lora is not None:
            out["lora_path"] = str(self.lora)
        return out | self.extra


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port free on ``host`` right now."""
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


class LlamaCppServer:
    """A llama.cpp server child process (see the module docstring).

    Args:
        models: What to serve (at least one; aliases unique).
        host: Bind address; only loopback is allowed (the router is the network edge).
        port: Port (0: a free one).
        startup_timeout_s: How long :meth:`start` waits for ``/v1/models``.
        log_path: Where the engine's stdout/stderr go (default: a file in a temporary folder).

    Example:
        >>> with LlamaCppServer([EngineModel("tiny", Path("tiny.gguf"))]) as eng:  # doctest: +SKIP
        ...     print(eng.base_url)
    """

    def __init__(
        self,
        models: Sequence[EngineModel],
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        startup_timeout_s: float = 120.0,
        log_path: str | Path | None = None,
    ) -> None:
        if not models:
            raise ValueError("LlamaCppServer: at least one model")
        aliases = [m.alias for m in models]
        if len(set(aliases)) != len(aliases):
            raise ValueError(f"LlamaCppServer: model aliases must be unique, got {aliases}")
        if host not in _LOOPBACK:
            raise ValueError(f"LlamaCppServer: host must be loopback ({', '.join(_LOOPBACK)}), got {host!r}")
        for m in models:
            for p in (m.gguf, m.lora):
                if p is not None and not Path(p).is_file():
                    raise FileNotFoundError(f"LlamaCppServer: model {m.alias!r}: {p} not found")
        self.models = tuple(models)
        self.host = host
        self.port = port or free_port(host)
        self.startup_timeout_s = startup_timeout_s
        self._tmp = tempfile.TemporaryDirectory(prefix="router-rl-llamacpp-")
        self.log_path = Path(log_path) if log_path is not None else Path(self._tmp.name) / "engine.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def base_url(self) -> str:
        """``http://host:port/v1``: what an OpenAI-compatible client or router provider points at."""
        return f"http://{self.host}:{self.port}/v1"

    @property
    def pid(self) -> int | None:
        """PID of the engine process while it runs."""
        return None if self.proc is None else self.proc.pid

    def config(self) -> dict[str, Any]:
        """The server's config file content."""
        return {"host": self.host, "port": self.port, "models": [m.settings() for m in self.models]}

    def log_tail(self, n_chars: int = 2000) -> str:
        """The end of the engine's log."""
        try:
            return self.log_path.read_text(errors="replace")[-n_chars:]
        except FileNotFoundError:
            return ""

    def start(self) -> LlamaCppServer:
        """Start the process and wait until ``/v1/models`` answers.

        Raises:
            EngineStartError: llama_cpp is not installed, the process exited, or it did not answer
                within ``startup_timeout_s`` (the message has the log tail).
        """
        import httpx

        if self.proc is not None:
            return self
        try:
            import llama_cpp.server  # noqa: F401
        except ImportError as e:
            raise EngineStartError(
                "llama-cpp-python[server] is not installed (pip install -e '.[local-engine]')"
            ) from e
        cfg_path = Path(self._tmp.name) / "engine.json"
        cfg_path.write_text(json.dumps(self.config(), indent=2))
        env = dict(os.environ, OMP_NUM_THREADS="1")
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "llama_cpp.server", "--config_file", str(cfg_path)],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env, start_new_session=True,
            )
        deadline = time.monotonic() + self.startup_timeout_s
        while True:
            if self.proc.poll() is not None:
                code = self.proc.returncode
                self.proc = None
                raise EngineStartError(f"llama.cpp server exited with {code}:\n{self.log_tail()}")
            try:
                r = httpx.get(f"{self.base_url}/models", timeout=2.0)
                if r.status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise EngineStartError(
                    f"llama.cpp server did not answer on {self.base_url} within {self.startup_timeout_s:.0f} s:\n"
                    f"{self.log_tail()}"
                )
            time.sleep(0.2)

    def kill(self) -> None:
        """SIGKILL the engine now (a crash, for failure tests)."""
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)

    def stop(self, grace_s: float = 10.0) -> None:
        """SIGTERM the engine's process group, SIGKILL after ``grace_s``; idempotent."""
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
        except ProcessLookupError:
            pass

    def __enter__(self) -> LlamaCppServer:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
