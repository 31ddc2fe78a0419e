"""Fixtures of the router tests: real replay backends on 127.0.0.1 (helpers live in ``_router_helpers``)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from _router_helpers import (
    ADMIN_TOKEN,
    API_TOKEN,
    CLOUD_KEY,
    CLOUD_KEY_ENV,
    CLOUD_MODELS,
    LOCAL_MODELS,
    make_catalog,
    make_frame,
)

from router_rl.replay.server import ReplayBackend, ReplayBackendServer


@pytest.fixture(scope="module")
def local_backend() -> Iterator[ReplayBackendServer]:
    b = ReplayBackend.from_frame(make_frame(LOCAL_MODELS), catalog=make_catalog(LOCAL_MODELS, "local", "local"),
                                 time_scale=0.0)
    with ReplayBackendServer(b) as srv:
        yield srv


@pytest.fixture(scope="module")
def cloud_backend() -> Iterator[ReplayBackendServer]:
    b = ReplayBackend.from_frame(make_frame(CLOUD_MODELS), catalog=make_catalog(CLOUD_MODELS, "cloud", "cloud"),
                                 time_scale=0.0, api_key=CLOUD_KEY)
    with ReplayBackendServer(b) as srv:
        yield srv


@pytest.fixture
def backends(
    local_backend: ReplayBackendServer, cloud_backend: ReplayBackendServer, monkeypatch: pytest.MonkeyPatch
) -> tuple[ReplayBackendServer, ReplayBackendServer]:
    """Both backends with faults and request logs cleared, and the cloud key in the environment."""
    for srv in (local_backend, cloud_backend):
        srv.backend.faults.clear()
        srv.backend.log.clear()
    monkeypatch.setenv(CLOUD_KEY_ENV, CLOUD_KEY)
    monkeypatch.setenv("ROUTER_RL_API_TOKENS", API_TOKEN)
    monkeypatch.setenv("ROUTER_RL_ADMIN_TOKENS", ADMIN_TOKEN)
    return local_backend, cloud_backend


