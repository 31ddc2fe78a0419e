"""A real ``router-rl router serve`` process SIGKILLed while concurrent clients send feedback.

Every acknowledged feedback (HTTP 200) must be in the part files afterwards (with its request's
decision row), every part file readable; a restarted router then knows the ids and the keys.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pyarrow.parquet as pq
import pytest
import yaml
from _router_helpers import API_TOKEN, CLOUD_KEY, CLOUD_KEY_ENV, SIMPLE_PROMPT, router_config

from router_rl.replay.server import ReplayBackendServer
from router_rl.traces.decision_log import read_decision_log
from router_rl.traces.parts import read_parts
from router_rl.traces.schema import FEEDBACK_SCHEMA

pytestmark = [pytest.mark.cli, pytest.mark.slow]
AUTH = {"authorization": f"Bearer {API_TOKEN}"}
N_CLIENTS = 6


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _serve(cfg_path: Path, port: int) -> subprocess.Popen[str]:
    env = {**os.environ, CLOUD_KEY_ENV: CLOUD_KEY, "ROUTER_RL_API_TOKENS": API_TOKEN}
    proc = subprocess.Popen(
        [sys.executable, "-m", "router_rl", "router", "serve", "--config", str(cfg_path), "--port", str(port)],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"router exited with {proc.returncode}: {proc.stderr.read()[-2000:]}")  # type: ignore[union-attr]
        try:
            httpx.get(f"http://127.0.0.1:{port}/health", timeout=1.0)
            return proc
        except httpx.HTTPError:
            time.sleep(0.1)
    proc.kill()
    raise AssertionError("router did not come up")


def test_sigkill_loses_no_acknowledged_feedback_and_a_restart_keeps_ids_and_keys(
    backends: tuple[ReplayBackendServer, ReplayBackendServer], tmp_path: Path
) -> None:
    local, cloud = backends
    # a decision log that would flush only after 60 s: the feedback commit must flush it itself
    cfg = router_config(local.base_url, cloud.base_url,
                        logging={"decision_log_dir": "decisions", "batch_size": 100_000, "flush_interval_s": 60})
    (tmp_path / "router.yaml").write_text(yaml.safe_dump(cfg))
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    proc = _serve(tmp_path / "router.yaml", port)
    acked: list[tuple[str, str]] = []  # (feedback id, request id)
    lock = threading.Lock()
    stop = threading.Event()
    try:
        with httpx.Client(base_url=base, headers=AUTH, timeout=10) as h:
            rids = [h.post("/v1/chat/completions", json={"model": "router-rl/auto", "messages": [
                {"role": "user", "content": SIMPLE_PROMPT}]}).headers["x-request-id"] for _ in range(N_CLIENTS)]

        def client(i: int) -> None:
            with httpx.Client(base_url=base, headers=AUTH, timeout=10) as c:
                k = 0
                while not stop.is_set():
                    key = f"c{i}-{k}"
                    try:
                        r = c.post("/v1/feedback", json={"request_id": rids[i], "quality": (k % 11) / 10,
                                                         "source": "judge:pytest", "idempotency_key": key,
                                                         "details": {"k": k}})
                    except httpx.HTTPError:
                        return  # the router is gone
                    if r.status_code == 200:
                        assert r.json()["status"] == "stored"
                        with lock:
                            acked.append((key, rids[i]))
                    k += 1

        threads = [threading.Thread(target=client, args=(i,)) for i in range(N_CLIENTS)]
        for t in threads:
            t.start()
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:  # kill mid-way: clients are still sending
            with lock:
                if len(acked) >= 150:
                    break
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        stop.set()
        for t in threads:
            t.join(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert len(acked) >= 150
    fdir = tmp_path / "feedback"
    parts = sorted(fdir.glob("part-*.parquet"))
    assert parts and all(pq.ParquetFile(p).metadata.num_rows > 0 for p in parts)  # every part file whole
    rows = read_parts(fdir, schema=FEEDBACK_SCHEMA, what="feedback")
    stored = set(rows["feedback_id"])
    assert {k for k, _ in acked} <= stored  # no acknowledged row lost
    assert rows["feedback_id"].n_unique() == rows.height  # none stored twice
    decisions = set(read_decision_log(tmp_path / "decisions")["request_id"])
    assert set(rids) <= decisions  # flushed before the feedback parts that label them

    proc = _serve(tmp_path / "router.yaml", port)  # restart: ids and keys come back from the parts
    try:
        with httpx.Client(base_url=base, headers=AUTH, timeout=10) as h:
            key, rid = acked[0]
            k = int(key.split("-")[1])
            again = h.post("/v1/feedback", json={"request_id": rid, "quality": (k % 11) / 10,
                                                 "source": "judge:pytest", "idempotency_key": key, "details": {"k": k}})
            assert again.status_code == 200 and again.json()["status"] == "duplicate"
            hours_later = h.post("/v1/feedback", json={"request_id": rids[-1], "quality": 1.0, "source": "human"})
            assert hours_later.status_code == 200 and hours_later.json()["status"] == "stored"
            assert h.post("/v1/feedback", json={"request_id": "unknown-x", "quality": 1.0,
                                                "source": "human"}).status_code == 404
    finally:
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err[-2000:]
    assert read_parts(fdir, schema=FEEDBACK_SCHEMA, what="feedback").height == rows.height + 1
