"""A quality regression injected at runtime (``PUT /admin/quality``): served quality x factor, validated."""

from __future__ import annotations

import httpx
import polars as pl
import pytest

from router_rl.core.errors import ConfigError
from router_rl.replay.server import ReplayBackend, ReplayBackendServer
from router_rl.traces.catalog import ModelCatalog


def _quality(srv: ReplayBackendServer, model: str, task: str) -> float:
    r = httpx.post(srv.base_url + "/v1/chat/completions", timeout=5, headers={"x-router-rl-task-id": task},
                   json={"model": model, "messages": [{"role": "user", "content": "x"}]})
    assert r.status_code == 200
    return float(r.json()["choices"][0]["message"]["content"].split("quality=")[1].split()[0])


def test_quality_factor_scales_one_model_until_restored(outcomes: tuple[pl.DataFrame, ModelCatalog]) -> None:
    df, cat = outcomes
    with ReplayBackendServer(ReplayBackend.from_frame(df, catalog=cat, time_scale=0.0)) as srv:
        assert _quality(srv, "small", "t2") == 0.5
        big_before = _quality(srv, "big", "t2")
        r = httpx.put(srv.base_url + "/admin/quality", json={"model": "small", "factor": 0.2}, timeout=5)
        assert r.status_code == 200 and r.json() == {"factors": {"small": 0.2}}
        assert _quality(srv, "small", "t2") == pytest.approx(0.1)
        assert _quality(srv, "big", "t2") == big_before  # other models untouched
        r = httpx.post(srv.base_url + "/v1/chat/completions", timeout=5, headers={"x-router-rl-task-id": "t2"},
                       json={"model": "small", "messages": [{"role": "user", "content": "x"}]})
        assert r.headers["x-router-rl-quality"] == "0.100000"
        assert r.json()["choices"][0]["message"]["content"].startswith("fail ")  # below the 0.5 threshold now
        for bad in ({"model": "nope", "factor": 0.5}, {"model": "small", "factor": 1.5},
                    {"model": "small", "factor": True}, {"model": "small"}):
            r = httpx.put(srv.base_url + "/admin/quality", json=bad, timeout=5)
            assert r.status_code == 422, bad
        assert httpx.get(srv.base_url + "/admin/quality", timeout=5).json() == {"factors": {"small": 0.2}}
        httpx.put(srv.base_url + "/admin/quality", json={"model": "small", "factor": 1}, timeout=5)
        assert _quality(srv, "small", "t2") == 0.5


def test_set_quality_factor_names_the_field(outcomes: tuple[pl.DataFrame, ModelCatalog]) -> None:
    df, cat = outcomes
    b = ReplayBackend.from_frame(df, catalog=cat)
    with pytest.raises(ConfigError, match=r"replay\.quality\.model"):
        b.set_quality_factor("nope", 0.5)
    with pytest.raises(ConfigError, match=r"replay\.quality\.factor"):
        b.set_quality_factor("small", -0.1)
