"""The loop's truth helpers: the policy's distribution recovered from a logged (explored, masked) one."""

from __future__ import annotations

import numpy as np
import pytest

from router_rl.loop.truth import allowed_mask, base_distribution, served_by_router
from router_rl.policies.exploration import ExplorationConfig, explore


def test_base_distribution_inverts_the_routers_exploration() -> None:
    rng = np.random.default_rng(0)
    base = rng.dirichlet(np.ones(5), size=200)
    allowed = rng.random((200, 5)) > 0.3
    allowed[:, 0] = True
    masked, _ = served_by_router(base, allowed)
    logged = explore(base, ExplorationConfig(epsilon=0.1), allowed)  # what the router samples from
    assert np.array_equal(allowed_mask(logged, 0.1), allowed)
    np.testing.assert_allclose(base_distribution(logged, 0.1), masked, atol=1e-12)
    one_hot = np.eye(5)[rng.integers(0, 5, 200)]
    ok = (one_hot * allowed).sum(axis=1) > 0
    logged = explore(one_hot[ok], ExplorationConfig(epsilon=0.2), allowed[ok])
    np.testing.assert_allclose(base_distribution(logged, 0.2), one_hot[ok], atol=1e-12)


def test_served_by_router_counts_rows_without_allowed_mass() -> None:
    pi = np.array([[1.0, 0.0, 0.0], [0.5, 0.5, 0.0]])
    allowed = np.array([[False, True, True], [True, False, True]])
    out, empty = served_by_router(pi, allowed)
    np.testing.assert_allclose(out, [[0.0, 0.5, 0.5], [1.0, 0.0, 0.0]])
    assert empty == 1
    with pytest.raises(ValueError, match="epsilon > 0"):
        allowed_mask(pi, 0.0)
