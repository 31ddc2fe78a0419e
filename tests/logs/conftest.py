"""Fixtures of the logged-feedback tests: a small simulated fleet and a real LightGBM logging policy."""

from __future__ import annotations

from typing import Any

import pytest

from router_rl.traces.traceset import TraceSet


@pytest.fixture(scope="session")
def fleet() -> TraceSet:
    """400 simulated fleet tasks (7 models, train/val/test splits)."""
    from router_rl.traces import simulate_fleet

    return simulate_fleet(400, seed=3)


@pytest.fixture(scope="session")
def lgbm_policy(fleet: TraceSet) -> Any:
    """LightGBM quality router trained on the train split, with its encoder attached."""
    from router_rl.features import EncoderConfig, FeatureEncoder
    from router_rl.policies import make_policy

    m = fleet.matrix()
    tr = m.split("train")
    enc = FeatureEncoder(EncoderConfig().restricted_to(tr.tasks.columns)).fit(tr.tasks)
    pol = make_policy("lgbm", m.models)
    pol.attach_encoder(enc)
    pol.fit(enc.transform(tr.tasks), tr, seed=0)
    return pol
