"""Refit a finished loop's learner on its own joined log with other settings (what-if on one log).

A closed-loop run (:func:`router_rl.loop.rounds.run_loop`) leaves its joined log of every round
(``logged-rNN.parquet``) and its world's config. :func:`refit_round` fits the loop's off-policy
LightGBM again on the log of one round with another :class:`~router_rl.policies.offpolicy.OffPolicyConfig`
and fit seed, and scores it on the held-out tasks next to the offline full-information LightGBM,
as :func:`~router_rl.loop.rounds.rescore` scores the live version. It separates the learner's own
spread (fit seeds) and its settings from the loop's trajectory.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from router_rl.policies.base import RoutingPolicy


class HeldOutScorer:
    """A finished run's world, held-out tasks and offline reference, to score policies against it.

    Args:
        out: A finished run folder (its ``config.json``).
    """

    def __init__(self, out: str | Path) -> None:
        from router_rl.loop.config import LoopConfig
        from router_rl.loop.rounds import _test_truth, offline_baseline
        from router_rl.loop.world import load_world

        self.root = Path(out)
        self.cfg = LoopConfig.from_dict(json.loads((self.root / "config.json").read_text()))
        cfg = self.cfg
        self.world = load_world(cfg.traces, seed=cfg.seed, fleet_tasks=cfg.fleet_tasks, hash_buckets=cfg.hash_buckets)
        tr = self.world.traffic_rows
        ref = int(np.argmax(self.world.matrix.quality[tr].mean(axis=0)))
        self.cref = float(self.world.matrix.cost[tr, ref].mean())
        self.X_test = self.world.features(self.world.test_rows)
        self.reference = _test_truth(self.world, offline_baseline(self.world, cfg, self.world.features(tr)),
                                     self.X_test, 0, cfg.lam, self.cref)

    def truth(self, policy: RoutingPolicy) -> dict[str, float]:
        """``policy``'s true quality, cost, local share and utility on the held-out tasks (matrix as recorded)."""
        from router_rl.loop.rounds import _test_truth

        return _test_truth(self.world, policy, self.X_test, 0, self.cfg.lam, self.cref)

    def score(self, policy: RoutingPolicy) -> dict[str, float]:
        """``policy``'s held-out quality gap (points), cost ratio, utility gap and local share vs the reference."""
        t = self.truth(policy)
        base = self.reference
        return {
            "quality_gap_points": 100.0 * (t["quality"] - base["quality"]),
            "cost_ratio": t["cost_usd"] / base["cost_usd"] if base["cost_usd"] > 0 else float("nan"),
            "utility_gap": t["utility"] - base["utility"],
            "local_share": t["local_share"],
        }


def refit_round(
    out: str | Path, round_: int, settings: Mapping[str, Mapping[str, Any]], fit_seeds: Sequence[int]
) -> dict[str, Any]:
    """Refit the round's learner under each named setting and fit seed; held-out figures vs the reference.

    Args:
        out: A finished run folder (its ``config.json`` and ``logged-rNN.parquet``).
        round_: Whose log (every round so far, as the loop trains with ``train_window = 0``).
        settings: ``name -> OffPolicyConfig overrides`` (the loop's own ``clip`` unless given).
        fit_seeds: Seeds of the refits (the cross-fitting folds and the learner; the loop's own
            seed of round ``r`` is ``seed * 1000 + r``).

    Returns:
        ``{"reference": held-out truth of the offline LightGBM, "settings": {name: {"config": ...,
        "fits": [{seed, quality_gap_points, cost_ratio, utility_gap, local_share}, ...]}}}``.

    Raises:
        FileNotFoundError: no such run folder or round log.
    """
    import polars as pl

    from router_rl.logs.data import LoggedData
    from router_rl.loop.rounds import _lgbm
    from router_rl.policies.offpolicy import OffPolicyConfig, fit_from_log

    root = Path(out)
    log_path = root / f"logged-r{round_:02d}.parquet"
    if not log_path.is_file():
        raise FileNotFoundError(f"{log_path}: no joined log of round {round_} in this run folder")
    sc = HeldOutScorer(root)
    world, cfg = sc.world, sc.cfg
    data = LoggedData.from_table(pl.read_parquet(log_path), catalog=world.catalog, models=world.models)
    result: dict[str, Any] = {"run": str(root), "round": round_, "rows": int(data.n), "reference": sc.reference,
                              "settings": {}}
    for name, overrides in settings.items():
        opc = OffPolicyConfig(**{"clip": cfg.clip, **dict(overrides)})
        rows = []
        for s in fit_seeds:
            cand = fit_from_log(_lgbm(world, cfg), data, opc, seed=int(s),  # type: ignore[arg-type]
                                encoder=world.encoder, catalog=world.catalog)
            rows.append({"seed": int(s), **sc.score(cand)})
        result["settings"][name] = {"config": opc.model_dump(), "fits": rows}
    return result
