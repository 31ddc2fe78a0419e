"""Does a router learn when refinement pays? LightGBM with and without ``<model>+refine`` actions.

The simulated fleet gets one more action per refinable local model (the same model with the
router's refinement loop on, outcomes from :func:`router_rl.traces.refinement.simulate_refinement`
under the documented ``RefinementModel`` assumption). The same LightGBM router is trained on the
train split with and without those actions, and scored on the test split over a lambda sweep:
true quality, cost and the share of refined decisions per complexity.

Usage::

    PYTHONPATH=. .venv/bin/python experiments/refinement_actions.py [--n-tasks 3000] [--seeds 0 1]
"""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from router_rl.features import FeatureEncoder
from router_rl.policies.decision import DecisionConfig
from router_rl.policies.lgbm import LGBMConfig, LGBMPolicy
from router_rl.router.refine import RefineConfig
from router_rl.traces.refinement import REFINE_SUFFIX, with_refinement_actions
from router_rl.traces.simulate import COMPLEXITIES, simulate_fleet


@dataclass
class Args:
    n_tasks: int = 3000
    seeds: list[int] = field(default_factory=lambda: [0, 1])
    lams: list[float] = field(default_factory=lambda: [0.0, 0.5, 1.0, 2.0])
    rounds: int = 60
    out: Path = Path("experiments/results/refinement_actions")


def run(args: Args) -> list[dict[str, object]]:
    rows: list[dict[str, object]] = []
    rc = RefineConfig()
    for seed in args.seeds:
        ts = simulate_fleet(args.n_tasks, seed=seed)
        tiers = {m: rc.tier_for(m) for m in ts.catalog.models if ts.catalog[m].is_local}
        policy = {m: (t[1].max_iterations, t[1].threshold) for m, t in tiers.items() if t is not None}
        for variant, t in (("without", ts), ("with refine actions", with_refinement_actions(ts, policy, seed=seed))):
            m = t.matrix()
            train, test = m.split("train"), m.split("test")
            enc = FeatureEncoder().fit(train.tasks)
            pol = LGBMPolicy(train.models, config=LGBMConfig(num_boost_round=args.rounds))
            pol.fit(enc.transform(train.tasks), train, seed=seed)
            X = enc.transform(test.tasks)
            cx = test.tasks["complexity"].to_numpy()
            idx = np.arange(test.n_tasks)
            for lam in args.lams:
                a = pol.decide(X, decision=DecisionConfig(lam=lam)).probs.argmax(axis=1)
                refined = np.char.endswith(np.array(test.models, dtype=str)[a], REFINE_SUFFIX)
                rows.append({"seed": seed, "variant": variant, "lam": lam,
                             "quality": float(test.quality[idx, a].mean()),
                             "cost_musd": float(test.cost[idx, a].mean() * 1000),
                             **{f"refined_{c.lower()}": float(refined[cx == c].mean()) for c in COMPLEXITIES}})
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n-tasks", type=int, default=Args.n_tasks)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    a = ap.parse_args()
    args = Args(n_tasks=a.n_tasks, seeds=a.seeds)
    rows = run(args)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps({"args": {**asdict(args), "out": str(args.out)},
                                                         "rows": rows}, indent=2))
    head = "| seed | router | λ | quality | cost (mUSD) | refined SIMPLE | MODERATE | COMPLEX | VERY_COMPLEX |"
    lines = [head, "|" + "---|" * 9]
    for r in rows:
        lines.append(f"| {r['seed']} | {r['variant']} | {r['lam']} | {r['quality']:.4f} | {r['cost_musd']:.3f} | "
                     f"{r['refined_simple']:.2f} | {r['refined_moderate']:.2f} | {r['refined_complex']:.2f} | "
                     f"{r['refined_very_complex']:.2f} |")
    args.out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
