"""Benchmark the OPE estimators on 1M logged decisions over 10 models.

Prints wall times of (a) all estimators without bootstrap, (b) all estimators with 1,000 shared
bootstrap resamples, and (c) a naive baseline measured in the same run: a python-loop bootstrap
(one ``np.random.choice`` + fancy-index gather per resample and estimator) on a subsample,
extrapolated linearly to the same number of rows and resamples. Targets (issue #5): (a) <= 5 s,
(b) <= 60 s on one core.

Usage::

    OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 .venv/bin/python bench/bench_ope.py [--n 1000000] [--boot 1000]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from router_rl.ope import LoggedFeedback, default_estimators, estimate_all
from router_rl.ope.synthetic import make_bandit


def naive_bootstrap_seconds(data: LoggedFeedback, n_sub: int, n_boot: int, seed: int) -> float:
    """Seconds for a python-loop bootstrap of every estimator on ``n_sub`` rows."""
    rng = np.random.default_rng(seed)
    ests = default_estimators(tau=5.0)
    sub = rng.choice(data.n, size=n_sub, replace=False)
    d = LoggedFeedback(
        rewards=data.rewards[sub],
        actions=data.actions[sub],
        propensities=data.propensities[sub],
        target=data.target[sub],
        reward_hat=None if data.reward_hat is None else data.reward_hat[sub],
    )
    t = time.perf_counter()
    for e in ests:
        vals = []
        for _ in range(n_boot):
            idx = rng.choice(n_sub, size=n_sub, replace=True)
            rs = LoggedFeedback(
                rewards=d.rewards[idx],
                actions=d.actions[idx],
                propensities=d.propensities[idx],
                target=d.target[idx],
                reward_hat=None if d.reward_hat is None else d.reward_hat[idx],
            )
            vals.append(e.estimate_data(rs))
        np.percentile(vals, [2.5, 97.5])
    return time.perf_counter() - t


def main() -> None:
    """Run the benchmark and print figures."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--models", type=int, default=10)
    ap.add_argument("--boot", type=int, default=1000)
    ap.add_argument("--naive-rows", type=int, default=100_000)
    ap.add_argument("--naive-boot", type=int, default=20)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    t = time.perf_counter()
    env = make_bandit(args.n, args.models, args.seed)
    logs = env.sample_logs(args.seed + 1)
    print(f"simulated {args.n:,} decisions x {args.models} models in {time.perf_counter() - t:.1f} s")

    ests = default_estimators(tau=5.0)
    t = time.perf_counter()
    data = LoggedFeedback.from_arrays(
        rewards=logs.rewards,
        actions=logs.actions,
        propensities=logs.propensities,
        target=logs.target,
        reward_hat=logs.reward_hat,
    )
    res = estimate_all(ests, data, n_bootstrap=None)
    t_point = time.perf_counter() - t
    print(f"[a] {len(ests)} estimators, validation + point estimates: {t_point:.2f} s (target <= 5 s)")
    for k, v in res.items():
        print(f"      {k:10s} {v.value:.4f}   (true {env.true_value:.4f})")

    t = time.perf_counter()
    res = estimate_all(ests, data, n_bootstrap=args.boot, rng=args.seed)
    t_boot = time.perf_counter() - t
    print(f"[b] {len(ests)} estimators + {args.boot} shared bootstrap resamples: {t_boot:.2f} s (target <= 60 s)")
    for k, v in res.items():
        print(f"      {k:10s} {v.value:.4f}  [{v.lower:.4f}, {v.upper:.4f}]")

    t_naive = naive_bootstrap_seconds(data, args.naive_rows, args.naive_boot, args.seed)
    scale = (args.n / args.naive_rows) * (args.boot / args.naive_boot)
    t_naive_full = t_naive * scale
    print(
        f"[c] naive python-loop bootstrap: {t_naive:.2f} s for {args.naive_boot} resamples x {args.naive_rows:,} rows "
        f"-> extrapolated {t_naive_full:.0f} s for {args.boot} x {args.n:,}"
    )
    print(f"speed-up of the vectorised bootstrap vs naive: {t_naive_full / t_boot:.1f}x")


if __name__ == "__main__":
    main()
