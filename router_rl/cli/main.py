"""The ``router-rl`` console script.

Each concept owns one module here with a ``register(app)`` function; modules import their heavy
dependencies inside the command functions so that ``router-rl --help`` stays fast.
"""

from __future__ import annotations

import typer

from router_rl.cli import (
    demo,
    engines,
    envs,
    evaluate,
    federated,
    judge,
    logs,
    loop,
    ope,
    policies,
    ppo,
    registry,
    router,
    serve,
    traces,
    tune,
)

app = typer.Typer(
    name="router-rl",
    help="Learn which LLM should answer each request, evaluate it offline, serve it live.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    # plain click errors: 'Error: Invalid value for '--flag': ...' on one line, whatever the width
    rich_markup_mode=None,
)



@app.callback()
def _root() -> None:
    """router-rl: learned LLM routing for a fleet of QE agents."""


for _module in (demo, traces, logs, envs, policies, ppo, evaluate, ope, registry, router, serve, federated, engines,
                judge, loop, tune):
    _module.register(app)


def main() -> None:  # pragma: no cover - thin wrapper
    """Entry point used by ``python -m router_rl``."""
    app()
