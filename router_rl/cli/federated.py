"""``router-rl federated``: federated LoRA fine-tuning demo (tiny local model, simulated agents)."""

from __future__ import annotations

from pathlib import Path

import typer


def register(app: typer.Typer) -> None:
    """Add the ``federated`` command to ``app``."""

    @app.command("federated")
    def federated(
        out: Path = typer.Option(Path("runs/federated"), help="Output folder (global_adapter/, metrics.json)."),
        base_model: Path | None = typer.Option(None, help="Local base model folder; default: build a tiny one in OUT."),
        agents: str = typer.Option("test-generator,coverage-analyzer,code-reviewer", help="Comma-separated agents."),
        rounds: int = typer.Option(2, min=1, help="Federated rounds."),
        seed: int = typer.Option(0, help="Seed of everything."),
        flower: bool = typer.Option(False, "--flower/--in-process", help="Run through the Flower simulation (Ray)."),
    ) -> None:
        """Federated LoRA: each agent type trains an adapter locally; the server FedAvgs them."""
        from rich.progress import Progress
        from rich.table import Table

        from router_rl.cli.console import make_console, print_table
        from router_rl.core.errors import ConfigError
        from router_rl.federated.config import FederatedConfig

        console = make_console()
        with Progress(console=console, transient=True) as progress:
            task = progress.add_task("federated LoRA", total=rounds + 2)
            base = base_model
            if base is None:
                from router_rl.federated.tiny import build_tiny_base_model

                base = build_tiny_base_model(out / "tiny-base", seed=seed)
            progress.advance(task)
            try:
                names = tuple(a.strip() for a in agents.split(","))
                cfg = FederatedConfig.create(
                    "router-rl federated", base_model_path=base, agent_types=names,
                    num_rounds=rounds, seed=seed, n_tasks=300, max_local_steps=10, lr=2e-2, max_length=64,
                )
            except ConfigError as exc:
                raise typer.BadParameter(str(exc)) from exc
            if flower:
                from router_rl.federated.simulation import run_flower_simulation

                res = run_flower_simulation(cfg, out)
                progress.advance(task, rounds + 1)
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
