"""The real router's decision log (learned strategy, fallbacks, rejected and rule requests) -> join -> LoggedData."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest

from router_rl.features import FeatureEncoder
from router_rl.logs.data import LoggedData
from router_rl.logs.join import join_logs
from router_rl.policies.baselines import RandomPolicy
from router_rl.replay.server import ReplayBackend, ReplayBackendServer
from router_rl.router.config import parse_config
from router_rl.router.engine import HybridRouter
from router_rl.router.errors import UnknownModelError
from router_rl.router.request import RouteInput
from router_rl.traces.catalog import ModelCatalog, ModelSpec
from router_rl.traces.feedback import FeedbackWriter

MODELS = ("small-local", "big-local", "cloud-large")
CLOUD_KEY_ENV = "ROUTER_RL_TEST_LOGS_CLOUD_KEY"
CLOUD_KEY = "sk-test-logs-0123456789abcdef"
PROMPT = "Write a unit test for the getter."


def _frame(models: tuple[str, ...]) -> pl.DataFrame:
    rows = [{"task_id": f"t{t}", "model": m, "quality": 0.5 + 0.1 * j, "cost_usd": 0.001, "latency_s": 0.2,
             "input_tokens": 40, "output_tokens": 12, "prompt": f"task {t}"}
            for t in range(5) for j, m in enumerate(models)]
    return pl.DataFrame(rows)


@pytest.fixture(scope="module")
def servers() -> Iterator[tuple[ReplayBackendServer, ReplayBackendServer]]:
    local = ReplayBackend.from_frame(
        _frame(MODELS[:2]), catalog=ModelCatalog([ModelSpec(m, "local", "local") for m in MODELS[:2]]),
        time_scale=0.0)
    cloud = ReplayBackend.from_frame(
        _frame(MODELS[2:]), catalog=ModelCatalog([ModelSpec(MODELS[2], "cloud", "cloud")]), time_scale=0.0,
        api_key=CLOUD_KEY)
    with ReplayBackendServer(local) as ls, ReplayBackendServer(cloud) as cs:
        yield ls, cs


def _config(local_url: str, cloud_url: str, policy_dir: Path, log_dir: Path) -> Any:
    return parse_config({
        "providers": [
            {"name": "local", "kind": "openai_compatible", "base_url": local_url, "location": "local",
             "gpu_usd_per_hour": 1.0, "max_retries": 0, "timeout_s": 5.0,
             "models": [{"model": "small-local", "tokens_per_s": 100.0}, {"model": "big-local", "tokens_per_s": 30.0}]},
            {"name": "cloud", "kind": "openai_compatible", "base_url": cloud_url, "location": "cloud",
             "api_key_env": CLOUD_KEY_ENV, "max_retries": 0, "timeout_s": 5.0,
             "models": [{"model": "cloud-large", "usd_per_m_input": 3.0, "usd_per_m_output": 15.0}]},
        ],
        "tiers": {"simple": "small-local", "moderate": "small-local", "complex": "big-local",
                  "very_complex": "cloud-large"},
        "breaker": {"consecutive_failures": 50, "window": 100, "min_calls": 100, "reset_timeout_s": 30.0},
        "strategy": "learned",
        "learned": {"policy_dir": str(policy_dir)},
        "logging": {"decision_log_dir": str(log_dir), "flush_interval_s": 60},
        "seed": 5,
    })


def test_router_log_joins_into_logged_data(servers: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    local, cloud = servers
    monkeypatch.setenv(CLOUD_KEY_ENV, CLOUD_KEY)
    cloud.backend.faults.replace([{"kind": "http_5xx", "model": "cloud-large", "probability": 0.5}])
    tasks = pl.DataFrame({"task_id": ["a", "b"], "prompt": ["x", "y"], "agent_type": ["gen", "rev"],
                          "category": ["unit", "review"]})
    enc = FeatureEncoder().fit(tasks)
    policy_dir = tmp_path / "policy"
    RandomPolicy(MODELS, weights=[0.3, 0.2, 0.5]).attach_encoder(enc).save(policy_dir)
    log_dir = tmp_path / "log"

    async def go() -> None:
        r = HybridRouter(_config(local.base_url, cloud.base_url, policy_dir, log_dir))
        try:
            for i in range(80):
                await r.route(RouteInput(messages=[{"role": "user", "content": PROMPT}], request_id=f"r{i}",
                                         agent_type="gen", category="unit"))
            with pytest.raises(UnknownModelError):
                await r.route(RouteInput(messages=[{"role": "user", "content": PROMPT}], request_id="bad",
                                         model="gpt-9"))
            await r.route(RouteInput(messages=[{"role": "user", "content": PROMPT}], request_id="rule",
                                     model="router-rl/cost_optimized"))
        finally:
            await r.aclose()

    asyncio.run(go())
    from router_rl.traces.decision_log import read_decision_log

    dec = read_decision_log(log_dir)
    assert dec.height == 82
    t0 = dec["ts"].max()
    fb_rows = [{"feedback_id": f"f{i}", "request_id": f"r{i}", "quality": (i % 5) / 4, "source": "judge:pytest",
                "ts": t0 + timedelta(seconds=i), "received_ts": t0 + timedelta(seconds=i)} for i in range(0, 80, 2)]
    fb_rows.append({**fb_rows[0], "feedback_id": "ghost", "request_id": "never-routed"})
    with FeedbackWriter(tmp_path / "feedback", flush_interval_s=None) as w:
        w.extend(fb_rows)
    catalog = ModelCatalog([ModelSpec("small-local", "local", "local"), ModelSpec("big-local", "local", "local"),
                            ModelSpec("cloud-large", "cloud", "cloud")])
    table, rep = join_logs(log_dir, tmp_path / "feedback", catalog=catalog, drop_unusable=True)
    assert rep.decisions == 82 and rep.rejected == 1 and rep.orphan_feedback == 1
    # the router encodes every routed request (the rule-decided one too) with the policy's encoder
    assert rep.excluded_no_features == 0 and rep.excluded_fingerprint == 0 and rep.rows == 82 - 1
    rule = dec.filter(pl.col("request_id") == "rule").row(0, named=True)
    assert rule["decided_by"] != "learned" and rule["encoder_fingerprint"] == enc.fingerprint
    assert rep.reference_fingerprint == enc.fingerprint and rep.no_fingerprint == 0
    learned = dec.filter(pl.col("decided_by") == "learned")
    fallbacks = learned.filter(pl.col("fallback_used"))
    assert fallbacks.height > 0 and rep.fallbacks == fallbacks.height
    data = LoggedData.from_table(table)
    assert data.models == MODELS and data.locations == ("local", "local", "cloud")
    assert data.encoder_fingerprint == rep.reference_fingerprint and data.X.shape[1] == enc.dim
    np.testing.assert_allclose(data.logging_probs[data.request_ids != "rule"][:5], [[0.3, 0.2, 0.5]] * 5)
    # a fallback: the chosen model is the action, the outcome is the model that answered
    i = int(np.flatnonzero(data.fallback)[0])
    row = dec.filter(pl.col("request_id") == data.request_ids[i]).row(0, named=True)
    assert data.models[data.actions[i]] == row["chosen_model"] == "cloud-large"
    assert data.models[data.outcome_actions[i]] == row["outcome_model"] != "cloud-large"
    assert data.propensities[i] == pytest.approx(0.5)
    lab = data.labeled()
    assert lab.n == rep.labeled + rep.no_answer
    q = {r["request_id"]: r["quality"] for r in fb_rows}
    assert all(lab.quality[j] == q[rid] for j, rid in enumerate(lab.request_ids.tolist()) if rid in q)
