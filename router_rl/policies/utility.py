"""Shared machinery of quality-predicting routers (LightGBM, kNN, MLP, matrix factorisation).

Subclasses only learn ``predict_quality(X) -> (n, n_models)``; this base adds the per-model cost
and latency estimates (training means, or per task when the subclass fits a
:class:`~router_rl.policies.costmodel.CostLatencyModel` in :meth:`UtilityPolicy._fit_cost_model`),
the reference model, the utility decision rule of :mod:`router_rl.policies.decision`, λ
calibration on validation data and explanations.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from router_rl.policies.base import PolicyLoadError, RoutingPolicy, check_features
from router_rl.policies.calibration import CalibrationResult, Target, parse_target, search_lambda
from router_rl.policies.decision import Decision, DecisionConfig, decide
from router_rl.policies.joint_target import JointTarget, search_joint
from router_rl.policies.signals import privacy_column

if TYPE_CHECKING:
    from typing import Self

    from router_rl.policies.costmodel import CostLatencyModel
    from router_rl.traces.matrix import OutcomeMatrix


def _as_decision(decision: DecisionConfig | dict[str, Any] | None) -> DecisionConfig:
    if decision is None:
        return DecisionConfig()
    if isinstance(decision, DecisionConfig):
        return decision
    return DecisionConfig.from_dict(decision)


class UtilityPolicy(RoutingPolicy):
    """A router that predicts per-model quality and maximises quality − λ·cost − μ·latency.

    Args:
        models: Candidate model ids.
        decision: :class:`DecisionConfig` (or its dict): λ, μ, temperature, epsilon, floors.
        metadata: Extra artifact metadata.
    """

    kind = "utility"

    def __init__(
        self,
        models: Sequence[str],
        *,
        decision: DecisionConfig | dict[str, Any] | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(models, metadata=metadata)
        self.decision = _as_decision(decision)
        self._init_stats()

    def _init_stats(self) -> None:
        m = self.n_models
        self.cost_mean = np.zeros(m)
        self.latency_mean = np.zeros(m)
        self.reference_model: str | None = None
        self.privacy_col: int | None = None
        #: Per-task cost / latency predictor (None: the training means above).
        self.cost_model: CostLatencyModel | None = None
        self.fitted = False
        self._quality_cache: dict[int, tuple[np.ndarray, np.ndarray]] | None = None

    # --- fitting -----------------------------------------------------------------------------
    def _fit(self, X: np.ndarray, matrix: OutcomeMatrix, rng: np.random.Generator) -> None:
        self.cost_mean = matrix.cost.mean(axis=0)
        fin = np.isfinite(matrix.latency)
        cnt = fin.sum(axis=0)
        lat_sum = np.where(fin, matrix.latency, 0.0).sum(axis=0)
        self.latency_mean = np.where(cnt > 0, lat_sum / np.maximum(cnt, 1), 0.0)
        self.reference_model = matrix.best_single_model()
        X32 = np.asarray(X, dtype=np.float32)
        self._fit_quality(X32, matrix, rng)
        self.cost_model = self._fit_cost_model(X32, matrix, rng)
        self.fitted = True

    def _fit_cost_model(
        self, X: np.ndarray, matrix: OutcomeMatrix, rng: np.random.Generator
    ) -> CostLatencyModel | None:
        """Per-task cost / latency predictor, fitted after the quality model (None = training means)."""
        return None

    @abstractmethod
    def _fit_quality(self, X: np.ndarray, matrix: OutcomeMatrix, rng: np.random.Generator) -> None:
        """Learn the per-model quality predictor."""

    @abstractmethod
    def _predict_quality(self, X: np.ndarray) -> np.ndarray:
        """``(n, m)`` predicted quality of checked, float32 ``X``."""

    # --- prediction --------------------------------------------------------------------------
    def _check_X(self, X: np.ndarray, what: str) -> np.ndarray:
        if not self.fitted:
            raise RuntimeError(f"{type(self).__name__}.{what}: the policy is not fitted; call fit() first")
        return np.asarray(check_features(X, n_features=self.n_features, what=f"{self.kind}.{what}"), np.float32)

    def predict_quality(self, X: np.ndarray) -> np.ndarray:
        """``(n, n_models)`` predicted quality (success probability) per model, in [0, 1]."""
        return np.clip(self._predict_quality(self._check_X(X, "predict_quality")), 0.0, 1.0)

    def predict_cost(self, X: np.ndarray) -> np.ndarray:
        """``(n, n_models)`` expected USD per call (per task with a cost model, else the training mean)."""
        if self.cost_model is None:
            return np.broadcast_to(self.cost_mean, (np.asarray(X).shape[0], self.n_models))
        return self._cost_latency(self._check_X(X, "predict_cost"))[0]

    def predict_latency(self, X: np.ndarray) -> np.ndarray:
        """``(n, n_models)`` expected seconds per call (per task with a cost model, else the mean; 0 = unknown)."""
        if self.cost_model is None:
            return np.broadcast_to(self.latency_mean, (np.asarray(X).shape[0], self.n_models))
        return self._cost_latency(self._check_X(X, "predict_latency"))[1]

    def _cost_latency(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(cost, latency)`` of checked float32 ``X`` in one pass."""
        if self.cost_model is None:
            shape = (X.shape[0], self.n_models)
            return np.broadcast_to(self.cost_mean, shape), np.broadcast_to(self.latency_mean, shape)
        return self.cost_model.predict(X)

    @property
    def reference_index(self) -> int:
        """Column of the reference (best single on training data) model."""
        if self.reference_model is None:
            raise RuntimeError(f"{type(self).__name__}: not fitted")
        return self.models.index(self.reference_model)

    def is_local(self) -> np.ndarray | None:
        """``(n_models,)`` local mask, or None without a catalog."""
        if self.catalog is None:
            return None
        return np.array([self.catalog[m].is_local for m in self.models], dtype=bool)

    def sensitive(self, X: np.ndarray) -> np.ndarray | None:
        """``(n,)`` privacy-sensitive mask from the encoder's privacy feature (None when absent)."""
        if self.privacy_col is None:
            return None
        return np.asarray(X)[:, self.privacy_col] > 0.5

    @contextmanager
    def reuse_predictions(self) -> Iterator[None]:
        """Within the block, predict quality once per feature array (λ sweeps, frontier tracing).

        Only the decision rule is re-run for every λ; the cache is keyed by the identity of the
        array passed to :meth:`decide` (it holds a reference, so identities stay valid) and is
        dropped on exit. The caller must not mutate those arrays inside the block.
        """
        outer = self._quality_cache
        self._quality_cache = {} if outer is None else outer
        try:
            yield
        finally:
            self._quality_cache = outer

    def _quality_of(self, X_in: np.ndarray, X: np.ndarray) -> np.ndarray:
        cache = self._quality_cache
        hit = None if cache is None else cache.get(id(X_in))
        if hit is not None and hit[0] is X_in:
            return hit[1]
        q = np.clip(self._predict_quality(X), 0.0, 1.0)
        if cache is not None:
            cache[id(X_in)] = (X_in, q)
        return q

    def decide(self, X: np.ndarray, *, decision: DecisionConfig | None = None, explain: bool = False) -> Decision:
        """Run the decision rule (``decision`` overrides the fitted config, e.g. during λ search)."""
        X_in = X
        X = self._check_X(X, "decide")
        return self._decide_from(X, self._quality_of(X_in, X), decision or self.decision, explain=explain)

    def _decide_from(
        self,
        X: np.ndarray,
        q: np.ndarray,
        cfg: DecisionConfig,
        *,
        explain: bool = False,
        sensitive: np.ndarray | None = None,
        cost_latency: tuple[np.ndarray, np.ndarray] | None = None,
    ) -> Decision:
        ref = self.reference_index
        if self.shrinkage > 0:  # blend towards the prior (small-data learners)
            q = (1.0 - self.shrinkage) * q + self.shrinkage * self.prior
        cost, latency = self._cost_latency(X) if cost_latency is None else cost_latency
        return decide(
            q,
            cost,
            latency,
            cfg,
            cost_scale=float(self.cost_mean[ref]) or 1.0,
            latency_scale=float(self.latency_mean[ref]) or 1.0,
            sensitive=sensitive if sensitive is not None else self.sensitive(X),
            is_local=self.is_local(),
            explain=explain,
        )

    def action_distribution(self, X: np.ndarray) -> np.ndarray:
        """Distribution over models from the utility rule (one-hot unless temperature/epsilon)."""
        return self.decide(X).probs

    def confidence(self, X: np.ndarray) -> np.ndarray:
        """``(n,)`` predicted success probability of the chosen (argmax) model."""
        X = self._check_X(X, "confidence")
        q = np.clip(self._predict_quality(X), 0.0, 1.0)
        a = self._decide_from(X, q, self.decision).probs.argmax(axis=1)
        return q[np.arange(q.shape[0]), a]

    def explain(self, X: np.ndarray, *, sensitive: np.ndarray | None = None) -> list[dict[str, Any]]:
        """Per row: chosen model, distribution, predicted quality/cost/utility per model, λ, hits.

        Args:
            X: Encoded features.
            sensitive: Optional ``(n,)`` privacy mask overriding the encoder's privacy feature
                (e.g. from :func:`router_rl.features.is_sensitive` on the raw prompt).
        """
        X = self._check_X(X, "explain")
        q = np.clip(self._predict_quality(X), 0.0, 1.0)
        d = self._decide_from(X, q, self.decision, explain=True, sensitive=sensitive)
        cost = self._cost_latency(X)[0]
        out = []
        for i in range(X.shape[0]):
            a = int(d.probs[i].argmax())
            out.append(
                {
                    "chosen": self.models[a],
                    "confidence": float(q[i, a]),
                    "lam": self.decision.lam,
                    "mu": self.decision.mu,
                    "constraints": d.hits[i],
                    "per_model": {
                        m: {
                            "prob": float(d.probs[i, j]),
                            "pred_quality": float(q[i, j]),
                            "exp_cost_usd": float(cost[i, j]),
                            "utility": float(d.utility[i, j]),
                            "allowed": bool(d.allowed[i, j]),
                        }
                        for j, m in enumerate(self.models)
                    },
                }
            )
        return out

    # --- λ calibration -----------------------------------------------------------------------
    def calibrate(
        self,
        X_val: np.ndarray,
        val: OutcomeMatrix,
        target: Target | JointTarget | str,
        *,
        margin_z: float | None = None,
        pool_training_oof: bool | None = None,
        val_must_meet: bool | None = None,
    ) -> CalibrationResult:
        """Set λ (and ν for a joint target) so that the policy meets ``target`` on validation data.

        A single target (``quality=0.95``) sets λ alone (:func:`search_lambda`; ν is reset to 0,
        so the result does not depend on an earlier calibration); a joint target
        (``quality>=0.95,local>=0.8``) sets λ and the locality term ν together
        (:func:`~router_rl.policies.joint_target.search_joint`).

        Args:
            X_val: Encoded validation features (row i = task i of ``val``).
            val: Validation outcome matrix (same models).
            target: :class:`Target`, :class:`JointTarget` or their text (``quality=0.95``,
                ``budget=0.001``, ``local=0.8``, ``quality>=0.95,local>=0.8,budget<=0.002``).
            margin_z: Safety margin of quality targets in standard errors of the calibration set
                (default: the policy's :attr:`calibration_margin_z`).
            pool_training_oof: Also use the out-of-fold predictions on the training tasks kept by
                :meth:`fit` (cross-fitted predictors only; ignored after :meth:`load`): a quality
                target must then hold on the pooled tasks *and* on the validation tasks alone
                (the cheapest such λ). Default: the policy's :attr:`pool_training_oof`.
            val_must_meet: With pooling, also require the target on the validation tasks alone
                (default: the policy's :attr:`calibration_val_must_meet`, True). False trusts the
                pooled set only: cheaper, but the validation tasks may then miss the target.
        """
        tgt = parse_target(target) if isinstance(target, str) else target
        self.check_models(val.models, what="validation matrix")
        X_val = self._check_X(check_features(X_val, n_rows=val.n_tasks, what="calibrate"), "calibrate")
        q = np.clip(self._predict_quality(X_val), 0.0, 1.0)
        sens = self.sensitive(X_val)
        quality, cost = val.quality, val.cost
        pool = self.pool_training_oof if pool_training_oof is None else pool_training_oof
        extra = self._training_oof() if pool else None
        n_oof = 0
        if extra is not None:
            q_oof, X_oof, m_oof = extra
            n_oof = m_oof.n_tasks
            q = np.vstack([q, np.clip(q_oof, 0.0, 1.0)])
            s_oof = self.sensitive(X_oof)
            if sens is not None or s_oof is not None:
                sens = np.concatenate([
                    sens if sens is not None else np.zeros(val.n_tasks, dtype=bool),
                    s_oof if s_oof is not None else np.zeros(n_oof, dtype=bool),
                ])
            X_val = np.vstack([X_val, X_oof])
            quality = np.vstack([quality, m_oof.quality])
            cost = np.vstack([cost, m_oof.cost])
        z = self.calibration_margin_z if margin_z is None else margin_z
        must = self.calibration_val_must_meet if val_must_meet is None else val_must_meet
        also_on = None if n_oof == 0 or not must else np.arange(val.n_tasks + n_oof) < val.n_tasks
        cl = self._cost_latency(X_val)  # predicted once: only the decision rule changes across the grid
        if isinstance(tgt, JointTarget):
            is_local = self.is_local()
            if is_local is None:
                raise ValueError(f"calibrate {tgt}: a joint target needs the model locations (a catalog)")
            res = search_joint(
                lambda lam, nu: self._decide_from(
                    X_val, q, self.decision.with_(lam=lam, nu=nu), sensitive=sens, cost_latency=cl
                ).probs,
                quality, cost, tgt, reference=self.reference_index, reference_model=str(self.reference_model),
                is_local=is_local, margin_z=z, also_on=also_on,
            )
            self.decision = self.decision.with_(lam=res.lam, nu=res.nu)
        else:
            res = search_lambda(
                lambda lam: self._decide_from(
                    X_val, q, self.decision.with_(lam=lam, nu=0.0), sensitive=sens, cost_latency=cl
                ).probs,
                quality,
                cost,
                tgt,
                reference=self.reference_index,
                reference_model=str(self.reference_model),
                is_local=self.is_local(),
                margin_z=z,
                also_on=also_on,
            )
            self.decision = self.decision.with_(lam=res.lam, nu=0.0)  # a single target is λ alone
        self.metadata["calibration"] = res.to_dict() | {
            "n_val": val.n_tasks, "n_training_oof": n_oof, "margin_z": z,
        }
        return res

    #: Share of :attr:`prior` blended into the predicted quality before the decision (0 = none);
    #: set by learners that choose a shrinkage on small data (``lgbm``, ``lgbm-stack``).
    shrinkage: float = 0.0
    #: ``(n_models,)`` prior quality the predictions shrink towards (set with ``shrinkage``).
    prior: np.ndarray

    #: Default safety margin (standard errors) of quality targets in :meth:`calibrate`.
    calibration_margin_z: float = 0.0
    #: Default of ``pool_training_oof`` in :meth:`calibrate`.
    pool_training_oof: bool = False
    #: Default of ``val_must_meet`` in :meth:`calibrate`.
    calibration_val_must_meet: bool = True

    def _training_oof(self) -> tuple[np.ndarray, np.ndarray, OutcomeMatrix] | None:
        """``(out-of-fold predicted quality, X, matrix)`` of the training tasks, when kept by fit."""
        return None

    # --- persistence -------------------------------------------------------------------------
    def attach_encoder(self, encoder: Any) -> Self:
        """Attach the encoder and locate its privacy feature column (for the local-only rule)."""
        super().attach_encoder(encoder)
        self.privacy_col = privacy_column(encoder)
        return self

    def _save_state(self, directory: Path) -> dict[str, Any] | None:
        if not self.fitted:
            raise RuntimeError(f"{type(self).__name__}.save: fit the policy before saving it")
        state = {
            "decision": self.decision.to_dict(),
            "cost_mean": self.cost_mean.tolist(),
            "latency_mean": self.latency_mean.tolist(),
            "reference_model": self.reference_model,
            "privacy_col": self.privacy_col,
        }
        if self.cost_model is not None:
            state["cost_model"] = self.cost_model.save(directory)
        state.update(self._save_model(directory) or {})
        return state

    def _load_state(self, directory: Path, state: dict[str, Any]) -> None:
        try:
            self.decision = _as_decision(state["decision"])
            self._init_stats()
            self.cost_mean = np.asarray(state["cost_mean"], dtype=np.float64)
            self.latency_mean = np.asarray(state["latency_mean"], dtype=np.float64)
            self.reference_model = state["reference_model"]
            self.privacy_col = state.get("privacy_col")
        except KeyError as e:
            raise PolicyLoadError(f"{directory / 'policy.json'}: state lacks {e}") from e
        if self.cost_mean.shape != (self.n_models,):
            raise PolicyLoadError(f"{directory / 'policy.json'}: cost_mean has the wrong length")
        if state.get("cost_model") is not None:
            from router_rl.policies.costmodel import CostLatencyModel

            self.cost_model = CostLatencyModel.load(directory, state["cost_model"], n_models=self.n_models)
        self._load_model(directory, state)
        self.fitted = True

    def _save_model(self, directory: Path) -> dict[str, Any] | None:
        """Write the quality model; return extra JSON state."""
        return None

    def _load_model(self, directory: Path, state: dict[str, Any]) -> None:
        """Inverse of :meth:`_save_model`."""
