"""Cascade router: cheapest model first, escalate while the confidence is low, pay for every call.

Models are tried in ascending expected cost along the training cost-quality Pareto tiers (each
model in the chain is both more expensive and better on average than the one before; dominated
models are skipped, as in FrugalGPT-style cascades), or along an explicit ``chain``. The confidence of model
``j`` on task ``i`` is a quality predictor's success probability ``q̂_ij`` (an inner
:class:`UtilityPolicy`, LightGBM by default). The cascade stops at the first model with
``q̂_ij >= threshold``; the last model of the chain always answers. :meth:`route_matrix` charges
the cost (and sequential latency) of every model called on the way.

``threshold`` can be calibrated on validation data to a target with :meth:`calibrate`.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from router_rl.core.errors import ConfigError
from router_rl.policies.base import (
    PolicyLoadError,
    RouteOutcome,
    RoutingPolicy,
    check_features,
    make_policy,
    register_policy,
)
from router_rl.policies.calibration import CalibrationResult, OperatingPoint, Target
from router_rl.policies.utility import UtilityPolicy

if TYPE_CHECKING:
    from router_rl.traces.matrix import OutcomeMatrix

#: Thresholds searched by :meth:`CascadePolicy.calibrate` (its "λ" axis: higher = more escalation).
THRESHOLD_GRID = np.linspace(0.0, 1.0, 101)


def pareto_chain(mean_cost: np.ndarray, mean_quality: np.ndarray) -> list[int]:
    """Indices of the non-dominated models by (mean cost, mean quality), ascending cost.

    Every model in the result is strictly better on average than all cheaper ones in it; the last
    one is the best model (cheapest among equals).
    """
    order = np.lexsort((-mean_quality, mean_cost))  # ascending cost, ties: better first
    chain: list[int] = []
    best = -np.inf
    for j in order:
        if mean_quality[j] > best + 1e-12:
            chain.append(int(j))
            best = float(mean_quality[j])
    return chain


@register_policy
class CascadePolicy(RoutingPolicy):
    """Cheapest-first cascade with confidence-based escalation.

    Args:
        models: Candidate model ids.
        threshold: Accept an answer when the predicted success is at least this.
        chain: Models to try, in order (default: the training cost-quality Pareto tiers, cheapest
            first, ending with the best model).
        scorer: Registry name of the quality predictor (a :class:`UtilityPolicy`), default ``lgbm``.
        scorer_kwargs: Options of the scorer.
    """

    kind = "cascade"

    def __init__(
        self,
        models: Sequence[str],
        *,
        threshold: float = 0.7,
        chain: Sequence[str] | None = None,
        scorer: str = "lgbm",
        scorer_kwargs: dict[str, Any] | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(models, metadata=metadata)
        if not 0.0 <= threshold <= 1.0:
            raise ConfigError("cascade.threshold", f"expected a number in [0, 1], got {threshold!r}")
        self.threshold = float(threshold)
        if chain is not None:
            bad = [c for c in chain if c not in self.models]
            if bad or not chain:
                raise ConfigError("cascade.chain", f"expected a non-empty list of candidate models, bad: {bad}")
        self.chain_models = list(chain) if chain is not None else None
        self.scorer_kind = scorer
        self.scorer_kwargs = dict(scorer_kwargs or {})
        self.scorer: UtilityPolicy | None = None

    @property
    def chain(self) -> list[int]:
        """Column indices in calling order."""
        if self.chain_models is None:
            raise RuntimeError("cascade: not fitted (no chain order)")
        return [self.models.index(m) for m in self.chain_models]

    def _fit(self, X: np.ndarray, matrix: OutcomeMatrix, rng: np.random.Generator) -> None:
        scorer = make_policy(self.scorer_kind, self.models, **self.scorer_kwargs)
        if not isinstance(scorer, UtilityPolicy):
            raise ConfigError("cascade.scorer", f"{self.scorer_kind!r} does not predict per-model quality")
        scorer.fit(X, matrix, seed=rng)
        self.scorer = scorer
        if self.chain_models is None:
            tiers = pareto_chain(matrix.cost.mean(axis=0), matrix.quality.mean(axis=0))
            self.chain_models = [self.models[j] for j in tiers]

    def _walk(self, q: np.ndarray, threshold: float) -> tuple[np.ndarray, np.ndarray]:
        """``(final model (n,), called mask (n, m))`` for predicted qualities ``q``."""
        n = q.shape[0]
        chain = self.chain
        final = np.full(n, chain[-1], dtype=np.int64)
        called = np.zeros((n, self.n_models), dtype=bool)
        open_ = np.ones(n, dtype=bool)
        for pos, j in enumerate(chain):
            called[open_, j] = True
            accept = open_ & ((q[:, j] >= threshold) | (pos == len(chain) - 1))
            final[accept] = j
            open_ &= ~accept
        return final, called

    def _q(self, X: np.ndarray) -> np.ndarray:
        if self.scorer is None:
            raise RuntimeError("cascade: not fitted")
        return self.scorer.predict_quality(check_features(X, what="cascade"))

    def action_distribution(self, X: np.ndarray) -> np.ndarray:
        """One-hot on the model whose answer the cascade finally serves."""
        final, _ = self._walk(self._q(X), self.threshold)
        p = np.zeros((final.shape[0], self.n_models))
        p[np.arange(final.shape[0]), final] = 1.0
        return p

    def route_matrix(
        self, X: np.ndarray, matrix: OutcomeMatrix, rng: np.random.Generator | None = None
    ) -> RouteOutcome:
        """Serve the final model's answer, paying cost and latency of every call made."""
        if np.asarray(X).shape[0] != matrix.n_tasks:
            raise ValueError(f"route_matrix: X has {np.asarray(X).shape[0]} rows but the matrix has {matrix.n_tasks}")
        self.check_models(matrix.models, what="outcome matrix")
        final, called = self._walk(self._q(X), self.threshold)
        rows = np.arange(matrix.n_tasks)
        lat = np.where(called, matrix.latency, 0.0).sum(axis=1)
        return RouteOutcome(
            actions=final,
            propensities=np.ones(matrix.n_tasks),
            quality=matrix.quality[rows, final],
            cost=np.where(called, matrix.cost, 0.0).sum(axis=1),
            latency=lat,
            n_calls=called.sum(axis=1).astype(np.int64),
        )

    def calibrate(self, X_val: np.ndarray, val: OutcomeMatrix, target: Target | str) -> CalibrationResult:
        """Pick the threshold on validation data to meet ``target`` (cost counts every call).

        Quality targets take the cheapest threshold meeting the target, budget/local targets the
        best-quality one. The result's ``lam`` field holds the chosen threshold.
        """
        tgt = Target.parse(target) if isinstance(target, str) else target
        self.check_models(val.models, what="validation matrix")
        q = self._q(X_val)
        rows = np.arange(val.n_tasks)
        is_local = self._is_local()
        if tgt.kind == "local" and is_local is None:
            raise ConfigError("target", "local=...: needs a model catalog with locations")
        ref = self.scorer.reference_index if self.scorer is not None else 0
        ref_q, ref_c = float(val.quality[:, ref].mean()), float(val.cost[:, ref].mean())
        curve = []
        for t in THRESHOLD_GRID:
            final, called = self._walk(q, float(t))
            qual = float(val.quality[rows, final].mean())
            cost = float(np.where(called, val.cost, 0.0).sum(axis=1).mean())
            loc = float(is_local[final].mean()) if is_local is not None else float("nan")
            curve.append(OperatingPoint(float(t), qual, cost, loc))
        if tgt.kind == "quality":
            ok = [pt for pt in curve if pt.quality >= tgt.value * ref_q - 1e-12]
            chosen = min(ok, key=lambda pt: (pt.cost, -pt.quality)) if ok else curve[-1]
        elif tgt.kind == "budget":
            ok = [pt for pt in curve if pt.cost <= tgt.value + 1e-12]
            chosen = max(ok, key=lambda pt: (pt.quality, -pt.cost)) if ok else curve[0]
        else:
            ok = [pt for pt in curve if pt.local_share >= tgt.value - 1e-12]
            chosen = max(ok, key=lambda pt: (pt.quality, -pt.cost)) if ok else curve[0]
        self.threshold = chosen.lam
        res = CalibrationResult(
            target=str(tgt), lam=chosen.lam, met=bool(ok), point=chosen, reference_model=self.models[ref],
            reference_quality=ref_q, reference_cost=ref_c, curve=curve,
        )
        self.metadata["calibration"] = {**res.to_dict(), "threshold": self.threshold}
        return res

    def _is_local(self) -> np.ndarray | None:
        if self.catalog is None:
            return None
        return np.array([self.catalog[m].is_local for m in self.models], dtype=bool)

    # --- persistence -------------------------------------------------------------------------
    def _save_state(self, directory: Path) -> dict[str, Any] | None:
        if self.scorer is None:
            raise RuntimeError("cascade.save: fit the policy before saving it")
        self.scorer.save(directory / "scorer")
        return {"threshold": self.threshold, "chain": self.chain_models, "scorer": self.scorer_kind,
                "scorer_kwargs": self.scorer_kwargs}

    def _load_state(self, directory: Path, state: dict[str, Any]) -> None:
        try:
            self.threshold = float(state["threshold"])
            self.chain_models = list(state["chain"])
            self.scorer_kind = state["scorer"]
            self.scorer_kwargs = dict(state.get("scorer_kwargs") or {})
        except KeyError as e:
            raise PolicyLoadError(f"{directory}: cascade artifact lacks {e}") from e
        scorer = RoutingPolicy.load(directory / "scorer", models=self.models)
        if not isinstance(scorer, UtilityPolicy):
            raise PolicyLoadError(f"{directory / 'scorer'}: not a quality-predicting policy")
        self.scorer = scorer
