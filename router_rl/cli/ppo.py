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
        from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
        from rich.table import Table

        from router_rl.cli.console import make_console, print_table
        from router_rl.cli.policies import _parse_options
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
            cfg = PPOConfig.from_dict({"total_timesteps": timesteps} | _parse_options(opt))
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
