"""Inference speed of the LightGBM router (one core), vs the naive scikit-learn-wrapper approach.

Prints single-request p50/p99 (µs) and batch-1,024 p50 (ms) of ``predict_quality`` (linear head
+ one pass over the compiled trees + isotonic calibration; batches < 8 rows use
``Booster.predict``), of the raw ensemble alone with both engines (numpy evaluator of
:mod:`router_rl.policies.treeeval` vs ``Booster.predict(num_threads=1)``), of the full
``action_distribution``, and the same for a baseline measured in the same run: one
``lightgbm.LGBMClassifier`` per model, each asked ``predict_proba`` (the sklearn wrapper).
Also the per-task cost / latency model (:mod:`router_rl.policies.costmodel`) alone, and
``action_distribution`` with the training-mean costs instead (the difference is what per-task
costs add to a decision). Targets: single p50 <= 50 µs, batch <= 5 ms (``predict_quality``; the
cost model should add well under 50 µs to a single decision). BLAS/OpenMP are pinned to one thread.

    .venv/bin/python bench/bench_policy.py [--n-tasks 2000] [--repeats 2000]
"""

from __future__ import annotations

import argparse
import copy

# isort: off
from _timing import timeit  # first: pins the BLAS/OpenMP pools to one thread before numpy loads
import numpy as np
# isort: on


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--n-tasks", type=int, default=2000)
    ap.add_argument("--repeats", type=int, default=2000)
    args = ap.parse_args()

    import lightgbm as lgb

    from router_rl.features import FeatureEncoder
    from router_rl.policies.lgbm import LGBMPolicy
    from router_rl.traces import simulate_fleet

    m = simulate_fleet(args.n_tasks, seed=0).matrix()
    tr, te = m.split("train"), m.split("test")
    enc = FeatureEncoder().fit(tr.tasks)
    X_tr, X_te = enc.transform(tr.tasks), enc.transform(te.tasks)
    pol = LGBMPolicy(m.models)
    pol.fit(X_tr, tr, seed=0)
    rounds = pol.metadata["metrics"]["rounds"]
    n_trees = pol.metadata["metrics"]["n_trees"]
    print(f"fleet: {tr.n_tasks} train tasks x {m.n_models} models, d={X_tr.shape[1]} features "
          f"({pol.metadata['metrics']['n_features_used']} used), {rounds} rounds, {n_trees} trees, "
          f"engine {pol.metadata['metrics']['engine']}")
    cm = pol.metadata["cost_model"]
    print(f"cost model: mode {cm['mode']}, rank {cm.get('rank')}, {cm.get('rounds')} rounds, "
          f"{cm.get('n_trees')} trees, engine {cm.get('engine')}")

    rng = np.random.default_rng(0)
    one = X_te[:1]
    batch = X_te[rng.integers(0, X_te.shape[0], 1024)]

    # baseline: sklearn wrapper, one classifier per model, same tree budget
    cfg = pol.config
    clfs = []
    for j in range(m.n_models):
        y = (tr.quality[:, j] >= 0.5).astype(int)
        clf = lgb.LGBMClassifier(n_estimators=rounds, num_leaves=cfg.num_leaves, learning_rate=cfg.learning_rate,
                                 min_child_samples=cfg.min_data_in_leaf, n_jobs=1, verbose=-1, random_state=0)
        clfs.append(clf.fit(X_tr, y))

    def sk_predict(X: np.ndarray) -> np.ndarray:
        return np.stack([np.asarray(c.predict_proba(X))[:, 1] for c in clfs], axis=1)

    from router_rl.policies.treeeval import TreeEnsemble

    booster = pol._booster
    engine = TreeEnsemble.from_booster(booster)  # same trees, on the booster's own input layout
    Xb = np.ascontiguousarray(batch[:, pol.columns])
    if pol.linear is not None:
        Xb = np.hstack([Xb, pol.linear.logits(Xb).astype(np.float32)])
    X1 = Xb[:1]
    pol_mean = copy.copy(pol)
    pol_mean.cost_model = None
    costs = pol.cost_model
    rows = []
    for name, fn1, fnb in (
        ("raw trees: Booster.predict", lambda: booster.predict(X1, num_threads=1),
         lambda: booster.predict(Xb, num_threads=1)),
        ("raw trees: numpy evaluator", lambda: engine.predict_raw(X1), lambda: engine.predict_raw(Xb)),
        ("router predict_quality", lambda: pol.predict_quality(one), lambda: pol.predict_quality(batch)),
        ("router action_distribution", lambda: pol.action_distribution(one), lambda: pol.action_distribution(batch)),
        ("  same, mean costs", lambda: pol_mean.action_distribution(one), lambda: pol_mean.action_distribution(batch)),
        ("cost model predict", lambda: costs.predict(one), lambda: costs.predict(batch)) if costs is not None
        else ("cost model predict (none)", lambda: None, lambda: None),
        ("sklearn wrapper x n_models", lambda: sk_predict(one), lambda: sk_predict(batch)),
    ):
        s = timeit(fn1, args.repeats)
        b = timeit(fnb, max(20, args.repeats // 50))
        rows.append((name, np.median(s) * 1e6, np.percentile(s, 99) * 1e6, np.median(b) * 1e3))
    print(f"{'path':30s} {'single p50 µs':>14s} {'single p99 µs':>14s} {'batch1024 p50 ms':>17s}")
    for r in rows:
        print(f"{r[0]:30s} {r[1]:14.1f} {r[2]:14.1f} {r[3]:17.2f}")
    base = rows[-1]
    for r in rows[:-1]:
        print(f"speed-up of {r[0]} vs sklearn wrapper: single x{base[1] / r[1]:.1f}, batch x{base[3] / r[3]:.1f}")
    print(f"numpy evaluator vs Booster.predict (raw trees, batch): x{rows[0][3] / rows[1][3]:.1f}")
    ok1, okb = rows[2][1] <= 50, rows[2][3] <= 5
    print(f"targets (predict_quality): single p50 <= 50 µs: {'OK' if ok1 else 'MISSED'}; "
          f"batch <= 5 ms: {'OK' if okb else 'MISSED'}")
    extra1, extrab = rows[3][1] - rows[4][1], rows[3][3] - rows[4][3]
    print(f"per-task costs add to action_distribution: single p50 {extra1:+.1f} µs, batch {extrab:+.2f} ms "
          f"(cost model alone: {rows[5][1]:.1f} µs / {rows[5][3]:.2f} ms)")


if __name__ == "__main__":
    main()
