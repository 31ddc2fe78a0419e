"""A simulated, joined router log shared by the logged-OPE tests (real LightGBM logger, real part files)."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def joined_sim_log(
    d: Path,
    *,
    n_tasks: int,
    fleet_seed: int,
    num_boost_round: int,
    early_stopping_rounds: int,
    n: int,
    epsilon: float,
    log_seed: int,
    log_config: Any,
) -> tuple[Any, Any, Any, Any, Any]:
    """Fit a LightGBM logger on a simulated fleet, log ``n`` test decisions under it and join them.

    Writes the part files under ``d / "sim"``, the joined table to ``d / "logged.parquet"`` and
    the logger to ``d / "logger"``.

    Returns:
        ``(matrix, train split, log, joined table, logger)``.
    """
    from router_rl.features import EncoderConfig, FeatureEncoder
    from router_rl.logs.join import join_logs
    from router_rl.logs.simulate import simulate_log
    from router_rl.policies import make_policy
    from router_rl.policies.exploration import ExplorationConfig
    from router_rl.traces import simulate_fleet

    fleet = simulate_fleet(n_tasks, seed=fleet_seed)
    m = fleet.matrix()
    tr = m.split("train")
    enc = FeatureEncoder(EncoderConfig().restricted_to(tr.tasks.columns)).fit(tr.tasks)
    logger = make_policy("lgbm", m.models, config={"num_boost_round": num_boost_round,
                                                   "early_stopping_rounds": early_stopping_rounds, "cv_folds": 2})
    logger.attach_encoder(enc)
    logger.fit(enc.transform(tr.tasks), tr, seed=0)
    log = simulate_log(
        fleet,
        logger,
        n=n,
        exploration=ExplorationConfig(epsilon=epsilon),
        split="test",
        seed=log_seed,
        config=log_config,
    )
    log.write(d / "sim")
    table, _ = join_logs(d / "sim" / "decisions", d / "sim" / "feedback", catalog=log.catalog)
    table.write_parquet(d / "logged.parquet")
    logger.save(d / "logger")
    return m, tr, log, table, logger
