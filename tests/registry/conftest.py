"""Fixtures of the registry / gate / promotion tests: a simulated fleet, real LightGBM policies, a joined log.

``build_world(d, seed)`` fits one feature encoder on the fleet's train split, saves every policy
as a real artifact and writes a real joined log (part files -> ``join_logs`` -> parquet) of a
uniformly random logger on the test split (every model supported, so the gate's numbers are about
the candidates, not about support).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
import pytest

#: Small, fast OPE settings (two folds, PCA-16 reward model, 300 resamples); utility weighs cost a little.
FAST_GATE: dict[str, Any] = {
    "n_boot": 300,
    "folds": 2,
    "reward_model_params": {"pca_components": 16},
    "lam": 0.05,
}
LGBM = {"num_boost_round": 100, "early_stopping_rounds": 10, "cv_folds": 2}


def build_world(d: Path, seed: int, *, n_tasks: int = 1200, n: int = 2000) -> dict[str, Any]:
    """Policies (``good``, ``random``, ``cheapest``, ``shuffled``, ``inverted``) saved under ``d`` and a joined log.

    * ``good``: LightGBM quality router on the full-information train split (plenty of data);
    * ``random``: uniform; ``cheapest``: always the cheapest model;
    * ``shuffled``: the same LightGBM trained on quality labels shuffled across every (task, model)
      cell (a corrupted model: it learns noise; by chance it can still beat a random logger);
    * ``inverted``: the same LightGBM trained on ``1 - quality`` (a corrupted model that seeks the
      worst model of every task).
    """
    from router_rl.features import EncoderConfig, FeatureEncoder
    from router_rl.logs.join import join_logs
    from router_rl.logs.simulate import simulate_log
    from router_rl.policies import make_policy
    from router_rl.traces import simulate_fleet

    fleet = simulate_fleet(n_tasks, seed=seed)
    m = fleet.matrix()
    tr = m.split("train")
    enc = FeatureEncoder(EncoderConfig().restricted_to(tr.tasks.columns)).fit(tr.tasks)
    X = enc.transform(tr.tasks)

    def fit(kind: str, matrix: Any = tr, **kw: Any) -> Any:
        p = make_policy(kind, m.models, **kw)
        p.attach_encoder(enc)
        p.fit(X, matrix, seed=0)
        return p

    q = tr.quality
    shuffled_tr = dataclasses.replace(tr, quality=np.random.default_rng(seed).permutation(q.ravel()).reshape(q.shape))
    pols = {
        "random": fit("random"),
        "cheapest": fit("cheapest"),
        "shuffled": fit("lgbm", matrix=shuffled_tr, config=LGBM),
        "inverted": fit("lgbm", matrix=dataclasses.replace(tr, quality=1.0 - q), config=LGBM),
        "good": fit("lgbm", config=LGBM),
    }
    paths = {}
    for name, pol in pols.items():
        pol.metadata["version"] = f"{name}@seed{seed}"
        paths[name] = pol.save(d / name)
    logger = fit("random")
    log = simulate_log(fleet, logger, n=n, split="test", seed=seed + 1)
    log.write(d / "sim")
    table, _ = join_logs(d / "sim" / "decisions", d / "sim" / "feedback", catalog=log.catalog)
    table.write_parquet(d / "logged.parquet")
    return {
        "dir": d,
        "log": d / "logged.parquet",
        "data": log.logged(),
        "policies": pols,
        "paths": paths,
        "models": m.models,
        "catalog": log.catalog,
        "encoder": enc,
        "fleet": fleet,
    }


@pytest.fixture(scope="session")
def world(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Seed 0's world (shared by the gate, promotion and CLI tests)."""
    return build_world(tmp_path_factory.mktemp("world0"), 0)
