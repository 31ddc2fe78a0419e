"""What the decision log carries beyond the decision: features of every request, opt-in text.

Real router over real replay backends on 127.0.0.1; a real policy artifact with a fitted encoder.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from _router_helpers import COMPLEX_PROMPT, SENSITIVE_PROMPT, SIMPLE_PROMPT, router_config, save_random_policy

from router_rl.core.errors import ConfigError
from router_rl.features import FeatureEncoder
from router_rl.replay.server import ReplayBackendServer
from router_rl.router.config import parse_config
from router_rl.router.engine import HybridRouter
from router_rl.router.request import RouteInput
from router_rl.traces.decision_log import read_decision_log

Backends = tuple[ReplayBackendServer, ReplayBackendServer]
MODELS = ("small-local", "big-local", "cloud-large")


@pytest.fixture
def policy_dir(tmp_path: Path) -> Path:
    return save_random_policy(tmp_path / "policy", MODELS, [0.5, 0.3, 0.2])


def _router(backends: Backends, log: Path, **overrides: Any) -> HybridRouter:
    local, cloud = backends
    lg = {"decision_log_dir": str(log), "flush_interval_s": 60, **overrides.pop("logging", {})}
    return HybridRouter(parse_config(router_config(local.base_url, cloud.base_url, logging=lg, **overrides)))


def _inp(prompt: str, rid: str, **kw: Any) -> RouteInput:
    return RouteInput(messages=[{"role": "user", "content": prompt}], request_id=rid, max_tokens=8, **kw)


def _rows(log: Path) -> dict[str, dict[str, Any]]:
    return {r["request_id"]: r for r in read_decision_log(log).iter_rows(named=True)}


def test_every_routed_row_has_features_and_their_fingerprint_when_an_encoder_exists(
    backends: Backends, tmp_path: Path, policy_dir: Path
) -> None:
    """Rule-decided rows are encoded too (the learned policy's encoder), identically to what the
    encoder gives for the same record; without any encoder features stay null."""
    enc = FeatureEncoder.load(policy_dir / "encoder.json")
    reqs = [("rule", SIMPLE_PROMPT, "router-rl/balanced"), ("learned", COMPLEX_PROMPT, "router-rl/learned"),
            ("explicit", SIMPLE_PROMPT, "big-local")]

    async def go(router: HybridRouter) -> None:
        try:
            for rid, prompt, model in reqs:
                await router.route(_inp(prompt, rid, model=model, agent_type="gen", category="unit"))
        finally:
            await router.aclose()

    asyncio.run(go(_router(backends, tmp_path / "a", learned={"policy_dir": str(policy_dir)})))
    asyncio.run(go(_router(backends, tmp_path / "b", features={"encoder_path": str(policy_dir / "encoder.json")},
                           learned={"endpoint": "http://127.0.0.1:9"})))  # remote policy: never answers
    asyncio.run(go(_router(backends, tmp_path / "c", learned={"endpoint": "http://127.0.0.1:9"})))
    for log in ("a", "b"):
        rows = _rows(tmp_path / log)
        assert len(rows) == 3
        for rid, prompt, _model in reqs:
            want = enc.transform_records([{"prompt": prompt, "agent_type": "gen", "category": "unit",
                                           "max_tokens": 8, "n_messages": 1}])[0]
            assert rows[rid]["encoder_fingerprint"] == enc.fingerprint, (log, rid)
            np.testing.assert_allclose(rows[rid]["features"], want, rtol=1e-6, err_msg=f"{log} {rid}")
    assert _rows(tmp_path / "a")["learned"]["decided_by"] == "learned"
    assert _rows(tmp_path / "b")["learned"]["decided_by"] == "balanced"  # the remote policy failed: rule answered
    for row in _rows(tmp_path / "c").values():  # no encoder anywhere: nothing to encode with
        assert row["features"] is None and row["encoder_fingerprint"] is None


def test_a_missing_encoder_file_is_a_config_error_naming_the_setting(backends: Backends, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"features\.encoder_path: .*encoder file not found"):
        _router(backends, tmp_path / "log", features={"encoder_path": str(tmp_path / "nope.json")})


def test_text_is_logged_only_for_opted_in_agent_types_and_never_for_sensitive_requests(
    backends: Backends, tmp_path: Path
) -> None:
    router = _router(backends, tmp_path / "log", logging={"text_for_agent_types": ["qe-gen"]})
    answers: dict[str, str] = {}

    async def go() -> None:
        try:
            res = await router.route(_inp(SIMPLE_PROMPT, "opted", agent_type="qe-gen"))
            answers["opted"] = res.result.content
            await router.route(_inp(SIMPLE_PROMPT, "other", agent_type="qe-flaky"))
            await router.route(_inp(SENSITIVE_PROMPT, "secret", agent_type="qe-gen"))
            for rid, prompt in (("stream", SIMPLE_PROMPT), ("stream-secret", SENSITIVE_PROMPT)):
                session = await router.route_stream(_inp(prompt, rid, agent_type="qe-gen"))
                answers[rid] = "".join([ev.delta async for ev in session.events()])
        finally:
            await router.aclose()

    asyncio.run(go())
    rows = _rows(tmp_path / "log")
    assert answers["opted"] and answers["stream"]
    assert (rows["opted"]["prompt"], rows["opted"]["response"]) == (SIMPLE_PROMPT, answers["opted"])
    assert (rows["stream"]["prompt"], rows["stream"]["response"]) == (SIMPLE_PROMPT, answers["stream"])
    assert (rows["other"]["prompt"], rows["other"]["response"]) == (None, None)
    for rid in ("secret", "stream-secret"):  # opted in, but the screening flagged a secret
        assert (rows[rid]["prompt"], rows[rid]["response"]) == (None, None), rid
        assert rows[rid]["error"] is None and rows[rid]["served_model"] in ("small-local", "big-local")


def test_the_global_prompt_switch_logs_prompts_but_no_responses_and_no_secrets(
    backends: Backends, tmp_path: Path
) -> None:
    router = _router(backends, tmp_path / "log", logging={"log_prompts": True})

    async def go() -> None:
        try:
            await router.route(_inp(SIMPLE_PROMPT, "plain"))
            await router.route(_inp(SENSITIVE_PROMPT, "secret"))
        finally:
            await router.aclose()

    asyncio.run(go())
    rows = _rows(tmp_path / "log")
    assert (rows["plain"]["prompt"], rows["plain"]["response"]) == (SIMPLE_PROMPT, None)
    assert rows["secret"]["prompt"] is None
