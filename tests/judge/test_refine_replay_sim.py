"""refine() end to end against a replay backend that serves the simulated fleet's refinement.

Each simulated cell becomes replay records ``<task>#r0..r<cap>``: the first attempt's recorded
quality until the iteration at which :func:`simulate_refinement` says the answer passed, the
refined quality from then on. Driving :func:`refine` over HTTP must reproduce the simulation's
iterations and final quality cell by cell.
"""

from __future__ import annotations

import asyncio
from typing import Any

import numpy as np
import polars as pl

from router_rl.providers import CompletionRequest, build_provider
from router_rl.replay.server import TASK_HEADER, ReplayBackend, ReplayBackendServer
from router_rl.router.refine import Check, Generation, RefineConfig, parse_score, refine
from router_rl.traces.refinement import simulate_refinement
from router_rl.traces.simulate import simulate_fleet

MODEL = "qwen2.5-coder:7b"


def test_loop_over_http_reproduces_the_simulation() -> None:
    ts = simulate_fleet(120, seed=5)
    tier = RefineConfig().tier_for(MODEL)
    assert tier is not None
    cap, threshold = tier[1].max_iterations, tier[1].threshold
    f = simulate_refinement(ts, {MODEL: (cap, threshold)}, seed=0)
    ok = ts.outcomes.filter((pl.col("model") == MODEL) & pl.col("error").is_null()).select("task_id")
    f = f.join(ok, on="task_id")
    rows = []
    for r in f.iter_rows(named=True):
        for k in range(cap + 1):
            refined = r["passed"] and r["iterations"] > 0 and k >= r["iterations"]
            q = r["quality"] if refined else r["base_quality"]
            rows.append((f"{r['task_id']}#r{k}", MODEL, q, 0.0, 0.5, 300, 120, None, f"p {r['task_id']} {k}"))
    frame = pl.DataFrame(
        rows,
        schema={"task_id": pl.Utf8, "model": pl.Utf8, "quality": pl.Float64, "cost_usd": pl.Float64,
                "latency_s": pl.Float64, "input_tokens": pl.Int64, "output_tokens": pl.Int64, "error": pl.Utf8,
                "prompt": pl.Utf8},
        orient="row",
    )
    backend = ReplayBackend.from_frame(frame, catalog=ts.catalog, time_scale=0.0, seed=0)

    async def run_all(base_url: str) -> list[Any]:
        provider = build_provider(
            {"name": "ollama", "base_url": base_url + "/v1", "models": [MODEL], "max_retries": 0},
            catalog=ts.catalog, rng=np.random.default_rng(0),
        )
        outs = []
        try:
            for task in f["task_id"]:

                async def generate(model: str, messages: list[dict[str, str]], it: int, timeout_s: float,
                                   task: str = task) -> Generation:
                    res = await provider.complete(CompletionRequest(
                        model, messages, timeout_s=min(timeout_s, 10.0),
                        extra={"headers": {TASK_HEADER: f"{task}#r{it}"}}))
                    return Generation(res.content, provider.cost(model, res.usage, res.latency_s), res.latency_s)

                async def check(model: str, messages: list[dict[str, str]], answer: str, timeout_s: float) -> Check:
                    score = parse_score(answer.split("quality=", 1)[1])
                    assert score is not None
                    return Check(score, "below threshold", "judge:replay")

                outs.append(await refine([{"role": "user", "content": f"p {task}"}], MODEL, generate, check,
                                         RefineConfig(), timeout_s=120.0, is_cloud=lambda m: False))
        finally:
            await provider.close()
        return outs

    with ReplayBackendServer(backend) as srv:
        outs = asyncio.run(run_all(srv.base_url))
    iterations = np.array([len(o.attempts) - 1 for o in outs])
    final = np.array([o.score for o in outs])
    assert (iterations == f["iterations"].to_numpy()).all()
    assert np.allclose(final, f["quality"].to_numpy(), atol=1e-4)  # the replay rounds to 4 decimals
    assert iterations.max() == cap and (iterations == 0).any()
    assert sum(o.total_cost_usd for o in outs) > 0
