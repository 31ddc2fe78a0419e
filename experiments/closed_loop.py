"""The closed loop, proven: ``router-rl loop`` over several seeds, plus the bad-candidate and regression runs.

For each seed, one full run (:func:`router_rl.loop.rounds.run_loop`) on 127.0.0.1: replay backends
serving the simulated fleet (or ``--traces``), the router starting from the rule router with
exploration, the traffic driver, the oracle's feedback, and every round: join, off-policy
LightGBM, OPE gate, hot swap under load. Optionally in the same run a deliberately worse
candidate (``--bad-candidate-round``) and an injected regression (``--inject-regression``).

Reported over seeds (issue #16's targets):

* the final live version vs the offline full-information LightGBM on held-out tasks: quality gap
  (points) and cost ratio;
* how often the OPE interval covered the true value (the live version's, and the candidate's, per round);
* bad candidates promoted (target 0); rollbacks and the requests until the first request served by
  the version rolled back to; failed requests (target 0).

    .venv/bin/python experiments/closed_loop.py                       # 5 seeds x 5 rounds x 2000 requests
    .venv/bin/python experiments/closed_loop.py --seeds 0 1 2 --bad-candidate-round 3 --inject-regression 4

Writes ``<out-dir>/closed_loop.{json,md}`` and one run folder per seed (report.md/json/png).
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

    seeds: list[int] = field(default_factory=lambda: [0, 1, 2, 3, 4])
    """one full loop per seed (fleet, traffic, router sampling, fits)"""
    rounds: int = 5
    """rounds per run"""
    requests_per_round: int = 2000
    """requests per round"""
    traces: str | None = None
    """trace file to replay (default: the simulated fleet)"""
    fleet_tasks: int = 3000
    """tasks of the simulated fleet"""
    epsilon: float = 0.1
    """router exploration share"""
    lam: float = 0.1
    """cost weight of the learners and of the gate's utility"""
    quality_floor: float = 0.85
    """gate: lower bound of the candidate's quality / the best single model's"""
    bad_candidate_round: int | None = None
    """round whose candidate is a deliberately worse policy"""
    candidate_kind: str = "corrupted"
    """that policy: random | cheapest | corrupted"""
    inject_regression: int | None = None
    """round from which one backend model answers with lower quality"""
    n_bootstrap: int = 200
    """bootstrap resamples of the OPE intervals"""
    rescore: bool = False
    """only re-score finished seed folders of out_dir (held-out comparison on the matrix as recorded)"""
    out_dir: str = "experiments/results/closed_loop"


def parse_args(argv: list[str] | None = None) -> Args:
    """argparse from the :class:`Args` fields."""
    d = Args()
    p = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    p.add_argument("--seeds", nargs="+", type=int, default=d.seeds)
    p.add_argument("--rounds", type=int, default=d.rounds)
    p.add_argument("--requests-per-round", type=int, default=d.requests_per_round)
    p.add_argument("--traces", default=d.traces)
    p.add_argument("--fleet-tasks", type=int, default=d.fleet_tasks)
    p.add_argument("--epsilon", type=float, default=d.epsilon)
    p.add_argument("--lam", type=float, default=d.lam)
    p.add_argument("--quality-floor", type=float, default=d.quality_floor)
    p.add_argument("--bad-candidate-round", type=int, default=d.bad_candidate_round)
    p.add_argument("--candidate-kind", default=d.candidate_kind)
    p.add_argument("--inject-regression", type=int, default=d.inject_regression)
    p.add_argument("--n-bootstrap", type=int, default=d.n_bootstrap)
    p.add_argument("--out-dir", default=d.out_dir)
    p.add_argument("--rescore", action="store_true")
    return Args(**vars(p.parse_args(argv)))


def run_seed(a: Args, seed: int) -> dict[str, Any]:
    """One loop run; its summary and per-round coverage."""
    from router_rl.loop.config import LoopConfig
    from router_rl.loop.report import write_report
    from router_rl.loop.rounds import run_loop

    cfg = LoopConfig(rounds=a.rounds, requests_per_round=a.requests_per_round, seed=seed, traces=a.traces,
                     fleet_tasks=a.fleet_tasks, epsilon=a.epsilon, lam=a.lam, quality_floor=a.quality_floor,
                     bad_candidate_round=a.bad_candidate_round, bad_candidate_kind=a.candidate_kind,  # type: ignore[arg-type]
                     inject_regression_round=a.inject_regression, n_bootstrap=a.n_bootstrap)
    out = Path(a.out_dir) / f"seed{seed}"
    t0 = time.perf_counter()
    res = run_loop(cfg, out, progress=lambda s: print(f"[seed {seed}] {s}", flush=True))
    write_report(res, out)
    s = res.summary()
    s["seconds"] = time.perf_counter() - t0
    s["rollbacks"] = [b | {"round": r.round} for r in res.rounds for b in r.rollbacks]
    s["covered_live"] = [r.ope_live["quality"]["covered"] for r in res.rounds]
    s["covered_candidate"] = [r.candidate["ope"]["quality"]["covered"] for r in res.rounds]
    s["covered_gain"] = [r.candidate["ope"]["utility_diff"]["covered"] for r in res.rounds]
    s["verdicts"] = [r.promoted or "refused" for r in res.rounds]
    # the learning target is read before an injected regression: the version live after round K-1
    k = (a.inject_regression or a.rounds + 1) - 1
    if k < a.rounds and k >= 1:
        r = res.rounds[k - 1]
        t, b = r.test_live or {}, res.baseline
        s["before_regression"] = {"round": k, "version": r.candidate.get("live_after"), "test": t,
                                  "quality_gap_points": 100.0 * (t["quality"] - b["quality"]) if t else None,
                                  "cost_ratio": t["cost_usd"] / b["cost_usd"] if t else None}
    return s


def rescore_seed(a: Args, seed: int) -> dict[str, Any]:
    """A finished seed folder: the version live after round K-1 (before the regression at K, else the
    last round) against the offline LightGBM on held-out tasks, coverage, verdicts, rollbacks."""
    from router_rl.loop.rounds import rescore

    d = Path(a.out_dir) / f"seed{seed}"
    rep = json.loads((d / "report.json").read_text())
    rs = rescore(d)
    base = rs["baseline_test"]
    k = min((a.inject_regression or a.rounds + 1) - 1, len(rep["rounds"]))
    t = rep["rounds"][k - 1]["test_live"]
    return {
        "seed": seed, "verdicts": [r["promoted"] or "refused" for r in rep["rounds"]], "target_round": k,
        "test": t, "baseline": base, "gap_points": 100 * (t["quality"] - base["quality"]),
        "cost_ratio": t["cost_usd"] / base["cost_usd"], "utility_diff": t["utility"] - base["utility"],
        "covered_live": [r["ope_live"]["quality"]["covered"] for r in rep["rounds"]],
        "covered_candidate": [r["candidate"]["ope"]["quality"]["covered"] for r in rep["rounds"]],
        "covered_gain": [r["candidate"]["ope"]["utility_diff"]["covered"] for r in rep["rounds"]],
        "true_gain": [r["candidate"]["ope"]["utility_diff"]["truth"] for r in rep["rounds"]],
        "failed": sum(r["failed"] for r in rep["rounds"]),
        "bad": [(r["candidate"]["kind"], r["promoted"]) for r in rep["rounds"] if r["candidate"]["bad"]],
        "rollbacks": [(b["from"], b["to"], b["first_request_on_previous"])
                      for r in rep["rounds"] for b in r["rollbacks"]],
        "final_live_version": rs["final_live_version"],
    }


def main(argv: list[str] | None = None) -> None:
    """Run every seed, aggregate, write JSON + Markdown."""
    import logging

    for noisy in ("httpx", "router_rl.router", "router_rl.replay", "uvicorn"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    a = parse_args(argv)
    if a.rescore:
        res = [rescore_seed(a, seed) for seed in a.seeds]
        (Path(a.out_dir) / "rescored.json").write_text(json.dumps(res, indent=1, default=str))
        print(json.dumps(res, indent=1, default=str))
        return
    runs = {seed: run_seed(a, seed) for seed in a.seeds}
    cov = lambda k: [c for s in runs.values() for c in s[k]]  # noqa: E731
    def target(s: dict[str, Any]) -> dict[str, Any]:
        return s.get("before_regression") or s

    gaps = [target(s)["quality_gap_points"] for s in runs.values() if target(s).get("quality_gap_points") is not None]
    ratios = [target(s)["cost_ratio"] for s in runs.values() if target(s).get("cost_ratio") is not None]
    agg = {
        "seeds": a.seeds,
        "failed_requests": sum(s["failed_requests"] for s in runs.values()),
        "requests": sum(s["requests"] for s in runs.values()),
        "live_quality_coverage": float(np.mean(cov("covered_live"))),
        "candidate_quality_coverage": float(np.mean(cov("covered_candidate"))),
        "gain_coverage": float(np.mean(cov("covered_gain"))),
        "rounds_total": len(cov("covered_live")),
        "quality_gap_points": {"mean": float(np.mean(gaps)), "per_seed": gaps} if gaps else None,
        "cost_ratio": {"mean": float(np.mean(ratios)), "per_seed": ratios} if ratios else None,
        "within_2_points_and_10pct_cost": sum(abs(g) <= 2 and abs(c - 1) <= 0.1 for g, c in zip(gaps, ratios,
                                                                                              strict=True)),
        "bad_candidates": sum(s["bad_candidates"] for s in runs.values()),
        "bad_candidates_promoted": sum(s["bad_candidates_promoted"] for s in runs.values()),
        "rollbacks": [b | {"seed": seed} for seed, s in runs.items() for b in s["rollbacks"]],
        "target_read": "version live before the injected regression" if a.inject_regression else "final live version",
    }
    out = Path(a.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "closed_loop.json").write_text(json.dumps({"args": asdict(a), "aggregate": agg, "runs": runs},
                                                     indent=2, default=str))
    lines = [f"# Closed loop over seeds {a.seeds}: {a.rounds} rounds x {a.requests_per_round} requests", "",
             "| figure | value |", "|---|---|"]
    for k, v in agg.items():
        lines.append(f"| {k} | {json.dumps(v, default=str) if not isinstance(v, float) else f'{v:.3f}'} |")
    lines += ["", "| seed | verdicts | final quality gap (pts) | cost ratio | live CI covered | candidate CI covered "
              "| failed | seconds |", "|---|---|---|---|---|---|---|---|"]
    for seed, s in runs.items():
        gap = target(s).get("quality_gap_points")
        lines.append(f"| {seed} | {' '.join(s['verdicts'])} | {gap if gap is not None else float('nan'):+.2f} | "
                     f"{target(s).get('cost_ratio') or float('nan'):.3f} | {s['live_quality_covered']} | "
                     f"{s['candidate_quality_covered']} | {s['failed_requests']} | {s['seconds']:.0f} |")
    (out / "closed_loop.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
