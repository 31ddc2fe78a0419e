"""Iterative refinement through the live router, against real replay backends on 127.0.0.1.

The local backend records refined answers as ``<task>#r<k>`` (iteration ``k`` of ``<task>``); the
router's refinement calls carry ``x-router-refine-iteration`` so the replay answers each
iteration from its record. The judge reads the replayed answer's ``quality=`` (the recorded
quality), so every score, iteration count and cost below is known in advance.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from _router_helpers import CLOUD_KEY, CLOUD_KEY_ENV, SENSITIVE_PROMPT, make_catalog, router_config

from router_rl.core.errors import ConfigError
from router_rl.replay.server import ReplayBackend, ReplayBackendServer
from router_rl.router.config import parse_config
from router_rl.router.engine import HybridRouter
from router_rl.router.refine import Check, parse_score
from router_rl.router.request import RouteInput
from router_rl.traces.decision_log import read_decision_log

LOCAL = ("small-local", "big-local")
#: task -> model -> recorded quality per iteration (r0 = the task's own record)
RECORDS: dict[str, dict[str, list[float]]] = {
    "t0": {"small-local": [0.5, 0.7, 0.95], "big-local": [0.6]},
    "t1": {"small-local": [0.4, 0.45], "big-local": [0.6, 0.93]},
    "t2": {"small-local": [0.3, 0.35, 0.4, 0.45], "big-local": [0.5]},
}
PROMPTS = {"t0": "task zero: write the tests", "t1": SENSITIVE_PROMPT, "t2": "task two: find the flaky test"}
TIERS = {"small": {"max_iterations": 3, "threshold": 0.9}, "big": {"max_iterations": 1, "threshold": 0.9}}
REFINE = {"tiers": TIERS, "models": {"small-local": "small", "big-local": "big"}, "infer_from_name": False}


def _frame() -> pl.DataFrame:
    rows = []
    for task, per_model in RECORDS.items():
        depth = max(len(v) for v in per_model.values())
        for k in range(depth):
            tid = task if k == 0 else f"{task}#r{k}"
            for m in LOCAL:
                qs = per_model[m]
                rows.append({"task_id": tid, "model": m, "quality": qs[min(k, len(qs) - 1)], "cost_usd": 0.001,
                             "latency_s": 0.2, "input_tokens": 40, "output_tokens": 12,
                             "prompt": PROMPTS[task] if k == 0 else f"{PROMPTS[task]} (iteration {k})"})
    return pl.DataFrame(rows)


@pytest.fixture(scope="module")
def servers() -> Iterator[tuple[ReplayBackendServer, ReplayBackendServer]]:
    local = ReplayBackend.from_frame(_frame(), catalog=make_catalog(LOCAL, "local", "local"), time_scale=0.0)
    cloud_frame = pl.DataFrame([{"task_id": t, "model": "cloud-large", "quality": 0.99, "cost_usd": 0.01,
                                 "latency_s": 0.5, "input_tokens": 40, "output_tokens": 12, "prompt": p}
                                for t, p in PROMPTS.items()])
    cloud = ReplayBackend.from_frame(cloud_frame, catalog=make_catalog(("cloud-large",), "cloud", "cloud"),
                                     time_scale=0.0, api_key=CLOUD_KEY)
    with ReplayBackendServer(local) as a, ReplayBackendServer(cloud) as b:
        yield a, b


@pytest.fixture
def backends(servers: tuple[ReplayBackendServer, ReplayBackendServer],
             monkeypatch: pytest.MonkeyPatch) -> tuple[ReplayBackendServer, ReplayBackendServer]:
    for srv in servers:
        srv.backend.faults.clear()
        srv.backend.log.clear()
    monkeypatch.setenv(CLOUD_KEY_ENV, CLOUD_KEY)
    return servers


async def judge(model: str, messages: list[dict[str, str]], answer: str, timeout_s: float) -> Check:
    """The replay judge: the recorded quality the backend wrote into the answer."""
    score = parse_score(answer.split("quality=", 1)[1])
    assert score is not None
    return Check(score, f"scored {score}", "judge:replay")


def _router(backends: Any, tmp_path: Path, refine: dict[str, Any], **kw: Any) -> HybridRouter:
    local, cloud = backends
    cfg = router_config(local.base_url, cloud.base_url, refine=refine,
                        logging={"decision_log_dir": str(tmp_path / "log"), "flush_interval_s": 60},
                        budgets={"global": {"daily_usd": 100.0}})
    # local calls priced by tokens (not by measured GPU seconds), so every call's cost is known
    cfg["providers"][0]["gpu_usd_per_hour"] = 0.0
    for entry in cfg["providers"][0]["models"]:
        entry.update(usd_per_m_input=1.0, usd_per_m_output=2.0)
    return HybridRouter(parse_config(cfg), **kw)


def _route(r: HybridRouter, task: str, model: str = "small-local", **kw: Any) -> Any:
    async def go() -> Any:
        try:
            return await r.route(RouteInput(messages=[{"role": "user", "content": PROMPTS[task]}], model=model, **kw))
        finally:
            await r.aclose()

    return asyncio.run(go())


def _metric(r: HybridRouter, name: str, **labels: str) -> float:
    v = r.metrics.registry.get_sample_value(name, labels)
    return 0.0 if v is None else float(v)


def test_refines_until_the_threshold_with_every_call_accounted(backends: Any, tmp_path: Path) -> None:
    r = _router(backends, tmp_path, REFINE, refine_check=judge)
    res = _route(r, "t0")
    assert res.result.content.startswith("ok quality=0.9500 task=t0#r2")
    assert res.refine is not None and res.refine.outcome is not None
    assert res.refine.outcome.stop_reason == "passed"
    local, cloud = backends
    assert [e["task_id"] for e in local.backend.log] == ["t0", "t0#r1", "t0#r2"]  # one call per iteration
    assert cloud.backend.log == []
    row = read_decision_log(tmp_path / "log").row(0, named=True)
    assert row["refine_iterations"] == 2 and row["refine_passed"] is True and row["refine_stop"] == "passed"
    assert row["refine_scores"] == [0.5, 0.7, 0.95] and row["refine_final_score"] == pytest.approx(0.95)
    assert row["refine_model"] == row["outcome_model"] == row["served_model"] == "small-local"
    assert row["input_tokens"] == 3 * 40 and row["output_tokens"] == 3 * 12  # every call's tokens
    per_call = (40 * 1.0 + 12 * 2.0) / 1e6
    assert row["cost_usd"] == pytest.approx(3 * per_call, rel=1e-12)
    assert row["refine_cost_usd"] == pytest.approx(2 * per_call, rel=1e-12)
    assert res.cost_usd == pytest.approx(row["cost_usd"], rel=1e-12)
    assert r.budget.spent() == pytest.approx(row["cost_usd"], rel=1e-9)  # charged to the budget
    assert _metric(r, "router_rl_refine_requests_total", stop="passed") == 1
    assert _metric(r, "router_rl_refine_attempts_total", model="small-local") == 3
    assert _metric(r, "router_rl_cost_usd_total", model="small-local") == pytest.approx(row["cost_usd"], rel=1e-9)


def test_cap_then_escalation_stays_local_for_a_sensitive_request(backends: Any, tmp_path: Path) -> None:
    refine = {**REFINE, "escalate_to": ["big-local", "cloud-large"]}
    r = _router(backends, tmp_path, refine, refine_check=judge)
    res = _route(r, "t1")
    assert res.refine.outcome.stop_reason == "passed"
    assert res.result.model == "big-local" and "quality=0.9300" in res.result.content
    local, cloud = backends
    assert [(e["model"], e["task_id"]) for e in local.backend.log] == [
        ("small-local", "t1"), ("small-local", "t1#r1"), ("small-local", "t1#r1"), ("small-local", "t1#r1"),
        ("big-local", "t1"), ("big-local", "t1#r1"),
    ]
    assert cloud.backend.log == []  # privacy: never escalated to the cloud model
    row = read_decision_log(tmp_path / "log").row(0, named=True)
    assert row["refine_escalations"] == ["big-local"] and row["outcome_model"] == "big-local"
    assert row["served_model"] == "small-local" and row["refine_iterations"] == 5


def test_the_self_check_is_a_priced_call_of_the_same_model(backends: Any, tmp_path: Path) -> None:
    r = _router(backends, tmp_path, REFINE)  # no judge: the model rates its own answer
    res = _route(r, "t2")
    local, _ = backends
    tags = [e["task_id"] for e in local.backend.log]
    # first answer, then (self-check, regenerate) x 3, then the last self-check
    assert len(tags) == 1 + 3 + 4 and res.refine.outcome.stop_reason == "cap"
    row = read_decision_log(tmp_path / "log").row(0, named=True)
    assert row["refine_iterations"] == 3 and row["refine_passed"] is False
    assert row["input_tokens"] == 8 * 40  # self-checks are billed calls too
    assert row["refine_cost_usd"] == pytest.approx(7 * (40 * 1.0 + 12 * 2.0) / 1e6, rel=1e-12)


def test_a_failure_during_refinement_returns_the_best_answer_and_says_so(backends: Any, tmp_path: Path) -> None:
    local, _ = backends

    async def failing_judge(model: str, messages: list[dict[str, str]], answer: str, timeout_s: float) -> Check:
        local.backend.faults.replace([{"kind": "http_5xx", "model": "small-local", "count": 1}])
        return await judge(model, messages, answer, timeout_s)

    r = _router(backends, tmp_path, REFINE, refine_check=failing_judge)
    res = _route(r, "t0")
    assert res.result.content.startswith("ok quality=0.5000 task=t0")  # the first answer, not an error
    row = read_decision_log(tmp_path / "log").row(0, named=True)
    assert row["refine_stop"] == "error:provider:http_5xx" and row["error"] is None
    assert row["refine_scores"] == [0.5] and "small-local:http_5xx" in row["attempts"]
    assert _metric(r, "router_rl_refine_requests_total", stop="error:provider:http_5xx") == 1


def test_the_loop_stays_inside_its_time_limit(backends: Any, tmp_path: Path) -> None:
    local, _ = backends
    local.backend.time_scale = 1.0  # every replayed call takes its recorded 0.2 s
    try:
        r = _router(backends, tmp_path, {**REFINE, "timeout_s": 0.5}, refine_check=judge)
        res = _route(r, "t2")
    finally:
        local.backend.time_scale = 0.0
    row = read_decision_log(tmp_path / "log").row(0, named=True)
    assert row["refine_stop"] in ("timeout", "error:timeout") and row["refine_iterations"] < 3
    assert res.total_s < 0.5 + 0.4  # the limit, plus scheduling slack on a loaded machine


def test_streams_agent_types_and_untiered_models_are_not_refined(backends: Any, tmp_path: Path) -> None:
    r = _router(backends, tmp_path, {**REFINE, "agent_types": ["test-generation"]}, refine_check=judge)

    async def go() -> None:
        try:
            other = await r.route(RouteInput(messages=[{"role": "user", "content": PROMPTS["t0"]}],
                                             model="small-local", agent_type="code-review"))
            assert other.refine is None
            session = await r.route_stream(RouteInput(messages=[{"role": "user", "content": PROMPTS["t0"]}],
                                                      model="small-local", agent_type="test-generation"))
            async for _ in session.events():
                pass
        finally:
            await r.aclose()

    asyncio.run(go())
    df = read_decision_log(tmp_path / "log")
    assert df.height == 2 and df["refine_stop"].null_count() == 2
    local, _ = backends
    assert len(local.backend.log) == 2


def test_refine_settings_are_checked_against_the_fleet(backends: Any) -> None:
    local, cloud = backends
    with pytest.raises(ConfigError, match=r"refine\.escalate_to\[0\]"):
        parse_config(router_config(local.base_url, cloud.base_url, refine={"escalate_to": ["nope"]}))
    with pytest.raises(ConfigError, match=r"refine"):
        parse_config(router_config(local.base_url, cloud.base_url, refine={"timeout_s": 0}))
