"""Exploration: exact probabilities, masks honoured, sampled frequencies match the propensities."""

from __future__ import annotations

import numpy as np
import pytest

from router_rl.core.errors import ConfigError
from router_rl.policies.exploration import ExplorationConfig, explore, explored


def test_epsilon_mixes_uniform_over_allowed_only() -> None:
    p = np.array([0.7, 0.2, 0.1, 0.0])
    mask = np.array([True, False, True, True])
    q = explore(p, ExplorationConfig(epsilon=0.3), mask)
    base = np.array([0.7, 0.0, 0.1, 0.0]) / 0.8
    np.testing.assert_allclose(q, 0.7 * base + 0.3 * mask / 3, rtol=0, atol=1e-15)
    assert q[1] == 0.0 and q.sum() == pytest.approx(1.0, abs=1e-15)


def test_temperature_flattens_and_sharpens() -> None:
    p = np.array([0.6, 0.3, 0.1])
    hot = explore(p, ExplorationConfig(temperature=2.0))
    cold = explore(p, ExplorationConfig(temperature=0.5))
    np.testing.assert_allclose(hot, np.sqrt(p) / np.sqrt(p).sum(), atol=1e-15)
    np.testing.assert_allclose(cold, p**2 / (p**2).sum(), atol=1e-15)
    assert hot[0] < p[0] < cold[0]


def test_policy_mass_outside_allowed_becomes_uniform_over_allowed() -> None:
    q = explore(np.array([1.0, 0.0, 0.0]), ExplorationConfig(), np.array([False, True, True]))
    np.testing.assert_array_equal(q, [0.0, 0.5, 0.5])


def test_batch_equals_rows() -> None:
    rng = np.random.default_rng(0)
    p = rng.dirichlet(np.ones(5), size=20)
    mask = rng.random((20, 5)) < 0.7
    mask[:, 0] = True
    cfg = ExplorationConfig(epsilon=0.1, temperature=1.5)
    batch = explore(p, cfg, mask)
    for i in range(20):
        np.testing.assert_array_equal(batch[i], explore(p[i], cfg, mask[i]))


def test_sampled_frequencies_match_the_probabilities() -> None:
    rng = np.random.default_rng(7)
    q = explore(np.array([0.9, 0.1, 0.0, 0.0]), ExplorationConfig(epsilon=0.2))
    draws = rng.choice(4, size=200_000, p=q)
    freq = np.bincount(draws, minlength=4) / draws.size
    np.testing.assert_allclose(freq, q, atol=4 * np.sqrt(q * (1 - q) / draws.size).max())
    assert explored(np.array([0.9, 0.1, 0, 0]), 1) and not explored(np.array([0.9, 0.1, 0, 0]), 0)


def test_bad_settings_and_inputs_are_refused() -> None:
    with pytest.raises(ConfigError, match="epsilon"):
        ExplorationConfig(epsilon=1.0)
    with pytest.raises(ConfigError, match="temperature"):
        ExplorationConfig(temperature=0.0)
    with pytest.raises(ValueError, match="no allowed model"):
        explore(np.array([0.5, 0.5]), ExplorationConfig(), np.array([False, False]))
    with pytest.raises(ValueError, match="finite"):
        explore(np.array([np.nan, 1.0]), ExplorationConfig())
