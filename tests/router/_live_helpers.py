"""Shared pieces of the live-policy tests (hot swap, canary, rollback): a real registry, a real router server."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
from _router_helpers import ADMIN_TOKEN, API_TOKEN, SIMPLE_PROMPT, router_config, save_random_policy

from router_rl.registry import PolicyRegistry
from router_rl.replay.server import ReplayBackendServer
from router_rl.router.config import parse_config
from router_rl.router.engine import HybridRouter
from router_rl.router.server import RouterServer, build_server_app

Backends = tuple[ReplayBackendServer, ReplayBackendServer]
AUTH = {"authorization": f"Bearer {API_TOKEN}"}
ADMIN = {"authorization": f"Bearer {ADMIN_TOKEN}"}
MODELS = ("small-local", "big-local", "cloud-large")
#: version i's policy puts most weight on MODELS[i % 3]
WEIGHTS = ([0.8, 0.1, 0.1], [0.1, 0.8, 0.1], [0.1, 0.1, 0.8])


def make_registry(root: Path, n: int, live: list[str] | None = None) -> tuple[PolicyRegistry, list[str]]:
    """A registry with ``n`` versions of RandomPolicy artifacts; ``live``: versions set live in turn."""
    reg = PolicyRegistry.create(root / "registry")
    versions = []
    for i in range(n):
        art = save_random_policy(root / f"art{i}", MODELS, list(WEIGHTS[i % 3]))
        versions.append(reg.register(art))
    for v in live or []:
        reg.set_live(v, reason="test setup", actor="test")
    return reg, versions


def engine_version(reg: PolicyRegistry, version: str) -> str:
    """The engine version of a registry version (the second half of its logged ``policy_version``)."""
    return str(reg.load(version).version)


def start_router(backends: Backends, root: Path, registry: Path, *, extra: dict[str, Any] | None = None,
                 **learned: Any) -> tuple[HybridRouter, RouterServer]:
    """A router on the registry's live version (strategy learned), decision log + feedback under ``root``.

    ``learned`` keywords go to the ``learned`` section, ``extra`` to the top level of the config.
    """
    local, cloud = backends
    cfg = parse_config(router_config(
        local.base_url, cloud.base_url, strategy="learned",
        learned={"registry": str(registry), **learned},
        logging={"decision_log_dir": str(root / "decisions"), "batch_size": 1000, "flush_interval_s": 60},
        **(extra or {}),
    ))
    router = HybridRouter.from_config(cfg)
    return router, RouterServer(build_server_app(router))


def chat(http: httpx.Client, rid: str) -> httpx.Response:
    """One routed request with request id ``rid``."""
    return http.post("/v1/chat/completions", headers={**AUTH, "x-request-id": rid},
                     json={"model": "router-rl/auto", "messages": [{"role": "user", "content": SIMPLE_PROMPT}]})


def feedback(http: httpx.Client, rid: str, quality: float) -> httpx.Response:
    """One feedback label through the real endpoint."""
    r = http.post("/v1/feedback", headers=AUTH, json={"request_id": rid, "quality": quality, "source": "judge:test"})
    assert r.status_code == 200, r.text
    return r


def admin(http: httpx.Client, path: str, body: dict[str, Any] | None = None) -> httpx.Response:
    """An admin call (GET without a body)."""
    if body is None and path == "/admin/state":
        return http.get(path, headers=ADMIN)
    return http.post(path, headers=ADMIN, json=body if body is not None else {})


def wait_for(pred: Callable[[], bool], what: str, timeout_s: float = 20.0) -> None:
    """Poll ``pred`` until true (the router's background changes run on its event loop)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if pred():
            return
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def policy_state(http: httpx.Client) -> dict[str, Any]:
    """``GET /admin/state``'s ``policy`` section."""
    r = admin(http, "/admin/state")
    assert r.status_code == 200, r.text
    return dict(r.json()["policy"])
