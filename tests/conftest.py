"""Shared pytest fixtures and environment for router_rl tests."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("FLWR_TELEMETRY_ENABLED", "0")
os.environ.setdefault("FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION", "1")
os.environ.setdefault("MPLBACKEND", "Agg")

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


@pytest.fixture(scope="session")
def datasets_root() -> Path:
    """The real third-party datasets folder; skips locally when absent, fails in CI."""
    from router_rl.core.paths import datasets_dir

    root = datasets_dir()
    if root is None:
        if IN_CI:
            pytest.fail("CI=true but ../shared/datasets (or $ROUTER_RL_DATASETS) is missing")
        pytest.skip("real datasets not available (set $ROUTER_RL_DATASETS)")
    return root


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark every test of a module that drives the CLI (imports typer's ``CliRunner``) with ``cli``.

    Modules that run the console script in a subprocess set ``pytestmark = pytest.mark.cli``.

    ``.ci/run`` reruns ``-m cli`` with ``COLUMNS=40``: no output a test reads may depend on the
    terminal width or on the length of a path.
    """
    for item in items:
        module = getattr(item, "module", None)
        if module is not None and hasattr(module, "CliRunner"):
            item.add_marker(pytest.mark.cli)
