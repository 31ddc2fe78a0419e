"""``router-rl tune lgbm|ppo``: hyper-parameter search on Ray Tune; writes the best config as a file.

The file is read back by ``router-rl train --policy lgbm --config FILE`` and
``router-rl train-ppo --config FILE`` (docs/tune.md).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

_RUN_HELP = "Ray: '' = start a local Ray, 'auto' or ray://host:port = join a cluster"

# The search settings both commands share (one definition each; TuneSettings validates them).
_Out = Annotated[Path, typer.Option("-o", "--out", help="Best config file to write (.yaml/.yml or .json)")]
_Trials = Annotated[int, typer.Option("--trials", help="Trials")]
_Rungs = Annotated[int, typer.Option("--rungs", help="Reports per trial (budget steps); 1 = no early stop")]
_GracePeriod = Annotated[int, typer.Option("--grace-period", help="Rungs before ASHA may stop a trial")]
_ReductionFactor = Annotated[int, typer.Option("--reduction-factor", help="ASHA keeps the top 1/this per rung")]
_CpusPerTrial = Annotated[int, typer.Option("--cpus-per-trial", help="CPUs per trial")]
_MaxConcurrent = Annotated[int, typer.Option("--max-concurrent", help="Trials at once (0 = as CPUs allow)")]
_Address = Annotated[str, typer.Option("--address", help=_RUN_HELP)]
_NumCpus = Annotated[int, typer.Option("--num-cpus", help="CPUs of a local Ray (0 = all)")]
_Storage = Annotated[Path, typer.Option("--storage", help="Folder of Ray Tune's records")]


def _settings(**kw: Any) -> Any:
    from router_rl.core.errors import ConfigError
    from router_rl.tune.runner import TuneSettings

    flags = {"trials": "--trials", "base_seed": "--seed", "rungs": "--rungs", "grace_period": "--grace-period",
             "reduction_factor": "--reduction-factor", "cpus_per_trial": "--cpus-per-trial",
             "max_concurrent": "--max-concurrent", "num_cpus": "--num-cpus"}
    try:
        return TuneSettings(**kw)
    except ConfigError as e:
        field = e.setting.split(".", 1)[-1]
        raise typer.BadParameter(e.problem, param_hint=f"'{flags.get(field, '--' + field)}'") from None


def _fixed(fixed: list[str], config_cls: Any) -> dict[str, Any]:
    """``--fixed KEY=JSON`` items, validated on their own by the trainer's config class."""
    from router_rl.cli.policies import _parse_options
    from router_rl.core.errors import ConfigError

    out = _parse_options(fixed)
    try:
        config_cls.from_dict(out)
    except ConfigError as e:
        raise typer.BadParameter(str(e), param_hint="'--fixed'") from None
    return out


def _space(parse: Any, items: list[str]) -> Any:
    from router_rl.tune.space import SearchSpaceError

    try:
        return parse(items)
    except SearchSpaceError as e:
        raise typer.BadParameter(str(e), param_hint="'--space'") from None


def _run(fn: Any, /, **kw: Any) -> Any:
    """Run a search; its errors become one line naming the flag (or the run's problem)."""
    from router_rl.cli.console import make_console
    from router_rl.core.errors import ConfigError
    from router_rl.tune.runner import TuneRunError
    from router_rl.tune.space import SearchSpaceError

    try:
        return fn(**kw)
    except SearchSpaceError as e:
        raise typer.BadParameter(str(e), param_hint="'--space'") from None
    except ConfigError as e:
        flag = {"metric": "--metric", "val_days": "--val-days", "env": "--env"}.get(e.setting, "--env-opt")
        raise typer.BadParameter(str(e), param_hint=f"'{flag}'") from None
    except TuneRunError as e:
        make_console(stderr=True).print("Error: " + " ".join(str(e).split()), markup=False)  # one line
        raise typer.Exit(1) from None


def _report(outcome: Any, tuned: Any, out: Path) -> None:
    from rich.table import Table

    from router_rl.cli.console import make_console, print_table

    console = make_console()
    names = list(outcome.best.spec.params)
    table = Table(title=f"{len(outcome.trials)} trials, {outcome.metric} on the validation split ({outcome.mode})")
    for c in ("trial", "seed", *names, "rungs", outcome.metric, "status"):
        table.add_column(c, justify="right" if c != "status" else "left")
    for r in outcome.trials:
        status = ("error: " + (r.error or "")[:60]) if r.error else (
            "best" if r is outcome.best else ("stopped early" if r.rungs_done < outcome.rungs else "complete"))
        vals = [f"{r.spec.params[n]:.4g}" if isinstance(r.spec.params[n], float) else str(r.spec.params[n])
                for n in names]
        score = r.metrics.get(outcome.metric)
        table.add_row(str(r.spec.index), str(r.spec.seed), *vals, f"{r.rungs_done}/{outcome.rungs}",
                      "n/a" if score is None else f"{float(score):.4g}", status)
    print_table(console, table)
    console.print(f"{outcome.stopped_early} stopped early by ASHA, {outcome.failed} failed; "
                  f"Ray Tune records: {outcome.storage}", markup=False)
    console.print(f"best: trial {tuned.tune.trial} ({outcome.metric} = {tuned.tune.score:.4g}); "
                  f"wrote {out}", markup=False)


def register(app: typer.Typer) -> None:
    """Add the ``tune`` command group to the root app."""
    tune_app = typer.Typer(help="Hyper-parameter search on Ray Tune (early stopping, a seed per trial).",
                           no_args_is_help=True)
    app.add_typer(tune_app, name="tune")

    @tune_app.command("lgbm")
    def tune_lgbm_cmd(
        out: _Out,
        traces: str = typer.Option("sim", "--traces", help="Trace parquet, a long CSV, or 'sim'"),
        n_tasks: int = typer.Option(2000, "--n-tasks", help="Tasks of the simulated fleet (--traces sim)"),
        space: list[str] = typer.Option(
            [], "--space", help="Searched LGBMConfig field NAME=KIND:ARGS (loguniform|uniform|int|logint:LO:HI, "
            "choice:A,B), repeatable; default: a 5-field space (docs/tune.md)"),
        fixed: list[str] = typer.Option([], "--fixed", help="LGBMConfig setting held fixed, KEY=JSON, repeatable"),
        metric: str = typer.Option("val_aiq", "--metric", help="Validation metric: val_aiq | val_quality"),
        trials: _Trials = 8,
        seed: int = typer.Option(0, "--seed", help="Base seed: trial values and per-trial seeds, data, val carve"),
        rungs: _Rungs = 3,
        grace_period: _GracePeriod = 1,
        reduction_factor: _ReductionFactor = 2,
        cpus_per_trial: _CpusPerTrial = 1,
        max_concurrent: _MaxConcurrent = 0,
        address: _Address = "",
        num_cpus: _NumCpus = 0,
        storage: _Storage = Path("runs/tune"),
        drop_invalid: bool = typer.Option(False, "--drop-invalid", help="CSV traces: drop invalid rows, report counts"),
    ) -> None:
        """Search LightGBM meta-model settings; the metric is computed on the validation split, never test."""
        from router_rl.cli.console import make_console
        from router_rl.cli.policies import _load_traceset
        from router_rl.policies.lgbm_config import LGBMConfig
        from router_rl.traces.split import MissingSplitError
        from router_rl.tune.best import tuned_from_outcome, write_tuned_config
        from router_rl.tune.lgbm import DEFAULT_LGBM_FIXED, parse_lgbm_space, split_and_encode, tune_lgbm
        from router_rl.tune.space import sample_trials

        if out.suffix.lower() not in (".yaml", ".yml", ".json"):
            raise typer.BadParameter(f"{out}: expected a .yaml, .yml or .json file name", param_hint="'--out'")
        dims = _space(parse_lgbm_space, space)
        fx = {**DEFAULT_LGBM_FIXED, **_fixed(fixed, LGBMConfig)}
        st = _settings(trials=trials, base_seed=seed, rungs=rungs, grace_period=grace_period,
                       reduction_factor=reduction_factor, cpus_per_trial=cpus_per_trial, max_concurrent=max_concurrent,
                       address=address, num_cpus=num_cpus, storage=str(storage), name=f"lgbm-{out.stem}")
        _space(lambda d: sample_trials(d, n_trials=st.trials, base_seed=seed, config_cls=LGBMConfig,
                                       fixed={k: v for k, v in fx.items() if k not in d}), dims)
        ts = _load_traceset(traces, n_tasks, seed, drop_invalid)
        try:
            tr, va, X_tr, X_va, notes = split_and_encode(ts, seed=seed, source=traces)
        except MissingSplitError as e:
            raise typer.BadParameter(str(e), param_hint="'--traces'") from None
        console = make_console()
        for note in notes:
            console.print(f"note: {note}", markup=False)
        console.print(f"tuning lgbm: {st.trials} trials on {tr.n_tasks} train / {va.n_tasks} val tasks "
                      f"({st.rungs} rungs, ASHA)", markup=False)
        outcome = _run(tune_lgbm, train=tr, val=va, X_train=X_tr, X_val=X_va, space=dims, fixed=fx, metric=metric,
                       settings=st)
        data = "sim" if traces == "sim" else str(Path(traces).resolve())
        tuned = tuned_from_outcome(outcome, trainer="lgbm", space=dims, base_seed=seed,
                                   data=data if traces != "sim" else f"sim (n_tasks={n_tasks}, seed={seed})")
        write_tuned_config(out, tuned)
        _report(outcome, tuned, out)

    @tune_app.command("ppo")
    def tune_ppo_cmd(
        out: _Out,
        env: str = typer.Option("sim-budgeted", "--env", help="BudgetedRouting env spec: name (envs/), path or id"),
        traces: str | None = typer.Option(None, "--traces", help="Data instead of the spec's: 'sim' or a parquet"),
        n_tasks: int | None = typer.Option(None, "--n-tasks", help="Tasks of the simulated fleet"),
        env_opt: list[str] = typer.Option([], "--env-opt", help="Env spec override KEY=JSON, repeatable"),
        space: list[str] = typer.Option(
            [], "--space", help="Searched PPOConfig field NAME=KIND:ARGS, repeatable; default: a 5-field space"),
        fixed: list[str] = typer.Option([], "--fixed", help="PPOConfig setting held fixed, KEY=JSON, repeatable"),
        timesteps: int = typer.Option(20_000, "--timesteps", help="PPO environment steps of a full trial"),
        lgbm_rounds: int = typer.Option(60, "--lgbm-rounds", help="Boosting rounds of the shared LightGBM base"),
        val_days: int = typer.Option(16, "--val-days", help="Validation days per report"),
        metric: str = typer.Option("val_reward", "--metric", help="Validation metric: val_reward | val_quality"),
        trials: _Trials = 8,
        seed: int = typer.Option(0, "--seed", help="Base seed: trial values and per-trial seeds, base, data"),
        rungs: _Rungs = 3,
        grace_period: _GracePeriod = 1,
        reduction_factor: _ReductionFactor = 2,
        cpus_per_trial: _CpusPerTrial = 1,
        max_concurrent: _MaxConcurrent = 0,
        address: _Address = "",
        num_cpus: _NumCpus = 0,
        storage: _Storage = Path("runs/tune"),
    ) -> None:
        """Search PPO settings on a budgeted env; the metric is the reward of validation-split days, never test."""
        from router_rl.cli.console import make_console
        from router_rl.cli.ppo import _env_overrides
        from router_rl.core.errors import ConfigError
        from router_rl.envs import load_spec
        from router_rl.policies.ppo import PPOConfig
        from router_rl.tune.best import tuned_from_outcome, write_tuned_config
        from router_rl.tune.ppo import parse_ppo_space, tune_ppo
        from router_rl.tune.space import sample_trials

        if out.suffix.lower() not in (".yaml", ".yml", ".json"):
            raise typer.BadParameter(f"{out}: expected a .yaml, .yml or .json file name", param_hint="'--out'")
        dims = _space(parse_ppo_space, space)
        if timesteps < 1:
            raise typer.BadParameter(f"expected >= 1, got {timesteps}", param_hint="'--timesteps'")
        fx = {"total_timesteps": timesteps, **_fixed(fixed, PPOConfig)}
        st = _settings(trials=trials, base_seed=seed, rungs=rungs, grace_period=grace_period,
                       reduction_factor=reduction_factor, cpus_per_trial=cpus_per_trial, max_concurrent=max_concurrent,
                       address=address, num_cpus=num_cpus, storage=str(storage), name=f"ppo-{out.stem}")
        _space(lambda d: sample_trials(d, n_trials=st.trials, base_seed=seed, config_cls=PPOConfig,
                                       fixed={k: v for k, v in fx.items() if k not in d}), dims)
        try:
            spec = load_spec(env).with_overrides(**_env_overrides(traces, n_tasks, seed, env_opt))
        except (ConfigError, FileNotFoundError, ValueError) as e:
            raise typer.BadParameter(str(e), param_hint="'--env'") from None
        make_console().print(f"tuning ppo: {st.trials} trials on {spec.name} ({timesteps} steps, {st.rungs} rungs, "
                             f"{val_days} validation days per rung, ASHA)", markup=False)
        outcome = _run(tune_ppo, spec=spec, space=dims, fixed=fx, metric=metric, lgbm_rounds=lgbm_rounds,
                       val_days=val_days, settings=st)
        tuned = tuned_from_outcome(outcome, trainer="ppo", space=dims, base_seed=seed,
                                   data=f"env {spec.name} ({spec.data.source})")
        write_tuned_config(out, tuned)
        _report(outcome, tuned, out)
