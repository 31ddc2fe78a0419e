"""LightGBM meta-model router: predicted success per model, calibrated, maximised under cost.

Design: **one multi-output booster**: LightGBM's multiclass machinery with ``num_class =
n_models`` and a custom objective that applies an independent binary cross-entropy to every
output (labels are per-model quality in [0, 1], not a softmax). Each boosting round grows one tree
per model, so per-model accuracy equals ``n_models`` separate boosters, but inference is a
*single* ``Booster.predict`` call over ``n`` rows.

Raw scores are turned into probabilities with a sigmoid and calibrated (isotonic by default,
or Platt) on **out-of-fold** predictions of a task-grouped K-fold cross-fit, which also picks
the number of rounds (early stopping per fold, final model trained on all tasks with the mean
best round). λ is calibrated on validation data with :meth:`UtilityPolicy.calibrate` (the
reference is the best single model).

Expected cost and latency are **per task** where the training data allows it
(``LGBMConfig.cost_model``, default ``auto``; :mod:`router_rl.policies.costmodel`); the mode and
per-model bases are in ``metadata["cost_model"]``.

Columns of ``X`` that are (almost) never non-zero on the training tasks are dropped before
training (hashed n-gram vectors are mostly empty), which shrinks the model and speeds inference.

Small training sets (``<= LGBMConfig.small_data_max_tasks``) add two measures: a stacked linear
head (out-of-fold logits of an L2 logistic regression as booster inputs, see
:mod:`router_rl.policies.linear`) and a class-prior shrinkage of the decision score chosen on the
out-of-fold predictions (:func:`choose_shrinkage`). :meth:`calibrate` pools the validation tasks
with those out-of-fold predictions. Batches are scored by a compiled numpy copy of the trees
(:mod:`router_rl.policies.treeeval`, exact; ``engine="booster"`` keeps ``Booster.predict``).

Why these choices, with the measurements behind them (speed, cost-model error, small-data and
shared-factor gains): ``docs/policies.md``, section "LightGBM: measured design choices".
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from router_rl.policies.base import PolicyLoadError, register_policy
from router_rl.policies.boosting import NUMPY_MIN_ROWS, compile_ensemble, make_dataset, select_columns
from router_rl.policies.calibration import ProbabilityCalibrator, crossfit_calibrated_ece, expected_calibration_error
from router_rl.policies.costmodel import CostLatencyModel, fit_cost_model
from router_rl.policies.decision import DecisionConfig
from router_rl.policies.lgbm_config import SHARED_AUTO_RANK, LGBMConfig
from router_rl.policies.linear import LinearHead
from router_rl.policies.one_row import OneRowPlan, plan_for
from router_rl.policies.utility import UtilityPolicy

if TYPE_CHECKING:
    from router_rl.traces.matrix import OutcomeMatrix

__all__ = ["SHARED_AUTO_RANK", "SHRINKAGE_GRID", "LGBMConfig", "LGBMPolicy", "choose_shrinkage", "shared_loadings"]


#: Candidate prior weights of the automatic class-prior shrinkage (:func:`choose_shrinkage`).
SHRINKAGE_GRID: tuple[float, ...] = (0.0, 0.25, 0.5, 0.75)
#: Quality targets (shares of the reference quality) averaged by the shrinkage criterion.
SHRINKAGE_TARGETS: tuple[float, ...] = (0.9, 0.925, 0.95, 0.975)
_SHRINKAGE_LAMBDAS = np.concatenate([[0.0], np.logspace(-3, 2, 41)])


def choose_shrinkage(
    q_oof: np.ndarray, prior: np.ndarray, quality: np.ndarray, cost: np.ndarray, *, reference: int
) -> tuple[float, dict[str, float]]:
    """Pick the class-prior weight from :data:`SHRINKAGE_GRID` on out-of-fold predictions.

    For each weight ``s`` the decision score ``(1 − s)·q̂ + s·prior`` is swept over λ on the
    training tasks (their out-of-fold ``q̂`` and actual outcomes); the criterion is the mean over
    :data:`SHRINKAGE_TARGETS` of the cheapest swept cost reaching that share of the reference
    model's quality, relative to the reference cost (a target never reached counts 1.5). The
    smallest weight within 1% of the best criterion wins (prefer the unshrunk model on ties).

    Returns:
        ``(weight, {str(weight): criterion})``.
    """
    n = quality.shape[0]
    rows = np.arange(n)
    c_mean = cost.mean(axis=0)
    c_ref = float(c_mean[reference]) or 1.0
    q_ref = float(quality[:, reference].mean())
    crit: dict[str, float] = {}
    for s in SHRINKAGE_GRID:
        score = (1.0 - s) * q_oof + s * prior
        pts = []
        for lam in _SHRINKAGE_LAMBDAS:
            a = (score - lam * c_mean / c_ref).argmax(axis=1)
            pts.append((float(cost[rows, a].mean()), float(quality[rows, a].mean())))
        vals = []
        for t in SHRINKAGE_TARGETS:
            ok = [c for c, q in pts if q >= t * q_ref - 1e-12]
            vals.append(min(ok) / c_ref if ok else 1.5)
        crit[str(s)] = float(np.mean(vals))
    best = min(crit.values())
    chosen = next(s for s in SHRINKAGE_GRID if crit[str(s)] <= best * 1.01 + 1e-12)
    return float(chosen), crit


def shared_loadings(y: np.ndarray, rank: int, *, residual: bool = True) -> np.ndarray | None:
    """Output -> model-logit map of reduced-rank boosting (``None`` for ``rank == 0``).

    The ``rank`` leading right singular vectors of the centred outcome matrix ``y`` (``n x m``),
    rows of unit norm (capped at ``min(n, m) − 1``), stacked over the identity when ``residual``.
    The sign of each vector is fixed (largest loading positive) so that fits are reproducible.
    """
    if rank <= 0:
        return None
    n, m = y.shape
    r = max(1, min(rank, min(n, m) - 1))
    _, _, vt = np.linalg.svd(y - y.mean(axis=0), full_matrices=False)
    v = vt[:r]
    v = v * np.sign(v[np.arange(r), np.abs(v).argmax(axis=1)])[:, None]
    return np.vstack([v, np.eye(m)]) if residual else np.ascontiguousarray(v)


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-z))


def _make_objective(labels: np.ndarray, loadings: np.ndarray | None = None, offset: np.ndarray | None = None) -> Any:
    """Independent binary cross-entropy per model; ``labels`` is ``(n, m)`` in [0, 1].

    Without ``loadings`` the booster's outputs are the models' logits (``init_score`` holds the
    base logits). With ``loadings`` ``L`` (``K x m``) the logits are ``offset + preds @ L``: the
    gradient of each output is the chain rule ``(p − y) @ L.T`` and its Hessian the diagonal
    Gauss-Newton term ``p(1 − p) @ (L ∘ L).T``.
    """
    if loadings is None:

        def objective(preds: np.ndarray, _data: Any) -> tuple[np.ndarray, np.ndarray]:
            p = _sigmoid(preds)
            return p - labels, np.maximum(p * (1.0 - p), 1e-6)

        return objective
    L, L2 = loadings, loadings**2
    base = np.zeros(labels.shape[1]) if offset is None else offset

    def objective_loaded(preds: np.ndarray, _data: Any) -> tuple[np.ndarray, np.ndarray]:
        p = _sigmoid(base + preds @ L)
        return (p - labels) @ L.T, np.maximum((p * (1.0 - p)) @ L2.T, 1e-6)

    return objective_loaded


def _make_feval(labels: np.ndarray, loadings: np.ndarray | None = None, offset: np.ndarray | None = None) -> Any:
    def feval(preds: np.ndarray, _data: Any) -> tuple[str, float, bool]:
        if loadings is not None:
            preds = (0.0 if offset is None else offset) + preds @ loadings
        p = np.clip(_sigmoid(preds), 1e-7, 1 - 1e-7)
        ll = -(labels * np.log(p) + (1 - labels) * np.log(1 - p)).mean()
        return "xent", float(ll), False

    return feval


@register_policy
class LGBMPolicy(UtilityPolicy):
    """LightGBM meta-model router (see module docstring).

    Args:
        models: Candidate model ids.
        config: :class:`LGBMConfig` or its dict.
        decision: :class:`DecisionConfig` or its dict (λ, μ, temperature, epsilon, floors, escalation).
        metadata: Extra artifact metadata.
    """

    kind = "lgbm"

    def __init__(
        self,
        models: Sequence[str],
        *,
        config: LGBMConfig | Mapping[str, Any] | None = None,
        decision: DecisionConfig | dict[str, Any] | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(models, decision=decision, metadata=metadata)
        if config is None:
            config = LGBMConfig()
        self.config = config if isinstance(config, LGBMConfig) else LGBMConfig.from_dict(config)
        self._booster: Any = None
        self._engine: Any = None  # compiled TreeEnsemble (engine="numpy") or None
        self._w_full: np.ndarray | None = None  # linear head weights over all input columns
        self.columns = np.zeros(0, dtype=np.int64)
        self.base_logit = np.zeros(self.n_models)
        self.prior = np.zeros(self.n_models)  # training success rate per model
        self.shrinkage = 0.0  # prior weight in the decision score (fixed or chosen in fit)
        self.calibrator = ProbabilityCalibrator("none")
        self.linear: LinearHead | None = None
        self.loadings: np.ndarray | None = None  # (K, m) output -> model-logit map (shared_rank > 0)
        self._oof: tuple[np.ndarray, np.ndarray, OutcomeMatrix] | None = None
        self._one_row: tuple[tuple[Any, ...], OneRowPlan | None] | None = None  # (state, fused one-row plan)

    @property
    def calibration_margin_z(self) -> float:  # type: ignore[override]
        """Safety margin of quality targets in :meth:`calibrate` (``LGBMConfig.calibration_margin_z``)."""
        return self.config.calibration_margin_z

    @property
    def pool_training_oof(self) -> bool:  # type: ignore[override]
        """Whether :meth:`calibrate` pools the training out-of-fold predictions (``calibrate_with_oof``)."""
        return self.config.calibrate_with_oof

    @property
    def calibration_val_must_meet(self) -> bool:  # type: ignore[override]
        """Whether pooled calibration also requires the target on validation alone."""
        return self.config.calibration_val_must_meet

    def _training_oof(self) -> tuple[np.ndarray, np.ndarray, OutcomeMatrix] | None:
        return self._oof


    # --- training ----------------------------------------------------------------------------
    def _fit_quality(self, X: np.ndarray, matrix: OutcomeMatrix, rng: np.random.Generator) -> None:
        import lightgbm as lgb

        cfg = self.config
        n, m = matrix.n_tasks, self.n_models
        small = n <= cfg.small_data_max_tasks
        use_linear = small if cfg.linear_stack is None else cfg.linear_stack
        folds = min(cfg.cv_folds, n)
        if n < 2 * max(folds, cfg.linear_folds if use_linear else 0):
            need = 2 * max(folds, cfg.linear_folds if use_linear else 0)
            raise ValueError(f"lgbm.fit: needs at least {need} training tasks for cross-fitting, got {n}")
        self.columns = select_columns(X, cfg.min_feature_count)
        Xs = np.ascontiguousarray(X[:, self.columns], dtype=np.float32)
        y = np.clip(matrix.quality, 0.0, 1.0)
        rate = np.clip(y.mean(axis=0), 1e-3, 1 - 1e-3)
        self.base_logit = np.log(rate / (1 - rate))
        self.prior = y.mean(axis=0)
        seed = int(rng.integers(0, 2**31 - 1))
        self.linear = None
        if use_linear:
            lin_oof = np.zeros((n, m), dtype=np.float32)
            lin_fold = np.empty(n, dtype=np.int64)
            lin_fold[rng.permutation(n)] = np.arange(n) % cfg.linear_folds
            for k in range(cfg.linear_folds):
                tr = lin_fold != k
                head = LinearHead.fit(Xs[tr], y[tr], C=cfg.linear_c)
                lin_oof[~tr] = head.logits(Xs[~tr])
            self.linear = LinearHead.fit(Xs, y, C=cfg.linear_c)
            Xb = np.ascontiguousarray(np.hstack([Xs, lin_oof]), dtype=np.float32)
        else:
            Xb = Xs
        self.loadings = shared_loadings(y, cfg.resolved_shared_rank(m), residual=cfg.shared_residual)
        L = self.loadings
        params = cfg.lgb_params(m if L is None else L.shape[0], seed)
        perm = rng.permutation(n)
        fold_of = np.empty(n, dtype=np.int64)
        fold_of[perm] = np.arange(n) % folds
        oof = np.zeros((n, m))
        best_iters = []
        for k in range(folds):
            tr, va = fold_of != k, fold_of == k
            dtr = self._dataset(lgb, Xb[tr], y[tr], params)
            dva = self._dataset(lgb, Xb[va], y[va], params, reference=dtr)
            p = dict(params, objective=_make_objective(y[tr], L, self.base_logit))
            booster = lgb.train(
                p,
                dtr,
                num_boost_round=cfg.num_boost_round,
                valid_sets=[dva],
                feval=_make_feval(y[va], L, self.base_logit),
                callbacks=[lgb.early_stopping(cfg.early_stopping_rounds, verbose=False)],
            )
            best = max(1, int(booster.best_iteration or cfg.num_boost_round))
            best_iters.append(best)
            raw = booster.predict(Xb[va], num_iteration=best, num_threads=cfg.num_threads)
            oof[va] = _sigmoid(self._to_logits(np.asarray(raw)) + self.base_logit)
        rounds = max(1, round(float(np.mean(best_iters))))
        dall = self._dataset(lgb, Xb, y, params)
        self._booster = lgb.train(
            dict(params, objective=_make_objective(y, L, self.base_logit)), dall, num_boost_round=rounds
        )
        self._compile()
        self.calibrator = ProbabilityCalibrator.fit(cfg.calibration, oof.ravel(), y.ravel())
        cal = self.calibrator(oof)
        crit: dict[str, float] = {}
        if cfg.prior_shrinkage is None and not small:
            self.shrinkage = 0.0
        elif cfg.prior_shrinkage is None:
            self.shrinkage, crit = choose_shrinkage(cal, self.prior, matrix.quality, matrix.cost,
                                                    reference=matrix.model_index(matrix.best_single_model()))
        else:
            self.shrinkage = cfg.prior_shrinkage
        # kept in memory (not saved) so that calibrate() can pool them with the validation tasks
        self._oof = (cal, np.asarray(X), matrix)
        self.metadata["metrics"] = {
            "oof_ece_raw": expected_calibration_error(oof, y),
            # the calibrator is fitted on these very predictions: its in-sample ECE is ~0 by
            # construction; the cross-fitted figure (calibrator fitted on the other folds) is honest
            "oof_ece_calibrated": crossfit_calibrated_ece(cfg.calibration, oof, y, seed=seed),
            "oof_ece_calibrated_in_sample": expected_calibration_error(cal, y),
            "oof_brier": float(((cal - y) ** 2).mean()),
            "rounds": rounds,
            "fold_best_rounds": best_iters,
            "n_trees": int(self._booster.num_trees()),
            "n_features_used": int(self.columns.size),
            "linear_stack": use_linear,
            "shared_rank": 0 if L is None else int(L.shape[0] - (m if cfg.shared_residual else 0)),
            "prior_shrinkage": self.shrinkage,
            "shrinkage_oof_criterion": crit,
            "engine": "numpy" if self._engine is not None else "booster",
            "calibration": cfg.calibration,
        }

    def _compile(self) -> None:
        """Compile the booster for the numpy engine (kept on the booster if unsupported).

        The compiled trees read a feature-major array ``[X.T; linear logits.T]`` of the caller's
        full feature width ``d`` (column selection folded into the node features), and the
        linear head's weights are expanded to all ``d`` columns, so inference gathers nothing.
        """
        self._engine = None
        self._w_full = None
        if self.config.engine != "numpy":
            return
        ens = compile_ensemble(self._booster)
        if ens is None:
            return
        d = int(self.n_features or (int(self.columns.max()) + 1 if self.columns.size else 0))
        mapping = np.concatenate([self.columns, d + np.arange(self.n_models)])
        self._engine = ens.remap_features(mapping, d + self.n_models)
        if self.linear is not None:
            w = np.zeros((d, self.n_models), dtype=np.float32)
            w[self.columns] = self.linear.W
            self._w_full = w

    def _to_logits(self, raw: np.ndarray) -> np.ndarray:
        """Booster outputs ``(n, K)`` -> model logits without the base ``(n, m)``."""
        raw = np.asarray(raw)
        if self.loadings is None:
            return raw.reshape(raw.shape[0], self.n_models)
        return raw.reshape(raw.shape[0], self.loadings.shape[0]) @ self.loadings

    def _dataset(self, lgb: Any, X: np.ndarray, y: np.ndarray, params: dict[str, Any], reference: Any = None) -> Any:
        if self.loadings is None:  # the booster's outputs are the logits: start from the base rates
            init = np.broadcast_to(self.base_logit, y.shape).astype(np.float64)
        else:  # the base is added inside the objective
            init = np.zeros((X.shape[0], self.loadings.shape[0]))
        return make_dataset(lgb, X, max_bin=params["max_bin"], init_score=init, reference=reference)

    # --- inference ---------------------------------------------------------------------------
    def predict_raw(self, X: np.ndarray) -> np.ndarray:
        """Uncalibrated success probabilities ``(n, m)``: linear head (if any) + one ensemble pass."""
        if self._booster is None:
            raise RuntimeError("LGBMPolicy: not fitted")
        X = np.asarray(X)
        n, m = X.shape[0], self.n_models
        if self._engine is not None and (n >= NUMPY_MIN_ROWS or n == 1):  # one row: compiled walk
            d = X.shape[1]
            ft = np.empty((d + m, n), dtype=np.float32)  # feature-major input of the compiled trees
            ft[:d] = X.T
            if self.linear is not None and self._w_full is not None:
                ft[d:] = (X.astype(np.float32, copy=False) @ self._w_full + self.linear.b).T
            else:
                ft[d:] = 0.0
            raw = self._engine.predict_raw_t(ft)
        else:
            Xs = np.ascontiguousarray(X[:, self.columns], dtype=np.float32)
            if self.linear is not None:
                Xs = np.hstack([Xs, self.linear.logits(Xs).astype(np.float32)])
            raw = self._booster.predict(Xs, num_threads=self.config.num_threads)
        return _sigmoid(self._to_logits(raw) + self.base_logit)

    def _predict_quality(self, X: np.ndarray) -> np.ndarray:
        return self.calibrator(self.predict_raw(X))

    def action_distribution(self, X: np.ndarray) -> np.ndarray:
        """Distribution over models; one float32 row runs the fused kernel of :mod:`router_rl.policies.one_row`.

        Same result as the general path, bit for bit (the kernel hands back near ties and
        anything it does not cover).
        """
        if (
            type(self) is LGBMPolicy  # a subclass may override a step the kernel fuses: general path
            and type(X) is np.ndarray
            and X.ndim == 2
            and X.shape[0] == 1
            and X.dtype == np.float32
            and self._quality_cache is None
        ):
            plan = plan_for(self)
            if plan is not None and X.shape[1] == plan.n_features:
                a = plan.choose(X)
                if a >= 0:
                    probs = np.zeros((1, self.n_models))
                    probs[0, a] = 1.0
                    return probs
        return super().action_distribution(X)

    # --- persistence -------------------------------------------------------------------------
    def _save_model(self, directory: Path) -> dict[str, Any] | None:
        self._booster.save_model(str(directory / "booster.txt"))
        if self.linear is not None:
            np.savez(directory / "linear.npz", W=self.linear.W, b=self.linear.b)
        cfg = self.config.to_dict()
        return {
            "config": cfg,
            "columns": self.columns.tolist(),
            "base_logit": self.base_logit.tolist(),
            "prior": self.prior.tolist(),
            "shrinkage": self.shrinkage,
            "has_linear": self.linear is not None,
            "loadings": None if self.loadings is None else self.loadings.tolist(),
            "calibrator": self.calibrator.to_dict(),
        }

    def _load_model(self, directory: Path, state: dict[str, Any]) -> None:
        import lightgbm as lgb

        path = directory / "booster.txt"
        if not path.is_file():
            raise PolicyLoadError(f"{path}: missing LightGBM model file")
        try:
            self.config = LGBMConfig.from_dict(state["config"])
            self.columns = np.asarray(state["columns"], dtype=np.int64)
            self.base_logit = np.asarray(state["base_logit"], dtype=np.float64)
            self.prior = np.asarray(state["prior"], dtype=np.float64)
            self.shrinkage = float(state["shrinkage"])
            self.calibrator = ProbabilityCalibrator(**state["calibrator"])
            loadings = state.get("loadings")
            self.loadings = None if loadings is None else np.asarray(loadings, dtype=np.float64)
            self._booster = lgb.Booster(model_file=str(path))
        except (KeyError, ValueError, lgb.basic.LightGBMError) as e:
            raise PolicyLoadError(f"{directory}: corrupt lgbm artifact ({e})") from e
        self.linear = None
        if state.get("has_linear", False):
            lpath = directory / "linear.npz"
            if not lpath.is_file():
                raise PolicyLoadError(f"{lpath}: missing linear-head file (the policy was trained with one)")
            with np.load(lpath) as z:
                if "W" not in z.files or "b" not in z.files:
                    raise PolicyLoadError(f"{lpath}: expected arrays 'W' and 'b', got {z.files}")
                self.linear = LinearHead(W=z["W"], b=z["b"])
            if self.linear.W.shape != (self.columns.size, self.n_models):
                raise PolicyLoadError(
                    f"{lpath}: W has shape {self.linear.W.shape}, expected {(self.columns.size, self.n_models)}"
                )
        self._oof = None
        self._compile()
        outputs = self.n_models if self.loadings is None else self.loadings.shape[0]
        if self.loadings is not None and (self.loadings.ndim != 2 or self.loadings.shape[1] != self.n_models):
            raise PolicyLoadError(
                f"{directory / 'policy.json'}: state.loadings has shape {self.loadings.shape}, "
                f"expected (outputs, {self.n_models})"
            )
        if self._booster.num_model_per_iteration() != outputs:
            raise PolicyLoadError(
                f"{path}: booster has {self._booster.num_model_per_iteration()} outputs, expected {outputs} "
                f"({self.n_models} models" + (")" if self.loadings is None else ", shared factors)")
            )

    # --- per-task cost / latency -------------------------------------------------------------
    def _fit_cost_model(
        self, X: np.ndarray, matrix: OutcomeMatrix, rng: np.random.Generator
    ) -> CostLatencyModel | None:
        model, info = fit_cost_model(X, matrix, self.config.cost_model_settings(), rng)
        self.metadata["cost_model"] = info
        return model

    def _load_state(self, directory: Path, state: dict[str, Any]) -> None:
        super()._load_state(directory, state)
        if self.cost_model is None:  # artifact format 1 (before per-task costs): the training means
            self.metadata.setdefault("cost_model", {"mode": "mean", "reason": "artifact without a cost model"})
