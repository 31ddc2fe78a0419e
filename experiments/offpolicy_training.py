"""Learning a router from its own logs (partial feedback) vs uncorrected and full-information learners.

A simulated fleet (:func:`router_rl.traces.simulate_fleet`) is the known truth. A LightGBM logging
policy is fitted on a small seed set of the train split and logs ``N`` decisions on train-split
tasks with epsilon-greedy exploration (:func:`router_rl.logs.simulate.simulate_log`; every
decision labelled, no fallbacks). From each log three LightGBM routers are trained with the same
settings and the same decision rule (λ fixed):

* ``corrected``: :func:`router_rl.policies.offpolicy.fit_from_log`, correction ``iw`` (default);
* ``uncorrected``: the same with correction ``none`` (the logged rows, no reweighting);
* ``full-info``: :meth:`LGBMPolicy.fit` on the full outcome matrix of the same ``N`` logged tasks
  (what the router would learn if every model had answered every task);

and compared with the logging policy itself on the **test split of the full matrix**: true mean
quality, cost per task and local share of the served answers (argmax decisions).

    .venv/bin/python experiments/offpolicy_training.py                 # N 2k/10k/50k x eps 5/10/20%, 1 seed
    .venv/bin/python experiments/offpolicy_training.py --sizes 2000 10000 --seeds 0 1 2 \
        --name offpolicy_training_seeds                                 # 2k/10k over 3 seeds (mean ± sd)
    .venv/bin/python experiments/offpolicy_training.py --sizes 2000 --epsilons 0.1 --out-dir runs/offpolicy

Writes ``<out-dir>/<name>.{json,md}`` (default ``experiments/results/offpolicy_training``).
"""

from __future__ import annotations

import argparse
import itertools
import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np


@dataclass
class Args:
    """Settings (every field is a ``--flag``)."""

    sizes: list[int] = field(default_factory=lambda: [2000, 10000, 50000])
    """logged decisions N"""
    epsilons: list[float] = field(default_factory=lambda: [0.05, 0.10, 0.20])
    """exploration share of the logging policy"""
    seeds: list[int] = field(default_factory=lambda: [0])
    """replicates (fleet, logging policy, log, fits)"""
    fleet_tasks: int = 20000
    """tasks of the simulated fleet (70% train pool, 10% val, 20% test)"""
    seed_tasks: int = 500
    """train tasks the logging policy is fitted on"""
    lam: float = 0.5
    """λ of every router's decision rule (cost weight, in units of the reference model's cost)"""
    clip: float = 10.0
    """importance-weight clip of the corrected learner"""
    corrections: list[str] = field(default_factory=lambda: ["iw", "none"])
    """off-policy corrections to train (``iw``, ``dr``, ``none``)"""
    reward_models: list[str] = field(default_factory=lambda: ["pooled"])
    """quality reward models (``pooled``, ``per_model``)"""
    hash_buckets: int = 64
    """word and char n-gram hash buckets of the encoder (smaller than the default 256: run time)"""
    rounds: int = 100
    """boosting rounds cap of every LightGBM router (early stopping picks fewer)"""
    out_dir: str = "experiments/results"
    name: str = "offpolicy_training"
    """basename of the JSON / Markdown outputs"""
    merge: list[str] = field(default_factory=list)
    """JSONs of earlier runs (e.g. one per seed) to write as one table instead of running"""


def parse_args(argv: list[str] | None = None) -> Args:
    """argparse from the :class:`Args` fields."""
    d = Args()
    p = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    p.add_argument("--sizes", nargs="+", type=int, default=d.sizes)
    p.add_argument("--epsilons", nargs="+", type=float, default=d.epsilons)
    p.add_argument("--seeds", nargs="+", type=int, default=d.seeds)
    p.add_argument("--fleet-tasks", type=int, default=d.fleet_tasks)
    p.add_argument("--seed-tasks", type=int, default=d.seed_tasks)
    p.add_argument("--lam", type=float, default=d.lam)
    p.add_argument("--clip", type=float, default=d.clip)
    p.add_argument("--corrections", nargs="+", default=d.corrections)
    p.add_argument("--reward-models", nargs="+", default=d.reward_models)
    p.add_argument("--hash-buckets", type=int, default=d.hash_buckets)
    p.add_argument("--rounds", type=int, default=d.rounds)
    p.add_argument("--out-dir", default=d.out_dir)
    p.add_argument("--name", default=d.name)
    p.add_argument("--merge", nargs="+", default=[], help="JSONs of earlier runs to merge into one table")
    return Args(**vars(p.parse_args(argv)))


#: λ grid of the frontier sweep (quality at the logging policy's cost).
LAMBDAS = np.concatenate([[0.0], np.logspace(-2, 1.5, 50)])


def quality_at_budget(points: list[tuple[float, float]], budget: float) -> float:
    """Best quality of a λ sweep's ``(cost, quality)`` points at cost ``budget``: the best point within
    the budget, linearly interpolated towards the cheapest better point above it (mixing two
    decision rules reaches every point of that segment). NaN when no point is within the budget."""
    below = [p for p in points if p[0] <= budget]
    if not below:
        return float("nan")
    c1, q1 = max(below, key=lambda p: p[1])
    above = [p for p in points if p[0] > budget and p[1] > q1]
    if not above:
        return q1
    c2, q2 = min(above, key=lambda p: p[0])
    return q1 + (q2 - q1) * (budget - c1) / (c2 - c1)


def _scores(policy: Any, X: np.ndarray, test: Any, budget: float | None = None) -> dict[str, float]:
    """True test quality / cost / local share at the fixed λ, and the best quality within ``budget``
    over a λ sweep (an evaluation on the truth, not a calibration the router could do)."""
    r = policy.route_matrix(X, test)
    out = {
        "quality": float(r.quality.mean()),
        "cost_usd": float(r.cost.mean()),
        "local_share": float(test.is_local()[r.actions].mean()),
    }
    if budget is not None:
        rows = np.arange(test.n_tasks)
        pts = []
        with policy.reuse_predictions():
            for lam in np.unique(np.append(LAMBDAS, policy.decision.lam)):
                a = policy.decide(X, decision=policy.decision.replace(lam=float(lam))).probs.argmax(axis=1)
                pts.append((float(test.cost[rows, a].mean()), float(test.quality[rows, a].mean())))
        out["quality_at_budget"] = quality_at_budget(pts, budget)
    return out


def _full_info_matrix(log: Any, rows: np.ndarray) -> Any:
    """The full outcome matrix of logged rows (the simulation's truth)."""
    import polars as pl

    from router_rl.traces.matrix import OutcomeMatrix

    t = log.truth.take(rows)
    n, k = t.quality.shape
    return OutcomeMatrix(
        tasks=pl.DataFrame({"task_id": [str(r) for r in t.request_ids.tolist()]}),
        models=t.models, quality=t.quality, cost=t.cost_usd, latency=t.latency_s,
        error=np.zeros((n, k), dtype=bool), input_tokens=np.full((n, k), np.nan),
        output_tokens=np.full((n, k), np.nan), catalog=log.catalog,
    )


def run_seed(a: Args, seed: int, rows: list[dict[str, Any]], on_row: Any = None) -> list[dict[str, Any]]:
    """Every (epsilon, N, learner) row of one seed, appended to ``rows`` (``on_row()`` after each)."""
    from router_rl.features import EncoderConfig, FeatureEncoder
    from router_rl.logs.simulate import simulate_log
    from router_rl.policies.exploration import ExplorationConfig
    from router_rl.policies.lgbm import LGBMConfig, LGBMPolicy
    from router_rl.policies.offpolicy import OffPolicyConfig, fit_from_log
    from router_rl.traces import simulate_fleet

    fleet = simulate_fleet(a.fleet_tasks, seed=seed)
    m = fleet.matrix()
    train, test = m.split("train"), m.split("test")
    seed_set = train.take(np.arange(min(a.seed_tasks, train.n_tasks)))
    enc_cfg = EncoderConfig(n_word_hash=a.hash_buckets, n_char_hash=a.hash_buckets)
    enc = FeatureEncoder(enc_cfg.restricted_to(seed_set.tasks.columns)).fit(seed_set.tasks)
    X_test = enc.transform(test.tasks)
    lgbm_cfg = LGBMConfig(cv_folds=2, num_boost_round=a.rounds)

    def learner() -> LGBMPolicy:
        return LGBMPolicy(m.models, config=lgbm_cfg, decision={"lam": a.lam})

    logging_policy = learner().fit(enc.transform(seed_set.tasks), seed_set, seed=seed)
    logging_policy.attach_encoder(enc)
    base = {"seed": seed, "test_tasks": test.n_tasks}
    logged = _scores(logging_policy, X_test, test)
    budget = logged["cost_usd"]
    rows.append(base | {"epsilon": None, "n": a.seed_tasks, "learner": "logging policy (greedy)"}
                | _scores(logging_policy, X_test, test, budget))
    n_max = max(a.sizes)
    full_done: set[int] = set()
    for eps in a.epsilons:
        log = simulate_log(fleet, logging_policy, n=n_max, exploration=ExplorationConfig(epsilon=eps),
                           split="train", seed=seed)
        data = log.logged()
        for n in sorted(a.sizes):
            part = data.take(np.arange(n))
            for corr, rm in itertools.product(a.corrections, a.reward_models):
                t0 = time.perf_counter()
                cfg = OffPolicyConfig(correction=corr, clip=a.clip, reward_model=rm)
                pol = fit_from_log(learner(), part, cfg, seed=seed, encoder=enc, catalog=log.catalog)
                name = f"from log ({corr})" if len(a.reward_models) == 1 else f"from log ({corr}, {rm})"
                rows.append(base | {"epsilon": eps, "n": n, "learner": name,
                                    "fit_s": time.perf_counter() - t0} | _scores(pol, X_test, test, budget))
                print(json.dumps(rows[-1]), flush=True)
                if on_row is not None:
                    on_row()
            if n not in full_done:  # the same N tasks (the log's draws), every model's outcome known
                t0 = time.perf_counter()
                full = learner().fit(part.X, _full_info_matrix(log, np.arange(n)), seed=seed)
                rows.append(base | {"epsilon": eps, "n": n, "learner": "full information",
                                    "fit_s": time.perf_counter() - t0} | _scores(full, X_test, test, budget))
                print(json.dumps(rows[-1]), flush=True)
                full_done.add(n)
                if on_row is not None:
                    on_row()
    return rows


def _markdown(rows: list[dict[str, Any]], a: Args) -> str:
    keys = sorted({(r["epsilon"], r["n"], r["learner"]) for r in rows},
                  key=lambda k: (k[0] is not None, k[0] or 0, k[1], k[2]))
    out = ["| exploration | N | learner | seeds | quality | cost (mUSD/task) | local share "
           "| quality at the logging cost |",
           "|---|---|---|---|---|---|---|---|"]

    def ms(sel: list[dict[str, Any]], f: str, scale: float = 1.0, digits: int = 4) -> str:
        v = scale * np.array([r[f] for r in sel], dtype=float)
        return f"{v.mean():.{digits}f}" if v.size == 1 else f"{v.mean():.{digits}f} ± {v.std(ddof=1):.{digits}f}"

    for eps, n, lrn in keys:
        sel = [r for r in rows if (r["epsilon"], r["n"], r["learner"]) == (eps, n, lrn)]
        e = "-" if eps is None else f"{eps:.0%}"
        out.append(f"| {e} | {n:,} | {lrn} | {len(sel)} | {ms(sel, 'quality')} | {ms(sel, 'cost_usd', 1000, 3)} "
                   f"| {ms(sel, 'local_share', 1, 3)} | {ms(sel, 'quality_at_budget')} |")
    out.append("")
    out.append("Cells: mean ± sample sd over the seeds (one seed: the value).")
    done = sorted({r["seed"] for r in rows})
    out.append(f"Seeds asked: {a.seeds}, with rows: {done}; λ = {a.lam}; clip = {a.clip}; "
               f"test tasks: {rows[0]['test_tasks']}.")
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    """Run every seed, write JSON and Markdown (after every fitted row: a stopped run keeps them)."""
    a = parse_args(argv)
    t0 = time.perf_counter()
    rows: list[dict[str, Any]] = []
    out = Path(a.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if a.merge:
        runs = [json.loads(Path(f).read_text()) for f in a.merge]
        rows = [r for run in runs for r in run["rows"]]
        a.seeds = sorted({r["seed"] for r in rows})
        a.sizes = sorted({int(r["n"]) for r in rows if r["epsilon"] is not None})
        merged = {"args": asdict(a), "merged": a.merge, "wall_s": [run["wall_s"] for run in runs],
                  "complete": [run.get("complete", True) for run in runs], "rows": rows}
        (out / f"{a.name}.json").write_text(json.dumps(merged, indent=2))
        md = _markdown(rows, a)
        (out / f"{a.name}.md").write_text(md)
        print(md)
        return rows

    def write(complete: bool) -> str:
        wall = time.perf_counter() - t0
        (out / f"{a.name}.json").write_text(
            json.dumps({"args": asdict(a), "wall_s": wall, "complete": complete, "rows": rows}, indent=2)
        )
        md = _markdown(rows, a)
        (out / f"{a.name}.md").write_text(md)
        return md

    for seed in a.seeds:
        run_seed(a, seed, rows, lambda: write(False))
    md = write(True)
    print(md)
    print(f"wall {time.perf_counter() - t0:.0f} s")
    return rows


if __name__ == "__main__":
    main()
