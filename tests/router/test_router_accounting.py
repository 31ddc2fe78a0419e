"""Truthful accounting: headers and decision-log rows name what decided, what served, and whose outcome it is."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import polars as pl
import pytest
from _router_helpers import (
    ADMIN_TOKEN,
    API_TOKEN,
    SENSITIVE_PROMPT,
    SIMPLE_PROMPT,
    router_config,
)
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from router_rl.features import FeatureEncoder
from router_rl.policies.baselines import RandomPolicy
from router_rl.replay.server import ReplayBackendServer
from router_rl.router.config import parse_config
from router_rl.router.engine import HybridRouter
from router_rl.router.policy_client import InProcessPolicyClient, PolicyClient
from router_rl.router.server import RouterServer, build_server_app
from router_rl.traces.decision_log import read_decision_log

Backends = tuple[ReplayBackendServer, ReplayBackendServer]
MODELS = ("small-local", "big-local", "cloud-large")
AUTH = {"authorization": f"Bearer {API_TOKEN}"}


@pytest.fixture
def policy_dir(tmp_path: Path) -> Path:
    tasks = pl.DataFrame({"task_id": ["a"], "prompt": ["x"], "agent_type": ["gen"], "category": ["unit"]})
    d = tmp_path / "policy"
    RandomPolicy(MODELS, weights=[0.5, 0.3, 0.2]).attach_encoder(FeatureEncoder().fit(tasks)).save(d)
    return d


@contextmanager
def _serve(backends: Backends, log: Path, policy_client: PolicyClient | None = None,
           **overrides: Any) -> Iterator[tuple[str, HybridRouter]]:
    local, cloud = backends
    cfg = parse_config(router_config(local.base_url, cloud.base_url,
                                     logging={"decision_log_dir": str(log), "flush_interval_s": 60}, **overrides))
    router = HybridRouter.from_config(cfg, policy_client=policy_client)
    with RouterServer(build_server_app(router)) as srv:
        yield srv.base_url, router


def _chat(url: str, model: str = "router-rl/auto", prompt: str = SIMPLE_PROMPT, **kw: Any) -> httpx.Response:
    body = {"model": model, "messages": [{"role": "user", "content": prompt}], **kw}
    return httpx.post(url + "/v1/chat/completions", json=body, headers=AUTH, timeout=30)


def _slow_policy_app(delay_s: float) -> FastAPI:
    app = FastAPI()

    @app.post("/route")
    async def route(request: Request) -> JSONResponse:
        await asyncio.sleep(delay_s)
        p = [1 / 3] * 3
        return JSONResponse({"policy_version": "remote@1", "models": list(MODELS), "probs": [p],
                             "chosen": [MODELS[0]], "propensity": [p[0]]})

    return app


class _Broken:
    def transform_records(self, records: list[dict[str, Any]]) -> np.ndarray:
        raise RuntimeError("encoder exploded")


def _decided(r: httpx.Response) -> tuple[str, str, str | None]:
    assert r.status_code == 200, r.text
    return r.headers["x-router-strategy"], r.headers["x-router-requested-strategy"], r.headers.get(
        "x-router-decision-note")


def test_the_strategy_header_names_the_policy_that_decided_on_every_path(
    backends: Backends, tmp_path: Path, policy_dir: Path
) -> None:
    seen: dict[str, tuple[str, str, str | None]] = {}
    ids: dict[str, str] = {}
    with _serve(backends, tmp_path / "a", learned={"policy_dir": str(policy_dir)}) as (url, _r):
        for name, resp in (
            ("learned", _chat(url, "router-rl/learned")),
            ("rule", _chat(url, "router-rl/cost_optimized")),
            ("privacy", _chat(url, "cloud-large", SENSITIVE_PROMPT)),
            ("explicit", _chat(url, "big-local")),
        ):
            seen[name], ids[name] = _decided(resp), resp.headers["x-request-id"]
        policy_header = _chat(url, "router-rl/learned").headers["x-router-policy"]
        k = httpx.post(url + "/admin/kill-switch", json={"active": True}, timeout=10,
                       headers={"authorization": f"Bearer {ADMIN_TOKEN}"})
        assert k.status_code == 200
        resp = _chat(url)
        seen["kill_switch"], ids["kill_switch"] = _decided(resp), resp.headers["x-request-id"]
    with RouterServer(_slow_policy_app(0.5)) as pol, _serve(
        backends, tmp_path / "b", learned={"endpoint": pol.base_url, "timeout_s": 0.05}
    ) as (url, _r):
        resp = _chat(url, "router-rl/learned")
        seen["timeout"], ids["timeout"] = _decided(resp), resp.headers["x-request-id"]
    broken = InProcessPolicyClient.from_policy(RandomPolicy(MODELS).attach_encoder(_Broken()))
    with _serve(backends, tmp_path / "c", policy_client=broken, learned={"policy_dir": str(policy_dir)}) as (url, _r):
        resp = _chat(url, "router-rl/learned")
        seen["error"], ids["error"] = _decided(resp), resp.headers["x-request-id"]

    assert seen == {
        "learned": ("learned", "learned", None),
        "rule": ("cost_optimized", "cost_optimized", None),
        "privacy": ("privacy_first", "explicit", "privacy_override"),
        "explicit": ("explicit", "explicit", None),
        "kill_switch": ("quality_optimized", "balanced", "kill_switch"),
        "timeout": ("balanced", "learned", "policy_timeout"),
        "error": ("balanced", "learned", "policy_error"),
    }
    assert policy_header.startswith("random@")
    rows = pl.concat([read_decision_log(tmp_path / d) for d in "abc"], how="vertical")
    by_id = {r["request_id"]: r for r in rows.iter_rows(named=True)}
    for name, rid in ids.items():  # the decision log agrees with the header
        assert by_id[rid]["decided_by"] == seen[name][0] and by_id[rid]["strategy"] == seen[name][1], name


def test_learned_without_a_policy_is_refused_not_mislabelled(backends: Backends, tmp_path: Path) -> None:
    with _serve(backends, tmp_path / "log") as (url, _r):
        r = _chat(url, "router-rl/learned")
        assert r.status_code == 404 and r.json()["error"]["param"] == "model"
        assert "no learned policy is configured" in r.json()["error"]["message"]
        ids = [m["id"] for m in httpx.get(url + "/v1/models", headers=AUTH, timeout=10).json()["data"]]
        assert "router-rl/learned" not in ids and "router-rl/balanced" in ids


def test_fallback_rows_keep_the_chosen_propensity_and_name_the_outcome_model(
    backends: Backends, tmp_path: Path, policy_dir: Path
) -> None:
    """Learned picks cloud-large (p=0.2), which fails: the row keeps that choice and says who answered."""
    _local, cloud = backends
    cloud.backend.faults.replace([{"kind": "http_5xx", "model": "cloud-large"}])
    with _serve(backends, tmp_path / "log", learned={"policy_dir": str(policy_dir)}, seed=1) as (url, _router):
        resps = [_chat(url, "router-rl/learned", max_tokens=8) for _ in range(40)]
    assert all(r.status_code == 200 for r in resps)
    df = read_decision_log(tmp_path / "log")
    fb = df.filter(pl.col("chosen_model") == "cloud-large")
    assert fb.height >= 3
    probs = dict(zip(MODELS, (0.5, 0.3, 0.2), strict=True))
    for row in fb.iter_rows(named=True):
        assert row["propensity"] == pytest.approx(0.2) and row["fallback_used"] is True
        assert row["served_model"] == row["outcome_model"] != "cloud-large"
        assert row["served_propensity"] == pytest.approx(probs[row["served_model"]])
        assert len(row["attempts"]) == 1 and row["attempts"][0] in ("cloud-large:http_5xx", "cloud-large:breaker_open")
        assert row["attempts"][0].endswith(row["fallback_reason"])
    ok = df.filter(pl.col("chosen_model") != "cloud-large")
    assert ok["outcome_model"].to_list() == ok["chosen_model"].to_list()
    assert ok["served_propensity"].to_list() == pytest.approx(ok["propensity"].to_list())
    assert all(a == [] for a in ok["attempts"].to_list())
