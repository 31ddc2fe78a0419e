"""A local Flower deployment: one SuperLink and one SuperNode per agent type, driven by ``flwr run``.

Processes are started with :func:`subprocess.Popen` and stopped by PID, with the descendants they
spawned (terminate, then kill after a grace period) by :meth:`LocalDeployment.stop`; nothing is
stopped by name. Linux only (descendants are read from ``/proc``). ``FLWR_HOME`` is a
folder of the caller's (the SuperLink connection ``local`` is written to its ``config.toml``),
runtime dependency installation and telemetry are off.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from router_rl.federated.config import FLOWER_ENV, FederatedConfig


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _bin(name: str) -> str:
    p = Path(sys.executable).with_name(name)
    if not p.is_file():
        raise FileNotFoundError(f"{name} not found next to {sys.executable} (is flwr installed in this venv?)")
    return str(p)


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int | float):
        return repr(v)
    return '"' + str(v).replace("\\", "\\\\").replace('"', '\\"') + '"'


def write_app(pyproject: str | Path, app_dir: str | Path, cfg: FederatedConfig, output_dir: str | Path) -> Path:
    """Write a Flower app folder whose ``pyproject.toml`` is ``pyproject``'s ``[tool.flwr.app]`` tables.

    ``[tool.flwr.app.config]`` is replaced by ``cfg.to_run_config()`` plus ``output-dir``.
    """
    with Path(pyproject).open("rb") as fh:
        doc = tomllib.load(fh)
    app = doc.get("tool", {}).get("flwr", {}).get("app")
    if not app or "components" not in app:
        raise ValueError(f"{pyproject}: [tool.flwr.app.components] missing")
    proj = doc.get("project", {})
    out = Path(app_dir)
    out.mkdir(parents=True, exist_ok=True)
    run_config = {**cfg.to_run_config(), "output-dir": str(output_dir)}
    lines = [
        "[build-system]", 'requires = ["hatchling"]', 'build-backend = "hatchling.build"', "",
        "[project]", f'name = {_toml_value(proj.get("name", "router-rl"))}',
        f'version = {_toml_value(proj.get("version", "0.0.0"))}', "dependencies = []", "",
        "[tool.flwr.app]", f'publisher = {_toml_value(app.get("publisher", "router-rl"))}', "",
        "[tool.flwr.app.components]",
        *[f"{k} = {_toml_value(v)}" for k, v in app["components"].items()], "",
        "[tool.flwr.app.config]", *[f"{k} = {_toml_value(v)}" for k, v in run_config.items()], "",
    ]
    (out / "pyproject.toml").write_text("\n".join(lines))
    return out


@dataclass
class LocalDeployment:
    """SuperLink + SuperNodes on 127.0.0.1, insecure, for tests and demos.

    Args:
        num_nodes: SuperNodes; node ``i`` gets ``partition-id=i``.
        flwr_home: ``FLWR_HOME`` of every process and of ``flwr run``.
        log_dir: Where each process's stdout/stderr go.
    """

    num_nodes: int
    flwr_home: Path
    log_dir: Path
    procs: list[subprocess.Popen] = field(default_factory=list)
    seen: set[int] = field(default_factory=set)
    control_address: str = ""

    def env(self) -> dict[str, str]:
        """Environment of the Flower processes."""
        env = {**os.environ, **FLOWER_ENV, "FLWR_HOME": str(self.flwr_home)}
        # the SuperLink / SuperNodes spawn flower-superexec / flwr-* from PATH
        env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
        return env

    def _spawn(self, name: str, args: list[str]) -> None:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log = (self.log_dir / f"{name}.log").open("w")
        self.procs.append(subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, env=self.env(),
                                           cwd=str(self.log_dir)))

    def start(self) -> LocalDeployment:
        """Start the SuperLink, then the SuperNodes; write the ``local`` connection to ``FLWR_HOME``."""
        self.flwr_home.mkdir(parents=True, exist_ok=True)
        port = free_port()  # flwr 1.42: the Runtime, Control and Fleet HTTP APIs share one port
        self.control_address = f"127.0.0.1:{port}"
        self._spawn("superlink", [_bin("flower-superlink"), "--insecure", "--host", "127.0.0.1", "--port", str(port),
                                  "--disable-runtime-dependency-installation"])
        try:
            _wait_port(port, self.procs[0], self.log_dir / "superlink.log")
        except BaseException:
            self.stop()
            raise
        for i in range(self.num_nodes):
            self._spawn(f"supernode-{i}", [_bin("flower-supernode"), "--insecure", "--superlink",
                                           self.control_address, "--node-config", f"partition-id={i}",
                                           "--host", "127.0.0.1", "--port", str(free_port())])
        (self.flwr_home / "config.toml").write_text(
            '[superlink]\ndefault = "local"\n\n[superlink.local]\n'
            f'address = "{self.control_address}"\ninsecure = true\n'
        )
        return self

    def run(self, app_dir: str | Path, *, timeout: float = 600.0) -> subprocess.CompletedProcess:
        """``flwr run APP_DIR local --stream`` (blocks until the run ends)."""
        return subprocess.run([_bin("flwr"), "run", str(app_dir), "local", "--stream"], env=self.env(),
                              capture_output=True, text=True, timeout=timeout, check=False)

    def stop(self, grace: float = 10.0) -> list[int | None]:
        """Terminate every started process and its descendants by PID; kill after ``grace`` s.

        Descendants (SuperExec, ``flwr-serverapp`` / ``flwr-clientapp``) are found through
        ``/proc`` before signalling; some run in their own session, so a process-group signal alone
        would miss them. Their PIDs are kept in :attr:`seen` for :meth:`live_processes`.

        Returns:
            The exit codes of the started processes, in start order.
        """
        import signal

        for p in self.procs:
            self.seen.update({p.pid, *_descendants(p.pid)})
        for pid in sorted(self.seen, reverse=True):
            _signal(pid, signal.SIGTERM)
        for p in reversed(self.procs):
            try:
                p.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(timeout=grace)
        end = time.monotonic() + grace
        while self.live_processes() and time.monotonic() < end:
            time.sleep(0.2)
        for pid in self.live_processes():
            _signal(pid, signal.SIGKILL)
        return [p.returncode for p in self.procs]

    def live_processes(self) -> list[int]:
        """PIDs started or seen by :meth:`stop` that still run (zombies do not count)."""
        return sorted(pid for pid in self.seen if _state(pid) not in (None, "Z", "X"))


def _stat(pid: int) -> list[str] | None:
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    return raw[raw.rindex(")") + 2:].split()  # fields after "(comm)": state, ppid, pgrp, ...


def _state(pid: int) -> str | None:
    st = _stat(pid)
    return st[0] if st else None


def _descendants(pid: int) -> set[int]:
    children: dict[int, list[int]] = {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            st = _stat(int(d.name))
            if st:
                children.setdefault(int(st[1]), []).append(int(d.name))
    out: set[int] = set()
    todo = [pid]
    while todo:
        for c in children.get(todo.pop(), []):
            if c not in out:
                out.add(c)
                todo.append(c)
    return out


def _signal(pid: int, sig: int) -> None:
    import contextlib

    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.kill(pid, sig)


def _wait_port(port: int, proc: subprocess.Popen, log: Path, timeout: float = 60.0) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise RuntimeError(f"SuperLink exited with {proc.returncode}; see {log}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.2)
    raise TimeoutError(f"SuperLink did not listen on 127.0.0.1:{port} within {timeout}s; see {log}")
