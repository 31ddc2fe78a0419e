"""Sequential routing under a budget and provider outages.

An episode is a stream of ``T`` tasks (one day of fleet traffic). The observation is the task's
encoded features followed by ``remaining budget fraction``, ``elapsed fraction``, ``local share
so far`` and, for each provider subject to outages, its circuit-breaker state (0 closed, 0.5
half-open, 1 open).

Outage process (drawn entirely at ``reset`` from ``self.np_random``, after the task order): each
provider ``p`` follows a two-state Markov chain, up at step -1, with ``P(up->down) = p_fail`` and
``P(down->up) = p_recover``, from one uniform draw per (step, provider): ``U = rng.random((T,
P))``; then, if any provider has ``latency_sigma > 0``, a mean-one log-normal latency multiplier
``exp(sigma*Z - sigma^2/2)`` with ``Z = rng.standard_normal((T, P))``. The breaker shown at step
``t`` reflects what was *observed* so far: open if the provider was down at ``t-1``, half-open
if it was up at ``t-1`` but down at ``t-2`` (just recovered), closed otherwise. So the first
request into a fresh outage fails; riding out an outage means reading the breaker.

Step semantics, in order:

1. the chosen model's provider is down -> the request fails (``failure_penalty``, no cost), or,
   with fallback enabled, the fallback model serves it (its quality/cost/latency);
2. the served call does not fit the remaining budget -> ``forced_cheapest``: the cheapest model
   for this task among providers that are up serves it (an overrun by that call is allowed and
   flagged ``over_budget``), or ``terminate``: nothing is served, reward ``-exceed_penalty``,
   ``terminated=True``;
3. reward = base reward of the served cell - latency term x multiplier - privacy penalty of the
   *chosen* model (choosing cloud for a private task is penalised even if a fallback served it).

Running out of tasks is ``truncated``; only the budget rule ``terminate`` sets ``terminated``.

Seeding is the same scheme as :mod:`router_rl.envs.bandit`: batched episode ``b`` reset with
``seed=s`` equals the single environment reset with ``seed=s + b``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from router_rl.core.errors import ConfigError
from router_rl.envs.outage import OutageModel
from router_rl.envs.spec import BudgetSpec, FallbackSpec, OutageSpec, ProviderRates
from router_rl.envs.state import STATE_FIELDS, assemble_state
from router_rl.envs.tables import DayMix, RewardTables, sample_order

N_STATE = len(STATE_FIELDS)  # remaining budget fraction, elapsed fraction, local share
_EPS = 1e-12


def _fallback_index(fallback: FallbackSpec, tables: RewardTables) -> int | None:
    if not fallback.enabled:
        return None
    if fallback.model is not None:
        if fallback.model not in tables.models:
            raise ConfigError(
                "fallback.model", f"{fallback.model!r} is not one of the models {list(tables.models)}"
            )
        return tables.models.index(fallback.model)
    mean_cost = tables.cost.mean(axis=0)
    pool = np.flatnonzero(tables.is_local) if tables.is_local.any() else np.arange(tables.n_models)
    return int(pool[np.argmin(mean_cost[pool])])


@dataclass
class _Routed:
    """What routing one task per episode did (all ``(B,)``); see :func:`_route`."""

    served: np.ndarray  # model that served (meaningless where not ``serving``)
    srv: np.ndarray  # ``served`` with 0 where nothing was served (safe index)
    serving: np.ndarray
    failed: np.ndarray
    provider_down: np.ndarray
    fallback_used: np.ndarray
    forced: np.ndarray
    over: np.ndarray
    exceeded: np.ndarray
    terminated: np.ndarray
    cost: np.ndarray
    reward: np.ndarray
    latency: np.ndarray  # NaN where unknown or nothing served


def _route(
    env: BudgetedRouting,
    i: np.ndarray,
    a: np.ndarray,
    spent: np.ndarray,
    budget: np.ndarray,
    up: np.ndarray,
    mult: np.ndarray | None,
) -> _Routed:
    """The step rule of the module docstring for ``B`` episodes at once (the ONE implementation).

    Args:
        env: The env (tables, outage model, fallback, budget rule).
        i: ``(B,)`` task index of each episode's current task.
        a: ``(B,)`` chosen model.
        spent: ``(B,)`` USD spent so far; budget: ``(B,)`` the day's budget.
        up: ``(B, P)`` whether each provider is up now.
        mult: ``(B, P)`` latency multipliers now, or None.
    """
    tb, outage = env.tables, env.outage
    B = a.shape[0]
    rows = np.arange(B)
    mp = outage.model_provider

    def is_down(models: np.ndarray) -> np.ndarray:
        if outage.n_providers == 0:
            return np.zeros(models.shape, dtype=bool)
        p = mp[models]
        return (p >= 0) & ~up[rows, np.maximum(p, 0)]

    served = a.copy()
    down = is_down(a)
    fallback_used = np.zeros(B, dtype=bool)
    if env.fallback is not None:
        fb = np.full(B, env.fallback, dtype=np.int64)
        fallback_used = down & (a != fb) & ~is_down(fb)
        served[fallback_used] = env.fallback
    failed = down & ~fallback_used
    cost = np.where(failed, 0.0, tb.cost[i, served])
    exceeded = ~failed & (spent + cost > budget + _EPS)
    forced = np.zeros(B, dtype=bool)
    over = np.zeros(B, dtype=bool)
    terminated = np.zeros(B, dtype=bool)
    if env._terminate:
        terminated = exceeded.copy()
        cost = np.where(terminated, 0.0, cost)
    elif exceeded.any():
        forced = exceeded
        c = tb.cost[i[forced]].copy()
        if outage.n_providers:
            dn = (mp[None, :] >= 0) & ~up[rows[forced][:, None], np.maximum(mp, 0)[None, :]]
            dn[dn.all(axis=1)] = False  # every provider down: the cheapest overall
            c[dn] = np.inf
        served[forced] = np.argmin(c, axis=1)
        cost = np.where(forced, tb.cost[i, served], cost)
        over = forced & (spent + cost > budget + _EPS)
    serving = ~failed & ~terminated
    srv = np.where(serving, served, 0)
    pen = tb.privacy_penalty[i, a]
    rs = tb.reward_spec
    lat_term = tb.latency_term[i, srv]
    lat = tb.latency[i, srv]
    if mult is not None:
        p = mp[srv]
        m = np.where(p >= 0, mult[rows, np.maximum(p, 0)], 1.0)
        lat_term = np.where(p >= 0, lat_term * m, lat_term)
        lat = np.where(p >= 0, lat * m, lat)
    reward = np.where(
        failed,
        -rs.failure_penalty - pen,
        np.where(terminated, -rs.exceed_penalty - pen, tb.base_reward[i, srv] - lat_term - pen),
    )
    return _Routed(
        served=served, srv=srv, serving=serving, failed=failed, provider_down=down, fallback_used=fallback_used,
        forced=forced, over=over, exceeded=exceeded, terminated=terminated, cost=cost, reward=reward,
        latency=np.where(serving, lat, np.nan),
    )


class BudgetedRouting(gym.Env[np.ndarray, np.int64]):
    """Route a day of fleet traffic under a budget while providers come and go.

    Args:
        tables: Precomputed tables of the served split (see :func:`build_tables`).
        budget: Budget section (``usd`` per episode or ``per_task_usd`` x episode length).
        outage: Outage section, or a resolved :class:`OutageModel`.
        fallback: Fallback section.
        horizon: Tasks per episode (``None``: the whole split).
        episode: ``"sample"`` or ``"sequential"``.
        obs_clip: Box bound of the features.
        fitted_rates: llmperf-fitted rates for ``outage.source: llmperf``.
        day_mix: Day-to-day variation of the task mix (``episode="sample"`` only; see
            :class:`~router_rl.envs.spec.DayMixSpec`).

    ``info`` of every step: ``task_id``, ``task_index``, ``chosen_action``, ``served_action``
    (-1 when nothing was served), ``failed``, ``provider_down``, ``fallback_used``,
    ``forced_cheapest``, ``over_budget``, ``budget_exceeded``, ``quality``, ``cost``,
    ``latency`` (``None`` when unknown or nothing was served; NaN in the batched form),
    ``is_local``, ``privacy_violation``, ``spent``, ``budget``.
    """

    metadata: dict[str, Any] = {"render_modes": []}  # noqa: RUF012

    def __init__(
        self,
        tables: RewardTables,
        budget: BudgetSpec,
        *,
        outage: OutageSpec | OutageModel | None = None,
        fallback: FallbackSpec | None = None,
        horizon: int | None = 256,
        episode: str = "sequential",
        obs_clip: float = 10.0,
        fitted_rates: dict[str, ProviderRates] | None = None,
        day_mix: DayMix | None = None,
    ) -> None:
        super().__init__()
        if episode not in ("sample", "sequential"):
            raise ValueError(f"episode: expected 'sample' or 'sequential', got {episode!r}")
        if horizon is not None and horizon <= 0:
            raise ValueError(f"horizon: expected > 0 or None, got {horizon}")
        self.tables = tables
        self.budget_spec = budget
        if isinstance(outage, OutageModel):
            self.outage = outage
        else:
            self.outage = OutageModel.from_spec(outage or OutageSpec(), tables, fitted_rates)
        self.fallback = _fallback_index(fallback or FallbackSpec(), tables)
        if day_mix is not None:
            if episode != "sample":
                raise ValueError(f"day_mix: needs episode 'sample', got {episode!r}")
            if day_mix.groups.shape != (tables.n_tasks,):
                raise ValueError(f"day_mix: {day_mix.groups.shape[0]} task groups for {tables.n_tasks} tasks")
        self.day_mix = day_mix
        self.horizon = horizon
        self.episode = episode
        self.obs_clip = float(obs_clip)
        d, P = tables.dim, self.outage.n_providers
        low = np.concatenate([np.full(d, -self.obs_clip), np.zeros(N_STATE + P)]).astype(np.float32)
        high = np.concatenate([np.full(d, self.obs_clip), np.ones(N_STATE + P)]).astype(np.float32)
        self.observation_space = spaces.Box(low, high, dtype=np.float32)
        self.action_space = spaces.Discrete(tables.n_models)
        self._terminate = budget.on_exceed == "terminate"
        self._order = np.zeros(0, dtype=np.int64)
        self._up = np.ones((0, 0), dtype=bool)
        self._mult: np.ndarray | None = None
        self._health = np.zeros((0, 0), dtype=np.float32)
        self._t = 0
        self._T = 0
        self._budget = 0.0
        self._spent = 0.0
        self._n_served = 0
        self._n_local = 0
        self._done = True

    @property
    def models(self) -> tuple[str, ...]:
        """Model ids, the meaning of each action."""
        return self.tables.models

    @property
    def providers(self) -> tuple[str, ...]:
        """Providers whose breaker state is in the observation (in that order)."""
        return self.outage.providers

    @property
    def feature_dim(self) -> int:
        """Width of the task-feature part of the observation."""
        return self.tables.dim

    def current_task(self) -> int:
        """Index (into the split) of the task the next step serves."""
        return int(self._order[min(self._t, self._T - 1)])

    def current_rewards(self) -> np.ndarray:
        """Full-information reward of every model for the current task, ignoring budget/outages."""
        return self.tables.reward[self.current_task()].copy()

    def current_costs(self) -> np.ndarray:
        """Cost of every model for the current task."""
        return self.tables.cost[self.current_task()].copy()

    def _obs(self) -> np.ndarray:
        t = min(self._t, self._T - 1)
        i = int(self._order[t])
        rem = max(0.0, self._budget - self._spent) / self._budget if self._budget > 0 else 0.0
        share = self._n_local / self._n_served if self._n_served else 0.0
        state = assemble_state(rem, self._t / self._T, share, self._health[t])
        return np.concatenate([self.tables.features[i], state])

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict]:
        """Start a day: draw the task order, then the outage/latency process.

        Args:
            seed: Seed of the episode's draws.
            options: ``{"spent_frac": x}`` starts the day with a fraction ``x`` in [0, 1) of the
                budget already spent (as after a burst of expensive requests; used to train
                budget-aware policies on varied budget states). No draw is consumed.
        """
        spent_frac = float((options or {}).get("spent_frac", 0.0))
        if not (0.0 <= spent_frac < 1.0):
            raise ValueError(f"options['spent_frac']: expected a number in [0, 1), got {spent_frac!r}")
        super().reset(seed=seed)
        self._order = sample_order(self.np_random, self.tables.n_tasks, self.horizon, self.episode, self.day_mix)
        self._T = int(self._order.size)
        self._up, self._mult, self._health = self.outage.draw(self.np_random, self._T)
        self._t = 0
        self._budget = self.budget_spec.episode_budget(self._T)
        self._spent = spent_frac * self._budget
        self._n_served = 0
        self._n_local = 0
        self._done = False
        i = int(self._order[0])
        return self._obs(), {"task_id": self.tables.task_ids[i], "task_index": i, "budget": self._budget}

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict]:
        """Route the current task to model ``action`` (see the module docstring)."""
        if self._done:
            raise RuntimeError("BudgetedRouting.step called after the episode ended; call reset()")
        a = int(action)
        tb = self.tables
        if not 0 <= a < tb.n_models:
            raise ValueError(f"action {action!r} outside Discrete({tb.n_models})")
        t = self._t
        i = int(self._order[t])
        r = _route(
            self, np.array([i]), np.array([a], dtype=np.int64), np.array([self._spent]), np.array([self._budget]),
            self._up[t][None, :], None if self._mult is None else self._mult[t][None, :],
        )
        serving, served, terminated = bool(r.serving[0]), int(r.srv[0]), bool(r.terminated[0])
        cost = float(r.cost[0])
        if serving:
            self._spent += cost
            self._n_served += 1
            self._n_local += int(tb.is_local[served])
        lat = float(r.latency[0])
        info = {
            "task_id": tb.task_ids[i],
            "task_index": i,
            "chosen_action": a,
            "served_action": served if serving else -1,
            "failed": bool(r.failed[0]),
            "provider_down": bool(r.provider_down[0]),
            "fallback_used": bool(r.fallback_used[0]),
            "forced_cheapest": bool(r.forced[0]),
            "over_budget": bool(r.over[0]),
            "budget_exceeded": bool(r.exceeded[0]),
            "quality": float(tb.quality[i, served]) if serving else 0.0,
            "cost": cost,
            "latency": None if np.isnan(lat) else lat,
            "is_local": bool(tb.is_local[served]) if serving else False,
            "privacy_violation": bool(tb.private[i] and not tb.is_local[a]),
            "spent": self._spent,
            "budget": self._budget,
        }
        self._t += 1
        truncated = self._t >= self._T and not terminated
        self._done = terminated or truncated
        return self._obs(), float(r.reward[0]), terminated, truncated, info


class BudgetedRoutingVec:
    """``B`` :class:`BudgetedRouting` episodes stepped together with numpy.

    Episode ``b`` of ``reset(seed=s)`` equals the single env reset with ``seed=s + b`` (same
    draws in the same order). Episodes that ended (terminated or truncated) stay frozen: later
    steps return reward 0, ``False`` flags and ``info["active"] == False`` for them. All arrays
    in ``info`` are ``(B,)`` with the single env's keys.
    """

    def __init__(self, env: BudgetedRouting, num_envs: int) -> None:
        if num_envs <= 0:
            raise ValueError(f"num_envs: expected > 0, got {num_envs}")
        self.env = env
        self.tables = env.tables
        self.num_envs = int(num_envs)
        self.single_observation_space = env.observation_space
        self.single_action_space = env.action_space
        self._rngs: list[np.random.Generator] | None = None

    def reset(self, *, seed: int | None = None) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """Start ``B`` days (episode b seeded with ``seed + b``)."""
        from router_rl.envs.bandit import _make_rng

        if seed is not None:
            self._rngs = [_make_rng(seed + b) for b in range(self.num_envs)]
        elif self._rngs is None:
            s0 = int(np.random.SeedSequence().generate_state(1)[0])
            self._rngs = [_make_rng(s0 + b) for b in range(self.num_envs)]
        env, n = self.env, self.tables.n_tasks
        orders, ups, mults, healths = [], [], [], []
        for g in self._rngs:
            o = sample_order(g, n, env.horizon, env.episode, env.day_mix)
            up, mult, health = env.outage.draw(g, int(o.size))
            orders.append(o)
            ups.append(up)
            mults.append(mult)
            healths.append(health)
        self._order = np.stack(orders)
        self._T = int(self._order.shape[1])
        self._up = np.stack(ups)
        self._mult = None if mults[0] is None else np.stack(mults)  # type: ignore[arg-type]
        self._health = np.stack(healths)
        self._t = 0
        self._budget = np.full(self.num_envs, env.budget_spec.episode_budget(self._T))
        self._spent = np.zeros(self.num_envs)
        self._n_served = np.zeros(self.num_envs, dtype=np.int64)
        self._n_local = np.zeros(self.num_envs, dtype=np.int64)
        self._active = np.ones(self.num_envs, dtype=bool)
        idx = self._order[:, 0]
        return self._obs(), {"task_index": idx.copy(), "budget": self._budget.copy()}

    def _obs(self) -> np.ndarray:
        t = min(self._t, self._T - 1)
        i = self._order[:, t]
        b = self._budget
        with np.errstate(divide="ignore", invalid="ignore"):
            rem = np.where(b > 0, np.maximum(0.0, b - self._spent) / np.where(b > 0, b, 1.0), 0.0)
            share = np.where(self._n_served > 0, self._n_local / np.maximum(self._n_served, 1), 0.0)
        state = assemble_state(rem, np.full(self.num_envs, self._t / self._T), share, self._health[:, t])
        return np.concatenate([self.tables.features[i], state], axis=1)

    def step(self, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict]:
        """Route the current task of every active episode."""
        if self._t >= self._T or not self._active.any():
            raise RuntimeError("BudgetedRoutingVec.step called after every episode ended; call reset()")
        tb = self.tables
        a = np.asarray(actions, dtype=np.int64)
        if a.shape != (self.num_envs,):
            raise ValueError(f"actions: expected shape ({self.num_envs},), got {a.shape}")
        if a.min() < 0 or a.max() >= tb.n_models:
            raise ValueError(f"actions outside Discrete({tb.n_models})")
        t, active = self._t, self._active.copy()
        i = self._order[:, t]
        r = _route(self.env, i, a, self._spent, self._budget, self._up[:, t],
                   None if self._mult is None else self._mult[:, t])
        upd = r.serving & active
        self._spent = np.where(upd, self._spent + r.cost, self._spent)
        self._n_served += upd
        self._n_local += upd & tb.is_local[r.srv]
        self._t += 1
        terminated = r.terminated & active
        truncated = active & ~terminated & (self._t >= self._T)
        self._active = active & ~terminated & ~truncated
        info = {
            "active": active,
            "task_index": i,
            "chosen_action": a,
            "served_action": np.where(r.serving, r.served, -1),
            "failed": r.failed,
            "provider_down": r.provider_down,
            "fallback_used": r.fallback_used,
            "forced_cheapest": r.forced,
            "over_budget": r.over,
            "budget_exceeded": r.exceeded,
            "quality": np.where(r.serving, tb.quality[i, r.srv], 0.0),
            "cost": r.cost,
            "latency": r.latency,
            "is_local": r.serving & tb.is_local[r.srv],
            "privacy_violation": tb.private[i] & ~tb.is_local[a],
            "spent": self._spent.copy(),
            "budget": self._budget.copy(),
        }
        reward = np.where(active, r.reward, 0.0)
        return self._obs(), reward, terminated, truncated, info

    @property
    def done(self) -> bool:
        """True once every episode has ended."""
        return not self._active.any()


#: Held-out metrics reported per day (quality per request).
DAY_METRICS: tuple[str, ...] = ("reward", "quality", "cost_usd", "budget_violations", "failed_requests")


def evaluate_days(env: Any, act: Any, *, episodes: int, seed: int) -> dict[str, float]:
    """Per-day metrics of ``act(observations) -> actions`` over ``episodes`` days of ``env``.

    Args:
        env: A :class:`router_rl.envs.BudgetedRouting` (normally on the test split).
        act: Batched policy: ``(B, obs_dim)`` observations to ``(B,)`` model indices.
        episodes: Number of days (stepped together; day ``b`` is seeded ``seed + b``).
        seed: Seed of the first day.

    Returns:
        Mean over days of the total reward, mean quality per request (failed = 0), cost (USD),
        requests served over budget and failed requests.
    """
    vec = BudgetedRoutingVec(env, episodes)
    obs, _ = vec.reset(seed=seed)
    tot = {k: np.zeros(episodes) for k in ("reward", "quality", "cost", "over", "failed", "steps")}
    while not vec.done:
        obs, r, _, _, info = vec.step(act(obs))
        on = info["active"]
        tot["reward"] += r
        tot["quality"] += info["quality"] * on
        tot["cost"] += info["cost"] * on
        tot["over"] += info["over_budget"] * on
        tot["failed"] += info["failed"] * on
        tot["steps"] += on
    return {
        "reward": float(tot["reward"].mean()),
        "quality": float((tot["quality"] / np.maximum(tot["steps"], 1)).mean()),
        "cost_usd": float(tot["cost"].mean()),
        "budget_violations": float(tot["over"].mean()),
        "failed_requests": float(tot["failed"].mean()),
    }
