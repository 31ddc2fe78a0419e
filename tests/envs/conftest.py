"""Fixtures for the environment tests (helpers live in ``envs_helpers``)."""

from __future__ import annotations

import numpy as np
import pytest
from envs_helpers import hand_matrix

from router_rl.traces.matrix import OutcomeMatrix


@pytest.fixture
def small_matrix() -> OutcomeMatrix:
    """12 tasks with varied quality/cost/latency; tasks 3 and 7 are private."""
    rng = np.random.default_rng(7)
    n = 12
    q = rng.integers(0, 2, size=(n, 3)).astype(float)
    q[:, 2] = np.maximum(q[:, 2], 0.5)
    cost = np.column_stack([np.full(n, 0.001), np.full(n, 0.004), rng.uniform(0.01, 0.03, n)])
    lat = rng.uniform(0.5, 5.0, size=(n, 3))
    priv = [i in (3, 7) for i in range(n)]
    return hand_matrix(q, cost, lat, private=priv)


@pytest.fixture
def small_features(small_matrix: OutcomeMatrix) -> np.ndarray:
    """Deterministic features: task index scaled, private flag, constant."""
    n = small_matrix.n_tasks
    priv = small_matrix.tasks["privacy"].to_numpy().astype(np.float32)
    return np.column_stack([np.arange(n, dtype=np.float32) / n, priv, np.ones(n, dtype=np.float32)])
