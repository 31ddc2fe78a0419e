"""Do the OPE estimators' 95% intervals cover the truth on the router's own logs? (issue #15)

For each source (the simulated QE fleet; RouterBench and BFCL, real outcome matrices) a LightGBM router is
trained on the train split and becomes the *logging policy*, exploring with epsilon 5%, 10% and
20% (:func:`router_rl.policies.exploration.explore`). Each repeat simulates a fresh log of
``--n-rows`` requests drawn with replacement from the test split
(:func:`router_rl.logs.simulate.simulate_log`, fresh seed) and evaluates five target policies on it
with ``router-rl ope``'s code path (:func:`router_rl.eval.logged.evaluate_log`: DM, IPS, SNIPS,
DR, switch-DR; LightGBM reward model cross-fitted on the log; ``--interval``: the finite-sample
betting interval by default, or the studentised / percentile bootstrap):

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
ESTIMATORS = ("dm", "ips", "snips", "dr", "switch_dr", "switch_dr(tuned)")
#: Estimated metrics the experiment can check (``local_share`` is exact: always checked).
ESTIMATED_METRICS = ("quality", "cost_usd", "utility")
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
    metrics: list[str] = field(default_factory=lambda: ["quality"])
    interval: str = "betting"
    bias_allowance: bool = True
    lam: float = 1.0
    fleet_tasks: int = 3000
    seed: int = 0
    out_dir: str = "experiments/results"
    name: str = "ope_log_coverage"
    quick: bool = False
    from_json: str | None = None
    max_repeats: int | None = None
    resume: bool = False
    first_repeat: int = 0


def parse_args(argv: list[str] | None = None) -> Args:
    """argparse from the :class:`Args` fields."""
    d = Args()
    p = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    p.add_argument("--sources", nargs="+", default=d.sources, choices=list(SOURCES))
    p.add_argument("--epsilons", nargs="+", type=float, default=d.epsilons)
    for name in ("repeats", "first_repeat", "n_rows", "n_bootstrap", "folds", "pca_components", "fleet_tasks", "seed"):
        p.add_argument(f"--{name.replace('_', '-')}", type=int, default=getattr(d, name))
    for name in ("alpha", "logger_lam"):
        p.add_argument(f"--{name.replace('_', '-')}", type=float, default=getattr(d, name))
    p.add_argument("--metrics", nargs="+", default=d.metrics, choices=list(ESTIMATED_METRICS))
    p.add_argument("--interval", default=d.interval, choices=["betting", "studentized", "percentile"])
    p.add_argument("--no-bias-allowance", dest="bias_allowance", action="store_false")
    p.add_argument("--lam", type=float, default=d.lam, help="cost weight of the utility (units of cost_ref_usd)")
    p.add_argument("--out-dir", default=d.out_dir)
    p.add_argument("--name", default=d.name, help="basename of the JSON / Markdown outputs")
    p.add_argument("--quick", action="store_true")
    p.add_argument("--from-json", default=None, help="re-summarise the repeats of a written JSON (no new run)")
    p.add_argument("--max-repeats", type=int, default=None,
                   help="with --from-json: summarise the first N repeats only and print the tables (writes nothing)")
    p.add_argument("--resume", action="store_true",
                   help="continue the run written at <out-dir>/<name>.json (same settings) from its last repeat")
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
    truth: dict[str, dict[str, float]]  # metric -> target -> true value on the test tasks
    logger_truth: dict[str, dict[float, float]]  # metric -> epsilon -> true value of the exploring logger
    cost_ref_usd: float  # USD scale of the utility (train split: mean cost of the most expensive model)


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
    cost_ref = float(cost.max())
    per_action = {
        "quality": test.quality,
        "cost_usd": test.cost,
        "utility": test.quality - args.lam * test.cost / cost_ref,
        "local_share": np.broadcast_to(test.is_local().astype(float), test.quality.shape),
    }
    dists = {nm: t.action_distribution(X_test) for nm, t in targets.items()}
    base = logger.action_distribution(X_test)
    truth = {m: {nm: float((d * v).sum(axis=1).mean()) for nm, d in dists.items()} for m, v in per_action.items()}
    logger_truth = {
        m: {eps: float((explore(base, ExplorationConfig(epsilon=eps)) * v).sum(axis=1).mean()) for eps in args.epsilons}
        for m, v in per_action.items()
    }
    return Source(name, desc, matrix, test, logger, targets, truth, logger_truth, cost_ref)


def one_repeat(src: Source, eps: float, rep: int, args: Args) -> dict[str, Any]:
    """Simulate one log and evaluate every target on it (one reward model per estimated metric)."""
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
        metrics=tuple(args.metrics),  # type: ignore[arg-type]
        lam=args.lam,
        cost_ref_usd=src.cost_ref_usd,
        tuned_switch=True,
        interval=args.interval,  # type: ignore[arg-type]
        bias_allowance=args.bias_allowance,
    )
    rep_ = evaluate_log(data, pis, config=cfg)
    out: dict[str, Any] = {"seed": seed, "policies": {}}
    for nm, pr in rep_.evaluation.policies.items():
        tv = log.truth.value(pis[nm])
        tv["utility"] = tv["quality"] - args.lam * tv["cost_usd"] / src.cost_ref_usd
        out["policies"][nm] = {"ess": pr.weights.ess if pr.weights else None, "metrics": {}}
        for metric in [*args.metrics, "local_share"]:
            mr = pr.metrics[metric]
            out["policies"][nm]["metrics"][metric] = {
                "in_sample_truth": tv[metric],
                "estimates": {k: [e.value, e.lower, e.upper] for k, e in mr.estimates.items()},
                "difference": {k: [e.value, e.lower, e.upper] for k, e in (mr.difference or {}).items()},
            }
    return out


#: Float tolerance of "the interval covers the truth": a degenerate interval [v, v] of an exact
#: metric (e.g. local share 1 of an all-local policy) must count as covering a truth that differs
#: from v by rounding (sum of 1/5 five times).
COVER_TOL = 1e-9


def summarise(
    src: Source, eps: float, reps: list[dict[str, Any]], metric: str, *, truth_by: Any = None
) -> dict[str, Any]:
    """Bias, coverage and width per (policy, estimator) of one metric over the repeats.

    ``truth_by``: ``(truth, logger_truth)`` dicts to use instead of ``src``'s (re-summarising a JSON).
    """
    rows: dict[str, Any] = {}
    ests = ("exact",) if metric == "local_share" else ESTIMATORS
    truths, logger_truth = truth_by if truth_by is not None else (src.truth[metric], src.logger_truth[metric])
    for nm, truth in truths.items():
        true_diff = truth - logger_truth[eps]
        per: dict[str, Any] = {}
        for est in ests:
            recs = [r["policies"][nm]["metrics"][metric] for r in reps]
            e = np.array([x["estimates"][est] for x in recs])
            d = np.array([x["difference"][est] for x in recs])
            ins = np.array([x["in_sample_truth"] for x in recs])
            per[est] = {
                "bias": float((e[:, 0] - truth).mean()),
                "rmse": float(np.sqrt(((e[:, 0] - truth) ** 2).mean())),
                "coverage": float(((e[:, 1] - COVER_TOL <= truth) & (truth <= e[:, 2] + COVER_TOL)).mean()),
                "width": float((e[:, 2] - e[:, 1]).mean()),
                "coverage_in_sample": float(((e[:, 1] - COVER_TOL <= ins) & (ins <= e[:, 2] + COVER_TOL)).mean()),
                "difference_coverage": float(
                    ((d[:, 1] - COVER_TOL <= true_diff) & (true_diff <= d[:, 2] + COVER_TOL)).mean()
                ),
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


def _num(x: float, metric: str) -> str:
    return f"{x:+.2e}" if metric == "cost_usd" else f"{x:+.3f}"


def _width(x: float, metric: str) -> str:
    return f"{x:.2e}" if metric == "cost_usd" else f"{x:.3f}"


def _interval_text(args: Args) -> str:
    if args.interval == "betting":
        return "betting intervals (finite-sample, no resamples; exact metrics too, since 2026-12-02)"
    allowance = "on" if args.bias_allowance else "off"
    return f"{args.interval} bootstrap intervals ({args.n_bootstrap} resamples; bias allowance {allowance})"


def markdown(results: dict[str, Any], args: Args, seconds: float) -> str:
    """The tables: per source and metric, policy x estimator rows, bias / coverage / width per ε."""
    done = [e for e in (f"{x:g}" for x in args.epsilons)
            if all(e in ms["by_epsilon"] for s in results["sources"].values() for ms in s["metrics"].values())]
    eps_cols = done
    lines = [
        "OPE on simulated router logs: "
        + ", ".join(f"{n}: {s['repeats_done']} repeats" for n, s in results["sources"].items())
        + f" (of {args.repeats} asked) of {args.n_rows} rows, 95% {_interval_text(args)}, "
        f"LightGBM reward model on the first {args.pca_components} principal components of the features, "
        f"cross-fitted on {args.folds} folds. Cell = bias / coverage / mean width. Run time {seconds:.0f} s.",
        "",
    ]
    for sname, s in results["sources"].items():
        for metric, ms in s["metrics"].items():
            ests = ["exact"] if metric == "local_share" else list(ESTIMATORS)
            lines += [
                f"**{sname}, {metric}** ({s['description']}; {s['n_test_tasks']} test tasks, {s['n_models']} models)",
                "",
            ]
            head = "| policy (true value) | estimator | " + " | ".join(f"ε = {e}" for e in eps_cols) + " |"
            lines += [head, "|" + "---|" * (2 + len(eps_cols))]
            first_eps = next(iter(ms["by_epsilon"].values()))
            for pol, row in first_eps.items():
                for est in ests:
                    cells = []
                    for e in eps_cols:
                        c = ms["by_epsilon"][e][pol]["estimators"][est]
                        cells.append(
                            f"{_num(c['bias'], metric)} / {100 * c['coverage']:.0f}% / {_width(c['width'], metric)}"
                        )
                    tv = f"{row['truth']:.3g}" if metric == "cost_usd" else f"{row['truth']:.3f}"
                    label = f"{pol} ({tv}, ESS {row['mean_ess']:.0f})" if est == ests[0] else ""
                    lines.append(f"| {label} | {est} | " + " | ".join(cells) + " |")
            lines += [
                "",
                f"Coverage (%) of the paired difference vs the logging policy ({sname}, {metric}; ε "
                + "/".join(eps_cols)
                + ")",
                "",
            ]
            lines += ["| policy | " + " | ".join(ests) + " |", "|" + "---|" * (1 + len(ests))]
            for pol in first_eps:
                cells = [
                    "/".join(
                        f"{100 * ms['by_epsilon'][e][pol]['estimators'][est]['difference_coverage']:.0f}"
                        for e in eps_cols
                    )
                    for est in ests
                ]
                lines.append(f"| {pol} | " + " | ".join(cells) + " |")
            lines.append("")
    lines += ["Cells (policy x ε) with coverage >= 90%, per source and metric:", ""]
    for sname, s in results["sources"].items():
        for metric, ms in s["metrics"].items():
            ests = ["exact"] if metric == "local_share" else list(ESTIMATORS)
            counts = []
            for est in ests:
                cells = [
                    ms["by_epsilon"][e][pol]["estimators"][est]["coverage"]
                    for e in eps_cols
                    for pol in ms["by_epsilon"][e]
                ]
                counts.append(
                    f"{est} {sum(c >= 0.9 for c in cells)}/{len(cells)} (min {100 * min(cells):.0f}%, "
                    f"mean {100 * sum(cells) / len(cells):.1f}%)"
                )
            lines.append(f"* {sname}, {metric}: " + ", ".join(counts))
    lines.append("")
    return "\n".join(lines)


def resummarise(path: str, max_repeats: int | None = None) -> dict[str, Any]:
    """Recompute every summary of a written JSON from its per-repeat records; rewrite JSON + Markdown.

    With ``max_repeats``: the first ``max_repeats`` repeats only (a paired comparison with a shorter
    run on the same seeds), printed, nothing written.
    """
    from pathlib import Path

    p = Path(path)
    results = json.loads(p.read_text())
    a = dict(results["args"])
    a["from_json"] = None
    a.setdefault("interval", "studentized")  # runs before the betting interval carry no default
    a["max_repeats"] = max_repeats
    args = Args(**{k: v for k, v in a.items() if k in Args.__dataclass_fields__})
    for s in results["sources"].values():
        done = min(len(v) for v in s["repeats"].values())
        if max_repeats is not None:
            done = min(done, max_repeats)
        s["repeats_done"] = done
        for m, ms in s["metrics"].items():
            lt = {float(k): v for k, v in ms["logger_truth"].items()}
            for eps in args.epsilons:
                reps = s["repeats"][f"{eps:g}"][:done]
                ms["by_epsilon"][f"{eps:g}"] = summarise(None, eps, reps, m, truth_by=(ms["truth"], lt))  # type: ignore[arg-type]
    md = markdown(results, args, float(results.get("seconds", 0.0)))
    if max_repeats is None:
        p.write_text(json.dumps(compact(results), separators=(",", ":")))
        p.with_suffix(".md").write_text(md + "\n")
    print(md)
    return results


#: Settings a resumed run must share with the run it continues (``repeats`` may grow).
_RESUME_KEYS = (
    "sources", "epsilons", "n_rows", "n_bootstrap", "folds", "pca_components", "alpha", "logger_lam",
    "metrics", "interval", "bias_allowance", "lam", "fleet_tasks", "seed", "first_repeat",
)


def previous_run(path: Any, args: Args) -> tuple[dict[str, Any], dict[str, Any], float]:
    """The per-repeat records, true values and run time of the run ``--resume`` continues.

    Every repeat is seeded by (source, epsilon, repeat), so the repeats that follow are the ones the
    interrupted run would have drawn. Its records are the written (6-digit) ones.

    Raises:
        SystemExit: no such file, or a setting differs from the written run's (names it).
    """
    if not path.exists():
        raise SystemExit(f"--resume: no earlier run at {path}")
    old = json.loads(path.read_text())
    for k in _RESUME_KEYS:
        if old["args"].get(k) != getattr(args, k):
            raise SystemExit(f"--resume: {path} was run with {k}={old['args'].get(k)!r}, not {getattr(args, k)!r}")
    repeats = {name: s["repeats"] for name, s in old["sources"].items()}
    truths = {name: {m: ms["truth"] for m, ms in s["metrics"].items()} for name, s in old["sources"].items()}
    return repeats, truths, float(old.get("seconds", 0.0))


def _close(a: Any, b: Any, rtol: float = 2e-5) -> bool:
    """Equal up to the 6 significant digits a written record keeps (nested dicts / lists)."""
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(_close(a[k], b[k], rtol) for k in a)
    if isinstance(a, list):
        return isinstance(b, list) and len(a) == len(b) and all(_close(x, y, rtol) for x, y in zip(a, b, strict=True))
    if isinstance(a, float | int) and isinstance(b, float | int):
        return bool(np.isclose(a, b, rtol=rtol, atol=1e-12))
    return bool(a == b)


def check_resumable(src: Source, truth: dict[str, Any], raw: dict[str, list[Any]], args: Args) -> None:
    """Refuse to continue a run the current code would not reproduce.

    The source's true values and the first repeat of the first epsilon are computed again and
    compared with the written ones (to their 6 digits): a change to the simulator, the logger or an
    estimator since the run was written makes them differ.

    Raises:
        SystemExit: naming what differs.
    """
    for m, t in truth.items():
        if not _close(t, src.truth[m]):
            raise SystemExit(f"--resume: the true values of {src.name} / {m} differ from the written run's")
    eps = args.epsilons[0]
    again = compact(one_repeat(src, eps, args.first_repeat, args))
    if not _close(again, raw[f"{eps:g}"][0]):
        raise SystemExit(
            f"--resume: repeat {args.first_repeat} of {src.name} at epsilon {eps:g} differs from the written one"
        )


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run every source x exploration x repeat; write the JSON and Markdown."""
    from pathlib import Path

    args = parse_args(argv)
    if args.from_json:
        return resummarise(args.from_json, args.max_repeats)
    t0 = time.time()
    results: dict[str, Any] = {"args": asdict(args), "sources": {}}
    metrics = [*args.metrics, "local_share"]
    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    earlier, earlier_truth, earlier_seconds = (
        previous_run(out / f"{args.name}.json", args) if args.resume else ({}, {}, 0.0)
    )

    def write(partial: bool) -> str:
        seconds = earlier_seconds + time.time() - t0
        results["seconds"] = seconds
        results["complete"] = not partial
        (out / f"{args.name}.json").write_text(json.dumps(compact(results), separators=(",", ":")))
        md = markdown(results, args, seconds)
        (out / f"{args.name}.md").write_text(md + "\n")
        return md

    for sname in args.sources:
        src = build_source(sname, args)
        by_metric: dict[str, Any] = {m: {"by_epsilon": {}} for m in metrics}
        raw: dict[str, list[dict[str, Any]]] = {f"{eps:g}": [] for eps in args.epsilons}
        done = min((len(v) for v in earlier.get(sname, {}).values()), default=0)
        for eps in args.epsilons:
            raw[f"{eps:g}"] = list(earlier.get(sname, {}).get(f"{eps:g}", []))[:done]
        results["sources"][sname] = {
            "description": src.description,
            "n_test_tasks": src.test.n_tasks,
            "n_models": len(src.test.models),
            "models": list(src.test.models),
            "cost_ref_usd": src.cost_ref_usd,
            "repeats_done": 0,
            "metrics": by_metric,
            "repeats": raw,
        }
        for m in metrics:
            by_metric[m]["truth"] = src.truth[m]
            by_metric[m]["logger_truth"] = {f"{k:g}": v for k, v in src.logger_truth[m].items()}
        # repeats outermost: a run stopped early still has every (policy, ε) cell, over fewer repeats
        if done:
            check_resumable(src, earlier_truth[sname], raw, args)
            print(f"{sname}: resuming after {done} repeats (truths and first repeat redrawn: equal)", flush=True)
        for rep in range(done, args.repeats):
            for eps in args.epsilons:  # --first-repeat: fresh logs of the same source (repeat numbers seed them)
                raw[f"{eps:g}"].append(one_repeat(src, eps, args.first_repeat + rep, args))
            if (rep + 1) % 5 == 0 or rep + 1 == args.repeats:
                for eps in args.epsilons:
                    for m in metrics:
                        by_metric[m]["by_epsilon"][f"{eps:g}"] = summarise(src, eps, raw[f"{eps:g}"], m)
                results["sources"][sname]["repeats_done"] = rep + 1
                print(f"{sname}: {rep + 1} repeats, {time.time() - t0:.0f} s", flush=True)
                write(partial=True)
        for eps in args.epsilons:  # a resumed run with nothing left to draw still gets its summaries
            for m in metrics:
                by_metric[m]["by_epsilon"][f"{eps:g}"] = summarise(src, eps, raw[f"{eps:g}"], m)
        results["sources"][sname]["repeats_done"] = len(raw[f"{args.epsilons[0]:g}"])
    md = write(partial=False)
    print(md)
    return results


if __name__ == "__main__":
    main()
