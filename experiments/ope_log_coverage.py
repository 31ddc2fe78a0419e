"""Do the OPE estimators' 95% intervals cover the truth on the router's own logs? (issue #15)

For each source (the simulated QE fleet; RouterBench and BFCL, real outcome matrices) a LightGBM router is
trained on the train split and becomes the *logging policy*, exploring with epsilon 5%, 10% and
20% (:func:`router_rl.policies.exploration.explore`). Each repeat simulates a fresh log of
``--n-rows`` requests drawn with replacement from the test split
(:func:`router_rl.logs.simulate.simulate_log`, fresh seed) and evaluates five target policies on it
with ``router-rl ope``'s code path (:func:`router_rl.eval.logged.evaluate_log`: DM, IPS, SNIPS,
DR, switch-DR; LightGBM reward model cross-fitted on the log; percentile bootstrap):

* ``lgbm_lam0``: the logger's booster with the cost weight λ = 0 (quality first);
* ``lgbm_lam3``: the same booster with λ = 3 (cost first);
* ``cheapest_local``: always the cheapest local model of the train split (deterministic);
* ``uniform_local``: uniform over the local models;
* ``logger_argmax``: the logging policy without exploration (deterministic).

The *true value* of a target is its value on the population the log is drawn from:
``mean over test tasks of sum_a pi(a|x) * quality(x, a)`` on the full-information matrix (also
recorded: the value on the logged rows, ``LogTruth.value``). Reported per source x policy x
estimator x exploration: bias (mean estimate - truth), coverage of the 95% interval over the
repeats, mean interval width; plus the coverage of the paired difference vs the logging policy.

Usage::

    OPENBLAS_NUM_THREADS=1 nice -n 10 .venv/bin/python experiments/ope_log_coverage.py   # fleet + RouterBench
    OPENBLAS_NUM_THREADS=1 nice -n 10 .venv/bin/python experiments/ope_log_coverage.py \
        --sources bfcl --name ope_log_coverage_bfcl                                      # BFCL (10 models)
    .venv/bin/python experiments/ope_log_coverage.py --quick                              # fleet, 3 repeats

Writes ``<out-dir>/<name>.json`` and ``.md`` (default ``experiments/results/ope_log_coverage``).
"""

from __future__ import annotations

import argparse
import copy
import json
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

SOURCES = ("fleet", "routerbench", "bfcl")
#: BFCL has 71 model configurations (ε/71 per model is below any useful propensity): route between
#: 5 open-weight ("local") and 5 API models of different price and quality.
BFCL_MODELS = (
    "Salesforce_xLAM-7b-fc-r",
    "gorilla-openfunctions-v2",
    "meta-llama_Meta-Llama-3-70B-Instruct",
    "open-mistral-nemo-2407-FC-Auto",
    "NousResearch_Hermes-2-Pro-Llama-3-8B",
    "claude-3-5-sonnet-20240620",
    "gpt-4-0613",
    "gpt-4o-mini-2024-07-18",
    "claude-3-haiku-20240307",
    "gemini-1.5-flash-preview-0514",
)
ESTIMATORS = ("dm", "ips", "snips", "dr", "switch_dr")
LGBM_LOGGER = {"num_boost_round": 60, "early_stopping_rounds": 10, "cv_folds": 2}


@dataclass
class Args:
    """Settings (every field is a ``--flag``)."""

    sources: list[str] = field(default_factory=lambda: ["fleet", "routerbench"])
    epsilons: list[float] = field(default_factory=lambda: [0.05, 0.10, 0.20])
    repeats: int = 50
    n_rows: int = 2000
    n_bootstrap: int = 200
    folds: int = 2
    pca_components: int = 16
    alpha: float = 0.05
    logger_lam: float = 0.5
    fleet_tasks: int = 3000
    seed: int = 0
    out_dir: str = "experiments/results"
    name: str = "ope_log_coverage"
    quick: bool = False


def parse_args(argv: list[str] | None = None) -> Args:
    """argparse from the :class:`Args` fields."""
    d = Args()
    p = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    p.add_argument("--sources", nargs="+", default=d.sources, choices=list(SOURCES))
    p.add_argument("--epsilons", nargs="+", type=float, default=d.epsilons)
    for name in ("repeats", "n_rows", "n_bootstrap", "folds", "pca_components", "fleet_tasks", "seed"):
        p.add_argument(f"--{name.replace('_', '-')}", type=int, default=getattr(d, name))
    for name in ("alpha", "logger_lam"):
        p.add_argument(f"--{name.replace('_', '-')}", type=float, default=getattr(d, name))
    p.add_argument("--out-dir", default=d.out_dir)
    p.add_argument("--name", default=d.name, help="basename of the JSON / Markdown outputs")
    p.add_argument("--quick", action="store_true")
    a = Args(**vars(p.parse_args(argv)))
    if a.quick:
        a.sources, a.repeats, a.n_rows = ["fleet"], 3, 1500
        if a.out_dir == "experiments/results":  # never overwrite the committed results with a smoke run
            a.out_dir = "runs/ope_log_coverage"
    if not all(0 < e < 1 for e in a.epsilons):
        raise SystemExit("--epsilons: expected values in (0, 1)")
    return a


# --- one source ----------------------------------------------------------------------------------
@dataclass
class Source:
    """A source's matrix, logger, targets and the targets' true values on the test population."""

    name: str
    description: str
    matrix: Any
    test: Any
    logger: Any
    targets: dict[str, Any]
    truth: dict[str, float]  # target -> true mean quality on the test tasks
    logger_truth: dict[float, float]  # epsilon -> true mean quality of the exploring logger


def build_source(name: str, args: Args) -> Source:
    """Train the logger and the targets on the train split; true values on the test split."""
    from router_rl.eval.runner import default_features
    from router_rl.policies.base import make_policy
    from router_rl.policies.exploration import ExplorationConfig, explore

    if name == "fleet":
        from router_rl.traces import simulate_fleet

        ts = simulate_fleet(args.fleet_tasks, seed=args.seed)
        desc = f"simulate_fleet({args.fleet_tasks}, seed={args.seed})"
    elif name == "routerbench":
        from router_rl.core.paths import require_datasets_dir
        from router_rl.traces.importers import DATASET_FOLDERS, import_traces

        ts = import_traces(
            "routerbench", require_datasets_dir(DATASET_FOLDERS["routerbench"]), drop_invalid=True, seed=args.seed
        )
        desc = f"import_traces('routerbench', drop_invalid=True, seed={args.seed})"
    else:
        from router_rl.core.paths import require_datasets_dir
        from router_rl.traces.importers import DATASET_FOLDERS, import_traces

        ts = import_traces("bfcl", require_datasets_dir(DATASET_FOLDERS["bfcl"]), seed=args.seed)
        desc = f"import_traces('bfcl', seed={args.seed}), 10 of its 71 models (BFCL_MODELS)"
    matrix = ts.matrix()
    if name == "bfcl":
        matrix = matrix.select_models(BFCL_MODELS)
    train, test = matrix.split("train"), matrix.split("test")
    feats = default_features(train)
    enc = feats.shared_encoder()
    logger = make_policy("lgbm", train.models, config=LGBM_LOGGER)
    logger.attach_encoder(enc)
    logger.fit(feats(logger, train), train, seed=args.seed)
    logger.decision = logger.decision.with_(lam=args.logger_lam)  # type: ignore[attr-defined]
    local = train.is_local()
    cost = train.cost.mean(axis=0)
    cheapest_local = train.models[int(np.flatnonzero(local)[np.argmin(cost[local])])]
    targets: dict[str, Any] = {}
    for lam in (0.0, 3.0):
        t = copy.copy(logger)
        t.decision = logger.decision.with_(lam=lam)  # type: ignore[attr-defined]
        t.metadata = {**logger.metadata, "version": f"lgbm(lam={lam:g})"}
        targets[f"lgbm_lam{lam:g}"] = t
    targets["cheapest_local"] = make_policy("single", train.models, model=cheapest_local)
    w = local.astype(float)
    targets["uniform_local"] = make_policy("random", train.models, weights=(w / w.sum()).tolist())
    targets["logger_argmax"] = logger  # the logger's own distribution has no exploration: that is the argmax
    X_test = np.asarray(enc.transform(test.tasks))
    truth = {nm: float((t.action_distribution(X_test) * test.quality).sum(axis=1).mean()) for nm, t in targets.items()}
    base = logger.action_distribution(X_test)
    logger_truth = {
        eps: float((explore(base, ExplorationConfig(epsilon=eps)) * test.quality).sum(axis=1).mean())
        for eps in args.epsilons
    }
    return Source(name, desc, matrix, test, logger, targets, truth, logger_truth)


def one_repeat(src: Source, eps: float, rep: int, args: Args) -> dict[str, Any]:
    """Simulate one log and evaluate every target on it (quality only: one reward model per log)."""
    from router_rl.eval.logged import LogOPEConfig, evaluate_log, target_distribution
    from router_rl.logs.simulate import simulate_log
    from router_rl.policies.exploration import ExplorationConfig

    seed = int(np.random.SeedSequence([args.seed, SOURCES.index(src.name), int(eps * 1000), rep]).generate_state(1)[0])
    log = simulate_log(
        src.matrix, src.logger, n=args.n_rows, exploration=ExplorationConfig(epsilon=eps), split="test", seed=seed
    )
    data = log.logged()
    pis = {nm: target_distribution(t, data, name=nm) for nm, t in src.targets.items()}
    cfg = LogOPEConfig(
        n_bootstrap=args.n_bootstrap,
        alpha=args.alpha,
        seed=seed % 2**31,
        folds=args.folds,
        reward_model_params={"pca_components": args.pca_components},
        metrics=("quality",),
    )
    rep_ = evaluate_log(data, pis, config=cfg)
    out: dict[str, Any] = {"seed": seed, "policies": {}}
    for nm, pr in rep_.evaluation.policies.items():
        mr = pr.metrics["quality"]
        out["policies"][nm] = {
            "in_sample_truth": log.truth.value(pis[nm])["quality"],
            "ess": pr.weights.ess if pr.weights else None,
            "estimates": {k: [e.value, e.lower, e.upper] for k, e in mr.estimates.items()},
            "difference": {k: [e.value, e.lower, e.upper] for k, e in (mr.difference or {}).items()},
        }
    return out


def summarise(src: Source, eps: float, reps: list[dict[str, Any]]) -> dict[str, Any]:
    """Bias, coverage and width per (policy, estimator) over the repeats."""
    rows: dict[str, Any] = {}
    for nm, truth in src.truth.items():
        true_diff = truth - src.logger_truth[eps]
        per: dict[str, Any] = {}
        for est in ESTIMATORS:
            e = np.array([r["policies"][nm]["estimates"][est] for r in reps])
            d = np.array([r["policies"][nm]["difference"][est] for r in reps])
            ins = np.array([r["policies"][nm]["in_sample_truth"] for r in reps])
            per[est] = {
                "bias": float((e[:, 0] - truth).mean()),
                "rmse": float(np.sqrt(((e[:, 0] - truth) ** 2).mean())),
                "coverage": float(((e[:, 1] <= truth) & (truth <= e[:, 2])).mean()),
                "width": float((e[:, 2] - e[:, 1]).mean()),
                "coverage_in_sample": float(((e[:, 1] <= ins) & (ins <= e[:, 2])).mean()),
                "difference_coverage": float(((d[:, 1] <= true_diff) & (true_diff <= d[:, 2])).mean()),
            }
        rows[nm] = {
            "truth": truth,
            "mean_ess": float(np.mean([r["policies"][nm]["ess"] for r in reps])),
            "estimators": per,
        }
    return rows


def compact(o: Any) -> Any:
    """Floats rounded to 6 significant digits (the per-repeat records are most of the JSON)."""
    if isinstance(o, dict):
        return {k: compact(v) for k, v in o.items()}
    if isinstance(o, list):
        return [compact(v) for v in o]
    if isinstance(o, float):
        return float(f"{o:.6g}")
    return o


def markdown(results: dict[str, Any], args: Args, seconds: float) -> str:
    """The table: per source, policy x estimator rows, bias / coverage / width per exploration."""
    eps_cols = [f"{e:g}" for e in args.epsilons]
    lines = [
        f"OPE on simulated router logs: {args.repeats} repeats of {args.n_rows} rows, 95% percentile-bootstrap "
        f"intervals ({args.n_bootstrap} resamples), LightGBM reward model on the first {args.pca_components} "
        f"principal components of the features, cross-fitted on {args.folds} folds; "
        f"metric: quality. Cell = bias / coverage / mean width. Run time {seconds:.0f} s.",
        "",
    ]
    for sname, s in results["sources"].items():
        lines += [f"**{sname}** ({s['description']}; {s['n_test_tasks']} test tasks, {s['n_models']} models)", ""]
        head = "| policy (true value) | estimator | " + " | ".join(f"ε = {e}" for e in eps_cols) + " |"
        lines += [head, "|" + "---|" * (2 + len(eps_cols))]
        first_eps = next(iter(s["by_epsilon"].values()))
        for pol, row in first_eps.items():
            for est in ESTIMATORS:
                cells = []
                for e in eps_cols:
                    c = s["by_epsilon"][e][pol]["estimators"][est]
                    cells.append(f"{c['bias']:+.3f} / {100 * c['coverage']:.0f}% / {c['width']:.3f}")
                label = f"{pol} ({row['truth']:.3f})" if est == ESTIMATORS[0] else ""
                lines.append(f"| {label} | {est} | " + " | ".join(cells) + " |")
        lines += [
            "",
            f"Coverage of the paired difference vs the logging policy ({sname}; per ε: "
            + ", ".join(f"{e}: {s['logger_truth'][e]:.3f}" for e in eps_cols)
            + " true logger value)",
            "",
        ]
        lines += ["| policy | " + " | ".join(ESTIMATORS) + " |", "|" + "---|" * (1 + len(ESTIMATORS))]
        for pol in first_eps:
            cells = [
                "/".join(
                    f"{100 * s['by_epsilon'][e][pol]['estimators'][est]['difference_coverage']:.0f}" for e in eps_cols
                )
                for est in ESTIMATORS
            ]
            lines.append(f"| {pol} | " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run every source x exploration x repeat; write the JSON and Markdown."""
    from pathlib import Path

    args = parse_args(argv)
    t0 = time.time()
    results: dict[str, Any] = {"args": asdict(args), "sources": {}}
    for sname in args.sources:
        src = build_source(sname, args)
        by_eps: dict[str, Any] = {}
        raw: dict[str, Any] = {}
        for eps in args.epsilons:
            reps = [one_repeat(src, eps, r, args) for r in range(args.repeats)]
            by_eps[f"{eps:g}"] = summarise(src, eps, reps)
            raw[f"{eps:g}"] = reps
            print(f"{sname} eps={eps:g}: {time.time() - t0:.0f} s", flush=True)
        results["sources"][sname] = {
            "description": src.description,
            "n_test_tasks": src.test.n_tasks,
            "n_models": len(src.test.models),
            "models": list(src.test.models),
            "truth": src.truth,
            "logger_truth": {f"{k:g}": v for k, v in src.logger_truth.items()},
            "by_epsilon": by_eps,
            "repeats": raw,
        }
    seconds = time.time() - t0
    results["seconds"] = seconds
    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{args.name}.json").write_text(json.dumps(compact(results), separators=(",", ":")))
    md = markdown(results, args, seconds)
    (out / f"{args.name}.md").write_text(md + "\n")
    print(md)
    return results


if __name__ == "__main__":
    main()
