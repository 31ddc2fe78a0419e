"""Online contextual bandits: LinUCB and linear Thompson sampling (disjoint arms).

Reward of pulling model ``a`` on a task: ``quality − lam · cost / cost_scale`` (``cost_scale`` =
the reference model's mean cost on the fit data, or given). Contexts are the standardised encoded
features, projected by a seeded Gaussian random projection to ``dim`` dimensions when wider (the
per-arm ``dim x dim`` matrices stay small), plus a bias term.

``update(x, a, r)`` is the online step. ``fit`` replays the training matrix online in a seeded
order (``passes`` times): the bandit picks, sees only the picked model's reward, updates.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from router_rl.core.errors import ConfigError
from router_rl.policies.base import PolicyLoadError, RoutingPolicy, check_features, register_policy

if TYPE_CHECKING:
    from router_rl.traces.matrix import OutcomeMatrix


class _LinearBandit(RoutingPolicy):
    kind = "_linear_bandit"

    def __init__(
        self,
        models: Sequence[str],
        *,
        dim: int = 32,
        lam: float = 0.5,
        ridge: float = 1.0,
        passes: int = 1,
        cost_scale: float | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(models, metadata=metadata)
        if not (isinstance(dim, int) and dim >= 1):
            raise ConfigError(f"{self.kind}.dim", f"expected an integer >= 1, got {dim!r}")
        if lam < 0 or ridge <= 0 or passes < 1:
            raise ConfigError(self.kind, "lam >= 0, ridge > 0 and passes >= 1 are required")
        self.dim, self.lam, self.ridge, self.passes = dim, float(lam), float(ridge), int(passes)
        self.cost_scale = cost_scale
        self.proj: np.ndarray | None = None
        self.mean = np.zeros(0)
        self.scale = np.ones(0)
        self.A_inv = np.zeros((0, 0, 0))
        self.bvec = np.zeros((0, 0))

    # --- context -----------------------------------------------------------------------------
    def _init_state(self, X: np.ndarray, rng: np.random.Generator) -> None:
        d = X.shape[1]
        self.mean = X.mean(axis=0)
        sd = X.std(axis=0)
        self.scale = np.where(sd > 1e-8, sd, 1.0)
        self.proj = rng.normal(0, 1 / np.sqrt(self.dim), (d, self.dim)) if d > self.dim else None
        k = (self.dim if self.proj is not None else d) + 1
        self.A_inv = np.tile(np.eye(k) / self.ridge, (self.n_models, 1, 1))
        self.bvec = np.zeros((self.n_models, k))

    def context(self, X: np.ndarray) -> np.ndarray:
        """``(n, k)`` bandit contexts of encoded features ``X``."""
        if self.A_inv.size == 0:
            raise RuntimeError(f"{self.kind}: not initialised; call fit() (or start_online(X_sample))")
        Z = (np.asarray(X, dtype=np.float64) - self.mean) / self.scale
        if self.proj is not None:
            Z = Z @ self.proj
        return np.hstack([Z, np.ones((Z.shape[0], 1))])

    def start_online(self, X_sample: np.ndarray, *, cost_scale: float, seed: int = 0) -> None:
        """Initialise for pure online use (feature scaling from ``X_sample``)."""
        self.cost_scale = float(cost_scale)
        self._init_state(check_features(X_sample, what=f"{self.kind}.start_online"), np.random.default_rng(seed))

    def theta(self) -> np.ndarray:
        """``(m, k)`` posterior mean weights."""
        return np.einsum("mij,mj->mi", self.A_inv, self.bvec)

    def update(self, x: np.ndarray, a: int, r: float) -> None:
        """Online update with the reward ``r`` of model ``a`` on task features ``x`` (1-D)."""
        if not 0 <= a < self.n_models:
            raise ValueError(f"{self.kind}.update: action {a} out of range 0..{self.n_models - 1}")
        if not np.isfinite(r):
            raise ValueError(f"{self.kind}.update: reward must be finite, got {r}")
        z = self.context(np.asarray(x).reshape(1, -1))[0]
        Ai = self.A_inv[a]
        Az = Ai @ z
        self.A_inv[a] = Ai - np.outer(Az, Az) / (1.0 + z @ Az)  # Sherman-Morrison
        self.bvec[a] += r * z

    def reward(self, matrix: OutcomeMatrix, rows: np.ndarray, actions: np.ndarray) -> np.ndarray:
        """Rewards ``quality − lam · cost / cost_scale`` of (task, model) pairs."""
        scale = self.cost_scale or 1.0
        return matrix.quality[rows, actions] - self.lam * matrix.cost[rows, actions] / scale

    def _fit(self, X: np.ndarray, matrix: OutcomeMatrix, rng: np.random.Generator) -> None:
        if self.cost_scale is None:
            ref = matrix.model_index(matrix.best_single_model())
            self.cost_scale = float(matrix.cost[:, ref].mean()) or 1.0
        self._init_state(X, rng)
        total = 0.0
        steps = 0
        for _ in range(self.passes):
            for i in rng.permutation(matrix.n_tasks):
                x = X[i : i + 1]
                a = self._choose(self.context(x), rng)
                r = float(self.reward(matrix, np.array([i]), np.array([a]))[0])
                self.update(X[i], a, r)
                total += r
                steps += 1
        self.metadata["metrics"] = {"replay_mean_reward": total / max(steps, 1), "replay_steps": steps}

    def _choose(self, z: np.ndarray, rng: np.random.Generator) -> int:
        raise NotImplementedError

    def _save_state(self, directory: Path) -> dict[str, Any] | None:
        arrays = {"mean": self.mean, "scale": self.scale, "A_inv": self.A_inv, "bvec": self.bvec}
        if self.proj is not None:
            arrays["proj"] = self.proj
        np.savez(directory / "bandit.npz", **arrays)  # type: ignore[arg-type]
        return {"dim": self.dim, "lam": self.lam, "ridge": self.ridge, "passes": self.passes,
                "cost_scale": self.cost_scale, **self._extra_state()}

    def _extra_state(self) -> dict[str, Any]:
        return {}

    def _load_state(self, directory: Path, state: dict[str, Any]) -> None:
        path = directory / "bandit.npz"
        if not path.is_file():
            raise PolicyLoadError(f"{path}: missing bandit state")
        self.dim, self.lam, self.ridge = int(state["dim"]), float(state["lam"]), float(state["ridge"])
        self.passes, self.cost_scale = int(state["passes"]), state.get("cost_scale")
        with np.load(path) as z:
            self.mean, self.scale, self.A_inv, self.bvec = z["mean"], z["scale"], z["A_inv"], z["bvec"]
            self.proj = z["proj"] if "proj" in z.files else None
        self._load_extra(state)

    def _load_extra(self, state: dict[str, Any]) -> None:
        pass


@register_policy
class LinUCBPolicy(_LinearBandit):
    """Disjoint LinUCB; the distribution is one-hot on the highest upper confidence bound.

    Args:
        alpha: Exploration width (0 = greedy on the posterior mean).
        dim, lam, ridge, passes, cost_scale: See module docstring.
    """

    kind = "linucb"

    def __init__(self, models: Sequence[str], *, alpha: float = 0.5, **kwargs: Any) -> None:
        super().__init__(models, **kwargs)
        if alpha < 0:
            raise ConfigError("linucb.alpha", f"expected >= 0, got {alpha!r}")
        self.alpha = float(alpha)

    def ucb(self, Z: np.ndarray) -> np.ndarray:
        """``(n, m)`` upper confidence bounds of contexts ``Z``."""
        mean = Z @ self.theta().T
        var = np.einsum("ni,mij,nj->nm", Z, self.A_inv, Z)
        return np.asarray(mean + self.alpha * np.sqrt(np.maximum(var, 0.0)))

    def _choose(self, z: np.ndarray, rng: np.random.Generator) -> int:
        return int(self.ucb(z)[0].argmax())

    def action_distribution(self, X: np.ndarray) -> np.ndarray:
        """One-hot on the UCB argmax."""
        u = self.ucb(self.context(check_features(X, what="linucb")))
        p = np.zeros_like(u)
        p[np.arange(u.shape[0]), u.argmax(axis=1)] = 1.0
        return p

    def _extra_state(self) -> dict[str, Any]:
        return {"alpha": self.alpha}

    def _load_extra(self, state: dict[str, Any]) -> None:
        self.alpha = float(state.get("alpha", 0.5))


@register_policy
class ThompsonPolicy(_LinearBandit):
    """Linear Thompson sampling: ``θ_a ~ N(A_a⁻¹ b_a, v² A_a⁻¹)``.

    :meth:`action_distribution` is the probability that each arm's sampled score is the highest,
    estimated with ``n_samples`` posterior draws from a fixed seed (deterministic, > 0 wherever
    the posterior gives an arm a chance).

    Args:
        v: Posterior scale.
        n_samples: Monte-Carlo draws per distribution.
        seed: Seed of those draws.
        dim, lam, ridge, passes, cost_scale: See module docstring.
    """

    kind = "thompson"

    def __init__(self, models: Sequence[str], *, v: float = 0.3, n_samples: int = 256, seed: int = 0,
                 **kwargs: Any) -> None:
        super().__init__(models, **kwargs)
        if v <= 0 or n_samples < 1:
            raise ConfigError("thompson", "v > 0 and n_samples >= 1 are required")
        self.v, self.n_samples, self.seed = float(v), int(n_samples), int(seed)

    def _sample_scores(self, Z: np.ndarray, rng: np.random.Generator, s: int, *, common: bool = False) -> np.ndarray:
        """``(s, n, m)`` sampled scores: mean + v · sqrt(z A⁻¹ z) · N(0, 1) (exact marginal per arm).

        ``common=True`` shares the normal draws across rows (common random numbers), so equal
        contexts get equal estimated distributions.
        """
        mean = Z @ self.theta().T
        sd = self.v * np.sqrt(np.maximum(np.einsum("ni,mij,nj->nm", Z, self.A_inv, Z), 0.0))
        shape = (s, 1, mean.shape[1]) if common else (s, *mean.shape)
        return np.asarray(mean[None] + sd[None] * rng.standard_normal(shape))

    def _choose(self, z: np.ndarray, rng: np.random.Generator) -> int:
        return int(self._sample_scores(z, rng, 1)[0, 0].argmax())

    def action_distribution(self, X: np.ndarray) -> np.ndarray:
        """Monte-Carlo probability of each arm winning (fixed seed)."""
        Z = self.context(check_features(X, what="thompson"))
        wins = self._sample_scores(Z, np.random.default_rng(self.seed), self.n_samples, common=True).argmax(axis=2)
        p = np.zeros((Z.shape[0], self.n_models))
        for s in range(wins.shape[0]):
            p[np.arange(Z.shape[0]), wins[s]] += 1.0
        return p / wins.shape[0]

    def _extra_state(self) -> dict[str, Any]:
        return {"v": self.v, "n_samples": self.n_samples, "seed": self.seed}

    def _load_extra(self, state: dict[str, Any]) -> None:
        self.v, self.n_samples, self.seed = float(state["v"]), int(state["n_samples"]), int(state["seed"])
