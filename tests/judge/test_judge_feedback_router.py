"""The judge labels a routed request: a real sandboxed judgement posted to a real router's /v1/feedback.

Replay backend and router on 127.0.0.1; the judge runs the corpus' test file in its sandbox; the
score arrives as ``source = judge:tests`` feedback and ``join_logs`` turns the request into a
labelled row carrying exactly that score.
"""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from router_rl.judge.config import JudgeConfig, MutationBudget
from router_rl.judge.feedback import FeedbackError, post_judgement
from router_rl.judge.tests_judge import judge_tests
from router_rl.logs.join import join_logs
from router_rl.replay.server import ReplayBackend, ReplayBackendServer
from router_rl.router.config import parse_config
from router_rl.router.engine import HybridRouter
from router_rl.router.server import RouterServer, build_server_app

CORPUS = Path(__file__).parent / "corpus" / "bsearch"
TOKEN = "tok-judge-test-0123456789"


def test_a_judgement_becomes_the_label_of_the_routed_request(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import polars as pl

    from router_rl.traces.catalog import ModelCatalog, ModelSpec

    monkeypatch.setenv("ROUTER_RL_API_TOKENS", TOKEN)
    frame = pl.DataFrame([{"task_id": "t0", "model": "coder-local", "quality": 0.8, "cost_usd": 0.0,
                           "latency_s": 0.1, "input_tokens": 30, "output_tokens": 200,
                           "prompt": "Write pytest tests for bsearch.py"}])
    backend = ReplayBackend.from_frame(frame, catalog=ModelCatalog([ModelSpec("coder-local", "local", "local")]),
                                       time_scale=0.0)
    judgement = judge_tests(CORPUS / "bsearch.py", CORPUS / "test_bsearch.py",
                            JudgeConfig(mutation=MutationBudget(max_mutants=6, workers=1)))
    assert 0.5 < judgement.score <= 1.0 and judgement.source == "judge:tests"
    with ReplayBackendServer(backend) as replay:
        cfg = parse_config({
            "providers": [{"name": "local", "kind": "openai_compatible", "base_url": replay.base_url,
                           "location": "local", "max_retries": 0, "models": [{"model": "coder-local"}]}],
            "tiers": dict.fromkeys(("simple", "moderate", "complex", "very_complex"), "coder-local"),
            "logging": {"decision_log_dir": str(tmp_path / "decisions"), "flush_interval_s": 60},
        })
        with RouterServer(build_server_app(HybridRouter.from_config(cfg))) as srv:
            auth = {"authorization": f"Bearer {TOKEN}"}
            prompt = "Write pytest tests for bsearch.py"
            chat = {"model": "router-rl/auto", "messages": [{"role": "user", "content": prompt}]}
            r = httpx.post(srv.base_url + "/v1/chat/completions", headers=auth, timeout=20, json=chat)
            assert r.status_code == 200, r.text
            rid = r.headers["x-request-id"]
            url = srv.base_url + "/v1/feedback"
            receipt = post_judgement(url, rid, judgement, token=TOKEN)
            assert receipt.status_code == 200
            again = post_judgement(url, rid, judgement, token=TOKEN)  # the same judgement is stored once
            assert again.status_code == 200
            with pytest.raises(FeedbackError) as unknown:
                post_judgement(url, "no-such-request", judgement, token=TOKEN)
            assert unknown.value.status_code == 404
    logged, report = join_logs(tmp_path / "decisions", tmp_path / "feedback")
    assert report.labeled == 1 and report.feedback_rows == 1
    row = logged.row(0, named=True)
    assert row["request_id"] == rid and row["label_sources"] == ["judge:tests"]
    assert row["quality"] == pytest.approx(judgement.score, abs=1e-12)
