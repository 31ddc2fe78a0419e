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
