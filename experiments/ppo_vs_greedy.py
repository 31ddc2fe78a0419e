"""PPO-refined LightGBM vs greedy LightGBM on held-out BudgetedRouting days (cleanrl-style, one file).

For every seed: simulate a fleet (data seed = seed), fit LightGBM on its train split, then per
scenario train PPO (warm-started from that LightGBM) on train-split days and evaluate every policy
on the same held-out test-split days (common random numbers: same task streams and outages).

Scenarios (overrides of ``envs/sim-budgeted.yaml``):

* ``pacing``: tight budget (``--pacing-budget`` USD per task, below what LightGBM's choices
  cost), no outages; over-budget requests are forced to the cheapest model.
* ``outage``: generous budget, cloud providers go down (two-state Markov), no fallback: a request
  sent to a provider that is down fails.
* ``daymix``: ``pacing`` where every day has its own traffic mix (``day_mix`` of the env spec:
  agent-category weights ~ Dirichlet(``--day-mix-concentration`` x split mix)), so a price
  calibrated on the average day over- or under-spends on a given day: the case made for a
  state-dependent price.

Policies: ``greedy`` (LightGBM argmax, λ=0, blind to the state), ``ppo`` (warm-started from it),
and in the budget scenarios (``pacing``, ``daymix``) also ``greedy_calibrated`` (LightGBM with λ
calibrated on validation tasks to the per-task budget: the non-RL answer to a budget),
``greedy_paced`` (the calibrated LightGBM with a one-parameter pacing controller:
``λ_t = λ_cal · exp(κ · (spent_frac − elapsed_frac))``, κ picked on training days from
:data:`PACING_GAINS`: the classic non-RL answer to budget pacing) and ``ppo_calibrated`` (PPO
warm-started from the calibrated LightGBM: it starts at the calibrated λ and learns a
state-dependent price on top).

Metrics per day, averaged over ``--eval-episodes`` days per seed, then mean and 95% t-interval over
seeds (and of the paired per-seed differences ppo − greedy, ppo − greedy_calibrated,
ppo_calibrated − greedy_calibrated, ppo_calibrated − greedy): total reward, mean quality per request
(failed = 0), total cost (USD), budget violations (requests served over budget) and failed requests.
The learned budget price δ at a few router states is reported too.

Usage::

    .venv/bin/python experiments/ppo_vs_greedy.py            # default, ~10-15 min on 2 shared cores
    .venv/bin/python experiments/ppo_vs_greedy.py --quick    # smoke run, < 60 s

Writes ``<out-dir>/results.json`` and ``<out-dir>/results.md`` (``runs/`` is gitignored; the
committed copies of the default run are ``experiments/results/ppo_vs_greedy.{json,md}``).
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import functools
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

METRICS = ("reward", "quality", "cost_usd", "budget_violations", "failed_requests")
SCENARIOS = ("pacing", "outage", "daymix")
BUDGET_SCENARIOS = ("pacing", "daymix")
#: PPO settings of this experiment where they differ from :class:`PPOConfig`'s defaults (the
#: others are PPOConfig's own; ``--ppo-opt KEY=JSON`` overrides any of them).
PPO_SETTINGS: dict[str, Any] = {
    "learning_rate": 1e-3, "n_steps": 1024, "batch_size": 256, "n_epochs": 10, "ent_coef": 0.01, "prior_floor": 0.05,
}
#: ``--quick`` PPO settings (on top of PPO_SETTINGS).
QUICK_PPO_SETTINGS: dict[str, Any] = {"n_steps": 256, "batch_size": 128, "n_epochs": 2, "net_arch": [32]}

#: Gains κ of the pacing controller tried on training days (``greedy_paced``).
PACING_GAINS: tuple[float, ...] = (1.0, 3.0, 10.0)


@dataclass
class Args:
    """Experiment settings (every field is a ``--flag``)."""

    seeds: list[int] = field(default_factory=lambda: [0, 1, 2, 3, 4])
    """seeds: data simulation, LightGBM and PPO seed of each replicate"""
    n_tasks: int = 2000
    """simulated tasks per fleet (train/val/test split by the env spec)"""
    horizon: int = 100
    """requests per simulated day (episode length)"""
    pacing_budget: float = 0.004
    """USD per request in the pacing scenario"""
    day_mix_concentration: float = 1.0
    """daymix scenario: Dirichlet concentration of the daily category mix (small = very different days)"""
    outage_budget: float = 0.05
    """USD per request in the outage scenario (generous)"""
    p_fail: float = 0.03
    """outage scenario: P(up -> down) per request, per cloud provider"""
    p_recover: float = 0.15
    """outage scenario: P(down -> up) per request"""
    timesteps: int = 50_000
    """PPO environment steps per (seed, scenario)"""
    ppo_opt: list[str] = field(default_factory=list)
    """extra PPOConfig settings KEY=JSON on top of PPO_SETTINGS (e.g. ent_coef=0.0), repeatable"""
    scenarios: list[str] = field(default_factory=lambda: list(SCENARIOS))
    """scenarios to run (pacing, outage, daymix)"""
    lgbm_rounds: int = 60
    """LightGBM boosting rounds"""
    eval_episodes: int = 64
    """held-out days per (seed, scenario, policy)"""
    out_dir: str = "runs/ppo_vs_greedy"
    quick: bool = False
    """smoke run: 2 seeds, small data, few timesteps (< 60 s)"""

    def apply_quick(self) -> Args:
        """The ``--quick`` settings."""
        if not self.quick:
            return self
        quick_ppo = [f"{k}={json.dumps(v)}" for k, v in QUICK_PPO_SETTINGS.items()]
        return dataclasses.replace(
            self, seeds=[0, 1], n_tasks=600, horizon=40, timesteps=1024, ppo_opt=[*quick_ppo, *self.ppo_opt],
            lgbm_rounds=20, eval_episodes=8,
        )

    def ppo_config(self) -> Any:
        """The PPOConfig of this run: PPOConfig defaults, then :data:`PPO_SETTINGS`, then ``--ppo-opt``."""
        from router_rl.policies.ppo import PPOConfig

        extra = {}
        for item in self.ppo_opt:
            key, sep, raw = item.partition("=")
            if not sep:
                raise SystemExit(f"--ppo-opt {item!r}: expected KEY=JSON")
            try:
                extra[key] = json.loads(raw)
            except json.JSONDecodeError:
                extra[key] = raw
        return PPOConfig.from_dict({**PPO_SETTINGS, "total_timesteps": self.timesteps, **extra})


def parse_args(argv: list[str] | None = None) -> Args:
    """argparse built from the :class:`Args` fields."""
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    for f in dataclasses.fields(Args):
        flag = "--" + f.name.replace("_", "-")
        default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
        if f.type in ("bool", bool):
            p.add_argument(flag, action="store_true", default=default)
        elif f.name == "ppo_opt":
            p.add_argument(flag, type=str, action="append", default=default)
        elif str(f.type) == "list[str]":
            p.add_argument(flag, type=str, nargs="+", default=default, choices=SCENARIOS)
        elif str(f.type).startswith("list"):
            p.add_argument(flag, type=int, nargs="+", default=default)
        else:
            typ = {"int": int, "float": float, "str": str}[str(f.type)]
            p.add_argument(flag, type=typ, default=default)
    ns = p.parse_args(argv)
    return Args(**vars(ns)).apply_quick()


def t_interval(x: np.ndarray) -> dict[str, float]:
    """Mean and 95% Student-t confidence interval of ``x`` (one value per seed)."""
    from scipy import stats

    x = np.asarray(x, dtype=np.float64)
    m = float(x.mean())
    if x.size < 2:
        return {"mean": m, "lo": m, "hi": m}
    half = float(stats.t.ppf(0.975, x.size - 1) * x.std(ddof=1) / math.sqrt(x.size))
    return {"mean": m, "lo": m - half, "hi": m + half}


def scenario_overrides(args: Args, name: str, seed: int) -> dict[str, Any]:
    """Env spec overrides of scenario ``name`` for replicate ``seed``."""
    ov: dict[str, Any] = {"data": {"n_tasks": args.n_tasks, "seed": seed}, "horizon": args.horizon}
    if name in BUDGET_SCENARIOS:
        ov.update(budget={"per_task_usd": args.pacing_budget}, outage={"enabled": False}, fallback={"enabled": False})
        if name == "daymix":
            ov.update(episode="sample", day_mix={"column": "category", "concentration": args.day_mix_concentration})
    else:
        rates = {"p_fail": args.p_fail, "p_recover": args.p_recover, "latency_sigma": 0.0}
        ov.update(
            budget={"per_task_usd": args.outage_budget},
            outage={"enabled": True, "default": rates, "providers": {}},
            fallback={"enabled": False},
        )
    return ov


def greedy(policy: Any, feature_dim: int) -> Any:
    """Argmax of ``policy`` on the task-feature part of env observations (blind to the state)."""
    return lambda obs: policy.action_distribution(obs[:, :feature_dim]).argmax(1)


def paced(policy: Any, feature_dim: int, gain: float) -> Any:
    """``policy`` (λ calibrated) with the pacing controller ``λ_t = λ · exp(gain · (spent − elapsed))``.

    ``spent`` / ``elapsed`` are the day's budget share spent and time share elapsed, read from the
    observation's router state; ahead of plan the price rises, behind plan it falls.
    """
    lam0, fd = policy.decision.lam, feature_dim

    def act(obs: np.ndarray) -> np.ndarray:
        spent, elapsed = 1.0 - obs[:, fd], obs[:, fd + 1]
        lam = lam0 * np.exp(gain * (spent - elapsed))
        return np.array([
            policy.decide(obs[i : i + 1, :fd], decision=policy.decision.with_(lam=float(lam[i]))).probs[0].argmax()
            for i in range(obs.shape[0])
        ])

    return act


#: Router states (budget_remaining_frac, elapsed_frac) at which the learned budget price is reported.
PRICE_STATES: tuple[tuple[float, float], ...] = ((1.0, 0.0), (0.75, 0.25), (0.5, 0.5), (0.25, 0.5), (0.75, 0.5),
                                                 (0.1, 0.9), (0.3, 0.9))
#: Paired differences reported per scenario (when both policies ran).
DIFFS: tuple[tuple[str, str], ...] = (
    ("ppo", "greedy"), ("ppo", "greedy_calibrated"), ("ppo_calibrated", "greedy_calibrated"),
    ("ppo_calibrated", "greedy"), ("greedy_paced", "greedy_calibrated"), ("ppo_calibrated", "greedy_paced"),
)


def price_at_states(router: Any, fd: int) -> dict[str, float]:
    """Learned budget price δ at :data:`PRICE_STATES` (breakers closed; δ only sees the state)."""
    from router_rl.envs.state import state_vector

    n_prov = router.state_dim - 3
    out = {}
    for rem, el in PRICE_STATES:
        s = state_vector(budget_remaining_frac=rem, elapsed_frac=el, local_share=0.0, breakers=[0.0] * n_prov)
        X = router.observe(np.zeros((1, fd), dtype=np.float32), s)
        out[f"rem={rem},elapsed={el}"] = float(router.budget_price(X)[0])
    return out


def run(args: Args) -> dict[str, Any]:
    """The whole experiment; returns the JSON-able results."""
    from rich.progress import Progress

    from router_rl.envs import load_env_data, load_spec, make_from_spec
    from router_rl.envs.budgeted import evaluate_days
    from router_rl.policies.ppo import fit_lgbm_base, train_ppo

    cfg = args.ppo_config()
    base_spec = load_spec("sim-budgeted")
    per_seed: dict[str, dict[str, dict[str, list[float]]]] = {s: {} for s in args.scenarios}
    prices: dict[str, dict[str, list[dict[str, float]]]] = {s: {} for s in args.scenarios}
    gains: dict[str, list[float]] = {s: [] for s in args.scenarios}
    t0 = time.time()
    with Progress() as progress:
        task = progress.add_task("seeds x scenarios", total=len(args.seeds) * len(args.scenarios))
        for seed in args.seeds:
            for scen in args.scenarios:
                spec = base_spec.with_overrides(**scenario_overrides(args, scen, seed))
                data = load_env_data(spec)
                lgbm = fit_lgbm_base(data, rounds=args.lgbm_rounds, seed=seed)
                fd = data.encoder.dim
                bases: dict[str, Any] = {"greedy": lgbm}
                if scen in BUDGET_SCENARIOS and data.val is not None:
                    cal = copy.deepcopy(lgbm)
                    cal.calibrate(data.features("val"), data.val, f"budget={args.pacing_budget}")
                    bases["greedy_calibrated"] = cal
                policies: dict[str, Any] = {name: greedy(b, fd) for name, b in bases.items()}
                env_factory = functools.partial(make_from_spec, spec, encoder=data.encoder)
                if "greedy_calibrated" in bases:  # pacing gain tuned on training days, like PPO
                    train_env = env_factory()
                    gain = max(PACING_GAINS, key=lambda k: evaluate_days(
                        train_env, paced(bases["greedy_calibrated"], fd, k), episodes=args.eval_episodes // 2,
                        seed=seed)["reward"])
                    policies["greedy_paced"] = paced(bases["greedy_calibrated"], fd, gain)
                    gains[scen].append(gain)
                for name, b in bases.items():
                    ppo_name = "ppo" if name == "greedy" else "ppo_calibrated"
                    router = train_ppo(spec, config=cfg, base=b, data=data, eval_days=0, seed=seed).router
                    policies[ppo_name] = lambda o, r=router: r.action_distribution(o).argmax(1)
                    prices[scen].setdefault(ppo_name, []).append(price_at_states(router, fd))
                test_env = make_from_spec(spec, encoder=data.encoder, split="test")
                for name, act in policies.items():
                    res = evaluate_days(test_env, act, episodes=args.eval_episodes, seed=1_000_000 + 1000 * seed)
                    slot = per_seed[scen].setdefault(name, {m: [] for m in METRICS})
                    for m in METRICS:
                        slot[m].append(res[m])
                progress.advance(task)
    out: dict[str, Any] = {
        "args": dataclasses.asdict(args), "ppo_config": cfg.to_dict(), "seconds": time.time() - t0, "scenarios": {},
    }
    for scen in args.scenarios:
        pols = per_seed[scen]
        diffs = {
            f"{a} − {b}": {m: t_interval(np.array(pols[a][m]) - np.array(pols[b][m])) for m in METRICS}
            for a, b in DIFFS
            if a in pols and b in pols
        }
        out["scenarios"][scen] = {
            "overrides": scenario_overrides(args, scen, 0) | {"data": {"n_tasks": args.n_tasks, "seed": "<seed>"}},
            "policies": {
                name: {"per_seed": vals, "summary": {m: t_interval(np.array(vals[m])) for m in METRICS}}
                for name, vals in pols.items()
            },
            "diffs": diffs,
            "diff_ppo_minus_greedy": diffs["ppo − greedy"],
            "pacing_gain_per_seed": gains[scen],
            "budget_price": {
                name: {
                    "per_seed": per,
                    "mean": {k: float(np.mean([p[k] for p in per])) for k in per[0]},
                }
                for name, per in prices[scen].items()
            },
        }
    return out


def markdown(res: dict[str, Any]) -> str:
    """Results as Markdown tables (mean [95% CI] over seeds)."""
    a = res["args"]
    lines = [
        f"# PPO vs greedy LightGBM on held-out BudgetedRouting days ({len(a['seeds'])} seeds, "
        f"{a['eval_episodes']} days of {a['horizon']} requests per seed, PPO {a['timesteps']} steps)",
        "",
        "mean [95% t-interval over seeds]; reward / cost / violations / failures per day, quality per request.",
        "Rows in bold: paired per-seed differences.",
        "",
    ]

    def fmt(s: dict[str, float], nd: int) -> str:
        return f"{s['mean']:.{nd}f} [{s['lo']:.{nd}f}, {s['hi']:.{nd}f}]"

    nds = {"reward": 2, "quality": 3, "cost_usd": 3, "budget_violations": 1, "failed_requests": 2}
    for scen, body in res["scenarios"].items():
        lines += [f"## {scen}", "", "| policy | " + " | ".join(METRICS) + " |", "|---" * (len(METRICS) + 1) + "|"]
        for name, pol in body["policies"].items():
            lines.append(f"| {name} | " + " | ".join(fmt(pol["summary"][m], nds[m]) for m in METRICS) + " |")
        for name, d in body["diffs"].items():
            lines.append(f"| **{name}** | " + " | ".join(fmt(d[m], nds[m]) for m in METRICS) + " |")
        lines.append("")
        price = body.get("budget_price") or {}
        if price:
            states = list(next(iter(price.values()))["mean"])
            lines += [
                "Learned budget price δ (mean over seeds; effective λ = λ₀ + δ) at router states:",
                "",
                "| policy | " + " | ".join(states) + " |",
                "|---" * (len(states) + 1) + "|",
            ]
            for name, p in price.items():
                lines.append(f"| {name} | " + " | ".join(f"{p['mean'][k]:+.3f}" for k in states) + " |")
            lines.append("")
        if body.get("pacing_gain_per_seed"):
            lines += [f"Pacing gain κ of `greedy_paced` (chosen on training days), per seed: "
                      f"{body['pacing_gain_per_seed']}.", ""]
    lines.append(f"Wall time: {res['seconds']:.0f} s.")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    """Entry point."""
    import torch

    torch.set_num_threads(1)
    args = parse_args(argv)
    res = run(args)
    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(res, indent=2))
    md = markdown(res)
    (out / "results.md").write_text(md)
    print(md)
    print(f"wrote {out / 'results.json'} and {out / 'results.md'}")


if __name__ == "__main__":
    main()
