"""Options that several commands read the same way, turned into objects with one-line errors."""

from __future__ import annotations

from typing import TYPE_CHECKING

import typer

if TYPE_CHECKING:
    from pathlib import Path

    from router_rl.traces.catalog import ModelCatalog


def load_catalog_option(catalog: Path | None) -> ModelCatalog | None:
    """Load the ``--catalog`` file, or ``None`` when the option was not given.

    Args:
        catalog: Path given to ``--catalog``, or ``None``.

    Returns:
        The loaded catalog, or ``None`` when ``catalog`` is ``None``.

    Raises:
        typer.BadParameter: The file cannot be read or is not a valid catalog (names ``--catalog``).
    """
    if catalog is None:
        return None
    from router_rl.traces.catalog import ModelCatalog

    try:
        return ModelCatalog.load(catalog)
    except (OSError, ValueError) as e:
        raise typer.BadParameter(f"{catalog}: {e}", param_hint="--catalog") from None
