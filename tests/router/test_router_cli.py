"""``router-rl router serve`` and ``router-rl replay-backend`` as real subprocesses on 127.0.0.1."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import openai
import pytest
import yaml
from _router_helpers import API_TOKEN, CLOUD_KEY, CLOUD_KEY_ENV, SIMPLE_PROMPT, router_config

from router_rl.replay.server import ReplayBackendServer
from router_rl.traces.decision_log import read_decision_log

pytestmark = pytest.mark.cli  # runs the real console script


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait(url: str, proc: subprocess.Popen[str], timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            _, err = proc.communicate()
            raise AssertionError(f"process exited with {proc.returncode}: {err[-2000:]}")
        try:
            httpx.get(url, timeout=1.0)
            return
        except httpx.HTTPError:
            time.sleep(0.1)
    raise AssertionError(f"{url} did not come up")


@pytest.mark.slow
def test_router_serve_subprocess_end_to_end(
    backends: tuple[ReplayBackendServer, ReplayBackendServer], tmp_path: Path
) -> None:
    local, cloud = backends
    port = _free_port()
    cfg = router_config(local.base_url, cloud.base_url, logging={"decision_log_dir": "dl", "batch_size": 1000,
                                                                 "flush_interval_s": 60})
    (tmp_path / "router.yaml").write_text(yaml.safe_dump(cfg))
    env = {**os.environ, CLOUD_KEY_ENV: CLOUD_KEY, "ROUTER_RL_API_TOKENS": API_TOKEN}
    proc = subprocess.Popen(
        [sys.executable, "-m", "router_rl", "router", "serve", "--config", str(tmp_path / "router.yaml"),
         "--port", str(port)],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        _wait(f"http://127.0.0.1:{port}/health", proc)
        c = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key=API_TOKEN, max_retries=0)
        for _ in range(3):
            r = c.chat.completions.create(model="router-rl/auto", messages=[{"role": "user", "content": SIMPLE_PROMPT}])
            assert r.model == "small-local"
    finally:
        proc.send_signal(signal.SIGINT)  # graceful: the lifespan shutdown flushes the decision log
        out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err[-2000:]
    assert read_decision_log(tmp_path / "dl").height == 3  # batch never filled: flushed on shutdown
    assert CLOUD_KEY not in out + err and API_TOKEN not in out + err and SIMPLE_PROMPT not in out + err


def test_router_serve_fails_fast_naming_the_missing_key(tmp_path: Path) -> None:
    cfg = router_config("http://127.0.0.1:1", "http://127.0.0.1:2")
    (tmp_path / "router.yaml").write_text(yaml.safe_dump(cfg))
    env = {k: v for k, v in os.environ.items() if k != CLOUD_KEY_ENV}
    out = subprocess.run(
        [sys.executable, "-m", "router_rl", "router", "serve", "--config", str(tmp_path / "router.yaml")],
        env=env, capture_output=True, text=True, timeout=60,
    )
    assert out.returncode == 2
    assert f"providers[1].api_key_env: environment variable {CLOUD_KEY_ENV} is not set" in " ".join(out.stderr.split())


@pytest.mark.slow
def test_replay_backend_command_serves_and_stops(tmp_path: Path) -> None:
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "router_rl", "replay-backend", "--port", str(port), "--time-scale", "0",
         "--n-tasks", "20"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        _wait(f"http://127.0.0.1:{port}/health", proc)
        models = httpx.get(f"http://127.0.0.1:{port}/v1/models", timeout=5).json()
        assert len(models["data"]) > 0
    finally:
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=30)
