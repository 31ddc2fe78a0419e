"""``router-rl serve policy``: serve a policy artifact with Ray Serve (one process, foreground).

Operators running a Ray cluster use the Serve config instead (serve/policy.yaml, docs/serving.md).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer


def register(app: typer.Typer) -> None:
    """Add the ``serve`` command group to the root app."""
    serve_app = typer.Typer(help="Serve a learned policy with Ray Serve.", no_args_is_help=True)
    app.add_typer(serve_app, name="serve")

    @serve_app.command("policy")
    def serve_policy(
        policy: Annotated[Path, typer.Option("--policy", help="Policy artifact folder (router-rl train -o).")],
        host: Annotated[str, typer.Option(help="HTTP bind address of the Serve proxy.")] = "127.0.0.1",
        port: Annotated[int, typer.Option(help="HTTP port of the Serve proxy.")] = 8000,
        route_prefix: Annotated[str, typer.Option(help="URL prefix of the policy endpoint.")] = "/policy",
        replicas: Annotated[int, typer.Option(min=1, help="Number of replicas.")] = 1,
        address: Annotated[str | None, typer.Option(help="Ray cluster address (default: start a local Ray).")] = None,
    ) -> None:
        """Deploy POLICY behind POST {route_prefix}/route and GET {route_prefix}/health (blocks)."""
        from router_rl.serve.engine import PolicyEngine

        PolicyEngine(policy)  # fail fast, before Ray starts, on a bad artifact
        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
        os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
        import ray
        from ray import serve

        from router_rl.serve.app import policy_app

        ray.init(address=address, include_dashboard=False)
        serve.start(http_options={"host": host, "port": port})
        app_ = policy_app({"policy_path": str(policy.resolve())}, num_replicas=replicas)
        typer.echo(f"serving {policy} at http://{host}:{port}{route_prefix} (Ctrl-C to stop)")
        serve.run(app_, name="router-rl-policy", route_prefix=route_prefix, blocking=True)
