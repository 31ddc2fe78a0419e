"""Shared pytest fixtures and environment for router_rl tests."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("FLWR_TELEMETRY_ENABLED", "0")
os.environ.setdefault("FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION", "1")
os.environ.setdefault("MPLBACKEND", "Agg")

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
REPO = Path(__file__).resolve().parents[1]


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


@pytest.fixture(scope="session")
def ray_head() -> Iterator[Any]:
    """One real local Ray head with its dashboard on 127.0.0.1 (``_ray_head.LocalHead``), for the session.

    Started on first use and stopped at the end of the session; ``router_rl`` is on its workers'
    ``PYTHONPATH``. A module that leaves Serve applications on it shuts them down when it ends
    (``serve shutdown``), so the next module finds a bare head.
    """
    pytest.importorskip("ray")
    from _ray_head import start_head

    try:
        head = start_head(pythonpath=str(REPO))
    except RuntimeError:  # a loaded machine: one more try before failing with the head's output
        head = start_head(pythonpath=str(REPO))
    try:
        yield head
    finally:
        head.stop()


@pytest.fixture
def ray_joined(ray_head: Any) -> Iterator[Any]:
    """This process joined to the session's head for one test (``ray.init(address=...)``), then disconnected.

    Code under test that starts Ray only when ``ray.is_initialized()`` is false runs its tasks there.
    """
    import ray

    ray.init(address=ray_head.gcs_address, log_to_driver=False)
    try:
        yield ray_head
    finally:
        ray.shutdown()


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
