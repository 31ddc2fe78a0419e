"""Hyper-parameter search on Ray Tune for the LightGBM meta-model or the PPO refinement (one file).

The search is :func:`router_rl.tune.lgbm.tune_lgbm` / :func:`router_rl.tune.ppo.tune_ppo` (the same
code as ``router-rl tune lgbm|ppo``): trials drawn from the search space with seeds derived from
``--seed``, run on Ray Tune under ASHA early stopping, scored on the **validation** split
(``val_aiq`` for LightGBM, the mean day reward on validation days for PPO). The best config is
written as a tuned-config file the trainers read (``router-rl train --policy lgbm --config FILE``,
``router-rl train-ppo --config FILE``), plus every trial's numbers as JSON.

Usage::

    .venv/bin/python experiments/tune.py --trainer lgbm                   # 8 trials, simulated fleet
    .venv/bin/python experiments/tune.py --trainer lgbm --traces my_traces.parquet --trials 16
    .venv/bin/python experiments/tune.py --trainer ppo --timesteps 20000  # PPO on sim-budgeted
    .venv/bin/python experiments/tune.py --trainer lgbm --address auto    # on a running Ray cluster
    .venv/bin/python experiments/tune.py --quick                          # smoke run (4 tiny LightGBM trials)

Writes ``<out-dir>/<trainer>_best.yaml`` and ``<out-dir>/<trainer>_trials.json`` (default ``runs/tune``).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class Args:
    """Search settings (every field is a ``--flag``)."""

    trainer: str = "lgbm"
    """``lgbm`` (the LightGBM meta-model) or ``ppo`` (the PPO refinement on a budgeted env)"""
    traces: str = "sim"
    """lgbm: trace parquet / long CSV, or ``sim``; ppo: ``sim``, a parquet, or empty for the env spec's data"""
    n_tasks: int = 2000
    """tasks of the simulated fleet"""
    env: str = "sim-budgeted"
    """ppo: the budgeted env spec"""
    horizon: int = 0
    """ppo: requests per day (0 = the spec's)"""
    space: list[str] = field(default_factory=list)
    """searched fields ``NAME=KIND:ARGS`` (empty = the trainer's default space; see docs/tune.md)"""
    fixed: list[str] = field(default_factory=list)
    """settings held fixed, ``KEY=JSON``"""
    metric: str = ""
    """validation metric (empty = ``val_aiq`` for lgbm, ``val_reward`` for ppo)"""
    trials: int = 8
    seed: int = 0
    """base seed: trial values, per-trial seeds, the data"""
    rungs: int = 3
    """reports per trial (boosting-round budgets / timestep chunks); 1 = no early stopping"""
    reduction_factor: int = 2
    """ASHA keeps the top 1/this of the trials at each rung"""
    timesteps: int = 20000
    """ppo: environment steps of a full trial"""
    lgbm_rounds: int = 60
    """ppo: boosting rounds of the shared LightGBM base"""
    val_days: int = 16
    """ppo: validation days per report"""
    max_concurrent: int = 0
    """trials at once (0 = as the CPUs allow)"""
    address: str = ""
    """Ray: empty = start a local Ray, ``auto`` or ``ray://host:port`` = join a cluster"""
    num_cpus: int = 0
    """CPUs of a local Ray (0 = all)"""
    out_dir: str = "runs/tune"
    quick: bool = False
    """smoke run: 4 LightGBM trials, 2 rungs, 400 simulated tasks, 16 rounds"""

    def apply_quick(self, given: set[str]) -> Args:
        """The ``--quick`` settings (flags given explicitly win)."""
        if not self.quick:
            return self
        quick: dict[str, Any] = {"trainer": "lgbm", "n_tasks": 400, "trials": 4, "rungs": 2,
                                 "fixed": ["num_boost_round=16", "early_stopping_rounds=4", "cv_folds=2"],
                                 "out_dir": "runs/tune_quick"}
        return dataclasses.replace(self, **{k: v for k, v in quick.items() if k not in given})

    def validate(self) -> Args:
        """Refuse bad values naming the flag (the search space is checked by the library)."""
        if self.trainer not in ("lgbm", "ppo"):
            raise SystemExit(f"--trainer: expected 'lgbm' or 'ppo', got {self.trainer!r}")
        for flag, v, lo in (("--trials", self.trials, 1), ("--rungs", self.rungs, 1), ("--n-tasks", self.n_tasks, 50),
                            ("--timesteps", self.timesteps, 1), ("--val-days", self.val_days, 1),
                            ("--reduction-factor", self.reduction_factor, 2), ("--seed", self.seed, 0)):
            if v < lo:
                raise SystemExit(f"{flag}: expected >= {lo}, got {v}")
        return self


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
            p.add_argument(flag, nargs="+", default=default)
        else:
            p.add_argument(flag, type={"int": int, "float": float, "str": str}[typ], default=default)
    ns = p.parse_args(argv)
    given = {a.lstrip("-").replace("-", "_").split("=")[0] for a in (argv or sys.argv[1:]) if a.startswith("--")}
    return Args(**vars(ns)).apply_quick(given).validate()


def _options(items: list[str], flag: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in items:
        key, sep, val = item.partition("=")
        if not sep or not key:
            raise SystemExit(f"{flag} {item!r}: expected KEY=JSON")
        try:
            out[key] = json.loads(val)
        except json.JSONDecodeError:
            out[key] = val
    return out


def run(args: Args) -> dict[str, Any]:
    """The search; writes the best config and the trials, returns the trials summary."""
    from router_rl.core.errors import ConfigError
    from router_rl.tune.best import tuned_from_outcome, write_tuned_config
    from router_rl.tune.runner import TuneSettings
    from router_rl.tune.space import SearchSpaceError

    out_dir = Path(args.out_dir)
    settings = TuneSettings(trials=args.trials, base_seed=args.seed, rungs=args.rungs,
                            reduction_factor=args.reduction_factor, max_concurrent=args.max_concurrent,
                            address=args.address, num_cpus=args.num_cpus, storage=str(out_dir / "ray"),
                            name=args.trainer)
    t0 = time.perf_counter()
    try:
        if args.trainer == "lgbm":
            from router_rl.traces import load_traces, simulate_fleet
            from router_rl.tune.lgbm import DEFAULT_LGBM_FIXED, parse_lgbm_space, split_and_encode, tune_lgbm

            space = parse_lgbm_space(args.space)
            ts = simulate_fleet(args.n_tasks, seed=args.seed) if args.traces == "sim" else \
                load_traces(Path(args.traces), seed=args.seed)
            tr, va, X_tr, X_va, notes = split_and_encode(ts, seed=args.seed, source=args.traces)
            for note in notes:
                print("note:", note)
            outcome = tune_lgbm(tr, va, X_tr, X_va, space=space, fixed={**DEFAULT_LGBM_FIXED,
                                **_options(args.fixed, "--fixed")}, metric=args.metric or "val_aiq", settings=settings)
            data = f"sim (n_tasks={args.n_tasks}, seed={args.seed})" if args.traces == "sim" else args.traces
        else:
            from router_rl.envs import load_spec
            from router_rl.tune.ppo import parse_ppo_space, tune_ppo

            space = parse_ppo_space(args.space)
            over: dict[str, Any] = {}
            if args.traces == "sim":
                over["data"] = {"source": "simulated", "n_tasks": args.n_tasks, "seed": args.seed}
            elif args.traces:
                over["data"] = {"source": "parquet", "path": str(Path(args.traces).resolve())}
            if args.horizon:
                over["horizon"] = args.horizon
            spec = load_spec(args.env).with_overrides(**over)
            outcome = tune_ppo(spec, space=space, fixed={"total_timesteps": args.timesteps,
                               **_options(args.fixed, "--fixed")}, metric=args.metric or "val_reward",
                               lgbm_rounds=args.lgbm_rounds, val_days=args.val_days, settings=settings)
            data = f"env {spec.name} ({spec.data.source})"
    except SearchSpaceError as e:
        raise SystemExit(f"--space: {e}") from None
    except ConfigError as e:
        raise SystemExit(f"--{e.setting.replace('_', '-')}: {e}") from None
    wall = time.perf_counter() - t0
    tuned = tuned_from_outcome(outcome, trainer=args.trainer, space=space, base_seed=args.seed, data=data)  # type: ignore[arg-type]
    best = write_tuned_config(out_dir / f"{args.trainer}_best.yaml", tuned)
    summary = {
        "args": dataclasses.asdict(args), "wall_s": round(wall, 1), "metric": outcome.metric, "best": tuned.to_dict(),
        "stopped_early": outcome.stopped_early, "failed": outcome.failed,
        "trials": [{"index": r.spec.index, "seed": r.spec.seed, "params": r.spec.params, "rungs": r.rungs_done,
                    "history": r.history, "error": r.error,
                    "final": {k: v for k, v in r.metrics.items() if k.startswith("val_")}} for r in outcome.trials],
    }
    (out_dir / f"{args.trainer}_trials.json").write_text(json.dumps(summary, indent=1, default=str) + "\n")
    for t in summary["trials"]:
        print(f"trial {t['index']} seed {t['seed']}: {t['params']} -> {outcome.metric} per rung "
              f"{[round(v, 4) for v in t['history']]}{' (error: ' + str(t['error']) + ')' if t['error'] else ''}")
    print(f"best: trial {tuned.tune.trial} ({outcome.metric} = {tuned.tune.score:.4g}), "
          f"{outcome.stopped_early} stopped early; wrote {best} in {wall:.0f} s")
    return summary


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Parse flags and run."""
    return run(parse_args(argv))


if __name__ == "__main__":
    main()
