"""router/refine.py against a real replay backend on 127.0.0.1 (OpenAI-compatible provider).

Each replay task ``<task>#r<k>`` holds the recorded answer of refinement iteration ``k``, so the
follow-up turns really reach the server and get the next recorded answer; the check reads the
replayed quality from the answer text (the replay's oracle judge).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import numpy as np
import polars as pl
import pytest
from prometheus_client import CollectorRegistry

from router_rl.core.errors import ConfigError
from router_rl.providers import CompletionRequest, build_provider
from router_rl.replay.server import TASK_HEADER, ReplayBackend, ReplayBackendServer
from router_rl.router.refine import (
    Check,
    Generation,
    RefineConfig,
    RefineMetrics,
    parse_score,
    refine,
    self_check,
)
from router_rl.traces.catalog import ModelCatalog, ModelSpec

SMALL, MID, CLOUD = "qwen2.5-coder:7b", "devstral-small-2:24b", "claude-sonnet-4.5"
#: recorded quality per (task, model) for iterations r0..r7
QUALITY = {
    "climb": {SMALL: [0.5, 0.7, 0.95, 0.99, 0.99, 0.99, 0.99, 0.99], MID: [0.9] * 8, CLOUD: [1.0] * 8},
    "stuck": {SMALL: [0.5] * 8, MID: [0.97] * 8, CLOUD: [1.0] * 8},
    "hopeless": {SMALL: [0.2] * 8, MID: [0.3] * 8, CLOUD: [0.99] * 8},
}
CATALOG = ModelCatalog(
    [
        ModelSpec(SMALL, "ollama", "local", gpu_usd_per_hour=0.45, tokens_per_s=100.0),
        ModelSpec(MID, "vllm", "local", gpu_usd_per_hour=1.2, tokens_per_s=55.0),
        ModelSpec(CLOUD, "anthropic", "cloud", usd_per_m_input=3.0, usd_per_m_output=15.0),
    ]
)


def _frame() -> pl.DataFrame:
    rows = []
    for task, per_model in QUALITY.items():
        for k in range(8):
            for model, qs in per_model.items():
                rows.append((f"{task}#r{k}", model, qs[k], 0.0, 1.0, 200, 100, None, f"prompt {task} {k}"))
    return pl.DataFrame(
        rows,
        schema={"task_id": pl.Utf8, "model": pl.Utf8, "quality": pl.Float64, "cost_usd": pl.Float64,
                "latency_s": pl.Float64, "input_tokens": pl.Int64, "output_tokens": pl.Int64, "error": pl.Utf8,
                "prompt": pl.Utf8},
        orient="row",
    )


@pytest.fixture(scope="module")
def server() -> Iterator[ReplayBackendServer]:
    backend = ReplayBackend.from_frame(_frame(), catalog=CATALOG, time_scale=0.0, seed=0)
    with ReplayBackendServer(backend) as srv:
        yield srv


class Harness:
    """generate/check adapters over a real provider, with a fake clock advanced per call."""

    def __init__(self, srv: ReplayBackendServer, task: str, seconds_per_call: float = 1.0) -> None:
        self.provider = build_provider(
            {"name": "replay", "kind": "openai_compatible", "base_url": srv.base_url + "/v1",
             "models": [SMALL, MID, CLOUD], "max_retries": 0, "timeout_s": 5.0},
            catalog=CATALOG, rng=np.random.default_rng(0),
        )  # fmt: skip
        self.task = task
        self.now = 0.0
        self.step = seconds_per_call
        self.calls: list[tuple[str, int, int]] = []  # model, iteration, n_messages
        self.last_iteration = 0

    def clock(self) -> float:
        return self.now

    async def generate(
        self, model: str, messages: list[dict[str, str]], iteration: int, timeout_s: float
    ) -> Generation:
        it = self.last_iteration if iteration < 0 else iteration
        self.last_iteration = it
        self.calls.append((model, iteration, len(messages)))
        res = await self.provider.complete(
            CompletionRequest(model, messages, timeout_s=min(timeout_s, 5.0),
                              extra={"headers": {TASK_HEADER: f"{self.task}#r{it}"}})
        )
        self.now += self.step
        return Generation(res.content, self.provider.cost(model, res.usage, res.latency_s), res.latency_s)

    async def check(self, model: str, messages: list[dict[str, str]], answer: str, timeout_s: float) -> Check:
        score = parse_score(answer.split("quality=", 1)[1]) if "quality=" in answer else None
        assert score is not None, answer
        return Check(score, f"replayed quality {score}", "judge:replay")

    def run(self, model: str, config: RefineConfig, **kw: Any) -> Any:
        async def go() -> Any:
            try:
                return await refine(
                    [{"role": "user", "content": f"prompt {self.task}"}], model, self.generate, self.check, config,
                    is_cloud=lambda m: not CATALOG[m].is_local, clock=self.clock, **kw,
                )
            finally:
                await self.provider.close()

        return asyncio.run(go())


def test_tiers_from_config_and_names() -> None:
    cfg = RefineConfig()
    assert cfg.tier_for("qwen2.5-coder:7b")[0] == "7b" and cfg.tier_for("rnj-1:8b")[0] == "7b"  # type: ignore[index]
    assert cfg.tier_for(MID)[0] == "16b" and cfg.tier_for("qwen2.5-coder:32b")[0] == "32b"  # type: ignore[index]
    t7, t16, t32 = (cfg.tiers[n] for n in ("7b", "16b", "32b"))
    assert (t7.max_iterations, t7.threshold) == (3, 0.90)
    assert (t16.max_iterations, t16.threshold) == (5, 0.95)
    assert (t32.max_iterations, t32.threshold) == (7, 0.98)
    assert cfg.tier_for("devstral-2:123b") is None and cfg.tier_for(CLOUD) is None
    assert RefineConfig(models={CLOUD: "32b"}).tier_for(CLOUD)[0] == "32b"  # type: ignore[index]
    assert RefineConfig(infer_from_name=False).tier_for(SMALL) is None
    with pytest.raises(ConfigError, match=r"^refine: .*models\['qwen2\.5-coder:7b'\]: unknown tier 'nope'"):
        RefineConfig.from_dict({"models": {SMALL: "nope"}})
    with pytest.raises(ConfigError, match=r"refine\.tiers\.7b\.threshold"):
        RefineConfig.from_dict({"tiers": {"7b": {"max_iterations": 3, "threshold": 1.5}}})


def test_refines_until_the_threshold(server: ReplayBackendServer) -> None:
    h = Harness(server, "climb")
    registry = CollectorRegistry()
    out = h.run(SMALL, RefineConfig(), timeout_s=60.0, metrics=RefineMetrics(registry))
    assert out.stop_reason == "passed" and out.passed and out.model == SMALL
    assert [a.score for a in out.attempts] == [0.5, 0.7, 0.95]
    assert [c[2] for c in h.calls] == [1, 3, 5]  # each follow-up adds the answer and the report
    assert out.total_cost_usd == pytest.approx(sum(a.cost_usd for a in out.attempts)) and out.total_cost_usd > 0
    log = out.log_fields()
    assert log["refine_iterations"] == 2 and log["refine_final_score"] == 0.95 and log["refine_stop"] == "passed"
    assert registry.get_sample_value("router_rl_refine_attempts_total", {"model": SMALL}) == 3
    assert registry.get_sample_value("router_rl_refine_requests_total", {"stop": "passed"}) == 1


def test_cap_then_escalation_to_the_next_local_tier(server: ReplayBackendServer) -> None:
    h = Harness(server, "stuck")
    out = h.run(SMALL, RefineConfig(escalate_to=[MID, CLOUD]), timeout_s=60.0)
    assert [(a.model, a.iteration) for a in out.attempts] == [(SMALL, 0), (SMALL, 1), (SMALL, 2), (SMALL, 3), (MID, 0)]
    assert out.escalations == [MID] and out.skipped_escalations == [(CLOUD, "cloud_not_allowed")]
    assert out.model == MID and out.score == 0.97 and out.stop_reason == "passed"


def test_cloud_escalation_only_when_allowed_and_never_private(server: ReplayBackendServer) -> None:
    cfg = RefineConfig(escalate_to=[MID, CLOUD])
    private = Harness(server, "hopeless").run(SMALL, cfg, timeout_s=120.0, cloud_allowed=True, privacy=True)
    assert CLOUD not in {a.model for a in private.attempts}
    assert private.skipped_escalations == [(CLOUD, "privacy")]
    assert private.stop_reason == "cap" and not private.passed and private.model == MID and private.score == 0.3
    assert len(private.attempts) == 4 + 6  # 7B: 1 + 3, 16B: 1 + 5
    emergency = Harness(server, "hopeless").run(SMALL, cfg, timeout_s=120.0, cloud_allowed=True)
    assert emergency.escalations == [MID, CLOUD] and emergency.model == CLOUD and emergency.score == 0.99
    assert emergency.passed and emergency.stop_reason == "passed"


def test_stays_inside_the_request_timeout(server: ReplayBackendServer) -> None:
    h = Harness(server, "stuck", seconds_per_call=10.0)
    out = h.run(SMALL, RefineConfig(), timeout_s=25.0)
    assert out.stop_reason == "timeout" and len(out.attempts) == 2  # a third would end at t=30 > 25
    assert h.now <= 25.0


def test_no_tier_and_disabled(server: ReplayBackendServer) -> None:
    out = Harness(server, "stuck").run(CLOUD, RefineConfig(escalate_to=[MID]), timeout_s=30.0)
    assert out.stop_reason == "no_tier" and len(out.attempts) == 1 and out.escalations == []
    off = Harness(server, "stuck").run(SMALL, RefineConfig(enabled=False), timeout_s=30.0)
    assert off.stop_reason == "disabled" and len(off.attempts) == 1 and not off.passed


def test_self_check_over_the_provider(server: ReplayBackendServer) -> None:
    h = Harness(server, "climb")

    async def go() -> Any:
        try:
            return await refine(
                [{"role": "user", "content": "prompt climb"}], SMALL, h.generate, self_check(h.generate),
                RefineConfig(), timeout_s=60.0, is_cloud=lambda m: False, clock=h.clock,
            )
        finally:
            await h.provider.close()

    out = asyncio.run(go())
    # the self-check call replays the same iteration's record: an oracle self-rating
    assert [a.check_source for a in out.attempts] == ["self-check"] * 3 and out.score == 0.95
    assert [c[1] for c in h.calls] == [0, -1, 1, -1, 2, -1]
    assert out.attempts[0].cost_usd > 0


def test_parse_score() -> None:
    assert parse_score("0.85 because ...") == 0.85
    assert parse_score("score: 1") == 1.0
    assert parse_score("7 of 10") is None
    assert parse_score("nothing") is None
