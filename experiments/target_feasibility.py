"""What issue #4's RouterBench cost-share targets demand of a router (cleanrl-style, one file).

The targets are cost shares at 95% of the reference (GPT-4) quality on the test split: MBPP <= 20%,
ARC-Challenge <= 5%, Winogrande <= 35%. This script measures how good a router's predictions must
be to reach them, and how good the signals available here are:

1. **Noisy oracle.** Scores ``s_ij = y_ij + σ·ε_ij`` (``y`` = the true test outcome, ``ε`` standard
   normal, seeded), routed with ``argmax_j s_ij − λ·c̄_j/c̄_ref`` over a λ sweep (its hull, with
   the single-model points: mixing "all to GPT-4" with "all to Yi-34B" is always possible). ``σ`` sets the
   *within-model* ranking quality: the mean over models of the AUC of ``s_·j`` for ``y_·j``. The
   AUC at which the frontier first reaches the target is what any router needs (with this
   decision rule and equal noise on every model).
2. **The LightGBM router's own predictions** (``LGBMPolicy``, the benchmark's settings, trained on
   the whole RouterBench train stream as ``experiments/benchmark.py`` does): the same sweep on its
   calibrated ``q̂``, and its within-model AUC on test.
3. **Cheap models' answers** (ARC, Winogrande: multiple choice). A cascade calls 1-3 cheap models,
   a multinomial logistic regression on their answer letters (fitted on the train file) votes, and
   the least confident fraction of requests escalates to GPT-4, paying for every call. The subset
   and fraction are picked on the train file (cheapest reaching 95% there), then applied to test.

Usage::

    .venv/bin/python experiments/target_feasibility.py            # ~2 min
    .venv/bin/python experiments/target_feasibility.py --quick    # 1 task, 1 seed

Writes ``<out-dir>/target_feasibility.json`` and ``.md`` (default ``experiments/results/``).
"""

from __future__ import annotations

import argparse
import ast
import itertools
import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

TASKS = {"mbpp": "mbpp", "arc_challenge": "arc-challenge", "winogrande": "winogrande"}
CSV_STEM = {"mbpp": "mbpp", "arc_challenge": "arc_challenge", "winogrande": "winograde"}
TARGETS = {"mbpp": 0.20, "arc_challenge": 0.05, "winogrande": 0.35}
MULTIPLE_CHOICE = ("arc_challenge", "winogrande")
LAMBDAS = np.concatenate([[0.0], np.logspace(-4, 3, 57)])
LGBM_SETTINGS = {"num_boost_round": 150, "early_stopping_rounds": 20, "cv_folds": 2}  # benchmark's "bench" preset
SIGMAS = (0.0, 0.35, 0.5, 0.7, 0.85, 1.0, 1.2, 1.4, 1.7, 2.0, 2.5, 3.0, 5.0, 10.0)  # noisy-oracle noise levels
CHEAP_MAX_SHARE = 0.15  # cheap = mean cost below this share of the reference's


@dataclass
class Args:
    """Settings (every field is a ``--flag``)."""

    tasks: list[str] = field(default_factory=lambda: list(TASKS))
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2, 3, 4])
    sigmas: list[float] = field(default_factory=lambda: list(SIGMAS))
    out_dir: str = "experiments/results"
    quick: bool = False


def parse_args(argv: list[str] | None = None) -> Args:
    """argparse from the :class:`Args` fields."""
    p = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    p.add_argument("--tasks", nargs="+", default=list(TASKS), choices=list(TASKS))
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2, 3, 4])
    p.add_argument("--sigmas", nargs="+", type=float, default=Args().sigmas)
    p.add_argument("--out-dir", default="experiments/results")
    p.add_argument("--quick", action="store_true")
    a = Args(**vars(p.parse_args(argv)))
    if a.quick:
        a.tasks, a.seeds = a.tasks[-1:], a.seeds[:1]
        if a.out_dir == "experiments/results":  # never overwrite the committed results with a smoke run
            a.out_dir = "runs/target_feasibility"
    if sorted(a.sigmas) != a.sigmas or a.sigmas[0] < 0:
        raise SystemExit("--sigmas: expected increasing values >= 0")
    return a


# --- frontier ------------------------------------------------------------------------------------
def cost_share_at_95(scores: np.ndarray, quality: np.ndarray, cost: np.ndarray, exp_cost: np.ndarray,
                     ref: int) -> float | None:
    """Smallest cost share (of the reference's test cost) at 95% of its quality on the hull of the
    λ sweep and the single-model points (a router can always send everything to one model)."""
    from router_rl.ope.metrics import cost_at_quality

    rows = np.arange(quality.shape[0])
    cs, qs = cost.mean(axis=0).tolist(), quality.mean(axis=0).tolist()
    for lam in LAMBDAS:
        a = (scores - lam * exp_cost[None, :]).argmax(axis=1)
        cs.append(float(cost[rows, a].mean()))
        qs.append(float(quality[rows, a].mean()))
    c = cost_at_quality(cs, qs, 0.95 * float(quality[:, ref].mean()))
    return None if c is None else c / float(cost[:, ref].mean())


def within_model_auc(scores: np.ndarray, y: np.ndarray) -> float:
    """Mean over models (with both outcomes on test) of the AUC of their scores."""
    from sklearn.metrics import roc_auc_score

    aucs = [roc_auc_score(y[:, j], scores[:, j]) for j in range(y.shape[1]) if 0 < y[:, j].sum() < y.shape[0]]
    return float(np.mean(aucs))


def auc_needed(curve: list[tuple[float, float | None]], target: float) -> float | None:
    """Lowest AUC on the noisy-oracle curve ``[(auc, cost share)]`` whose cost share meets ``target``
    (linear interpolation between the neighbouring noise levels)."""
    pts = sorted((a, c) for a, c in curve)
    for (a0, c0), (a1, c1) in itertools.pairwise(pts):
        if c1 is not None and c1 <= target and (c0 is None or c0 > target):
            if c0 is None:
                return a1
            return a0 + (a1 - a0) * (c0 - target) / (c0 - c1)
    if pts and pts[0][1] is not None and pts[0][1] <= target:
        return pts[0][0]
    return None


# --- one (task, seed) ----------------------------------------------------------------------------
def run_one(task: str, seed: int, args: Args, cache: dict[int, Any]) -> dict[str, Any]:
    """Noisy-oracle curve and the LightGBM router's predictions on one task's test split."""
    from router_rl.core.paths import require_datasets_dir
    from router_rl.features.encoder import FeatureEncoder
    from router_rl.policies.lgbm import LGBMPolicy
    from router_rl.traces.importers import DATASET_FOLDERS, import_traces

    if seed not in cache:  # one router for the whole RouterBench train stream, as the benchmark
        ts = import_traces("routerbench", require_datasets_dir(DATASET_FOLDERS["routerbench"]), drop_invalid=True,
                           seed=seed)
        m = ts.matrix()
        train = m.split("train")
        enc = FeatureEncoder(FeatureEncoder().config.restricted_to(train.tasks.columns)).fit(train.tasks)
        pol = LGBMPolicy(train.models, config=LGBM_SETTINGS).fit(np.asarray(enc.transform(train.tasks)), train,
                                                                  seed=seed)
        cache[seed] = (m, train, enc, pol)
    m, train, enc, pol = cache[seed]
    test = m.take((m.tasks["category"] == TASKS[task]).to_numpy()).split("test")
    task_train = train.take((train.tasks["category"] == TASKS[task]).to_numpy())
    ref = task_train.model_index(task_train.best_single_model())
    exp_cost = task_train.cost.mean(axis=0) / task_train.cost[:, ref].mean()
    y = (test.quality >= 0.5).astype(float)
    q_hat = pol.predict_quality(np.asarray(enc.transform(test.tasks)))
    rng = np.random.default_rng([seed, 7])
    eps = rng.standard_normal(y.shape)
    curve = []
    for sigma in args.sigmas:
        s = y + sigma * eps
        curve.append((within_model_auc(s, y) if sigma > 0 else 1.0,
                      cost_share_at_95(s, test.quality, test.cost, exp_cost, ref)))
    lgbm_auc = within_model_auc(q_hat, y)
    return {
        "task": task, "seed": seed, "reference_model": test.models[ref], "n_test": test.n_tasks,
        "noisy_oracle": [{"sigma": s, "auc": a, "cost_share": c} for s, (a, c) in zip(args.sigmas, curve, strict=True)],
        "auc_needed": auc_needed(curve, TARGETS[task]),
        "lgbm_auc": lgbm_auc,
        "lgbm_cost_share": cost_share_at_95(q_hat, test.quality, test.cost, exp_cost, ref),
        "oracle_cost_share": curve[0][1],
    }


# --- cheap models' answers -----------------------------------------------------------------------
def _answers(task: str, part: str) -> tuple[list[str], np.ndarray, np.ndarray, np.ndarray]:
    """Models, 0/1 scores, costs and parsed answer letters of one RouterBench CSV (complete rows only)."""
    import polars as pl

    from router_rl.core.paths import require_datasets_dir
    from router_rl.traces.importers import DATASET_FOLDERS
    from router_rl.traces.importers.routerbench import MODELS

    root = require_datasets_dir(DATASET_FOLDERS["routerbench"])
    path = next(p for p in (root / "routerbench_zs", root) if (p / f"{CSV_STEM[task]}_{part}.csv").is_file())
    df = pl.read_csv(path / f"{CSV_STEM[task]}_{part}.csv", infer_schema_length=0)
    q = np.stack([df[mdl].cast(pl.Float64, strict=False).to_numpy() for mdl in MODELS], axis=1)
    c = np.stack([df[f"{mdl}|total_cost"].cast(pl.Float64, strict=False).to_numpy() for mdl in MODELS], axis=1)
    letters = np.full(q.shape, "?", dtype=object)
    for j, mdl in enumerate(MODELS):
        for i, raw in enumerate(df[f"{mdl}|model_response"].to_list()):
            try:
                text = " ".join(ast.literal_eval(raw)) if raw else ""
            except (ValueError, SyntaxError):
                text = raw or ""
            first = text.strip()[:1].upper()
            letters[i, j] = first if first in "ABCDE" and first else "?"
    ok = np.isfinite(q).all(axis=1) & np.isfinite(c).all(axis=1)
    return list(MODELS), q[ok], c[ok], letters[ok]


def _truth(q: np.ndarray, letters: np.ndarray) -> np.ndarray:
    """The correct letter where some model answered correctly, else ``"?"`` (every answer wrong)."""
    out = np.full(q.shape[0], "?", dtype=object)
    for i in range(q.shape[0]):
        right = np.flatnonzero(q[i] >= 0.5)
        if right.size:
            out[i] = letters[i, right[0]]
    return out


def vote_cascade(task: str) -> dict[str, Any]:
    """Cheapest (subset, escalation fraction) reaching 95% of GPT-4 on the train file, applied to test."""
    from sklearn.linear_model import LogisticRegression

    models, q_tr, c_tr, a_tr = _answers(task, "train")
    _, q_te, c_te, a_te = _answers(task, "test")
    t_tr, t_te = _truth(q_tr, a_tr), _truth(q_te, a_te)
    ref = models.index("gpt-4-1106-preview")
    labels = sorted({*a_tr.ravel().tolist(), *a_te.ravel().tolist()} - {"?"})
    cheap = [j for j in range(len(models)) if j != ref and c_tr[:, j].mean() < CHEAP_MAX_SHARE * c_tr[:, ref].mean()]

    def onehot(a: np.ndarray, subset: tuple[int, ...]) -> np.ndarray:
        return np.hstack([(a[:, [j]] == np.array(labels)[None, :]).astype(float) for j in subset])

    def curve(clf: Any, subset: tuple[int, ...], q: np.ndarray, c: np.ndarray, a: np.ndarray,
              t: np.ndarray) -> list[tuple[float, float, float]]:
        proba = clf.predict_proba(onehot(a, subset))
        vote = clf.classes_[proba.argmax(axis=1)]
        order = np.argsort(proba.max(axis=1), kind="stable")  # least confident first
        right = (vote == t).astype(float)
        base, ref_q, ref_c = c[:, list(subset)].sum(axis=1), q[:, ref].mean(), c[:, ref].mean()
        out = []
        for f in np.linspace(0, 1, 101):
            esc = np.zeros(len(q), dtype=bool)
            esc[order[: round(f * len(q))]] = True
            qual = np.where(esc, q[:, ref], right).mean() / ref_q
            out.append((float(f), float(qual), float((base + esc * c[:, ref]).mean() / ref_c)))
        return out

    best: dict[str, Any] | None = None
    for k in (1, 2, 3):
        for subset in itertools.combinations(cheap, k):
            known = t_tr != "?"
            clf = LogisticRegression(C=10.0, max_iter=2000).fit(onehot(a_tr[known], subset), t_tr[known])
            ok = [p for p in curve(clf, subset, q_tr, c_tr, a_tr, t_tr) if p[1] >= 0.95]
            if not ok:
                continue
            f, qual, share = min(ok, key=lambda p: p[2])
            if best is None or share < best["train_cost_share"]:
                test_pts = curve(clf, subset, q_te, c_te, a_te, t_te)
                test_ok = [p for p in test_pts if p[1] >= 0.95]
                at_f = test_pts[round(f * 100)]
                best = {
                    "models": [models[j] for j in subset], "escalated_fraction": f,
                    "train_cost_share": share, "train_quality_ratio": qual,
                    "test_cost_share": at_f[2], "test_quality_ratio": at_f[1],
                    "test_best_cost_share": min(p[2] for p in test_ok) if test_ok else None,
                }
    return best or {}


# --- report --------------------------------------------------------------------------------------
def _mean(vals: list[float | None]) -> tuple[float | None, int]:
    v = [x for x in vals if x is not None]
    return (float(np.mean(v)) if v else None), len(v)


def _pct(x: float | None) -> str:
    return "never" if x is None else f"{100 * x:.1f}%"


def to_markdown(rows: list[dict[str, Any]], votes: dict[str, Any], args: Args, wall_s: float) -> str:
    """The report."""
    lines = [
        "# What the RouterBench cost-share targets demand (issue #4)", "",
        f"Command: `python experiments/target_feasibility.py`; seeds {args.seeds}; wall time {wall_s:.0f} s.", "",
        "Within-model AUC = mean over models of the test AUC of a router's scores for that model's "
        "outcomes (what routing needs: *which requests* a model gets right). Noisy oracle = true "
        "outcome + σ·N(0,1), routed like the LightGBM scores (λ sweep, test hull). Means over seeds.", "",
        "| task | target | oracle | LightGBM: cost share / within-model AUC | AUC a noisy oracle needs | "
        "noisy oracle at LightGBM's AUC | cheap answers vote, then GPT-4 (train -> test) |",
        "|---|---|---|---|---|---|---|",
    ]
    for task in args.tasks:
        rs = [r for r in rows if r["task"] == task]
        lgbm_auc, _ = _mean([r["lgbm_auc"] for r in rs])
        lgbm_cs, k = _mean([r["lgbm_cost_share"] for r in rs])
        need, kn = _mean([r["auc_needed"] for r in rs])
        oracle, _ = _mean([r["oracle_cost_share"] for r in rs])
        # the noisy-oracle cost share at the LightGBM AUC: interpolate each seed's curve
        at = []
        for r in rs:
            pts = sorted((p["auc"], p["cost_share"]) for p in r["noisy_oracle"])
            a = [p[0] for p in pts]
            c = [p[1] if p[1] is not None else np.nan for p in pts]
            at.append(float(np.interp(r["lgbm_auc"], a, c)))
        at_v = [x for x in at if np.isfinite(x)]
        v = votes.get(task) or {}
        vote = ("n/a (code answers)" if task not in MULTIPLE_CHOICE else
                f"{_pct(v.get('train_cost_share'))} -> {_pct(v.get('test_cost_share'))} "
                f"(q. {100 * v.get('test_quality_ratio', float('nan')):.1f}%; {', '.join(v.get('models', []))})")
        lines.append(
            f"| {task} | <= {100 * TARGETS[task]:.0f}% | {_pct(oracle)} | {_pct(lgbm_cs)} ({k}/{len(rs)} seeds) / "
            f"{lgbm_auc:.3f} | {'n/a' if need is None else f'{need:.3f}'} ({kn}/{len(rs)} seeds) | "
            f"{_pct(float(np.mean(at_v)) if at_v else None)} | {vote} |"
        )
    lines += ["", "Noisy-oracle curves (seed-mean AUC -> cost share at 95%):", ""]
    for task in args.tasks:
        rs = [r for r in rows if r["task"] == task]
        parts = []
        for i, s in enumerate(args.sigmas):
            a, _ = _mean([r["noisy_oracle"][i]["auc"] for r in rs])
            c, k = _mean([r["noisy_oracle"][i]["cost_share"] for r in rs])
            parts.append(f"σ={s:g}: AUC {a:.3f} -> {_pct(c)}" + ("" if k == len(rs) else f" ({k}/{len(rs)})"))
        lines.append(f"- {task}: " + "; ".join(parts))
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run every (task, seed), the answer-vote cascades, write JSON and Markdown."""
    args = parse_args(argv)
    t0 = time.perf_counter()
    cache: dict[int, Any] = {}
    rows = [run_one(task, seed, args, cache) for seed in args.seeds for task in args.tasks]
    votes = {task: vote_cascade(task) for task in args.tasks if task in MULTIPLE_CHOICE}
    wall = time.perf_counter() - t0
    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    summary = {"args": asdict(args), "rows": rows, "vote_cascade": votes, "wall_s": wall}
    (out / "target_feasibility.json").write_text(json.dumps(summary, indent=1))
    md = to_markdown(rows, votes, args, wall)
    (out / "target_feasibility.md").write_text(md)
    print(md)
    return summary


if __name__ == "__main__":
    main()
