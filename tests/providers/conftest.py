"""Fixtures of the provider tests: a small replay backend on 127.0.0.1."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from _provider_helpers import tiny_frame

from router_rl.replay.server import ReplayBackend, ReplayBackendServer


@pytest.fixture
def replay() -> Iterator[ReplayBackendServer]:
    """A replay server with time_scale 0.01 (a 1 s recorded latency takes 10 ms)."""
    df, catalog = tiny_frame()
    backend = ReplayBackend.from_frame(df, catalog=catalog, time_scale=0.01, seed=0)
    with ReplayBackendServer(backend) as srv:
        yield srv

