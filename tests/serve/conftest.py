"""Fixtures of the serving tests: one tiny real PPO artifact, real replay backends of the simulated fleet."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from _ppo_helpers import CLOUD, LOCAL, replay_frame, train_tiny_ppo

from router_rl.replay.server import ReplayBackend, ReplayBackendServer
from router_rl.traces.catalog import ModelCatalog, ModelSpec


@pytest.fixture(scope="session")
def ppo_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny PPO artifact trained once per session (LightGBM base + a few hundred PPO steps)."""
    return train_tiny_ppo(tmp_path_factory.mktemp("ppo") / "ppo")


@pytest.fixture(scope="session")
def sim_backends() -> Iterator[tuple[ReplayBackendServer, ReplayBackendServer]]:
    """Replay backends on 127.0.0.1: the fleet's local models, and its two cloud models."""
    local = ReplayBackend.from_frame(
        replay_frame(LOCAL), catalog=ModelCatalog([ModelSpec(m, "local", "local") for m in LOCAL]), time_scale=0.0
    )
    cloud_models = tuple(CLOUD)
    cloud = ReplayBackend.from_frame(
        replay_frame(cloud_models),
        catalog=ModelCatalog([ModelSpec(m, CLOUD[m], "cloud") for m in cloud_models]),
        time_scale=0.0,
    )
    with ReplayBackendServer(local) as lsrv, ReplayBackendServer(cloud) as csrv:
        yield lsrv, csrv
