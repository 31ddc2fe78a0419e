"""Fixtures of the operations tests: Debian's promtool / prometheus binaries (skip locally, fail in CI)."""

from __future__ import annotations

import os
import shutil

import pytest


def _binary(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(f"CI=true but {name} is missing (.ci/run installs Debian's prometheus package)")
        pytest.skip(f"{name} not installed (apt-get install prometheus)")
    return path


@pytest.fixture(scope="session")
def promtool() -> str:
    """Path of ``promtool``."""
    return _binary("promtool")


@pytest.fixture(scope="session")
def prometheus_bin() -> str:
    """Path of the ``prometheus`` server."""
    return _binary("prometheus")
