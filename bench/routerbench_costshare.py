"""Cost share at 95% of the reference model's quality, per RouterBench task (issue #4 targets).

For every val-carve seed (RouterBench has a fixed train/test split; the seed carves 10% of train
into validation) and every task (ARC-Challenge, MBPP, Winogrande, split by ``category``):

1. fit the shared :class:`FeatureEncoder` and each learned router (``lgbm``, ``knn``, ``mlp``,
   ``mf``) on train, plus a **TF-IDF + logistic-regression reference router** (scikit-learn
   ``TfidfVectorizer`` on the prompt, one ``LogisticRegression`` per model, same utility rule) —
   the issue's anchor (29% / 7.7% / 51%), measured here with OUR metric code;
2. **frontier**: sweep λ on test (:func:`router_rl.eval.runner.evaluate_policies` with a dense λ
   grid) -> cost share where the non-decreasing hull reaches 95% of the reference quality, and AIQ;
3. **operating point**: ``policy.calibrate(X_val, val, "quality=0.95")`` picks λ on validation, applied
   unchanged to test -> quality share and cost share on test.

Numbers are averaged over seeds; 95% intervals are paired percentile bootstraps over *test tasks*
(the same resampled task set for every seed, so the interval is that of the seed average). A
frontier that never reaches the target counts as ``inf`` ("never").

    .venv/bin/python bench/routerbench_costshare.py [--policies lgbm,knn,mlp,mf] [--seeds 0,1,2,3,4]
        [--tasks mbpp,arc-challenge,winogrande] [--n-bootstrap 1000] [--no-tfidf] [--lgbm-opt key=value ...]
"""

from __future__ import annotations

import argparse
import json
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

TARGETS = {"mbpp": 0.20, "arc-challenge": 0.05, "winogrande": 0.35}
ANCHOR_TFIDF = {"mbpp": 0.29, "arc-challenge": 0.077, "winogrande": 0.51}
#: Dense λ grid of the test frontier (the eval runner's default grid has 12 points).
FRONTIER_LAMBDAS = tuple(float(x) for x in np.concatenate([[0.0], np.logspace(-3, 2, 81)]))


@dataclass
class Cell:
    """Per (task, policy): one entry per seed."""

    front_q: list[np.ndarray] = field(default_factory=list)  # (n_test, n_lam) served quality per λ
    front_c: list[np.ndarray] = field(default_factory=list)  # (n_test, n_lam) served cost per λ
    op_q: list[np.ndarray] = field(default_factory=list)  # (n_test,) served quality at the calibrated λ
    op_c: list[np.ndarray] = field(default_factory=list)
    aiq: list[float] = field(default_factory=list)
    cs_runner: list[float] = field(default_factory=list)  # cost share at target from the eval runner
    lam: list[float] = field(default_factory=list)
    fit_s: list[float] = field(default_factory=list)


def _tfidf_policy_class() -> type:
    from router_rl.policies.utility import UtilityPolicy

    class TfidfLRPolicy(UtilityPolicy):
        """Reference router: per-model logistic regression on TF-IDF prompt features (X = TF-IDF)."""

        kind = "tfidf_lr"

        def _fit_quality(self, X: np.ndarray, matrix: Any, rng: np.random.Generator) -> None:
            from sklearn.linear_model import LogisticRegression

            self.heads: list[Any] = []
            for j in range(self.n_models):
                y = (matrix.quality[:, j] >= 0.5).astype(int)
                if y.min() == y.max():
                    self.heads.append(float(y[0]))
                else:
                    self.heads.append(LogisticRegression(C=1.0, max_iter=2000).fit(X, y))

        def _predict_quality(self, X: np.ndarray) -> np.ndarray:
            cols = [np.full(X.shape[0], h) if isinstance(h, float) else h.predict_proba(X)[:, 1] for h in self.heads]
            return np.stack(cols, axis=1)

    return TfidfLRPolicy


def _cost_share_at(c: np.ndarray, q: np.ndarray, ref_q: float, ref_c: float, target: float) -> float:
    from router_rl.ope.metrics import cost_at_quality

    at = cost_at_quality(c, q, target * ref_q)
    return math.inf if at is None else at / ref_c


def run(args: argparse.Namespace) -> dict[str, Any]:
    from rich.progress import Progress

    from router_rl.core.paths import require_datasets_dir
    from router_rl.eval.runner import EvalConfig, evaluate_policies
    from router_rl.features import EncoderConfig, FeatureEncoder
    from router_rl.policies import make_policy
    from router_rl.traces.importers import IMPORTERS

    seeds = [int(s) for s in args.seeds.split(",")]
    names = [p for p in args.policies.split(",") if p]
    lgbm_opts = dict(_parse_opt(o) for o in args.lgbm_opt)
    tfidf_cls = None if args.no_tfidf else _tfidf_policy_class()
    all_names = names + ([] if tfidf_cls is None else ["tfidf_lr"])
    cells: dict[tuple[str, str], Cell] = {}
    refs: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    oracle: dict[str, float] = {}
    path = require_datasets_dir("routerbench-subset-via-routerdc")
    with Progress(transient=True) as prog:
        bar = prog.add_task("routerbench", total=len(seeds) * len(args.tasks) * len(all_names))
        for seed in seeds:
            full = IMPORTERS["routerbench"](path, drop_invalid=True, seed=seed).matrix()
            for task in args.tasks:
                m = full.take((full.tasks["category"] == task).to_numpy())
                if m.n_tasks == 0:
                    raise SystemExit(f"routerbench: no task with category {task!r}")
                tr, va, te = m.split("train"), m.split("val"), m.split("test")
                enc_cfg = EncoderConfig(categorical_columns=()).restricted_to(tr.tasks.columns)
                enc = FeatureEncoder(enc_cfg).fit(tr.tasks)
                ref = te.model_index(tr.best_single_model())
                refs[task] = (te.quality[:, ref], te.cost[:, ref])
                o = make_policy("oracle", m.models).route_matrix(np.zeros((te.n_tasks, 1)), te)
                oracle[task] = float(o.cost.mean() / te.cost[:, ref].mean())
                pols: dict[str, Any] = {}
                feats: dict[str, Any] = {}
                for name in all_names:
                    prog.update(bar, description=f"seed {seed} {task} {name}")
                    t0 = time.perf_counter()
                    if name == "tfidf_lr":
                        from sklearn.feature_extraction.text import TfidfVectorizer

                        vec = TfidfVectorizer(ngram_range=(1, 2), min_df=2, sublinear_tf=True, dtype=np.float32)
                        vec.fit(tr.tasks["prompt"].to_list())
                        pol = tfidf_cls(m.models)  # type: ignore[misc]
                        feats[name] = lambda mat, v=vec: v.transform(
                            mat.tasks["prompt"].to_list()
                        ).toarray()
                    else:
                        kw = {"config": lgbm_opts} if name == "lgbm" and lgbm_opts else {}
                        pol = make_policy(name, m.models, **kw)
                        feats[name] = lambda mat, e=enc: e.transform(mat.tasks)
                    pol.fit(feats[name](tr), tr, seed=seed)
                    pol.calibrate(feats[name](va), va, f"quality={args.target}")
                    cell = cells.setdefault((task, name), Cell())
                    cell.fit_s.append(time.perf_counter() - t0)
                    cell.lam.append(float(pol.decision.lam))
                    X_te = feats[name](te)
                    out = pol.route_matrix(X_te, te)
                    cell.op_q.append(out.quality)
                    cell.op_c.append(out.cost)
                    qs, cs = [], []
                    for lam in FRONTIER_LAMBDAS:
                        probs = pol.decide(X_te, decision=pol.decision.with_(lam=lam)).probs
                        a = probs.argmax(axis=1)
                        qs.append(te.quality[np.arange(te.n_tasks), a])
                        cs.append(te.cost[np.arange(te.n_tasks), a])
                    cell.front_q.append(np.stack(qs, axis=1))
                    cell.front_c.append(np.stack(cs, axis=1))
                    pols[name] = pol
                    prog.advance(bar)
                res = evaluate_policies(
                    tr, va, te, pols,
                    config=EvalConfig(lambdas=FRONTIER_LAMBDAS, n_bootstrap=10, seed=seed,
                                      quality_target=args.target),
                    features=lambda pol, mat, f=feats: f[pol.kind](mat),  # type: ignore[misc]
                )
                for name, ev in res.policies.items():
                    fm = ev.frontier_metrics
                    cells[(task, name)].aiq.append(float(fm.get("aiq") or math.nan))
                    v = fm.get("cost_share_at_quality")
                    cells[(task, name)].cs_runner.append(math.inf if v is None else float(v))
    return {"cells": cells, "refs": refs, "oracle": oracle, "names": all_names, "seeds": seeds}


def summarise(data: dict[str, Any], args: argparse.Namespace) -> list[dict[str, Any]]:
    """Seed-averaged metrics with paired task-bootstrap intervals."""
    rows = []
    rng = np.random.default_rng(12345)
    for task in args.tasks:
        ref_q, ref_c = data["refs"][task]
        n = ref_q.shape[0]
        W = rng.multinomial(n, np.full(n, 1.0 / n), size=args.n_bootstrap).astype(np.float64)  # (B, n)
        for name in data["names"]:
            cell: Cell = data["cells"][(task, name)]
            rq_b, rc_b = W @ ref_q / n, W @ ref_c / n

            fp = float(np.mean(front_per_seed(cell, ref_q, ref_c, args.target)))
            fb = _front_boot(cell, W, rq_b, rc_b, args.target)
            opq = np.mean([q.mean() for q in cell.op_q]) / ref_q.mean()
            opc = np.mean([c.mean() for c in cell.op_c]) / ref_c.mean()
            opq_b = np.mean([W @ q / n for q in cell.op_q], axis=0) / rq_b
            opc_b = np.mean([W @ c / n for c in cell.op_c], axis=0) / rc_b
            rows.append({
                "task": task, "policy": name,
                "frontier_cost_share": fp, "frontier_ci": _ci(fb),
                "frontier_per_seed": [float(x) for x in front_per_seed(cell, ref_q, ref_c, args.target)],
                "runner_frontier_cost_share_mean": float(np.mean(cell.cs_runner)),
                "op_quality_share": float(opq), "op_quality_ci": _ci(opq_b),
                "op_cost_share": float(opc), "op_cost_ci": _ci(opc_b),
                "op_meets_quality_share_seeds": float(np.mean([q.mean() / ref_q.mean() >= args.target
                                                               for q in cell.op_q])),
                "aiq": float(np.mean(cell.aiq)), "aiq_sd": float(np.std(cell.aiq)),
                "lam_mean": float(np.mean(cell.lam)), "fit_s": float(np.mean(cell.fit_s)),
                "target": TARGETS.get(task), "tfidf_anchor": ANCHOR_TFIDF.get(task),
                "oracle_cost_share": data["oracle"][task],
            })
    return rows


def _front_boot(cell: Cell, W: np.ndarray, rq_b: np.ndarray, rc_b: np.ndarray, target: float) -> np.ndarray:
    """Seed-mean frontier cost share for every bootstrap resample (rows of the weight matrix ``W``)."""
    n = W.shape[1]
    vals = []
    for fq, fc in zip(cell.front_q, cell.front_c, strict=True):
        Q, C = W @ fq / n, W @ fc / n
        vals.append([_cost_share_at(C[b], Q[b], rq_b[b], rc_b[b], target) for b in range(W.shape[0])])
    return np.mean(np.asarray(vals), axis=0)


def front_per_seed(cell: Cell, ref_q: np.ndarray, ref_c: np.ndarray, target: float) -> list[float]:
    return [_cost_share_at(fc.mean(0), fq.mean(0), ref_q.mean(), ref_c.mean(), target)
            for fq, fc in zip(cell.front_q, cell.front_c, strict=True)]


def _ci(b: np.ndarray) -> tuple[float, float]:
    b = np.where(np.isfinite(b), b, 1e9)
    lo, hi = np.percentile(b, [2.5, 97.5])
    return float(lo), float(hi)


def _fmt(x: float) -> str:
    return "never" if not math.isfinite(x) or x >= 1e8 else f"{x:.3f}"


def _parse_opt(text: str) -> tuple[str, Any]:
    k, sep, v = text.partition("=")
    if not sep:
        raise SystemExit(f"--lgbm-opt: expected KEY=VALUE, got {text!r}")
    try:
        return k, json.loads(v)
    except json.JSONDecodeError:
        return k, v


def main(argv: Sequence[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--policies", default="lgbm,knn,mlp,mf")
    ap.add_argument("--seeds", default="0,1,2,3,4", help="val-carve seeds (also the fit seeds)")
    ap.add_argument("--tasks", default="mbpp,arc-challenge,winogrande")
    ap.add_argument("--target", type=float, default=0.95, help="share of the reference quality")
    ap.add_argument("--n-bootstrap", type=int, default=1000)
    ap.add_argument("--no-tfidf", action="store_true", help="skip the TF-IDF + LR reference router")
    ap.add_argument("--lgbm-opt", action="append", default=[], help="LGBMConfig override KEY=VALUE (JSON value)")
    ap.add_argument("--json", default=None, help="also write the summary rows as JSON here")
    args = ap.parse_args(argv)
    args.tasks = [t for t in args.tasks.split(",") if t]

    from rich.console import Console
    from rich.table import Table

    t0 = time.perf_counter()
    rows = summarise(run(args), args)
    tab = Table(title=f"RouterBench test split: cost share at {args.target:.0%} of the reference quality "
                      f"(mean of seeds {args.seeds}; [95% task-bootstrap CI])")
    for col in ("task", "policy", "frontier cost share", "op quality share", "op cost share",
                "op>=target seeds", "AIQ", "target", "tfidf anchor", "oracle"):
        tab.add_column(col)
    for r in rows:
        tab.add_row(
            r["task"], r["policy"],
            f"{_fmt(r['frontier_cost_share'])} [{_fmt(r['frontier_ci'][0])}, {_fmt(r['frontier_ci'][1])}]",
            f"{r['op_quality_share']:.3f} [{r['op_quality_ci'][0]:.3f}, {r['op_quality_ci'][1]:.3f}]",
            f"{r['op_cost_share']:.3f} [{r['op_cost_ci'][0]:.3f}, {r['op_cost_ci'][1]:.3f}]",
            f"{r['op_meets_quality_share_seeds']:.0%}",
            f"{r['aiq']:.4f}",
            _fmt(r["target"]) if r["target"] is not None else "-",
            _fmt(r["tfidf_anchor"]) if r["tfidf_anchor"] is not None else "-",
            f"{r['oracle_cost_share']:.3f}",
        )
    console = Console(width=200)
    console.print(tab)
    for r in rows:
        if r["policy"] == "lgbm":
            seeds_txt = ", ".join(_fmt(x) for x in r["frontier_per_seed"])
            console.print(f"{r['task']}: lgbm frontier per seed [{seeds_txt}]; eval-runner frontier mean "
                          f"{_fmt(r['runner_frontier_cost_share_mean'])}; fit {r['fit_s']:.1f}s")
    for task in args.tasks:
        aiq = {r["policy"]: r["aiq"] for r in rows if r["task"] == task}
        if "lgbm" in aiq:
            others = {k: v for k, v in aiq.items() if k not in ("lgbm", "tfidf_lr")}
            beats = all(aiq["lgbm"] > v for v in others.values())
            verdict = "beats all" if beats else "DOES NOT beat all"
            shown = {k: round(v, 4) for k, v in others.items()}
            console.print(f"{task}: AIQ lgbm {aiq['lgbm']:.4f} vs {shown} -> {verdict}")
    console.print(f"total {time.perf_counter() - t0:.0f}s")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=2, default=float)


if __name__ == "__main__":
    main()
