"""What batched local serving does to the built-in fleet's cost and latency (one file, cleanrl-style).

For each local-serving setting (:class:`router_rl.traces.serving.LocalServingConfig`: continuous
batching at the default load, and the single-stream pricing) and each seed, simulate the fleet and
report per model: single-stream and per-stream decode tokens/s, the requests one server completes
per hour at the fleet's mean request, the mean cost per request, the SIMPLE-task P50 and the
COMPLEX-task P95 latency; and per setting the lowest cost share a per-task router knowing the
expected quality reaches at >= 95% of the reference quality and >= 80% local share
(:func:`router_rl.eval.mission.oracle_cost_share`).

Usage::

    .venv/bin/python experiments/local_serving.py            # 3 seeds, 4000 tasks (~20 s)
    .venv/bin/python experiments/local_serving.py --seeds 0 --n-tasks 1000 --out-dir runs/serving

Writes ``<out-dir>/local_serving.{json,md}`` (default ``experiments/results/``).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

MODES = ("batched", "single_stream")
REFERENCE = "claude-sonnet-4.5"


@dataclass
class Args:
    """Settings (every field is a ``--flag``)."""

    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    n_tasks: int = 4000
    out_dir: str = "experiments/results"


def parse_args(argv: list[str] | None = None) -> Args:
    """argparse from the :class:`Args` fields."""
    p = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    p.add_argument("--seeds", nargs="+", type=int, default=Args().seeds)
    p.add_argument("--n-tasks", type=int, default=Args().n_tasks)
    p.add_argument("--out-dir", default=Args().out_dir)
    a = Args(**vars(p.parse_args(argv)))
    if a.n_tasks < 200:
        raise SystemExit("--n-tasks: expected >= 200")
    return a


def run_one(mode: str, seed: int, n_tasks: int) -> dict[str, Any]:
    """Per-model figures and the oracle cost share of one (setting, seed)."""
    from router_rl.eval.mission import oracle_cost_share
    from router_rl.traces import simulate_fleet
    from router_rl.traces.serving import LocalServingConfig
    from router_rl.traces.simulate import SimulationConfig

    serving = LocalServingConfig(mode=mode)  # type: ignore[arg-type]
    ts = simulate_fleet(n_tasks, seed=seed, config=SimulationConfig(local_serving=serving))
    m = ts.matrix()
    cx = m.tasks["complexity"].to_numpy()
    ref = m.model_index(REFERENCE)
    models = {}
    for j, name in enumerate(m.models):
        spec = ts.catalog[name]
        row: dict[str, Any] = {
            "local": bool(spec.is_local),
            "cost_usd": float(m.cost[:, j].mean()),
            "cost_share": float(m.cost[:, j].mean() / m.cost[:, ref].mean()),
            "simple_p50_s": float(np.median(m.latency[cx == "SIMPLE", j])),
            "complex_p95_s": float(np.quantile(m.latency[cx == "COMPLEX", j], 0.95)),
        }
        if spec.is_local and spec.tokens_per_s:
            row["tokens_per_s"] = spec.tokens_per_s
            row["stream_tokens_per_s"] = float(serving.stream_tokens_per_s(spec.tokens_per_s))
            row["requests_per_hour"] = serving.requests_per_hour(
                float(m.input_tokens[:, j].mean()), float(m.output_tokens[:, j].mean()), spec.tokens_per_s
            )
            row["gpu_usd_per_hour"] = spec.gpu_usd_per_hour
        models[name] = row
    share = oracle_cost_share(m, ts.ground_truth_matrix(), reference=REFERENCE)
    return {"mode": mode, "seed": seed, "models": models, "oracle_cost_share": share,
            "wait_probability": serving.wait_probability()}


def _md(rows: list[dict[str, Any]], args: Args) -> str:
    today = dt.date.today().isoformat()
    lines = [f"# Local serving on the built-in fleet ({today})", "",
             f"`experiments/local_serving.py --seeds {' '.join(map(str, args.seeds))} --n-tasks {args.n_tasks}`: "
             "means over seeds. Reference = claude-sonnet-4.5.", ""]
    for mode in MODES:
        rs = [r for r in rows if r["mode"] == mode]
        shares = [r["oracle_cost_share"] for r in rs]
        lines += [f"## {mode} (P(wait for a slot) = {rs[0]['wait_probability']:.3f})", "",
                  "| model | tok/s alone | tok/s per stream | requests / server-hour | $ / request | "
                  "cost vs reference % | SIMPLE P50 s | COMPLEX P95 s |", "|---|---|---|---|---|---|---|---|"]
        for name in rs[0]["models"]:
            per = [r["models"][name] for r in rs]
            mean = {k: float(np.mean([p[k] for p in per])) for k in per[0] if k != "local"}

            def fmt(k: str, f: str, mean: dict[str, float] = mean) -> str:
                return f.format(mean[k]) if k in mean else "cloud"

            lines.append(
                f"| {name} | {fmt('tokens_per_s', '{:.0f}')} | {fmt('stream_tokens_per_s', '{:.0f}')} | "
                f"{fmt('requests_per_hour', '{:,.0f}')} | {mean['cost_usd']:.5f} | {100 * mean['cost_share']:.1f} | "
                f"{mean['simple_p50_s']:.2f} | {mean['complex_p95_s']:.1f} |")
        lines += ["", f"Per-task expected-quality router at >= 95% quality and >= 80% local: cost share "
                  f"{100 * np.mean(shares):.1f}% (per seed: {', '.join(f'{100 * s:.1f}' for s in shares)}).", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run every (setting, seed) and write JSON and Markdown."""
    args = parse_args(argv)
    t0 = time.perf_counter()
    rows = [run_one(mode, seed, args.n_tasks) for mode in MODES for seed in args.seeds]
    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    summary = {"args": asdict(args), "rows": rows, "wall_s": time.perf_counter() - t0}
    (out / "local_serving.json").write_text(json.dumps(summary, indent=2) + "\n")
    md = _md(rows, args)
    (out / "local_serving.md").write_text(md + "\n")
    print(md)
    return summary


if __name__ == "__main__":
    main()
