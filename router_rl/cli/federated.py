"""``router-rl federated``: federated LoRA fine-tuning demo (tiny local model, simulated agents)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

if TYPE_CHECKING:
    from router_rl.federated.config import FederatedConfig

#: ``--runner`` values.
RUNNERS = ("auto", "in-process", "grid", "flower")
#: ``--strategy`` values (:attr:`FederatedConfig.strategy`).
STRATEGIES = ("fedavg", "fedprox", "fedadam", "fedyogi")
#: The flag that sets a config field (so a config error names what the user typed).
FLAG_OF = {"agent_types": "--agents", "num_rounds": "--rounds", "seed": "--seed", "strategy": "--strategy",
           "proximal_mu": "--proximal-mu", "secure_aggregation": "--secagg", "dp": "--dp",
           "dp_noise_multiplier": "--dp-noise-multiplier", "dp_clipping_norm": "--dp-clipping-norm",
           "dp_delta": "--dp-delta", "base_model_path": "--base-model"}
#: Demo settings of ``router-rl federated`` without ``--config`` (small and quick on a CPU).
DEMO_SETTINGS: dict[str, Any] = {"num_rounds": 2, "seed": 0, "n_tasks": 300, "max_local_steps": 10, "lr": 2e-2,
                                 "max_length": 64}
#: Agent types of ``router-rl federated`` without ``--agents`` or ``--config``.
DEMO_AGENTS = ("test-generator", "coverage-analyzer", "code-reviewer")


def federated_config(config: Path | None, out: Path, overrides: dict[str, Any]) -> FederatedConfig:
    """The run's validated config: ``config``'s ``[tool.flwr.app.config]`` (else demo settings), then ``overrides``.

    Without a base model in either, the tiny model built in ``out/tiny-base`` is the base.

    Raises:
        ConfigError: naming the field (and the file) that is wrong.
    """
    from router_rl.federated.config import FederatedConfig

    values = dict(overrides)
    if isinstance(values.get("agent_types"), str):
        values["agent_types"] = tuple(a.strip() for a in values["agent_types"].split(",") if a.strip())
    if config is None:
        values.setdefault("base_model_path", out / "tiny-base")
        values.setdefault("agent_types", DEMO_AGENTS)
        return FederatedConfig.create("router-rl federated", **{**DEMO_SETTINGS, **values})
    import tomllib

    with Path(config).open("rb") as fh:
        table = tomllib.load(fh).get("tool", {}).get("flwr", {}).get("app", {}).get("config", {})
    if "base-model-path" not in table:
        values.setdefault("base_model_path", out / "tiny-base")
    if "agent_types" in values:
        values["agent_types"] = ",".join(values["agent_types"])
    return FederatedConfig.from_pyproject(config, **values)


def choose_runner(runner: str, cfg: FederatedConfig) -> tuple[str, str]:
    """The runner to use for ``cfg`` and why.

    ``auto`` picks the plain in-process loop unless a setting needs Flower's workflow (FedAdam /
    FedYogi, SecAgg+, DP), then the in-process grid.

    Raises:
        ValueError: an explicit ``in-process`` asked for settings it cannot run (the reason).
    """
    needs = [name for name, on in (("strategy " + cfg.strategy, cfg.strategy in ("fedadam", "fedyogi")),
                                   ("SecAgg+", cfg.secure_aggregation), ("DP", cfg.dp)) if on]
    if runner == "auto":
        return ("grid", f"auto: {', '.join(needs)} need Flower's workflow") if needs else ("in-process", "auto")
    if runner == "in-process" and needs:
        raise ValueError(f"the in-process loop runs FedAvg / FedProx only; {', '.join(needs)} need "
                         "--runner grid or flower")
    return runner, "as asked"


def register(app: typer.Typer) -> None:
    """Add the ``federated`` command to ``app``."""

    @app.command("federated")
    def federated(
        out: Path = typer.Option(Path("runs/federated"), help="Output folder (global_adapter/, metrics.json)."),
        base_model: Path | None = typer.Option(
            None, help="Local base model folder; default: the config's, else build a tiny one in OUT."),
        agents: str | None = typer.Option(
            None, help=f"Comma-separated agent types, one client each [default: {','.join(DEMO_AGENTS)}]."),
        rounds: int | None = typer.Option(None, min=1, help="Federated rounds [default: 2]."),
        seed: int | None = typer.Option(None, help="Seed of everything [default: 0]."),
        runner: str = typer.Option(
            "auto", help="auto | in-process | grid | flower: the plain loop (FedAvg / FedProx), Flower's ServerApp "
            "and ClientApp over an in-process grid (every strategy, SecAgg+, DP), or Flower's simulation (Ray); "
            "auto = in-process when the settings allow it, else grid."),
        config: Path | None = typer.Option(
            None, help="A pyproject.toml whose [tool.flwr.app.config] table holds the run's settings (the file "
            "`flwr run` reads); the flags override it where given."),
        strategy: str | None = typer.Option(None, help="fedavg | fedprox | fedadam | fedyogi [default: fedavg]."),
        proximal_mu: float | None = typer.Option(None, help="FedProx mu (with --strategy fedprox)."),
        secagg: bool | None = typer.Option(None, "--secagg/--no-secagg",
                                           help="Aggregate through Flower's SecAgg+ (>= 3 clients) [default: off]."),
        dp: bool | None = typer.Option(None, "--dp/--no-dp", help="Client-side clipping + Gaussian noise."),
        dp_noise_multiplier: float | None = typer.Option(None, help="DP noise std / clipping norm."),
        dp_clipping_norm: float | None = typer.Option(None, help="DP L2 bound of each client's update."),
        dp_delta: float | None = typer.Option(None, help="delta at which the spent epsilon is reported."),
    ) -> None:
        """Federated LoRA: each agent type trains an adapter locally; the server aggregates them.

        Prints the runner used and why, the loss per round and, with DP, the privacy spent.
        """
        from rich.progress import Progress
        from rich.table import Table

        from router_rl.cli.console import make_console, print_table
        from router_rl.core.errors import ConfigError

        if runner not in RUNNERS:
            raise typer.BadParameter(f"expected one of {', '.join(RUNNERS)}, got {runner!r}", param_hint="--runner")
        if strategy is not None and strategy not in STRATEGIES:
            raise typer.BadParameter(f"expected one of {', '.join(STRATEGIES)}, got {strategy!r}",
                                     param_hint="--strategy")
        given = {"agent_types": agents, "num_rounds": rounds, "seed": seed, "strategy": strategy,
                 "proximal_mu": proximal_mu, "secure_aggregation": secagg, "dp": dp,
                 "dp_noise_multiplier": dp_noise_multiplier, "dp_clipping_norm": dp_clipping_norm,
                 "dp_delta": dp_delta, "base_model_path": base_model}
        overrides = {k: v for k, v in given.items() if v is not None}
        try:
            cfg = federated_config(config, out, overrides)
        except ConfigError as exc:
            hint = FLAG_OF.get(exc.setting.replace("-", "_"), "--config")
            raise typer.BadParameter(str(exc), param_hint=hint) from exc
        except (OSError, ValueError) as exc:  # an unreadable or malformed --config file
            raise typer.BadParameter(f"{config}: {exc}", param_hint="--config") from exc
        try:
            chosen, why = choose_runner(runner, cfg)
        except ValueError as exc:
            raise typer.BadParameter(str(exc), param_hint="--runner") from exc
        console = make_console()
        console.print(f"runner: {chosen} ({why}); strategy {cfg.strategy}, "
                      f"SecAgg+ {'on' if cfg.secure_aggregation else 'off'}, DP {'on' if cfg.dp else 'off'}")
        with Progress(console=console, transient=True) as progress:
            task = progress.add_task("federated LoRA", total=cfg.num_rounds + 1)
            if not Path(cfg.base_model_path).is_dir():
                from router_rl.federated.tiny import build_tiny_base_model

                build_tiny_base_model(cfg.base_model_path, seed=cfg.seed)
            if chosen == "flower":
                from router_rl.federated.simulation import run_flower_simulation

                res = run_flower_simulation(cfg, out)
            elif chosen == "grid":
                from router_rl.federated.runner import run_local_grid

                res, _grid = run_local_grid(cfg, out)
            else:
                from router_rl.federated.runner import run_inprocess

                res = run_inprocess(cfg, out, on_round=lambda r, _log: progress.advance(task))
        table = Table("round", "train loss", "eval loss", "eval ppl")
        for r in sorted(res.history.rounds):
            log = res.history.rounds[r]
            tl = log.get("train_loss")
            table.add_row(str(r), "-" if tl is None else f"{tl:.4f}", f"{log['eval_loss']:.4f}",
                          f"{log['eval_perplexity']:.1f}")
        print_table(console, table)
        if res.privacy:
            pr = res.privacy
            console.print(f"privacy spent: epsilon {pr['epsilon']:.4g} at delta {pr['delta']:.3g} over "
                          f"{pr['rounds']} rounds (noise multiplier {pr['noise_multiplier']:g}, clipping norm "
                          f"{pr['clipping_norm']:g}; {pr['accounting']})")
        console.print(f"global adapter: {res.adapter_dir}\nmetrics: {res.metrics_path}")

    @app.command("federated-round")
    def federated_round(
        store: list[str] = typer.Option(..., "--store", help="NAME=DIR: a node and its trajectory store (repeat)."),
        base_model: Path = typer.Option(..., help="Local base model folder (Hugging Face format)."),
        out: Path = typer.Option(Path("runs/federated-scheduled"), help="Federation folder (global_adapter/)."),
        state: Path | None = typer.Option(None, help="Schedule state file (default: OUT/schedule.json)."),
        min_new: int = typer.Option(1000, min=1, help="New accepted trajectories each node needs for a round."),
        quality_threshold: float = typer.Option(1.0, min=0.0, max=1.0, help="Quality an accepted trajectory needs."),
        local_steps: int = typer.Option(10, min=1, help="Optimizer steps per client in the round."),
        lr: float = typer.Option(2e-2, help="Learning rate of the LoRA parameters."),
        max_length: int = typer.Option(96, min=8, help="Token length of a prompt -> response sequence."),
        seed: int = typer.Option(0, help="Seed of everything."),
        check_only: bool = typer.Option(False, "--check-only", help="Report whether a round is due; run nothing."),
    ) -> None:
        """Run one federated SFT round when every node has >= MIN_NEW new accepted trajectories.

        Meant to be run periodically (cron, a systemd timer): it checks the stores against the
        state file and starts a round only when it is due; otherwise it says which nodes it waits for.
        """
        from rich.table import Table

        from router_rl.cli.console import make_console, print_table
        from router_rl.core.errors import ConfigError
        from router_rl.federated.config import FederatedConfig
        from router_rl.federated.schedule import RoundScheduler, ScheduleStateError, scheduled_round
        from router_rl.federated.trajectories import TrajectoryStoreError

        stores: dict[str, Path] = {}
        for s in store:
            name, sep, path = s.partition("=")
            if not sep or not name.strip() or not path.strip():
                raise typer.BadParameter(f"expected NAME=DIR, got {s!r}", param_hint="--store")
            if name in stores:
                raise typer.BadParameter(f"node {name!r} given twice", param_hint="--store")
            stores[name.strip()] = Path(path.strip())
        sched = RoundScheduler(stores, state or out / "schedule.json", min_new=min_new,
                               quality_threshold=quality_threshold)
        console = make_console()
        try:
            chk = sched.check()
        except ScheduleStateError as exc:
            raise typer.BadParameter(str(exc), param_hint="--state") from exc
        except (TrajectoryStoreError, FileNotFoundError) as exc:
            raise typer.BadParameter(str(exc), param_hint="--store") from exc
        table = Table("node", "accepted", "new", "needed")
        for n in stores:
            table.add_row(n, str(chk.accepted[n]), str(chk.new[n]), str(min_new))
        print_table(console, table)
        if not chk.due:
            console.print(f"round {chk.round} not due: waiting for {', '.join(chk.waiting_for)}")
            return
        if check_only:
            console.print(f"round {chk.round} is due (--check-only: not run)")
            return
        try:
            cfg = FederatedConfig.create(
                "router-rl federated-round", base_model_path=base_model, agent_types=tuple(stores),
                data_source="trajectories", trajectory_dirs=tuple(str(p) for p in stores.values()),
                quality_threshold=quality_threshold, num_rounds=chk.round, max_local_steps=local_steps, lr=lr,
                max_length=max_length, seed=seed,
            )
        except ConfigError as exc:
            raise typer.BadParameter(str(exc)) from exc
        _chk, res = sched.run_if_due(lambda c: scheduled_round(cfg, out, server_round=c.round))
        assert res is not None
        console.print(f"round {res['round']}: held-out loss {res['eval_loss_before']:.4f} -> {res['eval_loss']:.4f}"
                      f"\nglobal adapter: {out / 'global_adapter'}")
