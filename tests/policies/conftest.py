"""Fixtures of the policy tests: a hand-made outcome matrix with known structure."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from router_rl.traces import ModelCatalog, ModelSpec, OutcomeMatrix

MODELS = ("small", "big", "cloud")


def toy_matrix(n: int = 400, seed: int = 0, d: int = 6) -> tuple[np.ndarray, OutcomeMatrix]:
    """Feature 0 drives the local models' success; the cloud model is good and expensive."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d)).astype(np.float32)
    p = np.stack(
        [1 / (1 + np.exp(-3 * X[:, 0])), 1 / (1 + np.exp(-(3 * X[:, 0] + 1.5))), np.full(n, 0.95)], axis=1
    )
    q = (rng.random((n, 3)) < p).astype(float)
    cost = np.tile([0.0001, 0.0005, 0.01], (n, 1)) * rng.uniform(0.8, 1.2, (n, 1))
    cat = ModelCatalog(
        [
            ModelSpec("small", "ollama", "local"),
            ModelSpec("big", "ollama", "local"),
            ModelSpec("cloud", "anthropic", "cloud", 3.0, 15.0),
        ]
    )
    m = OutcomeMatrix(
        tasks=pl.DataFrame({"task_id": [f"t{i}" for i in range(n)]}),
        models=MODELS,
        quality=q,
        cost=cost,
        latency=rng.uniform(0.5, 2.0, (n, 3)),
        error=np.zeros((n, 3), dtype=bool),
        input_tokens=np.full((n, 3), np.nan),
        output_tokens=np.full((n, 3), np.nan),
        catalog=cat,
    )
    return X, m


@pytest.fixture(scope="session")
def toy() -> tuple[np.ndarray, OutcomeMatrix]:
    return toy_matrix()


@pytest.fixture(scope="session")
def toy_splits(toy: tuple[np.ndarray, OutcomeMatrix]) -> dict[str, tuple[np.ndarray, OutcomeMatrix]]:
    X, m = toy
    idx = {"train": np.arange(0, 240), "val": np.arange(240, 320), "test": np.arange(320, 400)}
    return {k: (X[v], m.take(v)) for k, v in idx.items()}
