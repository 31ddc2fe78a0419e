"""Quality gain and cost of judge-gated refinement per complexity, in the simulated fleet.

Simulates the fleet (:func:`router_rl.traces.simulate.simulate_fleet`), replays refinement on
every local model that has a refinement tier (:func:`~router_rl.traces.simulate.simulate_refinement`
with the caps/thresholds of :class:`router_rl.router.refine.RefineConfig`: 7B 3/0.90, 16B 5/0.95,
32B 7/0.98) under the documented :class:`~router_rl.traces.simulate.RefinementModel`
assumption, and reports per complexity and model: mean quality before/after, pass rate
before/after, mean iterations, cost and latency multipliers. Seeds are averaged.

Usage::

    .venv/bin/python experiments/refinement_sim.py            # 4,000 tasks x 3 seeds
    .venv/bin/python experiments/refinement_sim.py --quick    # 500 tasks x 1 seed

Writes ``<out-dir>/refinement_sim.json`` and ``.md`` (default ``experiments/results/``).
"""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import polars as pl

from router_rl.router.refine import RefineConfig
from router_rl.traces.refinement import RefinementModel, simulate_refinement
from router_rl.traces.simulate import COMPLEXITIES, simulate_fleet


@dataclass
class Args:
    """Settings (every field is a ``--flag``)."""

    n_tasks: int = 4000
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    gain: float = 0.25
    decay: float = 0.5
    out_dir: str = "experiments/results"
    quick: bool = False


def parse_args(argv: list[str] | None = None) -> Args:
    """argparse from the :class:`Args` fields."""
    d = Args()
    p = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    p.add_argument("--n-tasks", type=int, default=d.n_tasks)
    p.add_argument("--seeds", nargs="+", type=int, default=d.seeds)
    p.add_argument("--gain", type=float, default=d.gain)
    p.add_argument("--decay", type=float, default=d.decay)
    p.add_argument("--out-dir", default=d.out_dir)
    p.add_argument("--quick", action="store_true")
    a = Args(**vars(p.parse_args(argv)))
    if a.quick:
        a.n_tasks, a.seeds = 500, a.seeds[:1]
        if a.out_dir == "experiments/results":
            a.out_dir = "runs/refinement_sim"
    return a


def main(argv: list[str] | None = None) -> pl.DataFrame:
    """Run, write JSON/Markdown, return the per-complexity table."""
    a = parse_args(argv)
    cfg = RefineConfig()
    model = RefinementModel(gain=a.gain, decay=a.decay)
    frames = []
    for seed in a.seeds:
        ts = simulate_fleet(a.n_tasks, seed=seed)
        policy = {}
        for m in ts.catalog.models:
            tier = cfg.tier_for(m)
            if tier is not None and ts.catalog[m].is_local:
                policy[m] = (tier[1].max_iterations, tier[1].threshold)
        frames.append(simulate_refinement(ts, policy, seed=seed, model=model).with_columns(pl.lit(seed).alias("seed")))
    f = pl.concat(frames)
    thresholds = {m: t for m, (_, t) in policy.items()}
    f = f.with_columns(pl.col("model").replace_strict(thresholds).alias("threshold"))
    thr = pl.col("threshold")

    def table(keys: list[str]) -> pl.DataFrame:
        return (
            f.group_by(keys)
            .agg(
                pl.len().alias("cells"),
                pl.col("base_quality").mean().alias("quality_before"),
                pl.col("quality").mean().alias("quality_after"),
                (pl.col("base_quality") >= thr).mean().alias("pass_before"),
                pl.col("passed").mean().alias("pass_after"),
                pl.col("iterations").mean().alias("mean_iterations"),
                (pl.col("cost_usd").sum() / pl.col("base_cost_usd").sum()).alias("cost_x"),
                (pl.col("latency_s").sum() / pl.col("base_latency_s").sum()).alias("latency_x"),
            )
            .with_columns((pl.col("quality_after") - pl.col("quality_before")).alias("gain"))
            .with_columns(pl.col("complexity").replace_strict({c: i for i, c in enumerate(COMPLEXITIES)},
                                                               return_dtype=pl.Int64).alias("_order"))
            .sort(["_order", *[k for k in keys if k != "complexity"]])
            .drop("_order")
        )

    by_cx = table(["complexity"])
    by_cx_model = table(["complexity", "model"])
    out = Path(a.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    payload: dict[str, Any] = {"args": asdict(a), "by_complexity": by_cx.to_dicts(),
                               "by_complexity_model": by_cx_model.to_dicts()}
    (out / "refinement_sim.json").write_text(json.dumps(payload, indent=1))
    cols = ["quality_before", "quality_after", "gain", "pass_before", "pass_after", "mean_iterations", "cost_x",
            "latency_x"]

    def md(t: pl.DataFrame, keys: list[str]) -> list[str]:
        lines = ["| " + " | ".join([*keys, *cols]) + " |", "|" + "---|" * (len(keys) + len(cols))]
        for r in t.iter_rows(named=True):
            lines.append("| " + " | ".join([*(str(r[k]) for k in keys), *(f"{r[c]:.3f}" for c in cols)]) + " |")
        return lines

    text = [
        "# Refinement in the simulated fleet",
        "",
        f"{a.n_tasks} tasks x seeds {a.seeds}; RefinementModel(gain={a.gain}, decay={a.decay}); "
        "tiers 7B 3/0.90, 16B 5/0.95, 32B 7/0.98; local models with a tier only.",
        "",
        *md(by_cx, ["complexity"]),
        "",
        *md(by_cx_model, ["complexity", "model"]),
    ]
    (out / "refinement_sim.md").write_text("\n".join(text) + "\n")
    print("\n".join(text))
    return by_cx


if __name__ == "__main__":
    main()
