"""LightGBM router on a wide fleet (BFCL, 71 models): per-model outputs vs shared task factors.

Prints, for both layouts fitted on the same BFCL training split (one core): training time, number
of trees, ``predict_quality`` single-request p50/p99 (µs) and batch-1,024 p50 (ms), and
``action_distribution`` single p50, plus the ratio shared / per-model measured in the same run.
Targets (issue #4): single p50 <= 50 µs, batch-1,024 <= 5 ms for ``predict_quality``.
Needs the shared datasets folder (``ROUTER_RL_DATASETS`` or ``../shared/datasets``).

    .venv/bin/python bench/bench_wide_fleet.py [--repeats 2000] [--seed 0]
"""

from __future__ import annotations

import argparse
import time

# isort: off
from _timing import timeit  # first: pins the BLAS/OpenMP pools to one thread before numpy loads
import numpy as np
# isort: on


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--repeats", type=int, default=2000)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    from router_rl.core.paths import require_datasets_dir
    from router_rl.features import FeatureEncoder
    from router_rl.policies.lgbm import LGBMPolicy
    from router_rl.traces.importers import DATASET_FOLDERS, import_traces

    m = import_traces("bfcl", require_datasets_dir(DATASET_FOLDERS["bfcl"]), seed=args.seed).matrix()
    tr, te = m.split("train"), m.split("test")
    enc = FeatureEncoder(FeatureEncoder().config.restricted_to(tr.tasks.columns)).fit(tr.tasks)
    X_tr, X_te = np.asarray(enc.transform(tr.tasks)), np.asarray(enc.transform(te.tasks))
    batch = X_te[np.arange(1024) % X_te.shape[0]]
    print(f"BFCL: {len(m.models)} models, {tr.n_tasks} training tasks, {X_tr.shape[1]} features; one core")
    rows = {}
    for name, rank in (("per-model outputs", 0), ("shared factors (default)", None)):
        t = time.perf_counter()
        pol = LGBMPolicy(m.models, config={"shared_rank": rank}).fit(X_tr, tr, seed=args.seed)
        fit_s = time.perf_counter() - t
        single = timeit(lambda p=pol: p.predict_quality(X_te[:1]), args.repeats) * 1e6
        many = timeit(lambda p=pol: p.predict_quality(batch), max(20, args.repeats // 20)) * 1e3
        act = timeit(lambda p=pol: p.action_distribution(X_te[:1]), args.repeats) * 1e6
        rows[name] = (np.median(single), np.median(many))
        met = pol.metadata["metrics"]
        print(f"{name:26s} fit {fit_s:5.1f} s, {met['n_trees']:4d} trees (rank {met['shared_rank']}) | "
              f"predict_quality single p50 {np.median(single):6.1f} µs p99 {np.percentile(single, 99):6.1f} µs, "
              f"batch-1024 p50 {np.median(many):5.2f} ms | action_distribution single p50 {np.median(act):6.1f} µs")
    (s0, b0), (s1, b1) = rows.values()
    print(f"shared / per-model: single {s1 / s0:.2f}x, batch {b1 / b0:.2f}x (targets: single <= 50 µs, batch <= 5 ms)")


if __name__ == "__main__":
    main()
