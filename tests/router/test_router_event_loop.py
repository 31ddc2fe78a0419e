"""A large request never freezes the router: screening (privacy + complexity) runs off the event loop."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from _router_helpers import API_TOKEN, by_model, router_config

from router_rl.features.privacy import is_sensitive
from router_rl.replay.server import ReplayBackendServer
from router_rl.router.config import parse_config
from router_rl.router.engine import HybridRouter
from router_rl.router.server import RouterServer, build_server_app

Backends = tuple[ReplayBackendServer, ReplayBackendServer]
AUTH = {"authorization": f"Bearer {API_TOKEN}"}
#: the input on which the seed's url_credentials pattern was quadratic (12.4 s for 100 KB)
ADVERSARIAL_1MB = "a." * 500_000


def _serve(backends: Backends, tmp_path: Path, **kw: Any) -> Iterator[tuple[RouterServer, HybridRouter]]:
    local, cloud = backends
    cfg = parse_config(router_config(local.base_url, cloud.base_url,
                                     logging={"decision_log_dir": str(tmp_path / "log"), "flush_interval_s": 0.05}))
    router = HybridRouter.from_config(cfg, **kw)
    with RouterServer(build_server_app(router)) as srv:
        yield srv, router


def _post_big(url: str, content: str, out: dict[str, Any]) -> None:
    body = {"model": "router-rl/auto", "messages": [{"role": "user", "content": content}], "max_tokens": 16}
    with httpx.Client(timeout=600) as h:
        r = h.post(url + "/v1/chat/completions", json=body, headers=AUTH)
    out["status"], out["json"], out["headers"], out["t_done"] = r.status_code, r.json(), r.headers, time.monotonic()


def test_health_answers_while_a_large_request_is_being_screened(backends: Backends, tmp_path: Path) -> None:
    """Ordering, not speed: the detector holds the big request until /health has answered.

    If screening ran on the event loop, /health could not answer while the detector waits, and
    this test would time out on /health (it did before the screening moved to a thread pool).
    """
    started, health_done = threading.Event(), threading.Event()

    def detector(text: str) -> bool:
        if len(text) > 1000 and not started.is_set():
            started.set()
            health_done.wait(30)
        return is_sensitive(text)

    gen = _serve(backends, tmp_path, sensitive_fn=detector)
    srv, router = next(gen)
    try:
        out: dict[str, Any] = {}
        th = threading.Thread(target=_post_big, args=(srv.base_url, "lorem ipsum. " * 80_000, out))
        th.start()
        assert started.wait(30), "the big request never reached the detector"
        t = time.monotonic()
        with httpx.Client(timeout=10) as h:
            health = h.get(srv.base_url + "/health")
        health_s = time.monotonic() - t
        assert "status" not in out  # the big request is still in flight
        health_done.set()
        th.join(60)
        assert health.status_code == 200 and health.json()["status"] == "ok"
        assert health_s < 2.0, f"/health took {health_s:.3f}s while a request was screened"  # target 50 ms
        assert out["status"] == 200 and out["headers"]["x-router-model"] in ("small-local", "big-local", "cloud-large")
        assert router.screener.offloaded_count == 1
    finally:
        health_done.set()
        gen.close()


@pytest.mark.slow
def test_health_stays_fast_during_a_real_1mb_adversarial_prompt(backends: Backends, tmp_path: Path) -> None:
    """The real detector on 1 MB of ``"a."``: /health keeps answering and the request completes correctly."""
    gen = _serve(backends, tmp_path)
    srv, router = next(gen)
    try:
        out: dict[str, Any] = {}
        th = threading.Thread(target=_post_big, args=(srv.base_url, ADVERSARIAL_1MB, out))
        th.start()
        deadline = time.monotonic() + 60
        while router.screener.offloaded_count == 0 and "status" not in out and time.monotonic() < deadline:
            time.sleep(0.002)
        during: list[float] = []
        with httpx.Client(timeout=10) as h:
            while "status" not in out and time.monotonic() < deadline + 600:
                t = time.monotonic()
                assert h.get(srv.base_url + "/health").status_code == 200
                done = time.monotonic()
                if "status" not in out:  # answered while the big request was still in flight
                    during.append(done - t)
                time.sleep(0.02)
        th.join(60)
        assert during, "the big request finished before any /health probe: nothing measured"
        assert max(during) < 1.0, f"/health p100 {max(during):.3f}s during the 1 MB request"  # target 50 ms
        assert out["status"] == 200, out["json"]
        # not sensitive (no secret in it), scored by length: served, logged with its true size
        assert out["headers"]["x-router-model"] in by_model(backends[0]) or out["headers"]["x-router-model"] in (
            by_model(backends[1])
        )
    finally:
        gen.close()
    from router_rl.traces.decision_log import read_decision_log

    df = read_decision_log(tmp_path / "log")
    assert df["prompt_chars"].to_list() == [len(ADVERSARIAL_1MB)] and df["error"].to_list() == [None]


def test_health_answers_while_the_learned_policy_encodes_a_large_prompt(backends: Backends, tmp_path: Path) -> None:
    """The in-process policy's encoder holds the big request until /health answered (ordering, not speed)."""
    import polars as pl

    from router_rl.features import FeatureEncoder
    from router_rl.policies.baselines import RandomPolicy
    from router_rl.router.policy_client import InProcessPolicyClient

    models = ("small-local", "big-local", "cloud-large")
    enc = FeatureEncoder().fit(pl.DataFrame({"task_id": ["a"], "prompt": ["x"], "agent_type": ["g"],
                                             "category": ["u"]}))
    pdir = tmp_path / "policy"
    RandomPolicy(models).attach_encoder(enc).save(pdir)
    started, health_done = threading.Event(), threading.Event()

    class Gate:
        def transform_records(self, records: list[dict[str, Any]]) -> Any:
            if len(records[0]["prompt"]) > 1000:
                started.set()
                health_done.wait(30)
            return enc.transform_records(records)

    local, cloud = backends
    cfg = parse_config(router_config(local.base_url, cloud.base_url, strategy="learned",
                                     learned={"policy_dir": str(pdir), "timeout_s": 30}))
    client = InProcessPolicyClient.from_policy(RandomPolicy(models).attach_encoder(Gate()))
    router = HybridRouter.from_config(cfg, policy_client=client)
    with RouterServer(build_server_app(router)) as srv:
        try:
            out: dict[str, Any] = {}
            th = threading.Thread(target=_post_big, args=(srv.base_url, "lorem ipsum. " * 2_000, out))
            th.start()
            assert started.wait(30), "the big request never reached the encoder"
            with httpx.Client(timeout=10) as h:
                health = h.get(srv.base_url + "/health")
            assert health.status_code == 200 and "status" not in out  # answered while the request is in flight
            health_done.set()
            th.join(60)
            assert out["status"] == 200 and out["headers"]["x-router-strategy"] == "learned"
        finally:
            health_done.set()
