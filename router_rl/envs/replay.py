"""Rejection-sampling replay of a partial-information decision log (Li et al., WSDM 2011).

Replay walks the log in order; a logged event counts only when the candidate policy picks the
logged action, and the policy's value is the mean reward of the counted events. With a uniform
logging policy this is an unbiased estimate of the policy's value. For non-uniform logging the
events are weighted by ``1 / propensity`` (self-normalised), which reduces to plain replay when
the propensities are all equal. A stochastic target (an ``(n, m)`` distribution) counts each
event with weight ``pi(logged action | x)`` instead of a 0/1 match.

The CI is a normal approximation on the (weighted) mean of the matched rewards, with the Kish
effective sample size ``(sum w)^2 / sum w^2``.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Literal, NamedTuple

import gymnasium as gym
import numpy as np
import polars as pl
from gymnasium import spaces

from router_rl.envs.spec import RewardSpec
from router_rl.envs.tables import cell_rewards

if TYPE_CHECKING:
    from router_rl.logs.data import LoggedData  # type only: envs never imports the logs layer at run time


class ReplayResult(NamedTuple):
    """Outcome of :func:`replay_evaluate`.

    Attributes:
        value: Estimated mean reward of the target policy (NaN when nothing matched).
        n_matched: Number of log events where the target chose the logged action (for a
            stochastic target: the sum of match probabilities, rounded down).
        ci: ``(low, high)`` normal-approximation confidence interval.
    """

    value: float
    n_matched: int
    ci: tuple[float, float]


def _z(level: float) -> float:
    from statistics import NormalDist

    return NormalDist().inv_cdf(0.5 + level / 2.0)


def replay_evaluate(
    rewards: np.ndarray,
    logged_actions: np.ndarray,
    target_actions: np.ndarray,
    propensities: np.ndarray | None = None,
    *,
    level: float = 0.95,
) -> ReplayResult:
    """Replay estimate of a target policy's mean reward from a logged bandit feedback.

    Args:
        rewards: ``(n,)`` observed reward of each logged event.
        logged_actions: ``(n,)`` int action the logging policy took.
        target_actions: ``(n,)`` int actions of the target policy, or ``(n, m)`` action
            probabilities (rows sum to 1).
        propensities: ``(n,)`` logging probability of the logged action; ``None`` = uniform.
        level: Confidence level of the CI.

    Raises:
        ValueError: on shape mismatches, non-finite rewards or propensities outside (0, 1].
    """
    r = np.asarray(rewards, dtype=np.float64)
    a = np.asarray(logged_actions)
    n = r.shape[0]
    if r.ndim != 1 or a.shape != (n,):
        raise ValueError(f"replay_evaluate: rewards {r.shape} and logged_actions {a.shape} must both be (n,)")
    if not np.isfinite(r).all():
        bad = np.flatnonzero(~np.isfinite(r))[:5].tolist()
        raise ValueError(f"replay_evaluate: rewards: non-finite values at rows {bad}")
    a = a.astype(np.int64)
    tgt = np.asarray(target_actions)
    if tgt.ndim == 1:
        if tgt.shape != (n,):
            raise ValueError(f"replay_evaluate: target_actions has shape {tgt.shape}, expected ({n},)")
        match = (tgt.astype(np.int64) == a).astype(np.float64)
    elif tgt.ndim == 2 and tgt.shape[0] == n:
        if (a < 0).any() or (a >= tgt.shape[1]).any():
            raise ValueError(f"replay_evaluate: logged action outside [0, {tgt.shape[1]})")
        if not np.allclose(tgt.sum(axis=1), 1.0, atol=1e-6):
            raise ValueError("replay_evaluate: target distribution rows must sum to 1")
        match = tgt[np.arange(n), a].astype(np.float64)
    else:
        raise ValueError(f"replay_evaluate: target_actions must be (n,) or (n, m), got {tgt.shape}")
    if propensities is None:
        w = match
    else:
        p = np.asarray(propensities, dtype=np.float64)
        if p.shape != (n,):
            raise ValueError(f"replay_evaluate: propensities has shape {p.shape}, expected ({n},)")
        bad = np.flatnonzero(~((p > 0) & (p <= 1)))
        if bad.size:
            raise ValueError(f"replay_evaluate: propensities must be in (0, 1]; rows {bad[:5].tolist()}")
        w = match / p
    sw = float(w.sum())
    n_matched = math.floor(float(match.sum()) + 1e-9)
    if sw <= 0:
        return ReplayResult(float("nan"), 0, (float("nan"), float("nan")))
    value = float((w * r).sum() / sw)
    n_eff = sw * sw / float((w * w).sum())
    if n_eff > 1:
        var = float((w * (r - value) ** 2).sum() / sw) * n_eff / (n_eff - 1)
        half = _z(level) * math.sqrt(var / n_eff)
    else:
        half = float("inf")
    return ReplayResult(value, n_matched, (value - half, value + half))


class LoggedReplay(gym.Env[np.ndarray, np.int64]):
    """Replay a decision log as an environment (rejection sampling).

    Each step presents the next logged event's features; if the action equals the logged one,
    the step's reward is the logged reward and ``info["matched"]`` is True, otherwise the reward
    is 0 and the event is discarded (it does not count). The episode is one pass over the log in
    order (``truncated`` at the end). :meth:`value` / :meth:`result` give the replay estimate of
    the actions taken so far; it equals :func:`replay_evaluate` on the same actions.

    Args:
        features: ``(n, d)`` float32 features of the logged events.
        logged_actions: ``(n,)`` logged action indices.
        rewards: ``(n,)`` logged rewards.
        n_actions: Number of actions (models).
        propensities: ``(n,)`` logging propensities (``None`` = uniform logging).
        obs_clip: Box bound of the features.
    """

    metadata: dict[str, Any] = {"render_modes": []}  # noqa: RUF012

    def __init__(
        self,
        features: np.ndarray,
        logged_actions: np.ndarray,
        rewards: np.ndarray,
        n_actions: int,
        *,
        propensities: np.ndarray | None = None,
        obs_clip: float = 10.0,
    ) -> None:
        super().__init__()
        X = np.asarray(features, dtype=np.float32)
        n = X.shape[0] if X.ndim == 2 else -1
        if n <= 0:
            raise ValueError(f"LoggedReplay: features must be a non-empty (n, d) array, got shape {X.shape}")
        a = np.asarray(logged_actions, dtype=np.int64)
        r = np.asarray(rewards, dtype=np.float64)
        if a.shape != (n,) or r.shape != (n,):
            raise ValueError(f"LoggedReplay: logged_actions {a.shape} / rewards {r.shape} must be ({n},)")
        if (a < 0).any() or (a >= n_actions).any():
            raise ValueError(f"LoggedReplay: logged actions outside [0, {n_actions})")
        if not np.isfinite(X).all() or not np.isfinite(r).all():
            raise ValueError("LoggedReplay: features and rewards must be finite")
        self.X = np.clip(X, -obs_clip, obs_clip)
        self.logged_actions = a
        self.rewards = r
        self.propensities = None if propensities is None else np.asarray(propensities, dtype=np.float64)
        self.observation_space = spaces.Box(-obs_clip, obs_clip, shape=(self.X.shape[1],), dtype=np.float32)
        self.action_space = spaces.Discrete(int(n_actions))
        self._t = 0
        self._actions = np.full(n, -1, dtype=np.int64)
        #: Rows left out because they had no label yet (:meth:`from_logged` with ``unlabeled="drop"``).
        self.n_dropped_unlabeled = 0

    @classmethod
    def from_log(
        cls,
        log: pl.DataFrame,
        reward: RewardSpec,
        *,
        models: tuple[str, ...] | list[str] | None = None,
        features: np.ndarray | None = None,
        obs_clip: float = 10.0,
        source: str = "decision log",
    ) -> LoggedReplay:
        """Build from a decision log in ``DECISION_LOG_SCHEMA``.

        The logged reward is the :class:`RewardSpec` value of the logged ``quality``,
        ``cost_usd`` and ``latency_s`` of the *served* answer (``cost_ref_usd`` must be numeric).
        The privacy penalty is not applied (the log has no privacy tag).

        Args:
            log: Decision-log frame.
            reward: Reward spec with a numeric ``cost_ref_usd``.
            models: Action order; default: the first row's ``action_models``.
            features: ``(n, d)`` features; default: the log's ``features`` column.
            obs_clip: Box bound.
            source: Name for error messages.

        Raises:
            ValueError: naming the column and rows when a needed value is missing.
        """
        need = ["chosen_model", "propensity", "quality", "cost_usd"]
        missing = [c for c in need if c not in log.columns]
        if missing:
            raise ValueError(f"{source}: missing column(s) {missing}")
        if models is None:
            if "action_models" not in log.columns or log.height == 0:
                raise ValueError(f"{source}: no 'action_models' column to take the model order from; pass models=")
            models = list(log["action_models"][0])
        models = list(models)
        for col in ("chosen_model", "propensity", "quality", "cost_usd"):
            nulls = np.flatnonzero(log[col].is_null().to_numpy())
            if nulls.size:
                raise ValueError(
                    f"{source}: rows {nulls[:5].tolist()}, column {col!r}: expected a value, got null "
                    f"({nulls.size} rows affected; filter unlabelled rows explicitly before replay)"
                )
        idx = {m: j for j, m in enumerate(models)}
        chosen = log["chosen_model"].to_list()
        unknown = sorted({c for c in chosen if c not in idx})
        if unknown:
            raise ValueError(f"{source}: column 'chosen_model': models {unknown} not in the action set {models}")
        a = np.array([idx[c] for c in chosen], dtype=np.int64)
        if features is None:
            if "features" not in log.columns:
                raise ValueError(f"{source}: no 'features' column; pass features=")
            nulls = np.flatnonzero(log["features"].is_null().to_numpy())
            if nulls.size:
                raise ValueError(f"{source}: rows {nulls[:5].tolist()}, column 'features': null feature vector")
            features = np.asarray(log["features"].to_list(), dtype=np.float32)
        lat = (
            log["latency_s"].cast(pl.Float64).fill_null(np.nan).to_numpy()
            if "latency_s" in log.columns
            else np.full(log.height, np.nan)
        )
        r = cell_rewards(
            reward,
            log["quality"].cast(pl.Float64).to_numpy(),
            log["cost_usd"].cast(pl.Float64).to_numpy(),
            lat,
        )
        prop = log["propensity"].cast(pl.Float64).to_numpy()
        return cls(features, a, r, len(models), propensities=prop, obs_clip=obs_clip)

    @classmethod
    def from_logged(
        cls,
        data: LoggedData,
        reward: RewardSpec,
        *,
        unlabeled: Literal["refuse", "drop"] = "refuse",
        obs_clip: float = 10.0,
    ) -> LoggedReplay:
        """Build from joined logged data (:class:`router_rl.logs.data.LoggedData`, ``router-rl logs join``).

        The action of a row is its chosen model with its propensity; the reward is the
        :class:`RewardSpec` value of the row's label, cost and latency, which describe what
        choosing that model produced: after a fallback, the fallback's answer (the fallback is
        part of the environment), for a request no model answered quality 0 and cost 0.

        Args:
            data: The logged data.
            reward: Reward spec with a numeric ``cost_ref_usd``.
            unlabeled: ``"refuse"`` (default) raises when some rows have no label yet;
                ``"drop"`` replays only the labeled rows (the count is in
                :attr:`n_dropped_unlabeled`).
            obs_clip: Box bound.

        Raises:
            ValueError: unlabeled rows (with ``"refuse"``, naming the count), unknown costs with
                ``cost_weight > 0``, or nothing left to replay.
        """
        if unlabeled not in ("refuse", "drop"):
            raise ValueError(f"LoggedReplay.from_logged: unlabeled must be 'refuse' or 'drop', got {unlabeled!r}")
        lab = ~np.isnan(np.asarray(data.quality, dtype=np.float64))
        n_unl = int((~lab).sum())
        if n_unl and unlabeled == "refuse":
            raise ValueError(
                f"LoggedReplay.from_logged: {n_unl} of {lab.size} rows have no label yet (quality null); "
                "pass unlabeled='drop' to replay the labeled rows only"
            )
        rows = np.flatnonzero(lab)
        if rows.size == 0:
            raise ValueError(f"LoggedReplay.from_logged: no labeled row to replay ({n_unl} unlabeled)")
        cost = np.asarray(data.cost_usd, dtype=np.float64)[rows]
        unknown = np.isnan(cost)
        if unknown.any():
            if reward.cost_weight != 0:
                raise ValueError(
                    f"LoggedReplay.from_logged: {int(unknown.sum())} labeled rows have an unknown cost_usd "
                    "and reward.cost_weight > 0"
                )
            cost = np.where(unknown, 0.0, cost)  # weight 0: the cost does not enter the reward
        r = cell_rewards(reward, np.asarray(data.quality, dtype=np.float64)[rows], cost,
                         np.asarray(data.latency_s, dtype=np.float64)[rows])
        env = cls(np.asarray(data.X)[rows], np.asarray(data.actions)[rows], r, len(data.models),
                  propensities=np.asarray(data.propensities)[rows], obs_clip=obs_clip)
        env.n_dropped_unlabeled = n_unl
        return env

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict]:
        """Rewind to the first logged event (the log order is fixed; ``seed`` only seeds np_random)."""
        super().reset(seed=seed)
        self._t = 0
        self._actions[:] = -1
        return self.X[0].copy(), {"event": 0}

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict]:
        """Offer the target's action for the current event."""
        n = self.X.shape[0]
        if self._t >= n:
            raise RuntimeError("LoggedReplay.step called after the log was exhausted; call reset()")
        a = int(action)
        t = self._t
        self._actions[t] = a
        matched = a == int(self.logged_actions[t])
        reward = float(self.rewards[t]) if matched else 0.0
        self._t += 1
        truncated = self._t >= n
        nxt = t if truncated else self._t
        return self.X[nxt].copy(), reward, False, truncated, {"event": t, "matched": matched}

    def result(self, level: float = 0.95) -> ReplayResult:
        """Replay estimate over the events stepped so far."""
        k = self._t
        prop = None if self.propensities is None else self.propensities[:k]
        return replay_evaluate(self.rewards[:k], self.logged_actions[:k], self._actions[:k], prop, level=level)

    def value(self) -> float:
        """Point estimate of :meth:`result`."""
        return self.result().value
