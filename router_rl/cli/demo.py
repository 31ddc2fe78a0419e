"""``router-rl demo``: the end-to-end job on built-in (simulated) data or given traces."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Add ``demo`` to the root app."""

    @app.command()
    def demo() -> None:
        """Run the main job end to end (placeholder until the foundation lands)."""
        typer.echo("router-rl demo")
