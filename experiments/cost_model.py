"""Per-task cost / latency prediction of the LightGBM router vs the per-model training means.

For each (dataset, seed) job (splits exactly as in ``experiments/benchmark.py``: ``load_splits``,
the ``bench`` LightGBM preset, the shared feature encoder): fit **one** LightGBM router with
``cost_model="auto"`` and derive two variants sharing its quality model (so only the cost /
latency estimates differ): ``mean`` (the per-model training means, the previous behaviour) and
``predicted`` (the cost model refitted without the ``auto`` hold-out gate). Then report

1. cost / latency prediction error per call on the test split: per-model MAE normalised by the
   model's mean (averaged over models), median relative error over all cells, pooled RMSE;
2. routing with :func:`router_rl.eval.runner.evaluate_policies` (shared frontier / AIQ scale):
   cost share at 95% of the reference quality on the λ frontier, AIQ, and the operating point
   calibrated on val (test quality ratio / cost share); plus the router's own
   :meth:`~router_rl.policies.utility.UtilityPolicy.calibrate` (``quality=0.95``, val + pooled
   out-of-fold training tasks) and its test quality ratio / cost share.

Means over seeds with the spread [min..max] are printed and written to
``<out-dir>/<name>.{json,md}`` (default ``experiments/results/cost_model``).

    .venv/bin/python experiments/cost_model.py        # simulated, BFCL, RouterBench MBPP + ARC; 3 seeds (~4 min)
    .venv/bin/python experiments/cost_model.py --datasets bfcl --seeds 0 1 2 3 4 --out-dir runs/cost
"""

from __future__ import annotations

import argparse
import copy
import importlib.util
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

_HERE = Path(__file__).resolve().parent


def _benchmark() -> Any:
    """``experiments/benchmark.py`` imported by path (it is a script, not a package module)."""
    spec = importlib.util.spec_from_file_location("router_rl_benchmark", _HERE / "benchmark.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    return mod


def prediction_errors(pred: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    """Per-call errors of ``pred`` vs ``truth`` (``(n, m)``; NaN truth cells are skipped).

    Returns:
        ``nmae``: mean over models of MAE / mean |truth|; ``median_rel``: median over cells of
        |pred − truth| / truth (truth > 0); ``rmse``: pooled root mean squared error.
    """
    ok = np.isfinite(truth)
    pred = np.broadcast_to(pred, truth.shape)
    per_model = []
    for j in range(truth.shape[1]):
        o = ok[:, j]
        scale = float(np.abs(truth[o, j]).mean()) if o.any() else 0.0
        if scale > 0:
            per_model.append(float(np.abs(pred[o, j] - truth[o, j]).mean()) / scale)
    pos = ok & (np.where(ok, truth, 0.0) > 0)
    return {
        "nmae": float(np.mean(per_model)) if per_model else float("nan"),
        "median_rel": float(np.median(np.abs(pred[pos] - truth[pos]) / truth[pos])) if pos.any() else float("nan"),
        "rmse": float(np.sqrt(np.mean((pred[ok] - truth[ok]) ** 2))) if ok.any() else float("nan"),
    }


def run_job(bm: Any, dataset: str, seed: int, args: argparse.Namespace) -> dict[str, Any]:
    """Fit the three variants on one (dataset, seed) and measure them (see module docstring)."""
    from router_rl.eval.runner import EvalConfig, default_features, evaluate_policies
    from router_rl.policies.base import make_policy
    from router_rl.policies.costmodel import fit_cost_model

    bargs = bm.Args(sim_tasks=args.sim_tasks, max_train_tasks=args.max_train_tasks)
    splits = bm.load_splits(dataset, seed, bargs)
    features = default_features(splits.train)
    t0 = time.perf_counter()
    cfg = {**bm.PRESETS["bench"]["lgbm"]["config"], "cost_model": "auto"}
    auto = make_policy("lgbm", splits.train.models, config=cfg)
    auto.attach_encoder(features.shared_encoder())
    X_tr = features(auto, splits.train)
    auto.fit(X_tr, splits.train, seed=seed)
    fit_s = time.perf_counter() - t0
    variants = {"mean": copy.copy(auto), "auto": auto, "predicted": copy.copy(auto)}
    variants["mean"].cost_model = None
    variants["mean"].metadata = dict(auto.metadata, cost_model={"mode": "mean", "requested": "mean"})
    settings = auto.config.cost_model_settings()
    pred_model, pred_info = fit_cost_model(
        np.asarray(X_tr, dtype=np.float32),
        splits.train,
        type(settings)(**{**vars(settings), "mode": "predicted"}),
        np.random.default_rng([seed, 7]),
    )
    variants["predicted"].cost_model = pred_model
    variants["predicted"].metadata = dict(auto.metadata, cost_model=pred_info)

    X_te = features(auto, splits.test)
    X_val = features(auto, splits.val)
    out: dict[str, Any] = {
        "dataset": dataset,
        "seed": seed,
        "fit_s": fit_s,
        "n": splits.notes["n_tasks"],
        "cost_model": auto.metadata["cost_model"],
        "variants": {},
    }
    res = evaluate_policies(
        splits.train,
        splits.val,
        splits.test,
        variants,
        config=EvalConfig(n_bootstrap=args.n_bootstrap, seed=seed),
        features=features,
    )
    for name, pol in variants.items():
        row: dict[str, Any] = {
            "cost": prediction_errors(np.asarray(pol.predict_cost(X_te)), splits.test.cost),
            "latency": prediction_errors(np.asarray(pol.predict_latency(X_te)), splits.test.latency),
        }
        row.update(
            {
                k: v
                for k, v in bm.flatten(res.policies[name], name).items()
                if k in ("cost_share_at_95", "aiq", "op_test_quality_ratio", "op_test_cost_share")
            }
        )
        pol = copy.copy(pol)
        pol.metadata = dict(pol.metadata)
        cal = pol.calibrate(X_val, splits.val, "quality=0.95")
        routed = pol.route_matrix(X_te, splits.test)
        ref = splits.test.model_index(str(pol.reference_model))
        q_ref, c_ref = float(splits.test.quality[:, ref].mean()), float(splits.test.cost[:, ref].mean())
        row["calibrated_lam"] = cal.lam
        row["cal_test_quality_ratio"] = float(routed.quality.mean()) / q_ref
        row["cal_test_cost_share"] = float(routed.cost.mean()) / c_ref
        out["variants"][name] = row
    return out


def _fmt(vals: list[float], pct: bool = False, digits: int = 3) -> str:
    a = np.asarray([v for v in vals if v is not None and np.isfinite(v)], dtype=float)
    if a.size == 0:
        return "n/a"
    k = 100.0 if pct else 1.0
    s = f"{a.mean() * k:.{digits}f}"
    return s + (f" [{a.min() * k:.{digits}f}..{a.max() * k:.{digits}f}]" if a.size > 1 else "")


def report(jobs: list[dict[str, Any]], *, command: str, wall_s: float) -> str:
    """Markdown: one table per dataset (mean over seeds [min..max]) plus the paired per-seed frontier."""
    lines = [
        "# Per-task cost / latency prediction of the LightGBM router vs per-model means",
        "",
        f"Command: `{command}` ({wall_s:.0f} s). Variants share one quality model; only the cost / latency "
        "estimates differ. Errors on the test split: cost / latency nMAE = per-model MAE / model mean, averaged "
        "over models; median rel. = median over cells of |pred - true| / true. Frontier and operating point: "
        "`evaluate_policies` (λ sweep on test; op = λ grid point calibrated on val); calibrated = the router's "
        "own `calibrate('quality=0.95')` (val + training out-of-fold) applied to test.",
    ]
    cols = [
        ("cost nMAE", lambda r: r["cost"]["nmae"], False, 3),
        ("cost median rel. err", lambda r: r["cost"]["median_rel"], False, 3),
        ("latency nMAE", lambda r: r["latency"]["nmae"], False, 3),
        ("cost share @95% (%)", lambda r: r["cost_share_at_95"], True, 1),
        ("AIQ", lambda r: r["aiq"], False, 3),
        ("op test q/ref (%)", lambda r: r["op_test_quality_ratio"], True, 1),
        ("op test cost (%)", lambda r: r["op_test_cost_share"], True, 1),
        ("calibrated test q/ref (%)", lambda r: r["cal_test_quality_ratio"], True, 1),
        ("calibrated test cost (%)", lambda r: r["cal_test_cost_share"], True, 1),
    ]
    for ds in dict.fromkeys(j["dataset"] for j in jobs):
        js = [j for j in jobs if j["dataset"] == ds]
        cm = js[0]["cost_model"]
        bases = cm.get("cost_basis", {})
        counts = {b: sum(v == b for v in bases.values()) for b in ("tokens", "latency", "direct", "mean")}
        lat = sum(v == "predicted" for v in cm.get("latency_basis", {}).values())
        lines += [
            "",
            f"## {ds}",
            "",
            f"{len(js)} seeds; tasks {js[0]['n']}; `auto` (seed {js[0]['seed']}): mode {cm['mode']}, cost basis "
            f"{counts}, latency predicted for {lat} models, rank {cm.get('rank')}, {cm.get('n_trees')} trees.",
            "",
            "| variant | " + " | ".join(c[0] for c in cols) + " |",
            "|---" * (len(cols) + 1) + "|",
        ]
        for name in ("mean", "auto", "predicted"):
            rows = [j["variants"][name] for j in js]
            lines.append(
                f"| {name} | " + " | ".join(_fmt([f(r) for r in rows], pct, d) for _, f, pct, d in cols) + " |"
            )
        cs = [(j["variants"]["mean"]["cost_share_at_95"], j["variants"]["auto"]["cost_share_at_95"]) for j in js]
        pairs = ", ".join(f"{100 * a:.1f} -> {100 * b:.1f}" for a, b in cs if a is not None and b is not None)
        lines += ["", f"Cost share @95% per seed (mean -> auto, %): {pairs or 'n/a'}."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    """CLI entry point (see module docstring)."""
    p = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    p.add_argument(
        "--datasets", nargs="+", default=["simulated", "bfcl", "routerbench_mbpp", "routerbench_arc_challenge"]
    )
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--sim-tasks", type=int, default=6000)
    p.add_argument("--max-train-tasks", type=int, default=4000)
    p.add_argument("--n-bootstrap", type=int, default=50)
    p.add_argument("--out-dir", default="experiments/results")
    p.add_argument("--name", default="cost_model", help="output stem: <out-dir>/<name>.json and .md")
    args = p.parse_args(argv)
    bm = _benchmark()
    t0 = time.perf_counter()
    jobs = []
    for ds in args.datasets:
        for seed in args.seeds:
            jobs.append(run_job(bm, ds, seed, args))
            print(f"[{time.perf_counter() - t0:6.0f}s] {ds} seed {seed} done", flush=True)
    command = " ".join(["python experiments/cost_model.py", *(sys.argv[1:] if argv is None else argv)])
    md = report(jobs, command=command, wall_s=time.perf_counter() - t0)
    print(md)
    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{args.name}.json").write_text(json.dumps({"command": command, "jobs": jobs}, indent=1, default=float))
    (out / f"{args.name}.md").write_text(md)
    print(f"wrote {out / args.name}.json and .md")
    return jobs


if __name__ == "__main__":
    main()
