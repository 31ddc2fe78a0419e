"""Inference speed of the LightGBM router (one core), vs the naive scikit-learn-wrapper approach.

Prints single-request p50/p99 (µs) and batch-1,024 p50 (ms) of ``predict_quality`` (one
``Booster.predict`` call + isotonic calibration) and of the full ``action_distribution``, and the
same for a baseline measured in the same run: one ``lightgbm.LGBMClassifier`` per model, each
asked ``predict_proba`` (the sklearn wrapper). Targets: single p50 <= 50 µs, batch <= 5 ms.

    .venv/bin/python bench/bench_policy.py [--n-tasks 2000] [--repeats 2000]
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np


def _timeit(fn, repeats: int) -> np.ndarray:  # type: ignore[no-untyped-def]
    for _ in range(min(20, repeats)):
        fn()
    out = np.empty(repeats)
    for i in range(repeats):
        t = time.perf_counter()
        fn()
        out[i] = time.perf_counter() - t
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--n-tasks", type=int, default=2000)
    ap.add_argument("--repeats", type=int, default=2000)
    args = ap.parse_args()

    import lightgbm as lgb

    from router_rl.features import FeatureEncoder
    from router_rl.policies import make_policy
    from router_rl.traces import simulate_fleet

    m = simulate_fleet(args.n_tasks, seed=0).matrix()
    tr, te = m.split("train"), m.split("test")
    enc = FeatureEncoder().fit(tr.tasks)
    X_tr, X_te = enc.transform(tr.tasks), enc.transform(te.tasks)
    pol = make_policy("lgbm", m.models)
    pol.fit(X_tr, tr, seed=0)
    rounds = pol.metadata["metrics"]["rounds"]
    print(f"fleet: {tr.n_tasks} train tasks x {m.n_models} models, d={X_tr.shape[1]} features "
          f"({pol.metadata['metrics']['n_features_used']} used), {rounds} rounds x {m.n_models} trees")

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
        return np.stack([c.predict_proba(X)[:, 1] for c in clfs], axis=1)

    rows = []
    for name, fn1, fnb in (
        ("router predict_quality", lambda: pol.predict_quality(one), lambda: pol.predict_quality(batch)),
        ("router action_distribution", lambda: pol.action_distribution(one), lambda: pol.action_distribution(batch)),
        ("sklearn wrapper x n_models", lambda: sk_predict(one), lambda: sk_predict(batch)),
    ):
        s = _timeit(fn1, args.repeats)
        b = _timeit(fnb, max(20, args.repeats // 50))
        rows.append((name, np.median(s) * 1e6, np.percentile(s, 99) * 1e6, np.median(b) * 1e3))
    print(f"{'path':30s} {'single p50 µs':>14s} {'single p99 µs':>14s} {'batch1024 p50 ms':>17s}")
    for r in rows:
        print(f"{r[0]:30s} {r[1]:14.1f} {r[2]:14.1f} {r[3]:17.2f}")
    base = rows[2]
    for r in rows[:2]:
        print(f"speed-up of {r[0]} vs sklearn wrapper: single x{base[1] / r[1]:.1f}, batch x{base[3] / r[3]:.1f}")
    ok1, okb = rows[0][1] <= 50, rows[0][3] <= 5
    print(f"targets (predict_quality): single p50 <= 50 µs: {'OK' if ok1 else 'MISSED'}; "
          f"batch <= 5 ms: {'OK' if okb else 'MISSED'}")


if __name__ == "__main__":
    main()
