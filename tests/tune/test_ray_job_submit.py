"""`ray job submit` of a small benchmark run to a local head started (and stopped) by the test.

The head runs with the dashboard on (the job-submission API lives there) on free loopback ports
and its own temp dir; it is started with ``--block`` in a new session, so stopping it touches only
the processes it started (never ``ray stop``, which would stop every Ray of the machine).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

pytestmark = [pytest.mark.ray, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
RAY = Path(sys.executable).parent / "ray"


def _free_ports(n: int) -> list[int]:
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [int(s.getsockname()[1]) for s in socks]
    finally:
        for s in socks:
            s.close()


def _head_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "RAY_ADDRESS")}
    # the job's `python` is this interpreter's; router_rl comes from the uploaded working dir only
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["RAY_USAGE_STATS_ENABLED"] = "0"
    env["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
    return env


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGINT: `ray start --block` shuts its processes down; then the session's leftovers, if any."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=30)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)


def _start_head() -> tuple[subprocess.Popen[bytes], str, str]:
    """``(process, dashboard address, error)``: error is "" when the dashboard answers."""
    import httpx

    gcs, dash, client, agent_http, agent_grpc, nm, om, metrics, rt_env = _free_ports(9)
    temp = Path(tempfile.mkdtemp(prefix="rrl-job-", dir="/tmp"))  # short: Ray's unix sockets live here
    log_path = temp / "ray-start.log"
    cmd = [str(RAY), "start", "--head", "--block", "--node-ip-address", "127.0.0.1", "--port", str(gcs),
           "--include-dashboard", "true", "--dashboard-host", "127.0.0.1", "--dashboard-port", str(dash),
           "--ray-client-server-port", str(client), "--dashboard-agent-listen-port", str(agent_http),
           "--dashboard-agent-grpc-port", str(agent_grpc), "--node-manager-port", str(nm),
           "--object-manager-port", str(om), "--metrics-export-port", str(metrics),
           "--runtime-env-agent-port", str(rt_env), "--num-cpus", "2", "--temp-dir", str(temp), "--disable-usage-stats"]
    with log_path.open("w") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=_head_env(), start_new_session=True)
    address = f"http://127.0.0.1:{dash}"
    deadline = time.monotonic() + 240
    while True:
        if proc.poll() is not None:
            return proc, address, f"`ray start --head` exited {proc.returncode}: {log_path.read_text()[-1500:]}"
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{address}/api/version", timeout=5).status_code == 200:
                return proc, address, ""
        if time.monotonic() > deadline:
            return proc, address, f"the dashboard at {address} did not answer in 240 s: {log_path.read_text()[-1500:]}"
        time.sleep(2)


@pytest.fixture
def ray_head() -> Iterator[str]:
    """A local head with the dashboard on 127.0.0.1:<free port>; yields its http address."""
    if not RAY.is_file():
        pytest.skip(f"no ray command next to {sys.executable}")
    errors = []
    for _ in range(3):  # on a loaded machine Ray's daemons can miss its fixed startup windows
        proc, address, err = _start_head()
        if not err:
            break
        _stop(proc)
        errors.append(err)
    else:
        pytest.fail("a local Ray head did not start in 3 attempts: " + " | ".join(errors))
    try:
        yield address
    finally:
        _stop(proc)


def test_ray_job_submit_runs_a_benchmark_on_a_local_head(ray_head: str, tmp_path: Path) -> None:
    out = tmp_path / "bench"
    entry = ("python -c 'import router_rl; print(\"router_rl from\", router_rl.__file__)' && "
             "python experiments/benchmark.py --datasets simulated --seeds 0 1 --policies lgbm cheapest "
             f"--sim-tasks 300 --max-train-tasks 300 --preset quick --n-bootstrap 10 --address auto "
             f"--out-dir {out} --name job")
    cmd = [str(RAY), "job", "submit", "--address", ray_head, "--working-dir", str(ROOT),
           "--submission-id", f"rrl-bench-{os.getpid()}", "--", "bash", "-c", entry]
    res = subprocess.run(cmd, capture_output=True, text=True, env=_head_env(), timeout=900, cwd=tmp_path)
    log = res.stdout + res.stderr
    assert res.returncode == 0, log[-4000:]
    assert "succeeded" in log.lower()
    # the job ran the uploaded copy of the working dir, not an installed router_rl
    origin = next(line for line in log.splitlines() if line.startswith("router_rl from "))
    assert "runtime_resources" in origin and "working_dir_files" in origin, origin
    summary = json.loads((out / "job.json").read_text())
    rows = {(r["dataset"], r["policy"]) for r in summary["results"]}
    assert rows == {("simulated", "lgbm"), ("simulated", "cheapest")}
    assert summary["failures"] == []
    assert "--address auto" in summary["run"]["command"]
    assert (out / "job.md").is_file()
