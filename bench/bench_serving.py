"""What the one serving path adds to a stateful (PPO) learned decision, in-process, one core.

Builds a small PPO artifact (LightGBM base on simulated ``sim-budgeted`` data, PPO warm start;
timing does not depend on training), then times single-request decisions (p50 / p99, µs):

* ``direct``: the baseline measured in the same run, the bare calls
  ``policy.action_distribution(policy.observe(encoder.transform_records([r]), state_vector(...)))``;
* ``state``: the router gathering its state (``PolicyStateTracker.snapshot``) and building the
  validated wire record (``task_record``);
* ``serving path``: ``state`` + ``InProcessPolicyClient.distribution`` (``PolicyEngine.evaluate``:
  encoder, state vector from the record's ``RouterState``, policy, output checks), awaited.

The difference ``serving path - direct`` is the protocol / validation overhead per decision; the
router's overhead target is 1 ms p50 (``bench_router.py``). BLAS/OpenMP are pinned to one thread.

    .venv/bin/python bench/bench_serving.py [--repeats 2000]
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path

# isort: off
from _timing import timeit  # first: pins the BLAS/OpenMP pools to one thread before numpy loads
import numpy as np
# isort: on


def _pct(x: np.ndarray) -> str:
    return f"p50 {np.percentile(x, 50) * 1e6:8.1f} µs   p99 {np.percentile(x, 99) * 1e6:8.1f} µs"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--repeats", type=int, default=2000)
    args = ap.parse_args()

    import torch as th

    from router_rl.envs import BudgetedRouting, load_env_data, load_spec, make_from_spec
    from router_rl.envs.state import state_vector
    from router_rl.policies.ppo import PPOConfig, PPORouter
    from router_rl.policies.ppo.train import fit_lgbm_base
    from router_rl.router.breaker import BreakerConfig, CircuitBreaker
    from router_rl.router.budget import BudgetConfig, BudgetTracker
    from router_rl.router.policy_client import InProcessPolicyClient, task_record
    from router_rl.router.policy_state import PolicyStateTracker

    th.set_num_threads(1)
    spec = load_spec("sim-budgeted").with_overrides(data={"n_tasks": 600, "seed": 3}, horizon=40)
    data = load_env_data(spec)
    lgbm = fit_lgbm_base(data, rounds=20, seed=0)
    env = make_from_spec(spec, encoder=data.encoder, split="train")
    assert isinstance(env, BudgetedRouting)
    ppo = PPORouter.from_base(lgbm, config=PPOConfig(n_steps=128, batch_size=64, net_arch=(64, 64)))
    ppo.warm_start(env, seed=0)
    with tempfile.TemporaryDirectory() as tmp:
        client = InProcessPolicyClient.from_dir(ppo.save(Path(tmp) / "ppo"))
    policy, encoder = client.engine.policy, client.engine.encoder

    prompts = [str(p) for p in data.test.tasks["prompt"].to_list()[:64]]
    budget = BudgetTracker(BudgetConfig.model_validate({"global": {"daily_usd": 10.0}}))
    budget.record("a", 3.0)
    breakers = {p: CircuitBreaker(p, BreakerConfig()) for p in ("local", *policy.providers)}
    tracker = PolicyStateTracker(budget, breakers, {m: True for m in policy.models[:5]}, time.time)
    for m in policy.models:
        tracker.record_served(m)
    i = [0]

    def nxt() -> str:
        i[0] = (i[0] + 1) % len(prompts)
        return prompts[i[0]]

    def direct() -> object:
        s = tracker.snapshot()
        X = encoder.transform_records([{"prompt": nxt(), "agent_type": "test-generator", "n_messages": 1}])
        S = state_vector(budget_remaining_frac=s.budget_remaining_frac or 0.0, elapsed_frac=s.elapsed_frac,
                         local_share=s.local_share, breakers=s.breakers, providers=policy.providers)
        return policy.action_distribution(policy.observe(X, S))

    def state() -> object:
        return task_record(nxt(), None, "test-generator", None, 1, tracker.snapshot())

    async def serving(n: int) -> np.ndarray:
        out = np.empty(n)
        for k in range(-20, n):
            t = time.perf_counter()
            await client.distribution(task_record(nxt(), None, "test-generator", None, 1, tracker.snapshot()))
            if k >= 0:
                out[k] = time.perf_counter() - t
        return out

    # interleaved rounds, so a load change on a shared machine hits every variant alike (the prior
    # cache of PPORouter makes repeated prompts cheaper for every variant alike too)
    rounds, n = 10, max(1, args.repeats // 10)
    parts: dict[str, list[np.ndarray]] = {"d": [], "s": [], "p": []}
    for _ in range(rounds):
        parts["d"].append(timeit(direct, n))
        parts["s"].append(timeit(state, n))
        parts["p"].append(asyncio.run(serving(n)))
    d, s, p = (np.concatenate(parts[k]) for k in ("d", "s", "p"))
    print(f"PPO artifact: {len(policy.models)} models, obs {policy.obs_dim} columns, state {policy.state_fields}")
    print(f"direct (baseline)     {_pct(d)}")
    print(f"state + wire record   {_pct(s)}")
    print(f"serving path          {_pct(p)}")
    print(f"serving path - direct: p50 {(np.percentile(p, 50) - np.percentile(d, 50)) * 1e6:+.1f} µs")


if __name__ == "__main__":
    main()
