"""CLI: ``router-rl router serve`` (the live router) and ``router-rl replay-backend``.

Heavy imports (FastAPI, uvicorn, providers) happen inside the commands so ``router-rl --help``
stays fast.
"""

from __future__ import annotations

from pathlib import Path

import typer

router_app = typer.Typer(help="The live hybrid router (OpenAI-compatible HTTP server).", no_args_is_help=True)


def _fail(message: str) -> None:
    from router_rl.cli.console import make_console

    make_console(stderr=True).print(f"[bold red]error:[/] {message}", highlight=False)
    raise typer.Exit(code=2)


@router_app.command("serve")
def serve_cmd(
    config: Path = typer.Option(..., "--config", "-c", help="router.yaml (see examples/router.yaml)."),
    host: str | None = typer.Option(None, help="Override server.host."),
    port: int | None = typer.Option(None, help="Override server.port."),
) -> None:
    """Serve POST /v1/chat/completions, /v1/models, /health, /metrics and /admin/* ."""
    from router_rl.cli.console import make_console
    from router_rl.core.errors import ConfigError
    from router_rl.router.config import load_config

    try:
        cfg = load_config(config)
    except ConfigError as e:
        _fail(str(e))
        return
    make_console(stderr=True).print(
        f"router-rl: {len(cfg.model_ids())} model(s) from {len(cfg.providers)} provider(s), "
        f"default strategy [bold]{cfg.strategy.value}[/], listening on "
        f"http://{host or cfg.server.host}:{port if port is not None else cfg.server.port}",
        highlight=False,
    )
    from router_rl.router.server import serve

    try:
        serve(str(config), host=host, port=port)
    except ConfigError as e:
        _fail(str(e))


def register(app: typer.Typer) -> None:
    """Add ``router`` (group) and ``replay-backend`` to the root app."""
    app.add_typer(router_app, name="router")

    @app.command("replay-backend")
    def replay_backend(
        traces: Path | None = typer.Option(None, "--traces", "-t", help="Trace file; omitted = simulated fleet."),
        host: str = typer.Option("127.0.0.1", help="Bind address (loopback only unless --allow-remote)."),
        port: int = typer.Option(8088, help="TCP port."),
        time_scale: float = typer.Option(1.0, "--time-scale", help="Multiplier of recorded latencies (0 = instant)."),
        faults: Path | None = typer.Option(None, "--faults", help="JSON/YAML file of fault rules."),
        seed: int = typer.Option(0, help="Seed of the simulated fleet and of fault draws."),
        n_tasks: int = typer.Option(200, "--n-tasks", help="Simulated fleet size when --traces is omitted."),
        api_key_env: str | None = typer.Option(None, "--api-key-env", help="Env var of a key clients must send."),
        allow_remote: bool = typer.Option(False, "--allow-remote", help="Permit a non-loopback --host."),
    ) -> None:
        """Serve recorded outcomes over OpenAI/Anthropic/Ollama-compatible HTTP, with fault injection."""
        from router_rl.core.errors import ConfigError
        from router_rl.replay.server import run_replay_backend

        if traces is not None and not traces.exists():
            _fail(f"--traces: {traces} does not exist")
        try:
            run_replay_backend(
                traces, host=host, port=port, faults=faults, seed=seed, time_scale=time_scale, n_tasks=n_tasks,
                api_key_env=api_key_env, allow_remote=allow_remote,
            )
        except ConfigError as e:
            _fail(str(e))
