"""The LightGBM logging policy the off-policy learner tests simulate their logs under."""

from __future__ import annotations

from typing import Any


def fit_logging_policy(n_tasks: int, seed: int) -> tuple[Any, Any, Any, Any]:
    """Simulate a fleet and fit a LightGBM policy (``lam=0.5``) with its encoder on its train split.

    Returns:
        ``(fleet, train split, encoder, policy)``.
    """
    from router_rl.features import EncoderConfig, FeatureEncoder
    from router_rl.policies import make_policy
    from router_rl.traces import simulate_fleet

    fleet = simulate_fleet(n_tasks, seed=seed)
    m = fleet.matrix()
    tr = m.split("train")
    enc = FeatureEncoder(EncoderConfig().restricted_to(tr.tasks.columns)).fit(tr.tasks)
    pol = make_policy("lgbm", m.models, decision={"lam": 0.5})
    pol.attach_encoder(enc)
    pol.fit(enc.transform(tr.tasks), tr, seed=0)
    return fleet, tr, enc, pol
