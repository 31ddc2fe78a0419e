"""Cost share at 95% of the reference model's quality, per RouterBench task (test split).

For each task file group (ARC-Challenge, MBPP, Winogrande) of the RouterBench subset: fit the
encoder and each learned router on the train split minus a seeded 20% validation carve-out,
calibrate λ to ``quality=0.95`` on validation, then report on the test split: quality share and
cost share vs the reference (best single model on train). Also prints the oracle.

    .venv/bin/python bench/routerbench_costshare.py [--policies lgbm,knn,mlp,mf] [--seed 0]
"""

from __future__ import annotations

import argparse


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--policies", default="lgbm,knn,mlp,mf")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--target", default="quality=0.95")
    args = ap.parse_args()

    from router_rl.core.paths import require_datasets_dir
    from router_rl.features import EncoderConfig, FeatureEncoder
    from router_rl.policies import make_policy
    from router_rl.traces.importers.routerbench import import_routerbench

    ts = import_routerbench(require_datasets_dir("routerbench-subset-via-routerdc"), drop_invalid=True, seed=args.seed)
    full = ts.matrix()
    print(f"{'task':12s} {'policy':8s} {'q share':>8s} {'cost share':>10s} {'lam':>8s}")
    for task in sorted(full.tasks["category"].unique().to_list()):
        m = full.take((full.tasks["category"] == task).to_numpy())
        tr, va, te = m.split("train"), m.split("val"), m.split("test")  # val: carved from train by the importer
        enc = FeatureEncoder(EncoderConfig(categorical_columns=()).restricted_to(tr.tasks.columns)).fit(tr.tasks)
        X_tr, X_va, X_te = (enc.transform(x.tasks) for x in (tr, va, te))
        ref = te.model_index(tr.best_single_model())
        rq, rc = te.quality[:, ref].mean(), te.cost[:, ref].mean()
        for name in args.policies.split(","):
            pol = make_policy(name, m.models).fit(X_tr, tr, seed=args.seed)
            pol.calibrate(X_va, va, args.target)
            o = pol.route_matrix(X_te, te)
            lam = pol.decision.lam
            print(f"{task:12s} {name:8s} {o.quality.mean() / rq:8.3f} {o.cost.mean() / rc:10.3f} {lam:8.3g}")
        o = make_policy("oracle", m.models).route_matrix(X_te, te)
        print(f"{task:12s} {'oracle':8s} {o.quality.mean() / rq:8.3f} {o.cost.mean() / rc:10.3f}")


if __name__ == "__main__":
    main()
