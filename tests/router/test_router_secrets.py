"""Every forwarded or logged field is scanned: no request with a secret anywhere reaches a cloud model."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from _router_helpers import API_TOKEN, by_model, router_config

from router_rl.replay.server import ReplayBackendServer
from router_rl.router.config import parse_config
from router_rl.router.engine import HybridRouter
from router_rl.router.server import RouterServer, build_server_app
from router_rl.traces.decision_log import read_decision_log

Backends = tuple[ReplayBackendServer, ReplayBackendServer]
AUTH = {"authorization": f"Bearer {API_TOKEN}"}
_ALNUM = np.array(list("ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"))


def _secret(rng: np.random.Generator, k: int) -> str:
    """A fresh secret of a family the detector knows (AWS key id, GitHub token, quoted password)."""
    body = "".join(rng.choice(_ALNUM, 16))
    return (f"AKIA{body}", f"ghp_{body.lower()}{body}{body[:4]}", f'password = "{body.lower()}x9"')[k % 3]


def _case(i: int, secret: str) -> tuple[dict[str, Any], dict[str, str]]:
    """Request ``i`` with ``secret`` in one of 16 places (body, headers)."""
    model = "cloud-large" if i % 2 else "router-rl/quality_optimized"  # both would go to the cloud
    msgs: list[dict[str, Any]] = [{"role": "user", "content": "Write a unit test for the getter."}]
    body: dict[str, Any] = {"model": model, "messages": msgs, "max_tokens": 16}
    headers = dict(AUTH)
    where = i % 16
    if where == 0:
        msgs[0]["content"] = f"Why does login fail with {secret}?"
    elif where == 1:  # multi-part content, secret in the second part
        msgs[0]["content"] = [{"type": "text", "text": "context: "}, {"type": "text", "text": secret}]
    elif where == 2:
        msgs.insert(0, {"role": "system", "content": f"use {secret}"})
    elif where == 3:
        msgs[0:0] = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": f"the key is {secret}"}]
    elif where == 4:
        body["stop"] = ["END", secret]
    elif where == 5:
        body["metadata"] = {"category": secret}
    elif where == 6:
        body["metadata"] = {"agent_type": secret}
    elif where == 7:
        body["metadata"] = {"ticket": f"see {secret}"}
    elif where == 8:
        body["metadata"] = {secret: "x"}
    elif where == 9:
        body["user"] = secret
    elif where == 10:
        headers["x-agent-id"] = secret
    elif where == 11:
        headers["x-task-category"] = secret
    elif where == 12:
        headers["x-agent-type"] = secret
    elif where == 13:
        headers["x-request-id"] = secret
    elif where == 14:  # far inside a long prompt (screened off the loop, in windows)
        msgs[0]["content"] = "lorem ipsum. " * 20_000 + secret + " tail"
    else:  # straddling the first window boundary (4,096 chars)
        msgs[0]["content"] = "x" * (4096 - len(secret) // 2) + " " + secret + " end"
    return body, headers


@pytest.fixture
def served(backends: Backends, tmp_path: Path) -> Iterator[RouterServer]:
    local, cloud = backends
    cfg = parse_config(router_config(local.base_url, cloud.base_url, fallback={"emergency_cloud": True},
                                     logging={"decision_log_dir": str(tmp_path / "log"), "flush_interval_s": 0.05}))
    with RouterServer(build_server_app(HybridRouter.from_config(cfg))) as srv:
        yield srv


async def _send_all(url: str, cases: list[tuple[dict[str, Any], dict[str, str]]]) -> list[httpx.Response]:
    async with httpx.AsyncClient(timeout=120) as h:
        return list(await asyncio.gather(*(h.post(url + "/v1/chat/completions", json=b, headers=hd)
                                           for b, hd in cases)))


def test_50_concurrent_requests_with_secrets_in_every_field_never_reach_the_cloud(
    served: RouterServer, backends: Backends, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    local, cloud = backends
    rng = np.random.default_rng(13)
    secrets = [_secret(rng, i) for i in range(50)]
    cases = [_case(i, s) for i, s in enumerate(secrets)]
    with caplog.at_level(logging.DEBUG):
        resps = asyncio.run(_send_all(served.base_url, cases))
    assert [r.status_code for r in resps] == [200] * 50, [r.text for r in resps if r.status_code != 200]
    assert by_model(cloud) == {}, "a request holding a secret reached the cloud backend"
    assert sum(by_model(local).values()) == 50
    assert all(r.headers["x-router-model"] in ("small-local", "big-local") for r in resps)
    # flagged identifying fields are never stored (nor echoed as the request id)
    rid_case = resps[13]
    assert rid_case.headers["x-request-id"] != secrets[13]
    served.stop()
    df = read_decision_log(tmp_path / "log")
    assert df.height == 50
    dump = json.dumps(df.to_dicts(), default=str)
    cores = [s.split('"')[1] if '"' in s else s for s in secrets]  # a password's value, a token itself
    leaked = [c for c in cores if c in dump]
    assert not leaked, f"{len(leaked)} secret(s) stored verbatim in the decision log"
    cats = df.filter(df["request_id"].is_in([r.headers["x-request-id"] for r in resps[5::16]]))["category"]
    assert cats.len() > 0 and all(c.startswith("redacted:") for c in cats.to_list())
    logs = "\n".join(r.getMessage() for r in caplog.records)
    assert not [s for s in secrets if s in logs]


def test_the_same_requests_without_secrets_do_reach_the_cloud(served: RouterServer, backends: Backends) -> None:
    """Control: the 50 requests go to the cloud model when the secret is replaced by harmless text."""
    _local, cloud = backends
    cases = [_case(i, f"harmless-words-{i}") for i in range(50)]
    resps = asyncio.run(_send_all(served.base_url, cases))
    assert [r.status_code for r in resps] == [200] * 50
    assert by_model(cloud) == {"cloud-large": 50}


def test_unsupported_message_fields_are_refused_not_dropped(served: RouterServer) -> None:
    with httpx.Client(timeout=10) as h:
        for extra in ({"name": "alice"}, {"tool_calls": []}, {"tool_call_id": "x"}):
            body = {"model": "router-rl/auto", "messages": [{"role": "user", "content": "hi", **extra}]}
            r = h.post(served.base_url + "/v1/chat/completions", json=body, headers=AUTH)
            key = next(iter(extra))
            assert r.status_code == 400 and r.json()["error"]["param"] == f"messages[0].{key}", r.text


def test_privacy_guard_refuses_a_cloud_attempt_for_a_sensitive_request(backends: Backends, tmp_path: Path) -> None:
    """Defence in depth: were a decision ever to pick a cloud model for a sensitive request (a decider
    bug, injected here), the chain refuses the call with PrivacyGuardError; nothing reaches the cloud."""
    import dataclasses

    from router_rl.router.errors import PrivacyGuardError, RouterRequestError
    from router_rl.router.request import RouteInput

    local, cloud = backends
    cfg = parse_config(router_config(local.base_url, cloud.base_url,
                                     logging={"decision_log_dir": str(tmp_path / "log"), "flush_interval_s": 60}))
    router = HybridRouter(cfg)
    real_decide = router.decider.decide

    async def buggy_decide(ctx: Any) -> Any:
        d = await real_decide(ctx)
        assert ctx.sensitive and "cloud-large" not in d.allowed  # the real decision masks the cloud
        probs = tuple(1.0 if m == "cloud-large" else 0.0 for m in d.models)
        return dataclasses.replace(d, chosen="cloud-large", probs=probs, allowed=d.models)

    router.decider.decide = buggy_decide  # type: ignore[method-assign]
    inp = RouteInput(messages=[{"role": "user", "content": "my key is AKIAIOSFODNN7EXAMPLE, why 403?"}],
                     request_id="guard-1")

    async def go() -> None:
        try:
            await router.route(inp)
        finally:
            await router.aclose()

    with pytest.raises(PrivacyGuardError, match="refusing to send sensitive request guard-1 to cloud model"):
        asyncio.run(go())
    assert issubclass(PrivacyGuardError, RouterRequestError) and PrivacyGuardError.status == 500
    assert by_model(cloud) == {}
    row = read_decision_log(tmp_path / "log").row(0, named=True)
    assert (row["request_id"], row["served_model"], row["error"]) == ("guard-1", None, "privacy_guard")
