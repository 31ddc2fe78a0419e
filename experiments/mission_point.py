"""The mission's operating point on the built-in fleet: local share at >= 95% quality, per router (issue #17).

For each seed, simulate the fleet (``simulate_fleet(n_tasks, seed)``, its train/val/test split),
fit every router on train, calibrate it on validation to ``quality>=0.95`` (λ and the locality
term ν together) and measure it on test (:func:`router_rl.eval.mission.mission_point`): the
deployed point, and the test frontier's best local share at >= 95% quality. Two settings of the
request attributes: the agent declares the task's complexity with the request (``complexity``
is an encoder feature) or not (only the prompt heuristic ``cx:*``).

Usage::

    .venv/bin/python experiments/mission_point.py                    # 5 seeds, ~10 min on 2 cores
    .venv/bin/python experiments/mission_point.py --seeds 0 --quick
    .venv/bin/python experiments/mission_point.py --hardness-visibility 0 --out-dir /tmp/rho0   # the built-in fleet
    .venv/bin/python experiments/mission_point.py --ceiling    # what knowing the hardness is worth

Writes ``<out-dir>/mission_point.json`` and ``.md`` (default ``experiments/results/``).
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

POLICIES = ("lgbm", "cells", "knn", "mf", "rules", "cheapest")
#: Options of the policies that need some (``--policies ... lgbm-stack`` opts in; slower).
POLICY_OPTIONS: dict[str, dict[str, Any]] = {"lgbm-stack": {"config": {"base_learners": ["linear", "cells"]}}}


@dataclass
class Args:
    """Settings (every field is a ``--flag``)."""

    seeds: list[int] = field(default_factory=lambda: [0, 1, 2, 3, 4])
    n_tasks: int = 4000
    floor: float = 0.95
    policies: list[str] = field(default_factory=lambda: list(POLICIES))
    declared: list[int] = field(default_factory=lambda: [0, 1])
    out_dir: str = "experiments/results"
    quick: bool = False
    #: ``SimulationConfig.hardness_visibility``: 0.6, the studied setting (the built-in fleet's default is 0).
    hardness_visibility: float | None = 0.6
    #: Instead of the routers: the local-share ceilings of routers that know the truth (see
    #: :func:`ceilings`), on ``ceiling_tasks`` tasks per seed.
    ceiling: bool = False
    ceiling_tasks: int = 20000


def run_one(seed: int, declared: bool, args: Args) -> list[dict[str, Any]]:
    """Every policy's mission point on one simulated fleet."""
    from router_rl.eval.mission import mission_point
    from router_rl.features.encoder import EncoderConfig, FeatureEncoder
    from router_rl.policies import make_policy
    from router_rl.traces import simulate_fleet
    from router_rl.traces.simulate import SimulationConfig

    cfg = SimulationConfig() if args.hardness_visibility is None else SimulationConfig(
        hardness_visibility=args.hardness_visibility)
    m = simulate_fleet(args.n_tasks, seed=seed, config=cfg).matrix()
    train, val, test = m.split("train"), m.split("val"), m.split("test")
    cats = ("agent_type", "category", "complexity") if declared else ("agent_type", "category")
    enc = FeatureEncoder(EncoderConfig(categorical_columns=cats)).fit(train.tasks)
    Xtr, Xva, Xte = enc.transform(train.tasks), enc.transform(val.tasks), enc.transform(test.tasks)
    ref = train.best_single_model()
    rows = []
    for name in args.policies:
        pol = make_policy(name, m.models, **POLICY_OPTIONS.get(name, {}))
        pol.attach_encoder(enc)
        pol.fit(Xtr, train, seed=seed)
        pt = mission_point(name, pol, Xva, val, Xte, test, reference=ref, floor=args.floor)
        rows.append({"seed": seed, "declared_complexity": declared, **pt.to_dict()})
    return rows


def _greedy_local_share(pred: np.ndarray, truth: np.ndarray, local: np.ndarray, cloud: int, floor: float) -> float:
    """Local share when tasks go to the cloud in order of ``pred``'s cloud-minus-best-local gap until
    the true mean quality reaches ``floor`` x the cloud model's (the rest to their best predicted local)."""
    n = truth.shape[0]
    best_local = local[pred[:, local].argmax(1)]
    order = np.argsort(-(pred[:, cloud] - pred[np.arange(n), best_local]), kind="stable")
    q0, target = truth[np.arange(n), best_local].sum(), floor * truth[:, cloud].mean()
    reached = (q0 + np.cumsum(truth[order, cloud] - truth[order, best_local[order]])) / n >= target
    if q0 / n >= target:
        return 1.0
    return 1.0 - (int(np.argmax(reached)) + 1) / n if reached.any() else 0.0


def ceilings(seed: int, args: Args) -> dict[str, float]:
    """What knowing more is worth at the mission point, on the simulator's truth (no learning).

    Routers that rank tasks by their true expected quality gap (cloud minus best local) with:
    the (agent, complexity) cell means (``cells``: what the lookup table converges to); the
    cell's mean logit plus ``E[h | z]`` for the prompt signal ``z`` at visibility ρ (``h|ρ``:
    ``z`` drawn as the simulator does, so ``E[h | z] = ρ² h + ρ sqrt(1 − ρ²) sd ε``); and the
    true per-(task, model) probability (``truth``: hardness and cell noise known).
    """
    from router_rl.traces import simulate_fleet

    ts = simulate_fleet(args.ceiling_tasks, seed=seed)
    m = ts.matrix()
    gt = ts.ground_truth_matrix()
    assert ts.ground_truth is not None
    ps = ts.ground_truth["p_success"].to_numpy().reshape(gt.shape)
    keys = (m.tasks["agent_type"] + "|" + m.tasks["complexity"]).to_numpy()
    logit = np.log(ps / (1 - ps))
    cell_logit, cell_q = np.zeros_like(gt), np.zeros_like(gt)
    for k in np.unique(keys):
        i = keys == k
        cell_logit[i], cell_q[i] = logit[i].mean(0), gt[i].mean(0)
    h = (logit - cell_logit).mean(1, keepdims=True)  # the task's hardness (+ its cell noise's mean)
    local, cloud = np.flatnonzero(m.is_local()), m.model_index("claude-sonnet-4.5")
    eps = np.random.default_rng([seed, 9]).standard_normal(h.shape)
    out = {"cells": _greedy_local_share(cell_q, gt, local, cloud, args.floor)}
    for rho in (0.0, 0.6, 0.9, 1.0):
        h_hat = rho**2 * h + rho * np.sqrt(1 - rho**2) * h.std() * eps
        out[f"h|ρ={rho:g}"] = _greedy_local_share(1 / (1 + np.exp(-(cell_logit + h_hat))), gt, local, cloud, args.floor)
    out["truth"] = _greedy_local_share(gt, gt, local, cloud, args.floor)
    return out


def summarise(rows: list[dict[str, Any]], args: Args) -> str:
    """Markdown: per setting and policy, mean ± sd over seeds, and lgbm − cells paired differences."""
    from router_rl.traces.simulate import SimulationConfig

    rho = SimulationConfig().hardness_visibility if args.hardness_visibility is None else args.hardness_visibility
    out = [f"# Mission point on the built-in fleet ({time.strftime('%Y-%m-%d')})", "",
           f"`experiments/mission_point.py` seeds {args.seeds}, {args.n_tasks} tasks, hardness visibility "
           f"ρ = {rho:g}, floor {args.floor:g} "
           "of the reference quality; deployed = calibrated on validation, measured on test; frontier = "
           "best test local share at test quality >= floor over (λ, ν).", ""]

    def ms(v: list[float]) -> str:
        a = np.asarray([x for x in v if x is not None], dtype=float)
        if a.size == 0:
            return "n/a"
        return f"{100 * a.mean():.1f} ± {100 * a.std(ddof=1):.1f}" if a.size > 1 else f"{100 * a.mean():.1f}"

    for declared in sorted({r["declared_complexity"] for r in rows}):
        sub = [r for r in rows if r["declared_complexity"] == declared]
        out += [f"## Declared complexity {'present' if declared else 'absent'}", "",
                "| router | deployed quality % | deployed local % | deployed cost % | met on test | "
                "frontier local % at the floor |", "|---|---|---|---|---|---|"]
        for name in args.policies:
            r = [x for x in sub if x["policy"] == name]
            met = sum(bool(x["deployed_met"]) for x in r)
            out.append(f"| {name} | {ms([x['deployed_quality_ratio'] for x in r])} | "
                       f"{ms([x['deployed_local_share'] for x in r])} | {ms([x['deployed_cost_share'] for x in r])} | "
                       f"{met}/{len(r)} | {ms([x['frontier_local_share'] for x in r])} |")
        by = {(x["seed"], x["policy"]): x for x in sub}
        for learned in ("lgbm", "lgbm-stack"):
            diffs = [by[(s, learned)]["frontier_local_share"] - by[(s, "cells")]["frontier_local_share"]
                     for s in args.seeds if (s, learned) in by and (s, "cells") in by
                     and by[(s, learned)]["frontier_local_share"] is not None
                     and by[(s, "cells")]["frontier_local_share"] is not None]
            if diffs:
                d = np.asarray(diffs)
                out += ["", f"{learned} − cells, frontier local share: {100 * d.mean():+.1f} points "
                            f"(per seed: {', '.join(f'{100 * x:+.1f}' for x in d)})"]
        out.append("")
    return "\n".join(out) + "\n"


def main(args: Args) -> None:
    """Run every seed and setting, write JSON + Markdown."""
    if args.quick:
        args.seeds, args.n_tasks = args.seeds[:1], 1500
    if args.ceiling:
        per = [ceilings(seed, args) for seed in args.seeds]
        print(f"local share at {args.floor:g} of the cloud quality, {args.ceiling_tasks} tasks, seeds {args.seeds}:")
        for k in per[0]:
            v = np.array([p[k] for p in per])
            print(f"  {k:10s} {100 * v.mean():.1f} ± {100 * v.std(ddof=1) if v.size > 1 else 0:.1f}")
        return
    rows: list[dict[str, Any]] = []
    for seed in args.seeds:
        for declared in args.declared:
            t = time.time()
            rows += run_one(seed, bool(declared), args)
            print(f"seed {seed} declared={declared}: {time.time() - t:.0f} s", flush=True)
    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "mission_point.json").write_text(json.dumps({"args": asdict(args), "rows": rows}, indent=1))
    md = summarise(rows, args)
    (out / "mission_point.md").write_text(md)
    print(md)


def _parse() -> Args:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    d = Args()
    ap.add_argument("--seeds", type=int, nargs="+", default=d.seeds)
    ap.add_argument("--n-tasks", type=int, default=d.n_tasks)
    ap.add_argument("--floor", type=float, default=d.floor)
    ap.add_argument("--policies", nargs="+", default=d.policies)
    ap.add_argument("--declared", type=int, nargs="+", default=d.declared, choices=(0, 1))
    ap.add_argument("--out-dir", default=d.out_dir)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--ceiling", action="store_true", help="print the truth-knowing ceilings instead")
    ap.add_argument("--ceiling-tasks", type=int, default=d.ceiling_tasks)
    ap.add_argument("--hardness-visibility", type=float, default=d.hardness_visibility,
                    help="correlation of the prompt cues with the task hardness, in [0, 1] (default: the fleet's)")
    ns = ap.parse_args()
    if ns.hardness_visibility is not None and not 0.0 <= ns.hardness_visibility <= 1.0:
        ap.error(f"--hardness-visibility: expected a number in [0, 1], got {ns.hardness_visibility}")
    return Args(**{k.replace("-", "_"): v for k, v in vars(ns).items()})


if __name__ == "__main__":
    main(_parse())
