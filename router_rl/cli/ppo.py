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
        timesteps: int = typer.Option(20_000, "--timesteps", help="PPO environment steps"),
        opt: list[str] = typer.Option([], "--opt", help="PPOConfig setting KEY=VALUE (JSON values), repeatable"),
        lgbm_rounds: int = typer.Option(60, "--lgbm-rounds", help="Boosting rounds of the LightGBM base"),
        eval_days: int = typer.Option(32, "--eval-days", help="Held-out (test split) days to compare on"),
        seed: int = typer.Option(0, "--seed", help="Seed of the data simulation, LightGBM, PPO and evaluation"),
    ) -> None:
        """Train PPO warm-started from LightGBM on a BudgetedRouting env; print held-out reward vs the base."""
        import functools

        from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
        from rich.table import Table

        from router_rl.cli.console import make_console, print_table
        from router_rl.cli.policies import _parse_options
        from router_rl.core.errors import ConfigError
        from router_rl.envs import BudgetedRouting, load_env_data, load_spec, make_from_spec
        from router_rl.envs.budgeted import DAY_METRICS, evaluate_days
        from router_rl.policies import RoutingPolicy
        from router_rl.policies.base import PolicyLoadError
        from router_rl.policies.ppo import PPOConfig, PPORouter

        console = make_console()
        try:
            spec = load_spec(env)
            spec = spec.with_overrides(**_env_overrides(traces, n_tasks, seed, env_opt))
            cfg = PPOConfig.from_dict({"total_timesteps": timesteps} | _parse_options(opt))
        except (ConfigError, FileNotFoundError, ValueError) as e:
            raise typer.BadParameter(str(e)) from e
        if spec.kind != "budgeted":
            raise typer.BadParameter(f"--env {env}: PPO needs a 'budgeted' env spec, got kind {spec.kind!r}")
        if eval_days <= 0:
            raise typer.BadParameter(f"--eval-days: expected > 0, got {eval_days}")
        with Progress(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(), console=console) as prog:
            step = prog.add_task(f"loading {spec.name}", total=None)
            base: Any
            if base_dir is not None:
                try:
                    base = RoutingPolicy.load(base_dir)
                except PolicyLoadError as e:
                    raise typer.BadParameter(f"--base: {e}") from e
                if base.kind == "ppo":
                    raise typer.BadParameter(
                        f"--base: a PPO artifact cannot be the base; give its base policy instead: {base_dir / 'base'}"
                    )
                if base.encoder is None:
                    raise typer.BadParameter(f"--base {base_dir}: the artifact carries no feature encoder")
                data = load_env_data(spec, encoder=base.encoder)
                try:
                    base.check_models(data.train.models, what=f"env {spec.name}")
                except PolicyLoadError as e:
                    raise typer.BadParameter(f"--base: {e}") from e
            else:
                from router_rl.policies.lgbm import LGBMConfig, LGBMPolicy

                data = load_env_data(spec)
                prog.update(step, description=f"training LightGBM on {data.train.n_tasks} train tasks")
                base = LGBMPolicy(data.train.models, config=LGBMConfig(num_boost_round=lgbm_rounds, cv_folds=2))
                base.fit(data.features("train"), data.train, seed=seed)
                base.attach_encoder(data.encoder)
            if target is not None:
                if not hasattr(base, "calibrate") or data.val is None:
                    raise typer.BadParameter("--target: needs a calibratable base and a validation split")
                prog.update(step, description=f"calibrating the base to {target} on validation")
                try:
                    base.calibrate(data.features("val"), data.val, target)
                except ConfigError as e:
                    raise typer.BadParameter(f"--target: {e}") from e
            prog.update(step, description=f"PPO: {cfg.total_timesteps} steps on {spec.name} [train]")
            try:
                router = PPORouter.from_base(base, config=cfg)
            except ConfigError as e:
                raise typer.BadParameter(str(e)) from e
            router.fit_env(functools.partial(make_from_spec, spec, encoder=data.encoder, split="train"), seed=seed)
            prog.update(step, description=f"evaluating on {eval_days} held-out days")
            test_env = make_from_spec(spec, encoder=data.encoder, split="test")
            assert isinstance(test_env, BudgetedRouting)
            fd = router.feature_dim
            days = {"seed": 1_000_000 + seed, "episodes": eval_days}
            res = {
                "base": evaluate_days(test_env, lambda o: base.action_distribution(o[:, :fd]).argmax(1), **days),
                "ppo": evaluate_days(test_env, lambda o: router.action_distribution(o).argmax(1), **days),
            }
        fresh = router.observe(data.features("test")[:1], router.fresh_state())
        router.metadata["heldout"] = res | {"days": eval_days, "env": spec.name}
        router.metadata["env_spec"] = spec.name
        router.save(out)
        table = Table(title=f"held-out days ({eval_days} x {test_env.horizon} requests, test split)")
        table.add_column("metric")
        table.add_column(f"base ({base.kind})", justify="right")
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

