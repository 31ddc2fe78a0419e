"""Precomputed per-(task, model) tables every environment steps through.

Turning an :class:`~router_rl.traces.OutcomeMatrix` plus encoded features into dense arrays once
(reward of every cell, privacy mask, oracle) makes single-env steps O(1) and lets the batched
environments use plain numpy gathers, with the very same numbers in both forms.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl

from router_rl.core.errors import ConfigError
from router_rl.envs.spec import PrivacySpec, RewardSpec
from router_rl.traces.matrix import OutcomeMatrix


def auto_cost_ref(cost: np.ndarray) -> float:
    """The ``"auto"`` reference cost: mean cost of the most expensive model (1.0 if all free)."""
    if cost.size == 0:
        return 1.0
    ref = float(np.nanmax(np.nanmean(cost, axis=0)))
    return ref if ref > 0 else 1.0


def resolve_reward(reward: RewardSpec, cost: np.ndarray) -> RewardSpec:
    """``reward`` with ``cost_ref_usd="auto"`` replaced by :func:`auto_cost_ref` of ``cost``."""
    if isinstance(reward.cost_ref_usd, str):
        return reward.model_copy(update={"cost_ref_usd": auto_cost_ref(cost)})
    return reward


def private_mask(tasks: pl.DataFrame, privacy: PrivacySpec) -> np.ndarray:
    """``(n,)`` bool: tasks that must stay on local models."""
    n = tasks.height
    mask = np.zeros(n, dtype=bool)
    if privacy.column and privacy.column in tasks.columns:
        col = tasks[privacy.column]
        if col.dtype != pl.Boolean:
            raise ConfigError(
                "privacy.column", f"task column {privacy.column!r} must be boolean, got {col.dtype}"
            )
        mask |= col.fill_null(False).to_numpy().astype(bool)
    if privacy.categories:
        if "category" not in tasks.columns:
            raise ConfigError("privacy.categories", "the data has no 'category' column")
        mask |= tasks["category"].is_in(privacy.categories).fill_null(False).to_numpy().astype(bool)
    return mask


def model_is_local(matrix: OutcomeMatrix) -> np.ndarray:
    """``(m,)`` bool local mask; all False (cloud) when the matrix has no catalog."""
    if matrix.catalog is None:
        return np.zeros(matrix.n_models, dtype=bool)
    return matrix.is_local()


def model_providers(matrix: OutcomeMatrix) -> list[str]:
    """Provider of each model (the model id itself when there is no catalog)."""
    if matrix.catalog is None:
        return list(matrix.models)
    return [matrix.catalog[m].provider for m in matrix.models]


@dataclass(frozen=True)
class RewardTables:
    """Dense per-cell tables of one split.

    Attributes:
        features: ``(n, d)`` float32, clipped to ``[-obs_clip, obs_clip]``.
        quality, cost, latency: ``(n, m)`` float64 (latency NaN where unknown).
        base_reward: ``(n, m)`` reward *without* the latency term and the privacy penalty.
        latency_term: ``(n, m)`` ``latency_weight * latency / slo`` (0 where latency unknown and
            the weight is 0).
        privacy_penalty: ``(n, m)`` penalty of choosing the cell's model for the task.
        reward: ``(n, m)`` full reward = base - latency_term - privacy_penalty.
        private: ``(n,)`` bool.
        is_local: ``(m,)`` bool.
        oracle_action / oracle_value: ``(n,)`` argmax / max of ``reward`` per task.
        task_ids: ``(n,)`` task ids (str).
        models: model ids.
        reward_spec: the resolved reward spec (numeric ``cost_ref_usd``).
    """

    features: np.ndarray
    quality: np.ndarray
    cost: np.ndarray
    latency: np.ndarray
    base_reward: np.ndarray
    latency_term: np.ndarray
    privacy_penalty: np.ndarray
    reward: np.ndarray
    private: np.ndarray
    is_local: np.ndarray
    oracle_action: np.ndarray
    oracle_value: np.ndarray
    task_ids: list[str]
    models: tuple[str, ...]
    providers: list[str]
    reward_spec: RewardSpec

    @property
    def n_tasks(self) -> int:
        """Number of tasks."""
        return int(self.quality.shape[0])

    @property
    def n_models(self) -> int:
        """Number of models."""
        return len(self.models)

    @property
    def dim(self) -> int:
        """Feature dimension."""
        return int(self.features.shape[1])


def cell_rewards(
    reward: RewardSpec,
    quality: np.ndarray,
    cost: np.ndarray,
    latency: np.ndarray,
    chosen_cloud_for_private: np.ndarray | bool = False,
) -> np.ndarray:
    """Reward of given cells (any broadcastable shapes), per :class:`RewardSpec`.

    Unknown latency (NaN) is an error when ``latency_weight > 0`` and contributes 0 otherwise.
    """
    cref = reward.resolved_cost_ref()
    r = reward.quality_weight * quality - reward.cost_weight * cost / cref
    if reward.latency_weight > 0:
        if np.isnan(latency).any():
            raise ConfigError("reward.latency_weight", "> 0 but some latencies are unknown (NaN)")
        r = r - reward.latency_weight * latency / reward.latency_slo_s
    if reward.quality_floor is not None and reward.floor_penalty > 0:
        r = r - reward.floor_penalty * (quality < reward.quality_floor)
    return r - reward.privacy_penalty * np.asarray(chosen_cloud_for_private, dtype=np.float64)


def build_tables(
    matrix: OutcomeMatrix,
    features: np.ndarray,
    reward: RewardSpec,
    *,
    private: np.ndarray | None = None,
    obs_clip: float = 10.0,
    source: str = "environment",
) -> RewardTables:
    """Validate inputs and precompute every per-cell table.

    Args:
        matrix: Full-information outcomes of the split.
        features: ``(n_tasks, d)`` encoded features, row i = task i.
        reward: Reward spec; ``cost_ref_usd="auto"`` is resolved on ``matrix`` itself.
        private: ``(n_tasks,)`` bool mask of privacy-tagged tasks (default: the tasks' boolean
            ``privacy`` column when present, see :class:`PrivacySpec`).
        obs_clip: Clip bound of the features.
        source: Name used in error messages.

    Raises:
        ConfigError: shape mismatches, NaN features, unknown latency with a latency weight,
            private tasks without any local model.
    """
    n, m = matrix.n_tasks, matrix.n_models
    if n == 0:
        raise ConfigError("data", "the split has no task", source=source)
    if m < 2:
        raise ConfigError("data.models", f"routing needs at least 2 models, got {list(matrix.models)}", source=source)
    X = np.asarray(features)
    if X.ndim != 2 or X.shape[0] != n:
        raise ConfigError(
            "features", f"expected a ({n}, d) array aligned with the tasks, got shape {X.shape}", source=source
        )
    if not np.isfinite(X).all():
        bad = np.flatnonzero(~np.isfinite(X).all(axis=1))[:5].tolist()
        raise ConfigError("features", f"non-finite values in task rows {bad}", source=source)
    X = np.clip(X.astype(np.float32), -obs_clip, obs_clip)
    reward = resolve_reward(reward, matrix.cost)
    if reward.latency_weight > 0 and np.isnan(matrix.latency).any():
        missing = [mm for j, mm in enumerate(matrix.models) if np.isnan(matrix.latency[:, j]).any()]
        raise ConfigError(
            "reward.latency_weight",
            f"> 0 but models {missing[:8]} have unknown latency; select models with latency or set it to 0",
            source=source,
        )
    is_local = model_is_local(matrix)
    priv = private_mask(matrix.tasks, PrivacySpec()) if private is None else np.asarray(private, dtype=bool)
    if priv.shape != (n,):
        raise ConfigError("privacy", f"mask must have shape ({n},), got {priv.shape}", source=source)
    if priv.any() and not is_local.any():
        raise ConfigError(
            "privacy", f"{int(priv.sum())} private task(s) but no local model to serve them", source=source
        )
    base = cell_rewards(
        reward.model_copy(update={"latency_weight": 0.0, "privacy_penalty": 0.0}),
        matrix.quality,
        matrix.cost,
        matrix.latency,
    )
    if reward.latency_weight > 0:
        lat_term = reward.latency_weight * matrix.latency / reward.latency_slo_s
    else:
        lat_term = np.zeros((n, m))
    pen = reward.privacy_penalty * (priv[:, None] & ~is_local[None, :]).astype(np.float64)
    full = base - lat_term - pen
    oracle = full.argmax(axis=1)
    return RewardTables(
        features=np.ascontiguousarray(X),
        quality=np.ascontiguousarray(matrix.quality, dtype=np.float64),
        cost=np.ascontiguousarray(matrix.cost, dtype=np.float64),
        latency=np.ascontiguousarray(matrix.latency, dtype=np.float64),
        base_reward=base,
        latency_term=lat_term,
        privacy_penalty=pen,
        reward=full,
        private=priv,
        is_local=is_local,
        oracle_action=oracle.astype(np.int64),
        oracle_value=full[np.arange(n), oracle],
        task_ids=[str(t) for t in matrix.tasks["task_id"].to_list()],
        models=tuple(matrix.models),
        providers=model_providers(matrix),
        reward_spec=reward,
    )


@dataclass(frozen=True)
class DayMix:
    """Resolved :class:`~router_rl.envs.spec.DayMixSpec` of one split.

    Attributes:
        groups: ``(n,)`` int64 group index of every task.
        concentration: Dirichlet concentration ``κ``.
        names: Group names (``names[g]`` of index ``g``).
    """

    groups: np.ndarray
    concentration: float
    names: tuple[str, ...]

    @classmethod
    def from_tasks(cls, tasks: pl.DataFrame, column: str, concentration: float, *, source: str) -> DayMix:
        """Groups from ``tasks[column]`` (nulls are a group of their own).

        Raises:
            ConfigError: ``column`` is not a task column (names the known columns).
        """
        if column not in tasks.columns:
            raise ConfigError("day_mix.column", f"no task column {column!r} (task columns: {tasks.columns})",
                              source=source)
        values = tasks[column].cast(pl.Utf8).fill_null("<null>").to_list()
        names = tuple(sorted(set(values)))
        index = {v: i for i, v in enumerate(names)}
        groups = np.array([index[v] for v in values], dtype=np.int64)
        return cls(groups=groups, concentration=float(concentration), names=names)

    def task_probabilities(self, rng: np.random.Generator) -> np.ndarray:
        """Draw one day's group weights and return ``(n,)`` per-task sampling probabilities."""
        counts = np.bincount(self.groups, minlength=len(self.names)).astype(np.float64)
        weights = rng.dirichlet(self.concentration * counts / counts.sum())
        p = weights[self.groups] / counts[self.groups]
        return p / p.sum()


def sample_order(
    rng: np.random.Generator, n: int, horizon: int | None, episode: str, day_mix: DayMix | None = None
) -> np.ndarray:
    """Task indices of one episode (the one place episode sampling happens).

    ``sample``: ``horizon`` tasks without replacement (with replacement when horizon > n) via
    ``rng.permutation`` / ``rng.integers``; ``sequential``: ``horizon`` consecutive tasks from
    offset ``rng.integers(0, n - horizon + 1)`` (no draw for a full pass). With ``day_mix``
    (``sample`` only): one Dirichlet draw of the day's group weights, then ``horizon`` tasks
    with replacement from :meth:`DayMix.task_probabilities`.
    """
    h = n if horizon is None else horizon
    if day_mix is not None:
        if episode != "sample":
            raise ValueError(f"sample_order: day_mix needs episode 'sample', got {episode!r}")
        if day_mix.groups.shape != (n,):
            raise ValueError(f"sample_order: day_mix has {day_mix.groups.shape[0]} tasks, the split {n}")
        return rng.choice(n, size=h, replace=True, p=day_mix.task_probabilities(rng)).astype(np.int64)
    if episode == "sequential":
        if h >= n:
            return np.arange(n, dtype=np.int64)
        start = int(rng.integers(0, n - h + 1))
        return np.arange(start, start + h, dtype=np.int64)
    if h <= n:
        return rng.permutation(n)[:h].astype(np.int64)
    return rng.integers(0, n, size=h).astype(np.int64)
