"""The loop from live traffic to learning, on real servers on 127.0.0.1 (issue #15's "done when").

Replay backends serve a small fleet; the router (HTTP, bearer auth) routes with a learned policy
under epsilon exploration and writes its decision log; agents call it through the official
``openai`` SDK, read the request id with ``router_rl.client.request_id_of`` and send the quality
of each answer through ``FeedbackClient``; then the CLI joins the log (``logs join``), evaluates
policies on it (``ope --log``) and trains a new policy from it (``train --log``), which a fresh
router serves.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from typer.testing import CliRunner

from router_rl.cli.main import app
from router_rl.client import FeedbackClient, request_id_of
from router_rl.features import FeatureEncoder
from router_rl.policies.baselines import RandomPolicy
from router_rl.replay.server import ReplayBackend, ReplayBackendServer
from router_rl.router.config import parse_config
from router_rl.router.engine import HybridRouter
from router_rl.router.server import RouterServer, build_server_app
from router_rl.traces.catalog import ModelCatalog, ModelSpec

MODELS = ("small-local", "big-local", "cloud-large")
TOKEN = "tok-loop-e2e-0123456789"
CLOUD_KEY_ENV = "ROUTER_RL_TEST_LOOP_CLOUD_KEY"
CLOUD_KEY = "sk-test-loop-0123456789abcdef"
#: two kinds of task: the small local model writes unit tests well, only the big ones find races
KINDS = {"unit": (0.9, 0.8, 0.95), "race": (0.2, 0.85, 0.9)}
PROMPTS = {f"{kind}{i}": (f"Write unit tests for module m{i}" if kind == "unit" else
                          f"Find the race condition in the cache of service s{i}")
           for kind in KINDS for i in range(12)}
runner = CliRunner()


def _frame(models: tuple[str, ...]) -> pl.DataFrame:
    return pl.DataFrame([
        {"task_id": t, "model": m, "quality": KINDS[t.rstrip("0123456789")][MODELS.index(m)],
         "cost_usd": 0.0, "latency_s": 0.1, "input_tokens": 40, "output_tokens": 120, "prompt": p}
        for t, p in PROMPTS.items() for m in models
    ])


@pytest.fixture(scope="module")
def servers() -> Iterator[tuple[ReplayBackendServer, ReplayBackendServer]]:
    local = ReplayBackend.from_frame(_frame(MODELS[:2]), time_scale=0.0,
                                     catalog=ModelCatalog([ModelSpec(m, "local", "local") for m in MODELS[:2]]))
    cloud = ReplayBackend.from_frame(_frame(MODELS[2:]), time_scale=0.0, api_key=CLOUD_KEY,
                                     catalog=ModelCatalog([ModelSpec(MODELS[2], "cloud", "cloud")]))
    with ReplayBackendServer(local) as a, ReplayBackendServer(cloud) as b:
        yield a, b


def _config(servers: Any, policy_dir: Path, root: Path, *, explore: bool = True) -> Any:
    local, cloud = servers
    return parse_config({
        "providers": [
            {"name": "local", "kind": "openai_compatible", "base_url": local.base_url, "location": "local",
             "gpu_usd_per_hour": 1.0, "max_retries": 0, "timeout_s": 10.0,
             "models": [{"model": "small-local", "tokens_per_s": 200.0}, {"model": "big-local", "tokens_per_s": 40.0}]},
            {"name": "cloud", "kind": "openai_compatible", "base_url": cloud.base_url, "location": "cloud",
             "api_key_env": CLOUD_KEY_ENV, "max_retries": 0, "timeout_s": 10.0,
             "models": [{"model": "cloud-large", "usd_per_m_input": 3.0, "usd_per_m_output": 15.0}]},
        ],
        "tiers": {"simple": "small-local", "moderate": "small-local", "complex": "big-local",
                  "very_complex": "cloud-large"},
        "strategy": "learned",
        "learned": {"policy_dir": str(policy_dir), "sample": explore},
        "exploration": {"default": {"epsilon": 0.2}} if explore else {},
        "logging": {"decision_log_dir": str(root / "decisions"), "flush_interval_s": 0.2},
        "seed": 3,
    })


def _run(args: list[str]) -> str:
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    return res.output


def test_traffic_feedback_join_ope_train_serve(servers: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from openai import OpenAI

    monkeypatch.setenv(CLOUD_KEY_ENV, CLOUD_KEY)
    monkeypatch.setenv("ROUTER_RL_API_TOKENS", TOKEN)
    tasks = pl.DataFrame({"task_id": list(PROMPTS), "prompt": list(PROMPTS.values()),
                          "agent_type": ["test-generation"] * len(PROMPTS), "category": ["qe"] * len(PROMPTS)})
    logger_dir = tmp_path / "logger"
    RandomPolicy(MODELS, weights=[0.4, 0.3, 0.3]).attach_encoder(FeatureEncoder().fit(tasks)).save(logger_dir)

    # --- live traffic, then its feedback ------------------------------------------------------
    with RouterServer(build_server_app(HybridRouter.from_config(_config(servers, logger_dir, tmp_path)))) as srv:
        sdk = OpenAI(base_url=srv.base_url + "/v1", api_key=TOKEN, max_retries=0)
        labels: list[dict[str, Any]] = []
        for rep in range(5):
            for task, prompt in PROMPTS.items():
                resp = sdk.chat.completions.create(
                    model="router-rl/auto", messages=[{"role": "user", "content": prompt}],
                    extra_headers={"x-agent-type": "test-generation", "x-request-id": f"{task}-r{rep}"},
                )
                quality = float(resp.choices[0].message.content.split("quality=")[1].split()[0])
                labels.append({"request_id": request_id_of(resp), "quality": quality, "source": "judge:pytest",
                               "idempotency_key": f"{task}-{rep}"})
        with FeedbackClient(srv.base_url, api_key=TOKEN) as fb:
            for i in range(0, len(labels) - 20, 40):  # the last 20 requests stay unlabeled
                fb.send_batch(labels[i:min(i + 40, len(labels) - 20)])
    n = len(labels)
    assert len({r["request_id"] for r in labels}) == n

    # --- logs join ------------------------------------------------------------------------------
    ModelCatalog([ModelSpec("small-local", "local", "local"), ModelSpec("big-local", "local", "local"),
                  ModelSpec("cloud-large", "cloud", "cloud")]).save(tmp_path / "catalog.json")
    logged = tmp_path / "logged.parquet"
    out = _run(["logs", "join", str(tmp_path / "decisions"), "--feedback", str(tmp_path / "feedback"),
                "-o", str(logged), "--catalog", str(tmp_path / "catalog.json"), "--json"])
    report = json.loads(out[out.index("{"):])
    assert report["decisions"] == n and report["labeled"] == n - 20 and report["unlabeled"] == 20
    df = pl.read_parquet(logged)
    assert df.height == n and df["encoder_fingerprint"].n_unique() == 1
    explored = df["explored"].sum()
    assert 0 < explored < n  # epsilon 0.2 over a 0.4/0.3/0.3 policy
    probs = df["action_probs"].to_list()
    assert all(abs(p[0] - (0.8 * 0.4 + 0.2 / 3)) < 1e-12 for p in probs)  # exactly what was sampled from

    # --- OPE on the log -------------------------------------------------------------------------
    big = "single:model=big-local"
    opj = tmp_path / "ope.json"
    _run(["ope", "--log", str(logged), "--policies", str(logger_dir), "--policies", big,
          "--json", str(opj), "--n-bootstrap", "200", "--folds", "2", "--reward-model", "ridge"])
    ope = json.loads(opj.read_text())
    assert ope["schema_version"] == 1 and ope["log"]["n_labeled"] == n - 20
    labeled = [r["request_id"].rsplit("-r", 1)[0] for r in labels[: n - 20]]
    truth_big = sum(KINDS[t.rstrip("0123456789")][1] for t in labeled) / len(labeled)  # on the labeled contexts
    for est in ("ips", "snips", "dr"):
        e = ope["policies"][big]["metrics"]["quality"]["estimates"][est]
        se = (e["upper"] - e["lower"]) / (2 * 1.96)
        assert e["lower"] <= e["value"] <= e["upper"] and abs(e["value"] - truth_big) < 3 * se, (est, e, truth_big)
    assert ope["policies"][big]["metrics"]["local_share"]["exact"] is True

    # --- train from the log, serve the result -----------------------------------------------------
    new_dir = tmp_path / "learned"
    _run(["train", "--log", str(logged), "--policy", "lgbm", "--encoder", str(logger_dir), "-o", str(new_dir)])
    from router_rl.policies.base import RoutingPolicy

    learned = RoutingPolicy.load(new_dir)
    meta = learned.metadata["offpolicy"]
    assert meta["n_labeled"] == n - 20 and meta["correction"] == "iw"
    cfg = _config(servers, new_dir, tmp_path / "second", explore=False)
    with RouterServer(build_server_app(HybridRouter.from_config(cfg))) as srv:
        sdk = OpenAI(base_url=srv.base_url + "/v1", api_key=TOKEN, max_retries=0)
        chosen = {}
        for task in ("unit0", "race0"):
            raw = sdk.chat.completions.with_raw_response.create(
                model="router-rl/auto", messages=[{"role": "user", "content": PROMPTS[task]}])
            assert raw.headers["x-router-strategy"] == "learned"
            assert raw.headers["x-router-policy"] == learned.version
            chosen[task] = raw.headers["x-router-chosen-model"]
    assert chosen["race0"] != "small-local"  # learned from the log: the small model fails on races
