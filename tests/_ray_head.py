"""A real local Ray head for the tests that need one: ``ray start --head`` with its dashboard on 127.0.0.1.

One head serves the whole session (the ``ray_head`` fixture of ``tests/conftest.py``): ``serve
deploy`` / ``serve status`` and autoscaling (tests/serve/test_serve_app.py) and ``ray job submit``
(tests/tune/test_ray_job_submit.py) all need the dashboard's API, and its start-up is the slow part.

Every port is a free one picked here and the head gets its own ``--temp-dir``, so it never meets
another Ray instance on the machine. Stopping it never runs ``ray stop`` (that would stop every
Ray on the machine): the process group ``ray start`` created (its own session) gets SIGTERM, and
any process left whose command line names this head's temp dir is killed by its PID. Not
``--block``: that mode tears the whole head down when any one helper process exits, which on a
loaded 2-core machine happened right after the dashboard came up.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import psutil

RAY_ENV = {
    "RAY_USAGE_STATS_ENABLED": "0",
    "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
    # the dashboard starts ~9 module processes; on a loaded 2-core machine they need more than the
    # default 30 s each, and `ray start` waits for the dashboard 60 s by default
    "RAY_DASHBOARD_SUBPROCESS_MODULE_WAIT_READY_TIMEOUT": "600",
    "RAY_DASHBOARD_STARTUP_TIMEOUT_S": "600",
    # the raylet waits for the dashboard agent's ports (that agent is slow to import under load)
    "RAY_agent_register_timeout_ms": "300000",
    "RAY_raylet_start_wait_time_s": "120",
}


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def ray_bin(name: str) -> str:
    """The ``ray`` / ``serve`` executable next to this Python."""
    path = Path(sys.executable).parent / name
    if not path.exists():
        raise FileNotFoundError(f"{path}: the {name} CLI is not installed next to {sys.executable}")
    return str(path)


@dataclass
class LocalHead:
    """A running head: the GCS address (``ray.init``) and the dashboard URL (``serve deploy -a``)."""

    proc: subprocess.Popen[bytes]
    temp_dir: Path
    gcs_address: str
    dashboard_url: str
    env: dict[str, str]
    log: Path

    def stop(self) -> list[int]:
        """Stop every process of this head; returns the PIDs that had to be killed one by one."""
        with contextlib.suppress(ProcessLookupError):  # the group is gone once every member exited
            os.killpg(self.proc.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=60)
        left = []
        deadline = time.monotonic() + 10  # then SIGKILL: nothing of a test head needs a clean exit
        while time.monotonic() < deadline:
            left = [p for p in psutil.process_iter(["pid", "cmdline"])
                    if any(str(self.temp_dir) in a for a in (p.info["cmdline"] or []))]
            if not left:
                break
            time.sleep(1.0)
        for p in left:
            with contextlib.suppress(psutil.NoSuchProcess):
                p.kill()
        shutil.rmtree(self.temp_dir, ignore_errors=True)
        return [p.pid for p in left]


def start_head(*, num_cpus: int = 4, pythonpath: str, timeout_s: float = 480.0) -> LocalHead:
    """``ray start --head --dashboard-host 127.0.0.1`` on free ports, waited for (dashboard up).

    Raises:
        RuntimeError: the head did not come up (the message carries the end of its output).
    """
    temp_dir = Path(tempfile.mkdtemp(prefix="rrl-head-", dir="/tmp"))
    gcs, dash = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    # a job's `python` is this interpreter (CI runs `.venv/bin/python -m pytest` without activating it)
    env.update(RAY_ENV, PYTHONPATH=pythonpath, PATH=f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}")
    log = temp_dir / "ray-start.log"
    cmd = [
        ray_bin("ray"), "start", "--head", "--disable-usage-stats",
        "--node-ip-address", "127.0.0.1", "--port", str(gcs), "--num-cpus", str(num_cpus),
        "--include-dashboard", "true", "--dashboard-host", "127.0.0.1", "--dashboard-port", str(dash),
        "--ray-client-server-port", str(free_port()), "--dashboard-agent-listen-port", str(free_port()),
        "--dashboard-agent-grpc-port", str(free_port()), "--metrics-export-port", str(free_port()),
        "--runtime-env-agent-port", str(free_port()), "--temp-dir", str(temp_dir),
    ]
    with log.open("wb") as out:
        proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    head = LocalHead(proc, temp_dir, f"127.0.0.1:{gcs}", f"http://127.0.0.1:{dash}", env, log)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        rc = proc.poll()
        if rc is None:  # ray start is still starting the head (GCS, dashboard, raylet)
            time.sleep(1.0)
            continue
        if rc != 0:  # ray start failed (e.g. the raylet did not register in time)
            break
        try:
            if httpx.get(f"{head.dashboard_url}/api/ray/version", timeout=2.0).status_code == 200:
                return head
        except httpx.HTTPError:
            pass
        time.sleep(1.0)
    tail = log.read_text(errors="replace")[-2000:]
    head.stop()
    raise RuntimeError(f"ray start --head did not bring the dashboard up in {timeout_s}s (exit {proc.poll()}):\n{tail}")


def dashboard_log_tail(head: LocalHead, n: int = 3000) -> str:
    """The end of the head's dashboard log (what a failed ``serve`` call is explained by)."""
    logs = sorted(head.temp_dir.glob("session_*/logs/dashboard.log"))
    return logs[-1].read_text(errors="replace")[-n:] if logs else "(no dashboard.log)"


def run_cli(head: LocalHead, *args: str, timeout_s: float = 300.0) -> subprocess.CompletedProcess[str]:
    """Run ``serve ...`` (or ``ray ...``) against the head; raises with its output on a non-zero exit."""
    out = subprocess.run(list(args), env=head.env, capture_output=True, text=True, timeout=timeout_s)
    if out.returncode != 0:
        raise AssertionError(
            f"{' '.join(args)} exited {out.returncode} (ray start: {head.proc.poll()}):\n"
            f"{out.stdout[-1500:]}\n{out.stderr[-1500:]}\n--- dashboard.log ---\n{dashboard_log_tail(head)}"
        )
    return out
