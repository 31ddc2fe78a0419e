"""What would another off-policy learner setting have done on a closed loop's own log? (issue #16)

For each finished run folder of ``experiments/closed_loop.py`` (they keep ``logged-rNN.parquet``;
the committed results keep only the reports, so rerun the loop first), refit the loop's learner on
the log of ``--round`` under each setting and fit seed (:func:`router_rl.loop.refit.refit_round`)
and print its held-out quality gap, cost ratio and utility gap to the offline full-information
LightGBM: the loop's learning target, without the loop's trajectory.

    .venv/bin/python experiments/loop_refit.py --runs /tmp/clean/seed0 /tmp/clean/seed1 \
        --settings '{"rounds100": {"reward_rounds": 100}, "rounds300": {"reward_rounds": 300}}'

Writes ``<out-dir>/<name>.{json,md}``.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np


@dataclass
class Args:
    """Settings (every field is a ``--flag``)."""

    runs: list[str] = field(default_factory=list)
    """finished closed-loop run folders (one per loop seed)"""
    round: int = 5
    """whose joined log (every round up to it)"""
    settings: str = '{"default": {}}'
    """JSON object: setting name -> OffPolicyConfig overrides"""
    fit_seeds: list[int] = field(default_factory=lambda: [100, 101, 102])
    """seeds of the refits"""
    out_dir: str = "experiments/results"
    name: str = "loop_refit"


def parse_args(argv: list[str] | None = None) -> Args:
    """argparse from the :class:`Args` fields."""
    d = Args()
    p = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    p.add_argument("--runs", nargs="+", required=True)
    p.add_argument("--round", type=int, default=d.round)
    p.add_argument("--settings", default=d.settings)
    p.add_argument("--fit-seeds", nargs="+", type=int, default=d.fit_seeds)
    p.add_argument("--out-dir", default=d.out_dir)
    p.add_argument("--name", default=d.name)
    a = Args(**vars(p.parse_args(argv)))
    try:
        settings = json.loads(a.settings)
    except json.JSONDecodeError as e:
        raise SystemExit(f"--settings: expected a JSON object, got {a.settings!r} ({e.msg})") from None
    if not isinstance(settings, dict) or not all(isinstance(v, dict) for v in settings.values()):
        raise SystemExit("--settings: expected a JSON object of objects: name -> OffPolicyConfig overrides")
    return a


def markdown(results: list[dict[str, Any]], a: Args, seconds: float) -> str:
    """One row per (run, setting): mean and range over the fit seeds."""
    lines = [f"Refit of the round-{a.round} learner on each run's own log, fit seeds {a.fit_seeds} "
             f"({seconds:.0f} s). Gap / ratio to the offline full-information LightGBM on the held-out tasks; "
             "mean [min, max] over the fit seeds.", "",
             "| run | rows | setting | quality gap (points) | cost ratio | utility gap | within 2 pts and 10% cost |",
             "|---|---|---|---|---|---|---|"]
    for r in results:
        for nm, st in r["settings"].items():
            g = np.array([f["quality_gap_points"] for f in st["fits"]])
            c = np.array([f["cost_ratio"] for f in st["fits"]])
            u = np.array([f["utility_gap"] for f in st["fits"]])
            ok = int(((np.abs(g) <= 2.0) & (np.abs(c - 1.0) <= 0.1)).sum())  # as experiments/closed_loop.py
            lines.append(f"| {Path(r['run']).name} | {r['rows']} | {nm} | "
                         f"{g.mean():+.2f} [{g.min():+.2f}, {g.max():+.2f}] | "
                         f"{c.mean():.3f} [{c.min():.3f}, {c.max():.3f}] | {u.mean():+.4f} | {ok}/{g.size} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    """Refit every run under every setting; write JSON + Markdown."""
    from router_rl.loop.refit import refit_round

    a = parse_args(argv)
    settings = json.loads(a.settings)
    t0 = time.perf_counter()
    results = []
    for run in a.runs:
        results.append(refit_round(run, a.round, settings, a.fit_seeds))
        print(f"{run}: done ({time.perf_counter() - t0:.0f} s)", flush=True)
    md = markdown(results, a, time.perf_counter() - t0)
    out = Path(a.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{a.name}.json").write_text(json.dumps({"args": asdict(a), "results": results}, indent=1, default=str))
    (out / f"{a.name}.md").write_text(md + "\n")
    print(md)
    return results


if __name__ == "__main__":
    main()
