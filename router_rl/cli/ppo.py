"""``router-rl train-ppo``: refine a LightGBM router with PPO on a ``BudgetedRouting`` environment."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer


def _env_overrides(traces: str | None, n_tasks: int | None, seed: int, env_opts: list[str]) -> dict[str, Any]:
    from router_rl.cli.policies import _parse_options

    ov: dict[str, Any] = _parse_options(env_opts)
    if traces == "sim":
        ov["data"] = {"source": "simulated", "n_tasks": n_tasks or 2000, "seed": seed} | dict(ov.get("data") or {})
    elif traces is not None:
        path = Path(traces)
        if not path.is_file():
            raise typer.BadParameter(f"{traces}: no such file (give a parquet written by router_rl.traces, or 'sim')")
        ov["data"] = {"source": "parquet", "path": str(path.resolve())} | dict(ov.get("data") or {})
    elif n_tasks is not None:
        ov["data"] = {"n_tasks": n_tasks} | dict(ov.get("data") or {})
    return ov


#: ``--timesteps`` when neither it nor a ``--config`` file sets the steps.
DEFAULT_TIMESTEPS = 20_000


def _ppo_settings(timesteps: int | None, opt: list[str], config_file: Path | None) -> dict[str, Any]:
    """PPOConfig settings: the default steps, then a tuned-config file, then ``--timesteps``, then ``--opt``."""
    from router_rl.cli.policies import _parse_options

    tuned: dict[str, Any] = {}
    if config_file is not None:
        from router_rl.core.errors import ConfigError
        from router_rl.tune.best import read_tuned_config

        try:
            t = read_tuned_config(config_file)
        except ConfigError as e:
            raise typer.BadParameter(str(e), param_hint="'--config'") from None
        if t.trainer != "ppo":
            raise typer.BadParameter(f"{config_file}: written by `tune {t.trainer}`; `train --policy lgbm` reads it",
                                     param_hint="'--config'")
        tuned = dict(t.config)
    steps = {} if timesteps is None else {"total_timesteps": timesteps}
    return {"total_timesteps": DEFAULT_TIMESTEPS} | tuned | steps | _parse_options(opt)


def _train_ppo_on_log(
    *, log: Path, out: Path, env: str, traces: str | None, env_opt: list[str], base_dir: Path | None,
    encoder_dir: Path | None, correction: str, ips_clip: float, timesteps: int | None, opt: list[str], lgbm_rounds: int,
    seed: int, config_file: Path | None = None,
) -> None:
    """``router-rl train-ppo --log``: PPO on ``LoggedReplay`` of a real log (the reward from ``--env``'s spec)."""
    from rich.table import Table

    from router_rl.cli.console import make_console, print_table
    from router_rl.cli.policies import _parse_options, load_log, load_log_encoder
    from router_rl.core.errors import ConfigError
    from router_rl.envs import load_spec
    from router_rl.policies import RoutingPolicy
    from router_rl.policies.base import PolicyLoadError
    from router_rl.policies.lgbm import LGBMConfig, LGBMPolicy
    from router_rl.policies.offpolicy import FIT_CORRECTIONS, OffPolicyConfig, OffPolicyError, fit_from_log
    from router_rl.policies.ppo import PPOConfig
    from router_rl.policies.ppo.train import train_ppo_on_log

    console = make_console()
    if traces is not None:
        raise typer.BadParameter("give either --log or --traces, not both", param_hint="'--traces'")
    if correction not in FIT_CORRECTIONS:
        raise typer.BadParameter(f"expected one of {list(FIT_CORRECTIONS)}, got {correction!r}",
                                 param_hint="'--correction'")
    if not ips_clip >= 1.0:
        raise typer.BadParameter(f"expected >= 1, got {ips_clip}", param_hint="'--ips-clip'")
    try:
        spec = load_spec(env).with_overrides(**_parse_options(env_opt))
        cfg = PPOConfig.from_dict(_ppo_settings(timesteps, opt, config_file))
    except (ConfigError, FileNotFoundError, ValueError) as e:
        raise typer.BadParameter(str(e)) from e
    base: Any = None
    if base_dir is not None:
        try:
            base = RoutingPolicy.load(base_dir)
        except PolicyLoadError as e:
            raise typer.BadParameter(str(e), param_hint="'--base'") from e
        if base.encoder is None:
            raise typer.BadParameter("the base policy carries no feature encoder", param_hint="'--base'")
        enc, catalog = base.encoder, base.catalog
    else:
        enc, catalog = load_log_encoder(encoder_dir)
    data, versions = load_log(log, enc, catalog)
    with console.status(f"learning from {data.n_labeled} labelled of {data.n} logged decisions") as status:
        if base is None:
            status.update(f"LightGBM base from the log ({correction})")
            base = LGBMPolicy(data.models, config=LGBMConfig(num_boost_round=lgbm_rounds, cv_folds=2))
            try:
                fit_from_log(base, data, OffPolicyConfig.from_dict({"correction": correction}), seed=seed, encoder=enc,
                             catalog=None if catalog is None else catalog.subset(list(data.models)),
                             logging_policy_versions=versions)
            except OffPolicyError as e:
                raise typer.BadParameter(str(e), param_hint="'--log'") from e
        try:
            result = train_ppo_on_log(data, base=base, reward=spec.reward, config=cfg, ips_clip=ips_clip, seed=seed,
                                      progress=status.update)
        except PolicyLoadError as e:
            raise typer.BadParameter(str(e), param_hint="'--base'") from e
        except ValueError as e:
            raise typer.BadParameter(str(e), param_hint="'--log'") from e
    router = result.router
    router.metadata["log"] = str(log)
    router.metadata["logging_policy_versions"] = versions
    router.save(out)
    table = Table(title=f"replay on the training log ({result.n_labeled} labelled of {result.n_rows} rows; in-sample)")
    table.add_column("policy")
    table.add_column("replay value", justify="right")
    table.add_column("matched", justify="right")
    table.add_column("95% CI", justify="right")
    for name, r in (("base (" + base.kind + ")", result.replay["base"]), ("ppo", result.replay["ppo"])):
        table.add_row(name, f"{r.value:.4g}", str(r.n_matched), f"[{r.ci[0]:.4g}, {r.ci[1]:.4g}]")
    print_table(console, table)
    console.print(f"saved [bold]{out}[/bold] ({router.version})")


def register(app: typer.Typer) -> None:
    """Add ``train-ppo`` to the root app."""

    @app.command("train-ppo")
    def train_ppo(
        out: Path = typer.Option(..., "-o", "--out", help="Artifact folder to write"),
        env: str = typer.Option("sim-budgeted", "--env", help="BudgetedRouting env spec: name (envs/), path or id"),
        traces: str | None = typer.Option(
            None, "--traces", help="Data instead of the spec's: 'sim' or a parquet written by router_rl.traces"
        ),
        n_tasks: int | None = typer.Option(None, "--n-tasks", help="Tasks of the simulated fleet"),
        env_opt: list[str] = typer.Option(
            [], "--env-opt", help='Env spec override KEY=JSON, e.g. budget=\'{"per_task_usd": 0.004}\', repeatable'
        ),
        base_dir: Path | None = typer.Option(
            None, "--base", help="Warm-start from this policy artifact instead of training LightGBM"
        ),
        target: str | None = typer.Option(
            None, "--target", help="Calibrate the base's λ on validation first: budget=USD | quality=0.95 | local=0.8"
        ),
        timesteps: int | None = typer.Option(
            None, "--timesteps", help=f"PPO environment steps [default: {DEFAULT_TIMESTEPS}, or the --config file's]"
        ),
        opt: list[str] = typer.Option([], "--opt", help="PPOConfig setting KEY=VALUE (JSON values), repeatable"),
        lgbm_rounds: int = typer.Option(60, "--lgbm-rounds", help="Boosting rounds of the LightGBM base"),
        eval_days: int = typer.Option(32, "--eval-days", help="Held-out (test split) days to compare on"),
        seed: int = typer.Option(0, "--seed", help="Seed of the data simulation, LightGBM, PPO and evaluation"),
        log: Path | None = typer.Option(
            None, "--log", help="Train on a joined decision log (router-rl logs join) replayed as an env"
        ),
        encoder_dir: Path | None = typer.Option(
            None, "--encoder", help="--log without --base: the encoder of the log's features (logging policy artifact)"
        ),
        correction: str = typer.Option("iw", "--correction", help="--log without --base: correction of the base"),
        ips_clip: float = typer.Option(10.0, "--ips-clip", help="--log: clip of the replay reward's 1/propensity"),
        config_file: Path | None = typer.Option(
            None, "--config", help="PPOConfig from a tuned-config file (router-rl tune ppo -o); --timesteps, --opt win"
        ),
    ) -> None:
        """Train PPO warm-started from LightGBM on a BudgetedRouting env; print held-out reward vs the base.

        With ``--log``: PPO learns on the router's own log (``LoggedReplay``, inverse-propensity
        weighted reward), warm-started from ``--base`` or from a LightGBM router learned from the
        same log (``router-rl train --log``).
        """
        if log is not None:
            _train_ppo_on_log(
                log=log, out=out, env=env, traces=traces, env_opt=env_opt, base_dir=base_dir, encoder_dir=encoder_dir,
                correction=correction, ips_clip=ips_clip, timesteps=timesteps, opt=opt, lgbm_rounds=lgbm_rounds,
                seed=seed, config_file=config_file,
            )
            return
        from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
        from rich.table import Table

        from router_rl.cli.console import make_console, print_table
        from router_rl.core.errors import ConfigError
        from router_rl.envs import load_spec
        from router_rl.envs.budgeted import DAY_METRICS
        from router_rl.policies import RoutingPolicy
        from router_rl.policies.base import PolicyLoadError
        from router_rl.policies.ppo import PPOConfig
        from router_rl.policies.ppo import train_ppo as run_pipeline

        console = make_console()
        try:
            spec = load_spec(env)
            spec = spec.with_overrides(**_env_overrides(traces, n_tasks, seed, env_opt))
            cfg = PPOConfig.from_dict(_ppo_settings(timesteps, opt, config_file))
        except (ConfigError, FileNotFoundError, ValueError) as e:
            raise typer.BadParameter(str(e)) from e
        if spec.kind != "budgeted":
            raise typer.BadParameter(f"--env {env}: PPO needs a 'budgeted' env spec, got kind {spec.kind!r}")
        if eval_days <= 0:
            raise typer.BadParameter(f"--eval-days: expected > 0, got {eval_days}")
        base: Any = None
        if base_dir is not None:
            try:
                base = RoutingPolicy.load(base_dir)
            except PolicyLoadError as e:
                raise typer.BadParameter(f"--base: {e}") from e
        with Progress(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(), console=console) as prog:
            step = prog.add_task(f"loading {spec.name}", total=None)
            try:
                result = run_pipeline(
                    spec, config=cfg, base=base, target=target, lgbm_rounds=lgbm_rounds, eval_days=eval_days,
                    seed=seed, progress=lambda msg: prog.update(step, description=msg),
                )
            except PolicyLoadError as e:
                raise typer.BadParameter(f"--base {base_dir}: {e}") from e
            except ConfigError as e:
                flag = {"target": "--target"}.get(e.setting.split(".")[0], "--opt")
                raise typer.BadParameter(f"{flag}: {e}") from e
        router, res = result.router, result.heldout or {}
        fresh = router.observe(result.data.features("test")[:1], router.fresh_state())
        router.save(out)
        table = Table(title=f"held-out days ({eval_days} x {result.extra['horizon']} requests, test split)")
        table.add_column("metric")
        table.add_column(f"base ({result.base.kind})", justify="right")
        table.add_column("ppo", justify="right")
        table.add_column("ppo − base", justify="right")
        for m in DAY_METRICS:
            b, p = res["base"][m], res["ppo"][m]
            table.add_row(m, f"{b:.4g}", f"{p:.4g}", f"{p - b:+.4g}")
        print_table(console, table)
        console.print(
            f"learned budget price at a fresh window: δ = {float(router.budget_price(fresh)[0]):+.4f} "
            f"(prior: {router.prior_kind})"
        )
        console.print(f"saved [bold]{out}[/bold] ({router.version})")
