"""TF-IDF + logistic-regression reference router on the RouterBench tasks (cleanrl-style, one file).

Re-measures the issue's anchors ("TF-IDF logistic regression reaches 29% / 7.7% / 51% cost share at
95% of the best single model on MBPP / ARC-Challenge / Winogrande") with this project's metric code
(:mod:`router_rl.ope.metrics`), so they are comparable with ``experiments/benchmark.py``.

Per task and seed: fit a TF-IDF vectoriser on the train prompts and one logistic regression per model
(success = quality >= 0.5) -> predicted success ``q̂`` per (task, model); route with
``argmax_j q̂_j - λ · c̄_j / c̄_ref`` (``c̄`` = train mean cost per model, ``ref`` = best single model on
train), sweep λ; on test report the frontier's cost share at 95% of the reference quality, AIQ, APGR
and the λ calibrated on val for 95% applied to test. Mean and 95% t-interval over seeds (the seed
carves val out of the fixed RouterBench train split and seeds the solver).

Usage::

    .venv/bin/python experiments/tfidf_logreg.py            # ~1-2 min
    .venv/bin/python experiments/tfidf_logreg.py --quick    # 1 task, 2 seeds

Writes ``<out-dir>/tfidf_logreg.json`` and ``.md`` (default ``experiments/results/``).
"""

from __future__ import annotations

import argparse
import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

TASKS = {"mbpp": "mbpp", "arc_challenge": "arc-challenge", "winogrande": "winogrande"}
ANCHORS = {"mbpp": (0.20, 0.29), "arc_challenge": (0.05, 0.077), "winogrande": (0.35, 0.51)}
LAMBDAS = (0.0, 0.003, 0.01, 0.02, 0.03, 0.05, 0.1, 0.2, 0.3, 0.5, 1.0, 2.0, 5.0, 10.0, 100.0)


@dataclass
class Args:
    """Settings (every field is a ``--flag``)."""

    tasks: list[str] = field(default_factory=lambda: list(TASKS))
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2, 3, 4])
    C: float = 1.0
    """inverse L2 strength of the logistic regressions"""
    max_features: int = 20000
    out_dir: str = "experiments/results"
    quick: bool = False


def parse_args(argv: list[str] | None = None) -> Args:
    """argparse from the :class:`Args` fields."""
    p = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    p.add_argument("--tasks", nargs="+", default=list(TASKS), choices=list(TASKS))
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2, 3, 4])
    p.add_argument("--C", type=float, default=1.0)
    p.add_argument("--max-features", type=int, default=20000)
    p.add_argument("--out-dir", default="experiments/results")
    p.add_argument("--quick", action="store_true")
    a = Args(**vars(p.parse_args(argv)))
    if a.quick:
        a.tasks, a.seeds = a.tasks[:1], a.seeds[:2]
        if a.out_dir == "experiments/results":  # never overwrite the committed results with a smoke run
            a.out_dir = "runs/tfidf_logreg"
    return a


def predict_success(train_text: list[str], y: np.ndarray, texts: list[list[str]], *, C: float,
                    max_features: int, seed: int) -> list[np.ndarray]:
    """``q̂`` ``(n, n_models)`` for each text list in ``texts`` from per-model logistic regressions."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression

    vec = TfidfVectorizer(ngram_range=(1, 2), min_df=2, max_features=max_features, sublinear_tf=True)
    X = vec.fit_transform(train_text)
    Xs = [vec.transform(t) for t in texts]
    outs = [np.zeros((x.shape[0], y.shape[1])) for x in Xs]
    for j in range(y.shape[1]):
        yj = y[:, j]
        if yj.min() == yj.max():  # a model that always (or never) succeeds on train
            for o in outs:
                o[:, j] = float(yj[0])
            continue
        clf = LogisticRegression(C=C, max_iter=2000, random_state=seed).fit(X, yj)
        for o, x in zip(outs, Xs, strict=True):
            o[:, j] = clf.predict_proba(x)[:, 1]
    return outs


def sweep(q_hat: np.ndarray, quality: np.ndarray, cost: np.ndarray, exp_cost: np.ndarray) -> tuple[list, list]:
    """Realised (mean cost, mean quality) of the utility rule for every λ in :data:`LAMBDAS`."""
    rows = np.arange(quality.shape[0])
    cs, qs = [], []
    for lam in LAMBDAS:
        a = (q_hat - lam * exp_cost[None, :]).argmax(axis=1)
        cs.append(float(cost[rows, a].mean()))
        qs.append(float(quality[rows, a].mean()))
    return cs, qs


def run_one(task: str, seed: int, args: Args) -> dict[str, Any]:
    """One (task, seed): frontier metrics on test, calibrated operating point from val."""
    from router_rl.core.paths import require_datasets_dir
    from router_rl.ope.metrics import calibrate_operating_point, frontier_summary
    from router_rl.traces.importers import DATASET_FOLDERS, import_traces

    ts = import_traces("routerbench", require_datasets_dir(DATASET_FOLDERS["routerbench"]), drop_invalid=True,
                       seed=seed)
    m = ts.matrix()
    m = m.take((m.tasks["category"] == TASKS[task]).to_numpy())
    train, val, test = (m.split(s) for s in ("train", "val", "test"))
    ref = train.model_index(train.best_single_model())
    weak = int(np.argmin(train.cost.mean(axis=0)))
    exp_cost = train.cost.mean(axis=0) / train.cost[:, ref].mean()
    q_val, q_test = predict_success(
        train.tasks["prompt"].to_list(), (train.quality >= 0.5).astype(int),
        [val.tasks["prompt"].to_list(), test.tasks["prompt"].to_list()],
        C=args.C, max_features=args.max_features, seed=seed,
    )
    tc, tq = sweep(q_test, test.quality, test.cost, exp_cost)
    vc, vq = sweep(q_val, val.quality, val.cost, exp_cost)
    ref_q, ref_c = float(test.quality[:, ref].mean()), float(test.cost[:, ref].mean())
    cost_max = max([*tc, *test.cost.mean(axis=0).tolist()])
    fm = frontier_summary(tc, tq, reference_quality=ref_q, reference_cost=ref_c,
                          weak_quality=float(test.quality[:, weak].mean()), cost_max=cost_max)
    op = calibrate_operating_point(vc, vq, 0.95 * float(val.quality[:, ref].mean()))
    return {
        "task": task, "seed": seed, "reference_model": train.models[ref],
        "n_tasks": {"train": train.n_tasks, "val": val.n_tasks, "test": test.n_tasks},
        "cost_share_at_95": fm["cost_share_at_quality"], "aiq": fm["aiq"], "apgr": fm["apgr"],
        "op_lam": LAMBDAS[op.index], "op_reached_on_val": op.reached,
        "op_test_cost_share": tc[op.index] / ref_c, "op_test_quality_ratio": tq[op.index] / ref_q,
        "lam0_quality_ratio": tq[0] / ref_q, "lam0_cost_share": tc[0] / ref_c,
    }


def t_interval(values: list[float]) -> dict[str, float | int]:
    """Mean and 95% Student-t interval."""
    from scipy import stats

    x = np.asarray(values, dtype=np.float64)
    mean = float(x.mean())
    half = 0.0 if x.size < 2 else float(stats.t.ppf(0.975, x.size - 1) * x.std(ddof=1) / math.sqrt(x.size))
    return {"mean": mean, "lo": mean - half, "hi": mean + half, "n": int(x.size)}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run every (task, seed), aggregate, write JSON + Markdown."""
    from rich.progress import Progress

    args = parse_args(argv)
    t0 = time.perf_counter()
    runs = []
    with Progress() as prog:
        bar = prog.add_task("tfidf-logreg", total=len(args.tasks) * len(args.seeds))
        for task in args.tasks:
            for seed in args.seeds:
                runs.append(run_one(task, seed, args))
                prog.advance(bar)
    keys = ("cost_share_at_95", "op_test_cost_share", "op_test_quality_ratio", "aiq", "apgr",
            "lam0_quality_ratio", "lam0_cost_share")
    agg = {}
    for task in args.tasks:
        mine = [r for r in runs if r["task"] == task]
        agg[task] = {k: (t_interval(v) if (v := [r[k] for r in mine if r[k] is not None]) else None) for k in keys}
    wall = time.perf_counter() - t0
    out = {"schema_version": 1, "args": asdict(args), "lambdas": list(LAMBDAS), "results": agg, "runs": runs,
           "wall_s": wall}
    d = Path(args.out_dir)
    d.mkdir(parents=True, exist_ok=True)
    (d / "tfidf_logreg.json").write_text(json.dumps(out, indent=1) + "\n")

    def f(c: dict[str, Any] | None) -> str:
        return "n/a" if c is None else f"{100 * c['mean']:.1f} ± {100 * (c['hi'] - c['lo']) / 2:.1f}"

    lines = ["# TF-IDF logistic-regression reference router (RouterBench tasks)", "",
             f"Seeds {args.seeds}; mean ± 95% t-interval half-width; wall time {wall:.0f} s.", "",
             "| task | target | issue's TF-IDF figure | cost share @95% frontier "
             "| @95% calibrated (test q. ratio) | AIQ |",
             "|---|---|---|---|---|---|"]
    for task, a in agg.items():
        tgt, ref = ANCHORS[task]
        aiq = "n/a" if a["aiq"] is None else f"{a['aiq']['mean']:.3f}"
        lines.append(f"| {task} | <= {100 * tgt:.0f}% | {100 * ref:.1f}% | {f(a['cost_share_at_95'])} | "
                     f"{f(a['op_test_cost_share'])} ({f(a['op_test_quality_ratio'])}) | {aiq} |")
    (d / "tfidf_logreg.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return out


if __name__ == "__main__":
    main()
