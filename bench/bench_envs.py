"""Throughput of the routing environments on one CPU core.

Targets: single env >= 10,000 steps/s; batched bandit >= 200,000 task-decisions/s. The baseline
measured in the same run is Gymnasium's CartPole-v1 (unwrapped) step rate, so the printed ratio
is comparable across machines.

Usage::

    .venv/bin/python bench/bench_envs.py [--spec sim-bandit] [--budgeted-spec sim-budgeted]
        [--steps 50000] [--batch 1024] [--seconds 2.0]
"""

from __future__ import annotations

import argparse
import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import time  # noqa: E402
from collections.abc import Callable  # noqa: E402

import numpy as np  # noqa: E402


def _pin_one_core() -> str:
    if hasattr(os, "sched_setaffinity"):
        cpu = min(os.sched_getaffinity(0))
        os.sched_setaffinity(0, {cpu})
        return f"pinned to cpu {cpu}"
    return "not pinned"


def _rate(run: Callable[[int], int], seconds: float) -> float:
    """Units per second of ``run(chunk) -> units``, repeated for about ``seconds``."""
    run(100)  # warm-up
    units, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        units += run(2_000)
    return units / (time.perf_counter() - t0)


def _single(env: object, seed: int) -> Callable[[int], int]:
    rng = np.random.default_rng(seed)
    n = env.action_space.n  # type: ignore[attr-defined]
    env.reset(seed=seed)  # type: ignore[attr-defined]

    def run(k: int) -> int:
        acts = rng.integers(0, n, size=k).tolist()
        for a in acts:
            _, _, term, trunc, _ = env.step(a)  # type: ignore[attr-defined]
            if term or trunc:
                env.reset()  # type: ignore[attr-defined]
        return k

    return run


def _batched(vec: object, n_actions: int, seed: int) -> Callable[[int], int]:
    rng = np.random.default_rng(seed)
    B = vec.num_envs  # type: ignore[attr-defined]
    vec.reset(seed=seed)  # type: ignore[attr-defined]
    acts = rng.integers(0, n_actions, size=(64, B))

    def run(k: int) -> int:
        steps = max(1, k // 100)
        for s in range(steps):
            if vec.done:  # type: ignore[attr-defined]
                vec.reset()  # type: ignore[attr-defined]
            vec.step(acts[s % 64])  # type: ignore[attr-defined]
        return steps * B

    return run


def main() -> None:
    """Measure and print the figures."""
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--spec", default="sim-bandit")
    ap.add_argument("--budgeted-spec", default="sim-budgeted")
    ap.add_argument("--batch", type=int, default=1024)
    ap.add_argument("--seconds", type=float, default=2.0)
    args = ap.parse_args()

    import gymnasium as gym

    import router_rl.envs as renvs

    pin = _pin_one_core()
    cart = gym.make("CartPole-v1").unwrapped
    cart.reset(seed=0)
    cart_rng = np.random.default_rng(0)

    def cart_run(k: int) -> int:
        for a in cart_rng.integers(0, 2, size=k).tolist():
            _, _, term, trunc, _ = cart.step(a)
            if term or trunc:
                cart.reset()
        return k

    base = _rate(cart_run, args.seconds)
    bandit = renvs.make(args.spec)
    budgeted = renvs.make(args.budgeted_spec)
    assert isinstance(bandit, renvs.RoutingBandit) and isinstance(budgeted, renvs.BudgetedRouting)
    r_bandit = _rate(_single(bandit, 1), args.seconds)
    r_budget = _rate(_single(budgeted, 2), args.seconds)
    vb = renvs.RoutingBanditVec.from_env(bandit, args.batch)
    r_vb = _rate(_batched(vb, bandit.tables.n_models, 3), args.seconds)
    vbud = renvs.BudgetedRoutingVec(budgeted, args.batch)
    r_vbud = _rate(_batched(vbud, budgeted.tables.n_models, 4), args.seconds)

    print(f"router-rl env throughput, one core ({pin}); obs dims: bandit {bandit.observation_space.shape[0]}, "
          f"budgeted {budgeted.observation_space.shape[0]}; batch {args.batch}")
    rows = [
        ("CartPole-v1 (baseline)", base, None),
        (f"RoutingBandit [{args.spec}]", r_bandit, 10_000),
        (f"BudgetedRouting [{args.budgeted_spec}]", r_budget, 10_000),
        (f"RoutingBanditVec x{args.batch}", r_vb, 200_000),
        (f"BudgetedRoutingVec x{args.batch}", r_vbud, None),
    ]
    print(f"{'env':44s} {'steps/s':>14s} {'vs CartPole':>12s} {'target':>10s}  ok")
    for name, rate, target in rows:
        ok = "" if target is None else ("yes" if rate >= target else "NO")
        tgt = "" if target is None else f"{target:,}"
        print(f"{name:44s} {rate:14,.0f} {rate / base:12.2f} {tgt:>10s}  {ok}")


if __name__ == "__main__":
    main()
