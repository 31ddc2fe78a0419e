"""Client auth and admin auth are separate; serving beyond loopback without auth is refused at start."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from _router_helpers import ADMIN_TOKEN, API_TOKEN, CLOUD_KEY, CLOUD_KEY_ENV, SIMPLE_PROMPT, router_config

from router_rl.core.errors import ConfigError
from router_rl.replay.server import ReplayBackendServer
from router_rl.router.config import AuthConfig, check_bind, is_loopback, parse_config
from router_rl.router.engine import HybridRouter
from router_rl.router.server import RouterServer, build_server_app

Backends = tuple[ReplayBackendServer, ReplayBackendServer]
BODY = {"model": "router-rl/auto", "messages": [{"role": "user", "content": SIMPLE_PROMPT}]}


@contextmanager
def _serve(backends: Backends, auth: dict[str, Any]) -> Iterator[str]:
    local, cloud = backends
    cfg = parse_config(router_config(local.base_url, cloud.base_url, server={"auth": auth}))
    with RouterServer(build_server_app(HybridRouter.from_config(cfg))) as srv:
        yield srv.base_url


def _admin(url: str, token: str | None) -> httpx.Response:
    headers = {"authorization": f"Bearer {token}"} if token else {}
    return httpx.post(url + "/admin/kill-switch", json={"active": True, "reason": "t"}, headers=headers, timeout=10)


def test_disabling_client_auth_keeps_the_admin_api_authenticated(backends: Backends) -> None:
    with _serve(backends, {"enabled": False}) as url:
        assert httpx.post(url + "/v1/chat/completions", json=BODY, timeout=10).status_code == 200  # no token
        assert _admin(url, None).status_code == 401
        assert _admin(url, API_TOKEN).status_code == 401  # a client token is not an admin token here
        r = _admin(url, ADMIN_TOKEN)
        assert r.status_code == 200 and r.json()["kill_switch"] is True


def test_client_auth_off_and_no_admin_token_refuses_every_admin_call(
    backends: Backends, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("ROUTER_RL_ADMIN_TOKENS")
    with _serve(backends, {"enabled": False}) as url:
        r = _admin(url, None)
        assert r.status_code == 401 and "disabled" in r.json()["error"]["message"]
        assert httpx.get(url + "/admin/state", timeout=10).status_code == 401


def test_admin_is_open_only_when_disabled_explicitly(backends: Backends) -> None:
    with _serve(backends, {"enabled": True, "admin_enabled": False}) as url:
        assert _admin(url, None).status_code == 200
        assert httpx.post(url + "/v1/chat/completions", json=BODY, timeout=10).status_code == 401


def test_loopback_detection_and_bind_check() -> None:
    assert all(is_loopback(h) for h in ("127.0.0.1", "127.3.4.5", "::1", "[::1]", "localhost"))
    assert not any(is_loopback(h) for h in ("0.0.0.0", "::", "10.0.0.8", "example.com"))
    check_bind("127.0.0.1", AuthConfig(enabled=False, admin_enabled=False))
    check_bind("0.0.0.0", AuthConfig())
    for auth in (AuthConfig(enabled=False), AuthConfig(admin_enabled=False)):
        with pytest.raises(ConfigError, match=r"server\.host.*refusing to bind 0\.0\.0\.0"):
            check_bind("0.0.0.0", auth)


@pytest.mark.parametrize("auth", [{"enabled": False}, {"admin_enabled": False}])
def test_serve_refuses_a_public_bind_without_auth_in_one_line(
    backends: Backends, tmp_path: Path, auth: dict[str, Any]
) -> None:
    local, cloud = backends
    cfg = router_config(local.base_url, cloud.base_url, server={"auth": auth})
    (tmp_path / "router.yaml").write_text(yaml.safe_dump(cfg))
    env = {**os.environ, CLOUD_KEY_ENV: CLOUD_KEY, "ROUTER_RL_API_TOKENS": API_TOKEN, "COLUMNS": "400"}
    p = subprocess.run([sys.executable, "-m", "router_rl", "router", "serve", "--config", str(tmp_path / "router.yaml"),
                        "--host", "0.0.0.0", "--port", "0"], env=env, capture_output=True, text=True, timeout=120)
    assert p.returncode == 2
    err = [ln for ln in p.stderr.splitlines() if ln.startswith("error:")]
    assert len(err) == 1 and "server.host" in err[0] and "0.0.0.0" in err[0] and "Traceback" not in p.stderr
