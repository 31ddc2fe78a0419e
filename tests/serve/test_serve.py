"""The serving path without Ray: wire contract, the one loader / evaluator (stateless and PPO), the client."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from pydantic import ValidationError

from router_rl.envs.state import state_vector
from router_rl.features import FeatureEncoder
from router_rl.policies import RoutingPolicy, make_policy
from router_rl.policies.base import PolicyLoadError
from router_rl.serve.client import RemotePolicyClient, RemotePolicyError
from router_rl.serve.engine import PolicyEngine, PolicyStateError
from router_rl.serve.protocol import RouteRequest, RouteResponse, RouterState, TaskRecord
from router_rl.traces import simulate_fleet

RECORDS = [
    {"prompt": "Write pytest unit tests for parse_date()", "agent_type": "test-generator"},
    {"prompt": "Review this diff for race conditions\n@@ -1,3 +1,4 @@", "agent_type": "code-reviewer"},
]


def _save_policy(tmp: Path, name: str, kind: str, **kw: object) -> tuple[Path, RoutingPolicy]:
    ts = simulate_fleet(200, seed=3)
    m = ts.matrix()
    enc = FeatureEncoder().fit(m.tasks)
    pol = make_policy(kind, m.models, **kw)
    pol.fit(enc.transform(m.tasks), m, seed=0)
    pol.encoder = enc
    return pol.save(tmp / name), pol


def test_engine_routes_records_like_the_policy(tmp_path: Path) -> None:
    d, pol = _save_policy(tmp_path, "single", "single", model="qwen2.5-coder:7b")
    eng = PolicyEngine(d)
    resp = eng.route(RouteRequest(records=[TaskRecord(**r) for r in RECORDS]))
    assert resp.models == list(pol.models)
    assert resp.chosen == ["qwen2.5-coder:7b", "qwen2.5-coder:7b"]
    assert resp.propensity == [1.0, 1.0]
    np.testing.assert_allclose(np.sum(resp.probs, axis=1), 1.0)


def test_engine_propensity_of_the_deterministic_argmax_is_one(tmp_path: Path) -> None:
    """A policy with a spread-out distribution: ``chosen`` is its argmax, whose propensity is 1."""
    d, _ = _save_policy(tmp_path, "soft", "lgbm", config={"num_boost_round": 10, "cv_folds": 2},
                          decision={"temperature": 0.5})
    resp = PolicyEngine(d).route(RouteRequest(records=[TaskRecord(**r) for r in RECORDS]))
    p = np.asarray(resp.probs)
    assert (p.max(axis=1) < 0.9).all()  # not one-hot: p[argmax] would be a wrong propensity
    assert resp.chosen == [resp.models[i] for i in p.argmax(axis=1)]
    assert resp.propensity == [1.0, 1.0]


def test_engine_refuses_artifact_without_encoder(tmp_path: Path) -> None:
    m = simulate_fleet(50, seed=1).matrix()
    d = make_policy("cheapest", m.models).save(tmp_path / "noenc")
    with pytest.raises(PolicyLoadError, match="noenc: policy artifact has no feature encoder"):
        PolicyEngine(d)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_client_reports_unreachable_endpoint_as_remote_policy_error() -> None:
    async def go() -> None:
        client = RemotePolicyClient(f"http://127.0.0.1:{_free_port()}/policy", timeout_s=0.5)
        try:
            with pytest.raises(RemotePolicyError, match="remote policy"):
                await client.route(RECORDS)
        finally:
            await client.aclose()

    asyncio.run(go())


def test_client_reports_connection_failure_with_its_reason() -> None:
    async def go() -> None:
        client = RemotePolicyClient(f"http://127.0.0.1:{_free_port()}/policy", timeout_s=0.5)
        try:
            with pytest.raises(RemotePolicyError) as ei:
                await client.health()
            assert ei.value.reason == "connection"
        finally:
            await client.aclose()

    asyncio.run(go())


def test_protocol_refuses_malformed_answers_and_states() -> None:
    ok = {"policy_version": "v", "models": ["a", "b"], "probs": [[0.25, 0.75]], "chosen": ["b"], "propensity": [1.0]}
    assert RouteResponse.model_validate(ok).chosen == ["b"]
    for bad, msg in [
        ({"probs": [[0.5, 0.6]]}, "summing to 1"),
        ({"probs": [[1.2, -0.2]]}, "probabilities >= 0"),
        ({"probs": [[1.0]]}, "1 probabilities for 2 models"),
        ({"chosen": ["c"]}, "not in models"),
        ({"chosen": []}, "1 rows of probs but 0 chosen"),
        ({"extra": 1}, "Extra inputs"),
    ]:
        with pytest.raises(ValidationError, match=msg):
            RouteResponse.model_validate({**ok, **bad})
    with pytest.raises(ValidationError, match="less than or equal to 1"):
        RouterState(budget_remaining_frac=1.5, elapsed_frac=0.0, local_share=0.0)
    with pytest.raises(ValidationError, match="closed"):
        RouterState(elapsed_frac=0.0, local_share=0.0, breakers={"x": "broken"})
    with pytest.raises(ValidationError, match="finite"):
        RouterState(elapsed_frac=float("nan"), local_share=0.0)
    rec = TaskRecord(prompt="p", agent_type="g", state=RouterState(elapsed_frac=0.1, local_share=0.0))
    assert rec.encoder_record() == {"prompt": "p", "agent_type": "g", "n_messages": 1}


def _state(**kw: object) -> RouterState:
    base: dict[str, object] = {"budget_remaining_frac": 0.3, "elapsed_frac": 0.6, "local_share": 0.5,
                               "breakers": {"anthropic": "open", "openrouter": "half_open", "local": "closed"}}
    return RouterState.model_validate({**base, **kw})


@pytest.mark.slow
def test_engine_serves_ppo_on_the_state_vector_the_envs_use(ppo_dir: Path) -> None:
    eng = PolicyEngine(ppo_dir)
    pol = eng.policy
    assert eng.state_spec is not None
    assert eng.state_spec.fields == ["budget_remaining_frac", "elapsed_frac", "local_share",
                                     "breaker:anthropic", "breaker:openrouter"]
    recs = [TaskRecord(**r, state=_state()) for r in RECORDS]
    out = eng.evaluate(recs)
    # the state columns are the env layout: scalars, then breakers in training order (open=1, half_open=0.5)
    want_s = state_vector(budget_remaining_frac=0.3, elapsed_frac=0.6, local_share=0.5, breakers=[1.0, 0.5])
    np.testing.assert_array_equal(out.state, np.stack([want_s, want_s]))
    X = pol.encoder.transform_records(RECORDS)
    np.testing.assert_allclose(out.probs, pol.action_distribution(pol.observe(X, want_s)))
    resp = eng.route(RouteRequest(records=recs))
    assert resp.policy_version == pol.version and resp.propensity == [1.0, 1.0]
    # another state, another answer: the state is really used
    fresh = eng.evaluate([TaskRecord(**r, state=eng.fresh_state()) for r in RECORDS])
    assert np.abs(fresh.probs - out.probs).max() > 1e-3
    assert eng.route(eng.canary()).chosen  # the canary carries a state the policy accepts


@pytest.mark.slow
def test_engine_refuses_ppo_records_without_the_state_it_needs(ppo_dir: Path) -> None:
    eng = PolicyEngine(ppo_dir)
    with pytest.raises(PolicyStateError, match=r"records\[0\].state: policy ppo@.* needs the router state"):
        eng.evaluate([TaskRecord(**RECORDS[0])])
    with pytest.raises(PolicyStateError, match=r"records\[1\].state.breakers: .*missing \['openrouter'\]"):
        eng.evaluate([TaskRecord(**RECORDS[0], state=_state()),
                      TaskRecord(**RECORDS[1], state=_state(breakers={"anthropic": "closed"}))])
    with pytest.raises(PolicyStateError, match=r"budget_remaining_frac: .*set budgets\.global\.daily_usd"):
        eng.evaluate([TaskRecord(**RECORDS[0], state=_state(budget_remaining_frac=None))])


@pytest.mark.slow
def test_engine_refuses_ppo_whose_state_columns_have_no_provider_names(ppo_dir: Path, tmp_path: Path) -> None:
    import json
    import shutil

    d = tmp_path / "noprov"
    shutil.copytree(ppo_dir, d)
    meta = json.loads((d / "policy.json").read_text())
    meta["state"]["providers"] = []
    (d / "policy.json").write_text(json.dumps(meta))
    with pytest.raises(PolicyLoadError, match=r"noprov: cannot serve .* 2 breaker columns, but 0 provider names"):
        PolicyEngine(d)


def _faulty_endpoint(answers: list[tuple[int, object]]) -> Any:
    """A policy endpoint answering the queued (status, body) pairs in order: faults a real policy cannot make."""
    from fastapi import FastAPI
    from fastapi.responses import JSONResponse

    app = FastAPI()
    hits: list[int] = []

    @app.post("/route")
    async def route() -> JSONResponse:
        status, body = answers[len(hits)]
        hits.append(status)
        return JSONResponse(body, status_code=status)

    return app


def test_client_classifies_every_broken_answer() -> None:
    from router_rl.core.asgi import ThreadedASGIServer

    good = {"policy_version": "v", "models": ["a", "b"], "probs": [[0.5, 0.5]], "chosen": ["a"], "propensity": [1.0]}
    answers: list[tuple[int, object]] = [
        (200, good),
        (200, {**good, "probs": [[0.9, 0.9]]}),  # not a distribution
        (200, {**good, "probs": [[0.5, 0.5], [0.5, 0.5]], "chosen": ["a", "a"], "propensity": [1, 1]}),  # 2 rows for 1
        (200, ["not", "an", "object"]),
        (422, {"detail": "records[0].state: policy v needs the router state"}),
        (503, {"detail": "overloaded"}),
    ]
    want = [None, "invalid", "invalid", "invalid", "refused", "http_error"]

    async def go(url: str) -> list[str | None]:
        client = RemotePolicyClient(url, timeout_s=10.0)
        got: list[str | None] = []
        try:
            for _ in answers:
                try:
                    await client.route(RECORDS[:1])
                    got.append(None)
                except RemotePolicyError as e:
                    got.append(e.reason)
                    if e.reason == "refused":
                        assert "needs the router state" in str(e)
        finally:
            await client.aclose()
        return got

    with ThreadedASGIServer(_faulty_endpoint(answers)) as srv:
        assert asyncio.run(go(srv.base_url)) == want
