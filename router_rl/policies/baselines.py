"""Baseline routers: random, single model, cheapest, oracle (upper bound) and the fleet's rule router."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from router_rl.core.errors import ConfigError
from router_rl.core.seeding import as_generator
from router_rl.policies.base import (
    PolicyCapabilityError,
    PolicyLoadError,
    RouteOutcome,
    RoutingPolicy,
    check_features,
    register_policy,
)
from router_rl.policies.signals import complexity_columns, complexity_rank, privacy_column

if TYPE_CHECKING:
    from typing import Self

    from router_rl.traces.catalog import ModelCatalog
    from router_rl.traces.matrix import OutcomeMatrix


def _one_hot(n: int, m: int, idx: np.ndarray | int) -> np.ndarray:
    p = np.zeros((n, m))
    p[np.arange(n), idx] = 1.0
    return p


def _n_rows(X: np.ndarray) -> int:
    arr = np.asarray(X)
    if arr.ndim != 2:
        raise ValueError(f"X must be 2-D (n_tasks, n_features), got shape {arr.shape}")
    return int(arr.shape[0])


@register_policy
class RandomPolicy(RoutingPolicy):
    """Uniform (or weighted) random routing; ``act`` without ``rng`` uses the policy's own seed.

    Args:
        models: Candidate model ids.
        weights: Optional non-negative weights per model (normalised); default uniform.
        seed: Seed used by :meth:`act` when no generator is passed (reproducible decisions).
    """

    kind = "random"

    def __init__(
        self,
        models: Sequence[str],
        *,
        weights: Sequence[float] | None = None,
        seed: int = 0,
        metadata: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(models, metadata=metadata)
        self._set(weights, seed)

    def _set(self, weights: Sequence[float] | None, seed: int) -> None:
        w = np.ones(self.n_models) if weights is None else np.asarray(weights, dtype=np.float64)
        if w.shape != (self.n_models,) or not np.isfinite(w).all() or (w < 0).any() or w.sum() <= 0:
            raise ConfigError("random.weights", f"expected {self.n_models} non-negative weights with a positive sum")
        self.weights = w / w.sum()
        self.seed = int(seed)

    def action_distribution(self, X: np.ndarray) -> np.ndarray:
        """The same distribution for every row."""
        return np.tile(self.weights, (_n_rows(X), 1))

    def act(self, X: np.ndarray, rng: np.random.Generator | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Sample (a random policy has no argmax); ``rng=None`` uses ``default_rng(seed)``."""
        return super().act(X, rng if rng is not None else as_generator(self.seed))

    def _save_state(self, directory: Path) -> dict[str, Any] | None:
        return {"weights": self.weights.tolist(), "seed": self.seed}

    def _load_state(self, directory: Path, state: dict[str, Any]) -> None:
        self._set(state.get("weights"), int(state.get("seed", 0)))


@register_policy
class SingleModelPolicy(RoutingPolicy):
    """Always the same model.

    Args:
        models: Candidate model ids.
        model: The model to always choose (default: the best single model seen in :meth:`fit`;
            the first model when never fitted).
    """

    kind = "single"

    def __init__(self, models: Sequence[str], *, model: str | None = None, metadata: dict[str, Any] | None = None):
        super().__init__(models, metadata=metadata)
        self.model: str | None = None
        if model is not None:
            self._set(model)

    def _set(self, model: str) -> None:
        if model not in self.models:
            raise ConfigError("single.model", f"{model!r} is not a candidate model (known: {list(self.models)})")
        self.model = model

    def _fit(self, X: np.ndarray, matrix: OutcomeMatrix, rng: np.random.Generator) -> None:
        if self.model is None:
            self.model = matrix.best_single_model()

    @property
    def index(self) -> int:
        """Column of the chosen model."""
        return self.models.index(self.model) if self.model is not None else 0

    def action_distribution(self, X: np.ndarray) -> np.ndarray:
        """One-hot on :attr:`model`."""
        return _one_hot(_n_rows(X), self.n_models, self.index)

    def _save_state(self, directory: Path) -> dict[str, Any] | None:
        return {"model": self.model}

    def _load_state(self, directory: Path, state: dict[str, Any]) -> None:
        self.model = None
        if state.get("model") is not None:
            self._set(state["model"])


@register_policy
class CheapestPolicy(RoutingPolicy):
    """Always the model with the lowest expected cost.

    The cost order comes from the training matrix's mean cost per model (:meth:`fit`) or, before
    fitting, from the catalog's price of a 1,000-in / 300-out token call.

    Args:
        models: Candidate model ids.
        catalog: Optional catalog used before fitting.
    """

    kind = "cheapest"

    def __init__(
        self, models: Sequence[str], *, catalog: ModelCatalog | None = None, metadata: dict[str, Any] | None = None
    ) -> None:
        super().__init__(models, metadata=metadata)
        self.expected_cost: np.ndarray | None = None
        if catalog is not None:
            self.catalog = catalog.subset(self.models)
            self.expected_cost = np.array([self.catalog[m].cost(1000, 300) for m in self.models])

    def _fit(self, X: np.ndarray, matrix: OutcomeMatrix, rng: np.random.Generator) -> None:
        self.expected_cost = matrix.cost.mean(axis=0)

    def action_distribution(self, X: np.ndarray) -> np.ndarray:
        """One-hot on the cheapest model."""
        if self.expected_cost is None:
            raise RuntimeError("cheapest: no cost information; fit() on a matrix or pass a catalog")
        return _one_hot(_n_rows(X), self.n_models, int(np.argmin(self.expected_cost)))

    def _save_state(self, directory: Path) -> dict[str, Any] | None:
        return {"expected_cost": None if self.expected_cost is None else self.expected_cost.tolist()}

    def _load_state(self, directory: Path, state: dict[str, Any]) -> None:
        c = state.get("expected_cost")
        self.expected_cost = None if c is None else np.asarray(c, dtype=np.float64)


@register_policy
class OraclePolicy(RoutingPolicy):
    """Upper bound: per task, the best outcome in hindsight (needs the outcomes).

    With ``lam = 0`` it takes the cheapest among the highest-quality models
    (:meth:`OutcomeMatrix.oracle_actions`); with ``lam > 0`` it maximises
    ``quality − lam · cost / mean cost of the matrix's best single model``.
    """

    kind = "oracle"
    refuses: ClassVar[Mapping[str, str]] = {
        "action_distribution": "the oracle needs the outcomes: use route_matrix(X, matrix) or "
        "oracle_distribution(matrix)",
    }

    def __init__(self, models: Sequence[str], *, lam: float = 0.0, metadata: dict[str, Any] | None = None) -> None:
        super().__init__(models, metadata=metadata)
        if not lam >= 0:
            raise ConfigError("oracle.lam", f"expected >= 0, got {lam!r}")
        self.lam = float(lam)

    def action_distribution(self, X: np.ndarray) -> np.ndarray:
        """Refused (:class:`PolicyCapabilityError`): the oracle reads outcomes (use :meth:`route_matrix`)."""
        raise PolicyCapabilityError(self.kind, "action_distribution", self.refuses["action_distribution"])

    def oracle_actions(self, matrix: OutcomeMatrix) -> np.ndarray:
        """``(n,)`` the oracle's model per task of ``matrix``."""
        self.check_models(matrix.models, what="outcome matrix")
        if self.lam == 0:
            return matrix.oracle_actions()
        ref = matrix.model_index(matrix.best_single_model())
        scale = float(matrix.cost[:, ref].mean()) or 1.0
        util = matrix.quality - self.lam * matrix.cost / scale
        return util.argmax(axis=1)

    def oracle_distribution(self, matrix: OutcomeMatrix) -> np.ndarray:
        """``(n, m)`` one-hot distribution of :meth:`oracle_actions`."""
        return _one_hot(matrix.n_tasks, self.n_models, self.oracle_actions(matrix))

    def route_matrix(
        self, X: np.ndarray, matrix: OutcomeMatrix, rng: np.random.Generator | None = None
    ) -> RouteOutcome:
        """Pick the hindsight-best model per task (deterministic; ``rng`` ignored)."""
        if _n_rows(X) != matrix.n_tasks:
            raise ValueError(f"route_matrix: X has {_n_rows(X)} rows but the matrix has {matrix.n_tasks} tasks")
        a = self.oracle_actions(matrix).astype(np.int64)
        rows = np.arange(matrix.n_tasks)
        return RouteOutcome(
            actions=a,
            propensities=np.ones(matrix.n_tasks),
            quality=matrix.quality[rows, a],
            cost=matrix.cost[rows, a],
            latency=matrix.latency[rows, a],
            n_calls=np.ones(matrix.n_tasks, dtype=np.int64),
        )

    def _save_state(self, directory: Path) -> dict[str, Any] | None:
        return {"lam": self.lam}

    def _load_state(self, directory: Path, state: dict[str, Any]) -> None:
        self.lam = float(state.get("lam", 0.0))


@register_policy
class RuleRouter(RoutingPolicy):
    """The seed fleet's hand-written router, as a baseline.

    * SIMPLE / MODERATE -> ``small_model`` (local)
    * COMPLEX -> ``large_model`` (local, the refinement tier)
    * VERY_COMPLEX -> ``cloud_model``
    * privacy-sensitive -> never cloud (VERY_COMPLEX sensitive tasks go to ``large_model``)

    Complexity and privacy are read from the encoder's structure features (columns found by name,
    see :mod:`router_rl.policies.signals`) — attach the encoder, or pass ``complexity_spec`` /
    ``privacy_col`` explicitly. :meth:`distribution_for` takes the levels directly (raw tasks).

    Args:
        models: Candidate model ids.
        small_model / large_model / cloud_model: Tier models; defaults resolved in :meth:`fit`
            (cheapest local, most expensive local, best-quality cloud model of the training data).
        complexity_spec: ``{"onehot": [4 cols]}``, ``{"score": col}`` or ``{"rank": col}``.
        privacy_col: Column of the privacy flag in ``X``.
    """

    kind = "rules"

    def __init__(
        self,
        models: Sequence[str],
        *,
        small_model: str | None = None,
        large_model: str | None = None,
        cloud_model: str | None = None,
        complexity_spec: dict[str, Any] | None = None,
        privacy_col: int | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(models, metadata=metadata)
        self.tiers: dict[str, str | None] = {"small": small_model, "large": large_model, "cloud": cloud_model}
        for name, m in self.tiers.items():
            if m is not None and m not in self.models:
                raise ConfigError(f"rules.{name}_model", f"{m!r} is not a candidate model ({list(self.models)})")
        self.complexity_spec = complexity_spec
        self.privacy_col = privacy_col

    def attach_encoder(self, encoder: Any) -> Self:
        """Attach the encoder and find its complexity / privacy columns."""
        super().attach_encoder(encoder)
        if self.complexity_spec is None:
            self.complexity_spec = complexity_columns(encoder)
        if self.privacy_col is None:
            self.privacy_col = privacy_column(encoder)
        return self

    def _fit(self, X: np.ndarray, matrix: OutcomeMatrix, rng: np.random.Generator) -> None:
        if matrix.catalog is None:
            if None in self.tiers.values():
                raise ConfigError("rules", "fit needs a matrix with a catalog to pick default tier models")
            return
        local = matrix.is_local()
        cost = matrix.cost.mean(axis=0)
        qual = matrix.quality.mean(axis=0)
        if local.any():
            loc_idx = np.flatnonzero(local)
            self.tiers["small"] = self.tiers["small"] or matrix.models[int(loc_idx[np.argmin(cost[loc_idx])])]
            self.tiers["large"] = self.tiers["large"] or matrix.models[int(loc_idx[np.argmax(cost[loc_idx])])]
        if (~local).any():
            cl = np.flatnonzero(~local)
            self.tiers["cloud"] = self.tiers["cloud"] or matrix.models[int(cl[np.argmax(qual[cl])])]
        # a fleet without local (or cloud) models: every tier falls back to the extreme of the other side
        order = np.argsort(cost)
        self.tiers["small"] = self.tiers["small"] or matrix.models[int(order[0])]
        self.tiers["large"] = self.tiers["large"] or self.tiers["small"]
        self.tiers["cloud"] = self.tiers["cloud"] or matrix.models[int(np.argmax(qual))]

    def _tier_index(self, name: str) -> int:
        m = self.tiers[name]
        if m is None:
            raise RuntimeError(
                f"rules: tier {name!r} has no model; pass {name}_model=... or fit() on a catalogued matrix"
            )
        return self.models.index(m)

    def distribution_for(self, levels: np.ndarray, sensitive: np.ndarray | None = None) -> np.ndarray:
        """One-hot distribution for complexity ranks ``levels`` (0..3) and a privacy mask."""
        levels = np.asarray(levels, dtype=np.int64)
        if levels.size and (levels.min() < 0 or levels.max() > 3):
            raise ValueError(f"rules: complexity levels must be in 0..3, got {levels.min()}..{levels.max()}")
        small, large, cloud = (self._tier_index(t) for t in ("small", "large", "cloud"))
        choice = np.choose(np.minimum(levels, 3), [small, small, large, cloud])
        if sensitive is not None:
            choice = np.where(sensitive & (choice == cloud), large, choice)
        return _one_hot(levels.shape[0], self.n_models, choice)

    def action_distribution(self, X: np.ndarray) -> np.ndarray:
        """Read complexity (and privacy) from ``X`` and apply the tier table."""
        X = check_features(X, what="rules")
        if self.complexity_spec is None:
            raise RuntimeError(
                "rules: no complexity feature known; attach the FeatureEncoder (with structure features) "
                "or pass complexity_spec={'onehot'|'score'|'rank': ...}"
            )
        levels = complexity_rank(X, self.complexity_spec)
        sens = X[:, self.privacy_col] > 0.5 if self.privacy_col is not None else None
        return self.distribution_for(levels, sens)

    def _save_state(self, directory: Path) -> dict[str, Any] | None:
        return {"tiers": self.tiers, "complexity_spec": self.complexity_spec, "privacy_col": self.privacy_col}

    def _load_state(self, directory: Path, state: dict[str, Any]) -> None:
        try:
            self.tiers = dict(state["tiers"])
        except KeyError as e:
            raise PolicyLoadError(f"{directory}: rules artifact lacks {e}") from e
        self.complexity_spec = state.get("complexity_spec")
        self.privacy_col = state.get("privacy_col")
