"""Benchmark every router and baseline on every dataset over several seeds (cleanrl-style, one file).

For each (dataset, seed) job: load the outcome matrix (train/val/test splits), fit every policy on
the train split, evaluate them together with :func:`router_rl.eval.evaluate_policies` on the test
split (the frontier / AIQ normalisation is shared within a job, the operating point is calibrated on
val), then aggregate every metric over seeds as mean and 95% Student-t interval.

Datasets (``--datasets``; real ones read from ``router_rl.core.paths.datasets_dir()``):

* ``routerbench_mbpp``, ``routerbench_arc_challenge``, ``routerbench_winogrande``: the RouterBench
  0-shot subset, one task per row (the issue's targets are per task), imported with
  ``drop_invalid=True`` (14 duplicated sample ids carry all 154 NaN score cells; those tasks are
  dropped and the import report is stored in the JSON). Fixed train/test, the seed carves val.
  By default (``--routerbench-train task``) a router is trained per category; ``all`` trains one
  router on the train split of all three categories (the category is a feature) and scores it on
  each category's test split, as deployed on a mixed stream (measured: Winogrande better, ARC and
  MBPP worse; see the issue note).
* ``llmrouter``, ``routerdc``, ``bfcl``: the other imported datasets (seed = split seed where the
  dataset has no fixed split, and always the val carve).
* ``simulated``: :func:`router_rl.traces.simulate_fleet` (seed = data seed), which also carries the
  independence gates.
* any trace file by path (``.parquet`` written by ``router-rl traces``, or a long ``.csv``/``.tsv``
  /``.parquet`` read by the ``long`` importer, ``--drop-invalid`` for dirty CSVs): its own splits
  (seed = split seed for unlabelled tasks and for the val carve when it has none); its task columns
  (e.g. ``repo``) are features, as in ``router-rl evaluate``. Keyed by the absolute path (a Ray
  cluster's workers must see the same path).

The seed also drives every model fit and the bootstrap. A policy that crashes is skipped for that
job and listed under ``failures`` in the JSON and the Markdown (nothing is hidden).

Usage::

    .venv/bin/python experiments/benchmark.py                       # full default (~20-30 min, 2 cores)
    .venv/bin/python experiments/benchmark.py --quick               # smoke run (< 60 s)
    .venv/bin/python experiments/benchmark.py --datasets simulated routerbench_mbpp --policies lgbm knn
    .venv/bin/python experiments/benchmark.py --datasets my_outcomes.csv --preset quick --seeds 0 1
    .venv/bin/python experiments/benchmark.py --address local      # fan (dataset, seed) jobs out on Ray
    .venv/bin/python experiments/benchmark.py --address auto       # ... on an existing Ray cluster

Writes ``<out-dir>/benchmark.json`` (every metric, mean and 95% CI over seeds, per-seed values,
failures) and ``<out-dir>/benchmark.md`` (default ``experiments/results/``).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

SCHEMA_VERSION = 1
ROUTERBENCH_TASKS = {"mbpp": "mbpp", "arc_challenge": "arc-challenge", "winogrande": "winogrande"}
DATASETS = (
    *(f"routerbench_{t}" for t in ROUTERBENCH_TASKS),
    "llmrouter",
    "routerdc",
    "bfcl",
    "simulated",
)
POLICIES = (
    "lgbm", "lgbm-stack", "knn", "mlp", "mf", "tfidf-lr", "svm", "sw-ranking", "linucb", "thompson", "cascade",
    "rules", "random", "cheapest", "single", "oracle",
)
#: Routers that learn from the training split (the rest are baselines / bounds). ``tfidf-lr``
#: (RouterBench's TF-IDF + logistic regression), ``svm`` (LLMRouter's SVM router) and
#: ``sw-ranking`` (RouteLLM's similarity-weighted ranking) are the baselines of the other open
#: routing libraries; ``lgbm-stack`` is the stacked meta-model (docs/policies.md).
LEARNED = ("lgbm", "lgbm-stack", "knn", "mlp", "mf", "tfidf-lr", "svm", "sw-ranking", "linucb", "thompson",
           "cascade", "ppo")
ALIASES = {"rule": "rules", "reference": "single", "lightgbm": "lgbm", "lgb": "lgbm"}
#: Suffixes of trace files accepted by path in ``--datasets``.
TRACE_SUFFIXES = (".parquet", ".csv", ".tsv")

#: The issue's targets: cost share at 95% of the best single model per RouterBench task, and the
#: TF-IDF logistic-regression reference numbers.
ROUTERBENCH_TARGETS = {
    "routerbench_mbpp": (0.20, 0.29),
    "routerbench_arc_challenge": (0.05, 0.077),
    "routerbench_winogrande": (0.35, 0.51),
}

#: Flat per-(dataset, seed, policy) metrics; every one is aggregated over seeds.
METRICS = (
    "mean_quality", "mean_cost", "quality_ratio", "cost_share", "cost_saving", "local_share", "oracle_gap",
    "error_share", "mean_calls", "latency_p50", "latency_p95",
    "aiq", "apgr", "cpt50", "cpt80", "cpt95", "cost_share_at_95",
    "op_lam", "op_test_quality_ratio", "op_test_cost_share", "op_test_local_share", "op_meets_target",
    "gate_phase1", "gate_phase2", "gate_phase4",
)


@dataclass
class Args:
    """Benchmark settings (every field is a ``--flag``)."""

    datasets: list[str] = field(default_factory=lambda: list(DATASETS))
    """datasets to run: names (see module docstring) or trace files by path"""
    policies: list[str] = field(default_factory=lambda: list(POLICIES))
    """registered policy names (``ppo`` works too but is slow; see experiments/ppo_vs_greedy.py)"""
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2, 3, 4])
    """replicates: split seed (datasets without fixed splits), simulation seed, all fits, bootstrap"""
    sim_tasks: int = 6000
    """tasks of the simulated fleet"""
    max_train_tasks: int = 4000
    """seeded subsample of the train split above this size (0 = all; keeps routerdc within budget)"""
    n_bootstrap: int = 200
    """bootstrap resamples of the per-seed headline intervals"""
    routerbench_train: str = "task"
    """RouterBench training tasks: ``all`` (one router trained on the train split of all three
    categories, scored per category) or ``task`` (a router per category)"""
    preset: str = "bench"
    """policy hyper-parameters: ``bench`` (lighter LightGBM/MLP/MF, fits the time budget), ``library``
    (the library defaults) or ``quick``"""
    lgbm_config: str = ""
    """JSON object merged into the preset's LightGBM config, e.g. ``'{"linear_stack": true}'``
    (variants of the LightGBM router; recorded in the results)"""
    address: str = ""
    """Ray: ``local`` (start a local Ray), ``auto`` or ``ray://host:port``; empty = in-process, no Ray"""
    out_dir: str = "experiments/results"
    name: str = "benchmark"
    """output file stem (``<out-dir>/<name>.json`` and ``.md``)"""
    quick: bool = False
    """smoke run: 2 seeds, simulated fleet of 1,500 tasks, quick preset (< 60 s)"""
    render: str = ""
    """only re-write this existing JSON (rounded, compact) and its Markdown (no training)"""
    drop_invalid: bool = False
    """trace files given by path: drop invalid rows/tasks (counted in the notes) instead of failing"""

    def apply_quick(self, given: set[str]) -> Args:
        """The ``--quick`` settings (flags given explicitly win)."""
        if not self.quick:
            return self
        quick: dict[str, Any] = {
            "seeds": [0, 1], "datasets": ["simulated"], "sim_tasks": 1500, "max_train_tasks": 1500,
            "n_bootstrap": 50, "preset": "quick", "name": "benchmark_quick", "out_dir": "runs/benchmark",
        }
        return dataclasses.replace(self, **{k: v for k, v in quick.items() if k not in given})

    def validate(self) -> Args:
        """Normalise aliases and reject unknown names (naming the flag)."""
        self.policies = [ALIASES.get(p, p) for p in self.policies]
        self.datasets = [d if d in DATASETS else _trace_path(d) for d in self.datasets]
        bad = [d for d in self.datasets if d not in DATASETS and not Path(d).is_file()]
        if bad:
            raise SystemExit(f"--datasets: unknown {bad}; expected names in {list(DATASETS)} or existing trace files "
                             f"({'/'.join(TRACE_SUFFIXES)})")
        if self.preset not in PRESETS:
            raise SystemExit(f"--preset: expected one of {sorted(PRESETS)}, got {self.preset!r}")
        for flag, v in (("--policies", self.policies), ("--datasets", self.datasets), ("--seeds", self.seeds)):
            if not v or len(set(v)) != len(v):
                raise SystemExit(f"{flag}: expected a non-empty list without duplicates, got {v}")
        if self.routerbench_train not in ("all", "task"):
            raise SystemExit(f"--routerbench-train: expected 'all' or 'task', got {self.routerbench_train!r}")
        if self.lgbm_config:
            from router_rl.policies.lgbm import LGBMConfig

            try:
                extra = json.loads(self.lgbm_config)
                if not isinstance(extra, dict):
                    raise TypeError(f"expected a JSON object, got {type(extra).__name__}")
                LGBMConfig(**{**PRESETS[self.preset].get("lgbm", {}).get("config", {}), **extra})
            except Exception as e:
                raise SystemExit(f"--lgbm-config: {e}") from e
        if self.sim_tasks < 100 or self.max_train_tasks < 0 or self.n_bootstrap < 10:
            raise SystemExit("--sim-tasks >= 100, --max-train-tasks >= 0 and --n-bootstrap >= 10 are required")
        return self


def _trace_path(d: str) -> str:
    """A ``--datasets`` entry that is a trace file: its absolute path (kept as given otherwise)."""
    p = Path(d)
    return str(p.resolve()) if p.suffix in TRACE_SUFFIXES and p.is_file() else d


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
            p.add_argument(flag, type={"int": int, "float": float, "str": str}[typ], default=default)
    ns = p.parse_args(argv)
    given = {a.lstrip("-").replace("-", "_").split("=")[0] for a in (argv or sys.argv[1:]) if a.startswith("--")}
    return Args(**vars(ns)).apply_quick(given).validate()


# --- policy hyper-parameter presets --------------------------------------------------------------
_LGBM_BENCH = {"num_boost_round": 150, "early_stopping_rounds": 20, "cv_folds": 2}
_LGBM_QUICK = {"num_boost_round": 30, "early_stopping_rounds": 10, "cv_folds": 2}
PRESETS: dict[str, dict[str, dict[str, Any]]] = {
    "library": {},
    "bench": {
        "lgbm": {"config": _LGBM_BENCH},
        "lgbm-stack": {"config": {"lgbm": _LGBM_BENCH}},
        "cascade": {"scorer_kwargs": {"config": _LGBM_BENCH}},
        "mlp": {"config": {"max_iter": 100, "early_stopping": True}},
        "mf": {"config": {"epochs": 150}},
    },
    "quick": {
        "lgbm": {"config": _LGBM_QUICK},
        "lgbm-stack": {"config": {"folds": 3, "lgbm": _LGBM_QUICK}},
        "cascade": {"scorer_kwargs": {"config": _LGBM_QUICK}},
        "mlp": {"config": {"max_iter": 30}},
        "mf": {"config": {"epochs": 30}},
        "ppo": {"config": {"total_timesteps": 2048}},
    },
}


# --- data ----------------------------------------------------------------------------------------
@dataclass
class Splits:
    """The three splits of one (dataset, seed) job plus notes for the report."""

    train: Any
    val: Any
    test: Any
    notes: dict[str, Any]
    user_file: bool = False
    """a trace file given by path (its task columns are features, see ``eval.resolve.trace_features``)"""
    simulated: bool = False


def load_splits(dataset: str, seed: int, args: Args) -> Splits:
    """Outcome-matrix splits of ``dataset`` for replicate ``seed``.

    Raises:
        FileNotFoundError: a real dataset is requested but the datasets folder is absent.
    """
    from router_rl.core.paths import require_datasets_dir
    from router_rl.traces import simulate_fleet
    from router_rl.traces.importers import DATASET_FOLDERS, import_traces

    notes: dict[str, Any] = {}
    if dataset not in DATASETS:  # a trace file by path (validated in Args.validate)
        return _load_file(dataset, seed, args)
    if dataset == "simulated":
        ts = simulate_fleet(args.sim_tasks, seed=seed)
        notes["source"] = f"simulate_fleet({args.sim_tasks}, seed={seed})"
    else:
        kind = "routerbench" if dataset.startswith("routerbench_") else dataset
        path = require_datasets_dir(DATASET_FOLDERS[kind])
        drop = kind == "routerbench"
        ts = import_traces(kind, path, drop_invalid=drop, seed=seed)
        notes["source"] = f"import_traces({kind!r}, {DATASET_FOLDERS[kind]}, drop_invalid={drop}, seed={seed})"
        if drop:
            notes["dropped"] = dict(ts.report.dropped_rows)
            notes["removed_tasks"] = ts.report.dropped_tasks
    matrix = ts.matrix()
    if dataset.startswith("routerbench_"):
        cat = ROUTERBENCH_TASKS[dataset.removeprefix("routerbench_")]
        task = matrix.take((matrix.tasks["category"] == cat).to_numpy())
        # ``all``: one router for the whole RouterBench stream (category is a feature), scored on
        # this category's val/test tasks; ``task``: a router per category.
        train = matrix.split("train") if args.routerbench_train == "all" else task.split("train")
        val, test = task.split("val"), task.split("test")
        notes["routerbench_train"] = args.routerbench_train
    else:
        train, val, test = (matrix.split(s) for s in ("train", "val", "test"))
    train = _cap_train(train, val, test, notes, seed, args)
    return Splits(train, val, test, notes)


def _cap_train(train: Any, val: Any, test: Any, notes: dict[str, Any], seed: int, args: Args) -> Any:
    """``train`` subsampled to ``--max-train-tasks`` (seeded), with the split sizes noted in ``notes``."""
    notes["n_tasks_full_train"] = train.n_tasks
    if args.max_train_tasks and train.n_tasks > args.max_train_tasks:
        rng = np.random.default_rng([seed, 11])
        train = train.take(np.sort(rng.choice(train.n_tasks, args.max_train_tasks, replace=False)))
        notes["train_subsampled_to"] = args.max_train_tasks
    notes["n_tasks"] = {"train": train.n_tasks, "val": val.n_tasks, "test": test.n_tasks}
    notes["n_models"] = len(train.models)
    return train


def _load_file(path: str, seed: int, args: Args) -> Splits:
    """Splits of a trace file: its own labels; a missing val is carved from train (seeded, noted)."""
    from router_rl.traces import load_traces
    from router_rl.traces.split import require_splits

    ts = load_traces(path, seed=seed, drop_invalid=args.drop_invalid)
    parts, carve = require_splits(ts.matrix(), ("train", "val", "test"), seed=seed, source=Path(path).name)
    train, val, test = parts["train"], parts["val"], parts["test"]
    notes: dict[str, Any] = {"source": f"load_traces({Path(path).name!r}, seed={seed}, "
                                       f"drop_invalid={args.drop_invalid})"}
    if ts.report.dropped_rows:
        notes["dropped"] = dict(ts.report.dropped_rows)
        notes["removed_tasks"] = ts.report.dropped_tasks
    if carve:
        notes["split_notes"] = carve
    train = _cap_train(train, val, test, notes, seed, args)
    return Splits(train, val, test, notes, user_file=True, simulated=ts.ground_truth is not None)


# --- one job -------------------------------------------------------------------------------------
def build_policy(name: str, splits: Splits, features: Any, seed: int, preset: str, lgbm_config: str = "") -> Any:
    """Make, fit (and for the cascade: calibrate on val) policy ``name``; mirrors ``eval.resolve``.

    ``lgbm_config`` (JSON object) is merged into the preset's LightGBM config of ``lgbm``.
    """
    from router_rl.policies.base import make_policy

    kwargs = dict(PRESETS[preset].get(name, {}))
    if name == "lgbm" and lgbm_config:
        kwargs["config"] = {**kwargs.get("config", {}), **json.loads(lgbm_config)}
    policy = make_policy(name, splits.train.models, **kwargs)
    if getattr(policy, "encoder", None) is None:
        policy.attach_encoder(features.shared_encoder())
    policy.fit(features(policy, splits.train), splits.train, seed=seed)
    if name == "cascade":  # no λ knob: its threshold is calibrated on val to 95% of the reference
        x_val = features(policy, splits.val)
        policy.calibrate(x_val, splits.val, "quality=0.95")  # type: ignore[attr-defined]
    return policy


def flatten(pe: Any, name: str) -> dict[str, float | None]:
    """The :data:`METRICS` of one ``PolicyEvaluation`` (booleans as 0/1, unknown as None)."""
    m = pe.metrics.to_dict()
    out: dict[str, float | None] = {k: m.get(k) for k in METRICS if k in m}
    fm = pe.frontier_metrics or {}
    for k in ("aiq", "apgr", "cpt50", "cpt80", "cpt95"):
        out[k] = fm.get(k)
    out["cost_share_at_95"] = fm.get("cost_share_at_quality")
    op = pe.operating_point
    if op is None and name == "cascade":  # its deployed threshold *is* the val-calibrated point
        op = {"lam": None, "test_quality_ratio": m["quality_ratio"], "test_cost_share": m["cost_share"],
              "test_local_share": m["local_share"],
              "test_meets_target": None if m["quality_ratio"] is None else m["quality_ratio"] >= 0.95}
    op = op or {}
    out["op_lam"] = op.get("lam")
    out["op_test_quality_ratio"] = op.get("test_quality_ratio")
    out["op_test_cost_share"] = op.get("test_cost_share")
    out["op_test_local_share"] = op.get("test_local_share")
    met = op.get("test_meets_target")
    out["op_meets_target"] = None if met is None else float(met)
    for ph in pe.independence.phases:
        out[f"gate_{ph.phase}"] = None if ph.passed is None else float(ph.passed)
    return {k: (None if v is None or not math.isfinite(float(v)) else float(v)) for k, v in out.items()}


def run_job(dataset: str, seed: int, args: Args, on_step: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Fit and evaluate every policy on one (dataset, seed); never raises for a policy failure.

    Returns:
        JSON-able dict: ``dataset, seed, notes, reference_model, weak_model, policies.<name>.<metric>,
        single_models.<model>.<metric>, oracle.<metric>, failures[], timings``.
    """
    from router_rl.eval.resolve import trace_features
    from router_rl.eval.runner import EvalConfig, default_features, evaluate_policies

    step = on_step or (lambda _msg: None)
    out: dict[str, Any] = {"dataset": dataset, "seed": seed, "policies": {}, "failures": [], "timings": {}}
    t0 = time.perf_counter()
    try:
        splits = load_splits(dataset, seed, args)
    except Exception as e:  # a missing dataset fails the whole job, loudly
        out["failures"].append({"policy": None, "stage": "load", "error": f"{type(e).__name__}: {e}"})
        return out
    out["notes"] = splits.notes
    out["timings"]["load_s"] = time.perf_counter() - t0
    if splits.user_file:
        features = trace_features(splits.train, simulated=splits.simulated)
    else:
        features = default_features(splits.train)
    fitted: dict[str, Any] = {}
    for name in args.policies:
        step(f"{dataset} seed {seed}: fit {name}")
        t = time.perf_counter()
        try:
            fitted[name] = build_policy(name, splits, features, seed, args.preset, args.lgbm_config)
        except Exception as e:
            out["failures"].append(_failure(name, "fit", e))
        out["timings"][f"fit_{name}_s"] = time.perf_counter() - t
    cfg = EvalConfig(n_bootstrap=args.n_bootstrap, seed=seed)
    step(f"{dataset} seed {seed}: evaluate")
    t = time.perf_counter()

    def evaluate(pols: dict[str, Any]) -> Any:
        return evaluate_policies(splits.train, splits.val, splits.test, pols, config=cfg, features=features)

    try:
        res = evaluate(fitted)
    except Exception:  # find the culprit(s), then evaluate the rest together (shared AIQ scale)
        ok = {}
        for name, pol in fitted.items():
            try:
                evaluate({name: pol})
                ok[name] = pol
            except Exception as e:
                out["failures"].append(_failure(name, "evaluate", e))
        res = evaluate(ok) if ok else None
    out["timings"]["evaluate_s"] = time.perf_counter() - t
    if res is None:
        return out
    out["reference_model"] = res.reference_model
    out["weak_model"] = res.weak_model
    out["policies"] = {name: flatten(pe, name) for name, pe in res.policies.items()}
    keep = ("mean_quality", "mean_cost", "quality_ratio", "cost_share", "local_share")
    out["single_models"] = {k: {f: getattr(v, f) for f in keep} for k, v in res.single_models.items()}
    out["oracle"] = {f: getattr(res.oracle, f) for f in keep}
    out["oracle"]["cost_share_at_95"] = res.oracle_frontier_metrics.get("cost_share_at_quality")
    out["oracle"]["aiq"] = res.oracle_frontier_metrics.get("aiq")
    return out


def _failure(name: str, stage: str, e: BaseException) -> dict[str, Any]:
    tb = traceback.extract_tb(e.__traceback__)
    where = f"{tb[-1].filename}:{tb[-1].lineno}" if tb else ""
    return {"policy": name, "stage": stage, "error": f"{type(e).__name__}: {e}"[:500], "where": where}


# --- aggregation ---------------------------------------------------------------------------------
def t_interval(values: list[float]) -> dict[str, float | int]:
    """Mean and 95% Student-t interval over seeds (``lo == hi == mean`` with one value)."""
    from scipy import stats

    x = np.asarray(values, dtype=np.float64)
    m = float(x.mean())
    if x.size < 2:
        return {"mean": m, "lo": m, "hi": m, "n": int(x.size)}
    half = float(stats.t.ppf(0.975, x.size - 1) * x.std(ddof=1) / math.sqrt(x.size))
    return {"mean": m, "lo": m - half, "hi": m + half, "n": int(x.size)}


def _agg(rows: list[dict[str, Any]]) -> dict[str, Any]:
    keys = sorted({k for r in rows for k in r})
    res: dict[str, Any] = {}
    for k in keys:
        vals = [float(r[k]) for r in rows if r.get(k) is not None]
        res[k] = t_interval(vals) if vals else None
    return res


def aggregate(jobs: list[dict[str, Any]], args: Args) -> dict[str, Any]:
    """Mean and 95% CI over seeds per (dataset, policy); per-seed values kept alongside."""
    results: list[dict[str, Any]] = []
    datasets: dict[str, Any] = {}
    for ds in args.datasets:
        mine = sorted((j for j in jobs if j["dataset"] == ds), key=lambda j: j["seed"])
        datasets[ds] = {
            "notes": {str(j["seed"]): j.get("notes") for j in mine},
            "reference_model": {str(j["seed"]): j.get("reference_model") for j in mine},
            "weak_model": {str(j["seed"]): j.get("weak_model") for j in mine},
            "oracle": _agg([j["oracle"] for j in mine if "oracle" in j]),
            "single_models": {
                mdl: _agg([j["single_models"][mdl] for j in mine if mdl in j.get("single_models", {})])
                for mdl in sorted({m for j in mine for m in j.get("single_models", {})})
            },
        }
        for pol in args.policies:
            per_seed = {str(j["seed"]): j["policies"][pol] for j in mine if pol in j.get("policies", {})}
            results.append({
                "dataset": ds,
                "policy": pol,
                "n_seeds": len(per_seed),
                "metrics": _agg(list(per_seed.values())) if per_seed else {},
                "per_seed": per_seed,
            })
    failures = [{"dataset": j["dataset"], "seed": j["seed"], **f} for j in jobs for f in j["failures"]]
    return {"schema_version": SCHEMA_VERSION, "args": dataclasses.asdict(args), "datasets": datasets,
            "results": results, "failures": failures}


# --- markdown ------------------------------------------------------------------------------------
class _Fmt:
    """Formats an aggregated cell as ``mean ± half-width`` (``(k/n)`` when defined in k of n seeds)."""

    def __init__(self, n_seeds: int) -> None:
        self.n_seeds = n_seeds

    def __call__(self, cell: dict[str, Any] | None, pct: bool = True, digits: int = 1) -> str:
        if not cell:
            return "n/a"
        s = 100.0 if pct else 1.0
        half = (cell["hi"] - cell["lo"]) / 2 * s
        miss = "" if cell["n"] == self.n_seeds else f" ({cell['n']}/{self.n_seeds})"
        return f"{cell['mean'] * s:.{digits}f} ± {half:.{digits}f}{miss}"


def to_markdown(summary: dict[str, Any], *, command: str, wall_s: float | None) -> str:
    """The results as Markdown tables (one per dataset), targets and failures."""
    args = summary["args"]
    _ci = _Fmt(len(args["seeds"]))
    lines = [
        "# Benchmark results",
        "",
        f"Command: `{command}`  ",
        f"Seeds: {args['seeds']} (mean ± 95% t-interval half-width over seeds; `(k/n)` = defined in k of n "
        f"seeds); preset `{args['preset']}`"
        + (f" with LightGBM config `{args['lgbm_config']}`" if args.get("lgbm_config") else "")
        + f"; bootstrap {args['n_bootstrap']}; train split subsampled to "
        f"{args['max_train_tasks'] or 'all'} tasks when larger."
        + ("" if wall_s is None else f"  \nWall time: {wall_s / 60:.1f} min."),
        "",
        "Columns: quality ratio and cost share vs the reference (best single model on train) at the deployed "
        "point (λ = 0); **@95% frontier** = smallest cost share on the test λ-sweep hull reaching 95% of the "
        "reference quality; **@95% calibrated** = λ chosen on val for 95%, applied to test (test quality "
        "ratio in brackets); AIQ (RouterBench) and APGR (RouteLLM) of the λ sweep; local share; oracle gap "
        "(quality points). Percentages unless noted.",
        "",
    ]
    by_ds: dict[str, list[dict[str, Any]]] = {}
    for r in summary["results"]:
        by_ds.setdefault(r["dataset"], []).append(r)
    head = ("policy | quality ratio | cost share | cost share @95% frontier | cost share @95% calibrated "
            "(test q. ratio) | AIQ | APGR | local share | oracle gap")
    for ds, rows in by_ds.items():
        info = summary["datasets"][ds]
        refs = sorted({v for v in info["reference_model"].values() if v})
        notes: dict[str, Any] = next((n for n in info["notes"].values() if n), {}) or {}
        lines += [f"## {ds}", "", f"Reference (best single on train): {', '.join(refs) or 'n/a'}; "
                  f"tasks train/val/test: {notes.get('n_tasks', 'n/a')}; models: {notes.get('n_models', 'n/a')}."]
        if notes.get("dropped"):
            lines.append(f"Import with `drop_invalid=True`: dropped rows {notes['dropped']}, "
                         f"removed tasks {notes.get('removed_tasks')}.")
        lines += ["", "| " + head + " |", "|" + "---|" * (head.count("|") + 1)]
        for r in rows:
            m = r["metrics"]
            if not m:
                lines.append(f"| {r['policy']} | failed in every seed |" + " |" * 7)
                continue
            cal = f"{_ci(m.get('op_test_cost_share'))} ({_ci(m.get('op_test_quality_ratio'))})"
            if not m.get("op_test_cost_share"):
                cal = "n/a"
            lines.append(
                f"| {r['policy']} | {_ci(m.get('quality_ratio'))} | {_ci(m.get('cost_share'))} | "
                f"{_ci(m.get('cost_share_at_95'))} | {cal} | {_ci(m.get('aiq'), False, 3)} | "
                f"{_ci(m.get('apgr'), False, 3)} | {_ci(m.get('local_share'))} | {_ci(m.get('oracle_gap'), True)} |"
            )
        orc = info["oracle"]
        if orc:
            lines.append(f"| *hindsight oracle (λ sweep)* | {_ci(orc.get('quality_ratio'))} | "
                         f"{_ci(orc.get('cost_share'))} | {_ci(orc.get('cost_share_at_95'))} | | "
                         f"{_ci(orc.get('aiq'), False, 3)} | | {_ci(orc.get('local_share'))} | |")
        lines.append("")
    lines += _targets(summary, _ci) + _paired_aiq(summary) + _gates(summary)
    lines += ["## Failures", ""]
    if summary["failures"]:
        lines += [f"- {f['dataset']} seed {f['seed']}: `{f['policy']}` ({f['stage']}): {f['error']}"
                  for f in summary["failures"]]
    else:
        lines.append("None: every policy ran on every (dataset, seed).")
    return "\n".join(lines) + "\n"


def _best_learned(summary: dict[str, Any], ds: str, key: str) -> tuple[str, dict[str, Any]] | None:
    """Learned router with the lowest mean ``key`` defined in every seed; for the calibrated point
    only routers whose mean realised test quality ratio reaches 95% qualify."""
    n = len(summary["args"]["seeds"])
    cands = []
    for r in summary["results"]:
        m = r["metrics"]
        c = m.get(key) if m else None
        if r["dataset"] != ds or r["policy"] not in LEARNED or not c or c["n"] != n:
            continue
        if key == "op_test_cost_share" and not (m.get("op_test_quality_ratio") or {}).get("mean", 0) >= 0.95:
            continue
        cands.append((r["policy"], c))
    return min(cands, key=lambda pc: pc[1]["mean"]) if cands else None


def _targets(summary: dict[str, Any], _ci: _Fmt) -> list[str]:
    rows = [ds for ds in ROUTERBENCH_TARGETS if ds in summary["datasets"]]
    if not rows:
        return []
    out = ["## RouterBench targets (issue #5)", "",
           "Cost share at 95% of the best single model's quality: the best learned router (defined in every "
           "seed); for the calibrated point only routers whose mean test quality ratio reaches 95% count.",
           "", "| task | target | TF-IDF logreg | best @95% frontier | best @95% calibrated "
           "| met (frontier / calibrated) |",
           "|---|---|---|---|---|---|"]
    for ds in rows:
        tgt, tfidf = ROUTERBENCH_TARGETS[ds]
        cells, met = [], []
        for key in ("cost_share_at_95", "op_test_cost_share"):
            best = _best_learned(summary, ds, key)
            cells.append("none" if best is None else f"{best[0]}: {_ci(best[1])}")
            met.append("n/a" if best is None else ("yes" if best[1]["mean"] <= tgt else "no"))
        out.append(f"| {ds.removeprefix('routerbench_')} | <= {100 * tgt:.0f}% | {100 * tfidf:.1f}% | "
                   f"{cells[0]} | {cells[1]} | {' / '.join(met)} |")
    return [*out, ""]


AIQ_RIVALS = ("knn", "mlp", "mf")
"""Routers the LightGBM policy must beat on AIQ on every dataset (issue #4)."""


def _paired_aiq(summary: dict[str, Any]) -> list[str]:
    """AIQ of ``lgbm`` minus each rival, paired by seed (same splits and AIQ cost axis per seed)."""
    per_seed = {(r["dataset"], r["policy"]): r["per_seed"] for r in summary["results"]}
    rivals = [p for p in AIQ_RIVALS if p in summary["args"]["policies"]]
    if "lgbm" not in summary["args"]["policies"] or not rivals:
        return []
    out = ["## LightGBM vs " + ", ".join(rivals) + " on AIQ (issue #4), paired by seed", "",
           "AIQ(lgbm) − AIQ(rival) per seed (same splits, same cost axis), mean ± 95% t-interval half-width, "
           "seeds where lgbm is ahead; **ahead** / **behind** = the interval excludes 0, **tied** = it does not.",
           "", "| dataset | " + " | ".join(f"vs {p}" for p in rivals) + " |", "|---|" + "---|" * len(rivals)]
    for ds in summary["datasets"]:
        mine = per_seed.get((ds, "lgbm"), {})
        cells = []
        for p in rivals:
            theirs = per_seed.get((ds, p), {})
            d = [mine[s]["aiq"] - theirs[s]["aiq"] for s in mine
                 if s in theirs and mine[s].get("aiq") is not None and theirs[s].get("aiq") is not None]
            if not d:
                cells.append("n/a")
                continue
            ci = t_interval(d)
            verdict = "ahead" if ci["lo"] > 0 else "behind" if ci["hi"] < 0 else "tied"
            wins = sum(x > 0 for x in d)
            cells.append(f"{ci['mean']:+.3f} ± {(ci['hi'] - ci['lo']) / 2:.3f} ({wins}/{len(d)}) {verdict}")
        out.append(f"| {ds} | " + " | ".join(cells) + " |")
    return [*out, ""]


def _op_phases(vals: dict[str, Any]) -> dict[str, bool | None]:
    """Independence phases at the val-calibrated operating point of one seed (latency not swept)."""
    from router_rl.eval.independence import independence_report

    q, c, loc = vals.get("op_test_quality_ratio"), vals.get("op_test_cost_share"), vals.get("op_test_local_share")
    if q is None or c is None:
        return {}
    rep = independence_report(local_share=loc, quality_ratio=q, cost_saving=1.0 - c,
                              cloud_share=None if loc is None else 1.0 - loc)
    return {p.phase: p.passed for p in rep.phases}


def _gates(summary: dict[str, Any]) -> list[str]:
    if "simulated" not in summary["datasets"]:
        return []
    out = ["## Independence gates (simulated fleet)", "",
           "Seeds passing each phase (phase1: local >= 40%, quality >= 90%, saving >= 50%; phase2: local >= 80%, "
           "quality >= 95%, saving >= 60%, latency P50 < 2 s / P95 < 5 s; phase4: local >= 99%), at the deployed "
           "point (λ = 0) and at the λ calibrated on val for 95% of the reference quality (latency checks "
           "skipped there).", "",
           "| policy | phase1 | phase2 | phase4 | phase1 @cal. | phase2 @cal. | phase4 @cal. |",
           "|---|---|---|---|---|---|---|"]
    for r in summary["results"]:
        if r["dataset"] != "simulated" or not r["metrics"]:
            continue
        cells = []
        for ph in ("gate_phase1", "gate_phase2", "gate_phase4"):
            c = r["metrics"].get(ph)
            cells.append("n/a" if not c else f"{round(c['mean'] * c['n'])}/{c['n']}")
        at_op = [_op_phases(v) for v in r["per_seed"].values()]
        for ph in ("phase1", "phase2", "phase4"):
            got = [bool(a[ph]) for a in at_op if a.get(ph) is not None]
            cells.append("n/a" if not got else f"{sum(got)}/{len(got)}")
        out.append(f"| {r['policy']} | " + " | ".join(cells) + " |")
    return [*out, ""]


# --- drivers -------------------------------------------------------------------------------------
def run_local(args: Args, jobs: list[tuple[str, int]]) -> list[dict[str, Any]]:
    """Run the jobs sequentially in this process (no Ray import), with a rich progress bar."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    out = []
    cols = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*cols) as prog:
        bar = prog.add_task("jobs", total=len(jobs))
        for ds, seed in jobs:
            t = time.perf_counter()
            out.append(run_job(ds, seed, args, on_step=lambda msg: prog.update(bar, description=msg)))
            prog.console.log(f"{ds} seed {seed}: {time.perf_counter() - t:.0f} s, {len(out[-1]['failures'])} failures")
            prog.advance(bar)
    return out


def run_ray(args: Args, jobs: list[tuple[str, int]]) -> list[dict[str, Any]]:
    """Fan the (dataset, seed) jobs out as ``ray.remote`` tasks (one CPU each)."""
    os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    import ray
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    module = sys.modules[run_job.__module__]
    if module.__name__ != "__main__":  # imported by path (tests): ship this module's code by value
        ray.cloudpickle.register_pickle_by_value(module)
    started = not ray.is_initialized()
    if started:
        if args.address == "local":
            ray.init(include_dashboard=False, log_to_driver=False)
        else:
            ray.init(address=args.address, log_to_driver=False)
    try:
        remote = ray.remote(num_cpus=1)(run_job)
        refs = {remote.remote(ds, seed, args): (ds, seed) for ds, seed in jobs}
        results: dict[tuple[str, int], dict[str, Any]] = {}
        cols = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
        with Progress(*cols) as prog:
            bar = prog.add_task(f"ray jobs on {args.address}", total=len(refs))
            pending = list(refs)
            while pending:
                done, pending = ray.wait(pending, num_returns=1)
                for ref in done:
                    results[refs[ref]] = ray.get(ref)
                    prog.advance(bar)
        return [results[j] for j in jobs]
    finally:
        if started:
            ray.shutdown()


def _round(o: Any, digits: int = 6) -> Any:
    """Floats rounded to ``digits`` significant digits (keeps the committed JSON small and stable)."""
    if isinstance(o, dict):
        return {k: _round(v, digits) for k, v in o.items()}
    if isinstance(o, list):
        return [_round(v, digits) for v in o]
    if isinstance(o, float):
        return float(f"{o:.{digits}g}")
    return o


def write_outputs(summary: dict[str, Any], json_path: Path) -> tuple[Path, Path]:
    """Write the (rounded, compact) JSON and the Markdown next to it."""
    json_path.parent.mkdir(parents=True, exist_ok=True)
    # one line per top-level entry of "results": small, yet diff-friendly
    body = {k: v for k, v in summary.items() if k != "results"}
    text = json.dumps(body, separators=(",", ":"))[:-1]
    rows = ",\n".join(json.dumps(r, separators=(",", ":")) for r in summary["results"])
    json_path.write_text(f'{text},\n"results":[\n{rows}\n]}}\n')
    run_info = summary.get("run") or {}
    md_path = json_path.with_suffix(".md")
    md_path.write_text(to_markdown(summary, command=run_info.get("command") or "?", wall_s=run_info.get("wall_s")))
    return json_path, md_path


def run(args: Args, *, command: str | None = None) -> dict[str, Any]:
    """The whole benchmark; writes ``<out_dir>/<name>.json`` and ``.md`` and returns the summary."""
    from rich.console import Console

    jobs = [(ds, seed) for ds in args.datasets for seed in args.seeds]
    t0 = time.perf_counter()
    raw = run_ray(args, jobs) if args.address else run_local(args, jobs)
    wall = time.perf_counter() - t0
    summary = aggregate(raw, args)
    summary["run"] = {"wall_s": wall, "timings": {f"{j['dataset']}/{j['seed']}": j["timings"] for j in raw},
                      "command": command or "python experiments/benchmark.py"}
    summary = _round(summary)
    jp, mp = write_outputs(summary, Path(args.out_dir) / f"{args.name}.json")
    con = Console()
    for f in summary["failures"]:
        con.print(f"[red]FAILED[/red] {f['dataset']} seed {f['seed']} {f['policy']} ({f['stage']}): {f['error']}")
    con.print(f"wrote {jp} and {mp} in {wall:.0f} s")
    return summary


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Parse flags and run."""
    args = parse_args(argv)
    if args.render:
        src = Path(args.render)
        summary = _round(json.loads(src.read_text()))
        print("wrote", *write_outputs(summary, src))
        return summary
    cmd = "python experiments/benchmark.py " + " ".join(argv if argv is not None else sys.argv[1:])
    return run(args, command=cmd.strip())


if __name__ == "__main__":
    main()
