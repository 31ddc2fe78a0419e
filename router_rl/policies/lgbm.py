"""LightGBM meta-model router: predicted success per model, calibrated, maximised under cost.

Design (measured, see ``bench/bench_policy.py``): **one multi-output booster** — LightGBM's
multiclass machinery with ``num_class = n_models`` and a custom objective that applies an
independent binary cross-entropy to every output (labels are per-model quality in [0, 1], not a
softmax). Each boosting round grows one tree per model, so per-model accuracy equals ``n_models``
separate boosters, but inference is a *single* ``Booster.predict`` call over ``n`` rows (one
feature-row conversion per request instead of one per request x model as with a stacked
"model-id feature" booster, ~3-10x faster at batch 1,024 on wide hashed features).

Raw scores are turned into probabilities with a sigmoid and calibrated (isotonic by default,
or Platt) on **out-of-fold** predictions of a task-grouped K-fold cross-fit, which also picks
the number of rounds (early stopping per fold, final model trained on all tasks with the mean
best round). λ is calibrated on validation data with :meth:`UtilityPolicy.calibrate` (the
reference is the best single model).

Expected cost and latency are **per task** where the training data allows it
(``LGBMConfig.cost_model``, default ``auto``; :mod:`router_rl.policies.costmodel`): a second,
small multi-output booster predicts the first principal components of the per-model log token
counts / log latencies (log cost where there are no tokens); cost = the catalog's per-token
coefficients x predicted input and output tokens for models whose recorded cost follows the
catalog (cloud list prices, local GPU-seconds from tokens / throughput), GPU rate x predicted
latency for local models billed by measured latency, direct regression for other varying costs,
and the training mean otherwise (no tokens / latency / variation, or no hold-out gain under
``auto``). The mode and per-model bases are in ``metadata["cost_model"]``. Measured on the test
splits (``experiments/cost_model.py``, 3 seeds): per-call cost error (MAE / model mean) 0.60 ->
0.30 on the simulated fleet and 0.31 -> 0.17 on BFCL, latency 0.60 -> 0.34 and 0.47 -> 0.34;
the λ-frontier's cost share at 95% of the reference quality drops in every seed (simulated
41.7% -> 38.0%, BFCL 3.4% -> 3.1%), AIQ +0.000 to +0.006; on RouterBench (per-call USD, no tokens)
no routing change. On a 1,500-task fleet the val-calibrated point did not get cheaper and its
local share fell (short tasks' cloud calls are cheap in absolute USD; see ``docs/policies.md``).
It adds ~20 µs to a single decision and ~1 ms to a batch of 1,024.

Columns of ``X`` that are (almost) never non-zero on the training tasks are dropped before
training (hashed n-gram vectors are mostly empty), which shrinks the model and speeds inference.

Small training sets (issue #4, ``<= LGBMConfig.small_data_max_tasks``) add two measures: a
stacked linear head (out-of-fold logits of an L2 logistic regression as booster inputs, see
:mod:`router_rl.policies.linear`) and a class-prior shrinkage of the decision score chosen on the
out-of-fold predictions (:func:`choose_shrinkage`). :meth:`calibrate` pools the validation tasks
with those out-of-fold predictions. Batches are scored by a compiled numpy copy of the trees
(:mod:`router_rl.policies.treeeval`, exact; ``engine="booster"`` keeps ``Booster.predict``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from router_rl.core.errors import ConfigError
from router_rl.policies.base import PolicyLoadError, register_policy
from router_rl.policies.calibration import ProbabilityCalibrator, expected_calibration_error
from router_rl.policies.costmodel import COST_MODEL_MODES, CostLatencyModel, CostModelSettings, fit_cost_model
from router_rl.policies.decision import Decision, DecisionConfig
from router_rl.policies.linear import LinearHead
from router_rl.policies.treeeval import TreeEnsemble, UnsupportedTreeError
from router_rl.policies.utility import UtilityPolicy

if TYPE_CHECKING:
    from router_rl.traces.matrix import OutcomeMatrix


@dataclass(frozen=True)
class LGBMConfig:
    """LightGBM meta-model hyper-parameters (defaults tuned for 300-1,000 training tasks).

    Attributes:
        num_leaves: Leaves per tree.
        max_depth: Depth cap (-1 = none).
        min_data_in_leaf: Minimum tasks per leaf.
        learning_rate: Shrinkage.
        num_boost_round: Maximum rounds (each round = one tree per model).
        early_stopping_rounds: Patience of the per-fold early stopping.
        feature_fraction: Column subsample per tree.
        bagging_fraction: Row subsample (with ``bagging_freq`` > 0).
        bagging_freq: Bagging every k rounds (0 = off).
        lambda_l2: L2 regularisation of leaf values.
        min_gain_to_split: Minimum gain to split.
        max_bin: Histogram bins per feature.
        min_feature_count: Drop feature columns non-zero on fewer training tasks than this.
        cv_folds: Folds of the cross-fit giving out-of-fold predictions (>= 2).
        calibration: ``isotonic``, ``platt`` or ``none``.
        num_threads: LightGBM threads (training and inference).
        extra_params: Any other LightGBM parameter.
        linear_stack: Stack a linear head: out-of-fold logits of a multi-output L2 logistic
            regression on the same features (:class:`~router_rl.policies.linear.LinearHead`) are
            extra booster inputs (at inference: the head fitted on all training tasks).
            ``None`` (default) = on for small training sets (``<= small_data_max_tasks``).
        linear_c: Inverse L2 strength of the linear head (sklearn ``C``, on standardised features).
        linear_folds: Folds of the linear head's out-of-fold logits (>= 2).
        engine: Inference engine: ``numpy`` (compiled trees, :mod:`router_rl.policies.treeeval`;
            falls back to the booster for unsupported splits) or ``booster`` (``Booster.predict``).
        calibration_margin_z: Default safety margin (standard errors of the calibration set) of
            quality targets in :meth:`LGBMPolicy.calibrate`.
        calibrate_with_oof: :meth:`LGBMPolicy.calibrate` pools the validation tasks with the
            cross-fitted out-of-fold predictions of the training tasks (more data for λ).
        calibration_val_must_meet: With ``calibrate_with_oof``, the target must also hold on the
            validation tasks alone (conservative; False = the pooled set decides alone).
        prior_shrinkage: Weight ``s`` of the per-model training success rate in the *decision*
            score ``(1 − s)·q̂ + s·prior`` (class-prior shrinkage: with a few hundred tasks the
            per-task deviations are noisy and the utility argmax over 10+ models amplifies the
            noise). ``predict_quality`` stays the calibrated probability. ``None`` (default) =
            chosen on the out-of-fold predictions of the training tasks from
            :data:`SHRINKAGE_GRID` (see :func:`choose_shrinkage`) for small training sets
            (``<= small_data_max_tasks``), 0 above; 0 = off.
        small_data_max_tasks: Training-set size up to which the ``None`` defaults of
            ``linear_stack`` / ``prior_shrinkage`` switch the small-data measures on (issue #4:
            they help RouterBench's 250-850 training tasks; on the simulated fleet's 1,050 tasks
            with strong categorical signal they measured worse).
        cost_model: Per-task expected cost / latency (:mod:`router_rl.policies.costmodel`):
            ``auto`` (default: predicted per model where the data has per-call tokens, latency or
            varying cost and the prediction beats the mean on a hold-out, else the training
            mean), ``predicted`` (no hold-out gate) or ``mean`` (training means per model). The
            mode used is recorded in ``metadata["cost_model"]``.
        cost_model_rank: Principal components of the cost / latency targets (booster outputs).
        cost_model_rounds: Maximum boosting rounds of the cost / latency booster.
        shared_rank: Outputs shared by all models (reduced-rank boosting): the booster predicts
            ``r`` task factors ``F(x)`` and the models' logits are ``base + F(x) @ V.T`` with
            ``V`` (models x ``r``) the leading right singular vectors of the centred training
            outcome matrix, so every tree learns from all models' labels at once (the task side of
            a matrix factorisation, grown by trees). 0 = one output per model. ``None`` (default)
            = :data:`SHARED_AUTO_RANK` factors for fleets of ``>= shared_min_models`` models, else 0
            (issue #4: +0.018 AIQ on BFCL's 71 models, every seed; on 7-11 models it measured
            slightly worse than per-model trees).
        shared_residual: With ``shared_rank > 0``, also keep one output per model (``r + m``
            outputs: shared factors plus per-model corrections); False (default) = the factors
            alone (on BFCL the per-model corrections gave the gain back).
        shared_min_models: Fleet size from which ``shared_rank=None`` uses shared factors.
    """

    num_leaves: int = 7
    max_depth: int = -1
    min_data_in_leaf: int = 20
    learning_rate: float = 0.1
    num_boost_round: int = 400
    early_stopping_rounds: int = 30
    feature_fraction: float = 0.7
    bagging_fraction: float = 0.8
    bagging_freq: int = 1
    lambda_l2: float = 5.0
    min_gain_to_split: float = 0.0
    max_bin: int = 63
    min_feature_count: int = 3
    cv_folds: int = 3
    calibration: str = "isotonic"
    num_threads: int = 1
    extra_params: dict[str, Any] = field(default_factory=dict)
    linear_stack: bool | None = None
    linear_c: float = 1e-3
    linear_folds: int = 5
    engine: str = "numpy"
    calibration_margin_z: float = 0.0
    calibrate_with_oof: bool = True
    calibration_val_must_meet: bool = True
    prior_shrinkage: float | None = None
    small_data_max_tasks: int = 1000
    cost_model: str = "auto"
    cost_model_rank: int = 4
    cost_model_rounds: int = 60
    shared_rank: int | None = None
    shared_residual: bool = False
    shared_min_models: int = 24

    def __post_init__(self) -> None:
        ints = ("num_leaves", "min_data_in_leaf", "num_boost_round", "early_stopping_rounds", "max_bin", "num_threads")
        for name in ints:
            v = getattr(self, name)
            if not (isinstance(v, int) and v >= 1):
                raise ConfigError(f"LGBMConfig.{name}", f"expected an integer >= 1, got {v!r}")
        if self.num_leaves < 2:
            raise ConfigError("LGBMConfig.num_leaves", f"expected >= 2, got {self.num_leaves}")
        if not (isinstance(self.cv_folds, int) and self.cv_folds >= 2):
            raise ConfigError("LGBMConfig.cv_folds", f"expected an integer >= 2, got {self.cv_folds!r}")
        for name in ("feature_fraction", "bagging_fraction"):
            v = getattr(self, name)
            if not (0.0 < v <= 1.0):
                raise ConfigError(f"LGBMConfig.{name}", f"expected a fraction in (0, 1], got {v!r}")
        for name in ("learning_rate",):
            v = getattr(self, name)
            if not (math.isfinite(v) and v > 0):
                raise ConfigError(f"LGBMConfig.{name}", f"expected a number > 0, got {v!r}")
        for name in ("lambda_l2", "min_gain_to_split"):
            if getattr(self, name) < 0:
                raise ConfigError(f"LGBMConfig.{name}", "expected >= 0")
        if self.calibration not in ("isotonic", "platt", "none"):
            raise ConfigError(
                "LGBMConfig.calibration", f"expected 'isotonic', 'platt' or 'none', got {self.calibration!r}"
            )
        if not (isinstance(self.small_data_max_tasks, int) and self.small_data_max_tasks >= 0):
            raise ConfigError("LGBMConfig.small_data_max_tasks", f"expected >= 0, got {self.small_data_max_tasks!r}")
        if not (math.isfinite(self.linear_c) and self.linear_c > 0):
            raise ConfigError("LGBMConfig.linear_c", f"expected a number > 0, got {self.linear_c!r}")
        if not (isinstance(self.linear_folds, int) and self.linear_folds >= 2):
            raise ConfigError("LGBMConfig.linear_folds", f"expected an integer >= 2, got {self.linear_folds!r}")
        if self.engine not in ("numpy", "booster"):
            raise ConfigError("LGBMConfig.engine", f"expected 'numpy' or 'booster', got {self.engine!r}")
        if not (math.isfinite(self.calibration_margin_z) and self.calibration_margin_z >= 0):
            raise ConfigError(
                "LGBMConfig.calibration_margin_z", f"expected a number >= 0, got {self.calibration_margin_z!r}"
            )
        if self.prior_shrinkage is not None and not (0.0 <= self.prior_shrinkage < 1.0):
            raise ConfigError("LGBMConfig.prior_shrinkage", f"expected [0, 1), got {self.prior_shrinkage!r}")
        reserved = {"objective", "num_class", "seed", "deterministic"} & set(self.extra_params)
        if reserved:
            raise ConfigError("LGBMConfig.extra_params", f"{sorted(reserved)} are set by the policy itself")
        if self.cost_model not in COST_MODEL_MODES:
            raise ConfigError("LGBMConfig.cost_model", f"expected one of {COST_MODEL_MODES}, got {self.cost_model!r}")
        if self.shared_rank is not None and not (isinstance(self.shared_rank, int) and self.shared_rank >= 0):
            raise ConfigError("LGBMConfig.shared_rank", f"expected None or an integer >= 0, got {self.shared_rank!r}")
        if not (isinstance(self.shared_min_models, int) and self.shared_min_models >= 1):
            raise ConfigError(
                "LGBMConfig.shared_min_models", f"expected an integer >= 1, got {self.shared_min_models!r}"
            )
        for name in ("cost_model_rank", "cost_model_rounds"):
            v = getattr(self, name)
            if not (isinstance(v, int) and v >= 1):
                raise ConfigError(f"LGBMConfig.{name}", f"expected an integer >= 1, got {v!r}")

    def resolved_shared_rank(self, n_models: int) -> int:
        """Shared factors used for a fleet of ``n_models`` (resolves ``shared_rank=None``)."""
        if self.shared_rank is not None:
            return self.shared_rank
        return SHARED_AUTO_RANK if n_models >= self.shared_min_models else 0

    def cost_model_settings(self) -> CostModelSettings:
        """Settings of the per-task cost / latency booster (tree shape shared with the quality model)."""
        return CostModelSettings(
            mode=self.cost_model,
            max_rank=self.cost_model_rank,
            num_boost_round=self.cost_model_rounds,
            num_leaves=self.num_leaves,
            min_data_in_leaf=self.min_data_in_leaf,
            lambda_l2=self.lambda_l2,
            max_bin=self.max_bin,
            min_feature_count=self.min_feature_count,
            engine=self.engine,
            num_threads=self.num_threads,
        )

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> LGBMConfig:
        """Build from a dict (unknown keys raise :class:`ConfigError`)."""
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(d) - known)
        if unknown:
            raise ConfigError("LGBMConfig", f"unknown option(s) {unknown}; known: {sorted(known)}")
        return cls(**dict(d))

    def lgb_params(self, n_models: int, seed: int) -> dict[str, Any]:
        """LightGBM parameter dict (deterministic given ``seed``)."""
        p: dict[str, Any] = {
            "num_class": n_models,
            "num_leaves": self.num_leaves,
            "max_depth": self.max_depth,
            "min_data_in_leaf": self.min_data_in_leaf,
            "min_sum_hessian_in_leaf": 1e-3,
            "learning_rate": self.learning_rate,
            "feature_fraction": self.feature_fraction,
            "bagging_fraction": self.bagging_fraction,
            "bagging_freq": self.bagging_freq,
            "lambda_l2": self.lambda_l2,
            "min_gain_to_split": self.min_gain_to_split,
            "max_bin": self.max_bin,
            "num_threads": self.num_threads,
            "seed": seed,
            "deterministic": True,
            "force_col_wise": True,
            "verbose": -1,
            "metric": "None",
        }
        p.update(self.extra_params)
        return p


#: Shared task factors of ``LGBMConfig.shared_rank=None`` on wide fleets (BFCL, 8 seeds: ranks 4, 8
#: and 16 gave +0.020, +0.018 and +0.018 AIQ over per-model trees; 8 is the middle, not the best).
SHARED_AUTO_RANK = 8
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


#: Batches of 2 to this many - 1 rows use ``Booster.predict`` (lower fixed cost); one row (the
#: live router) takes the compiled trees' single-row walk, so it scores as in a batch.
_NUMPY_MIN_ROWS = 8


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

    def _decide_from(
        self,
        X: np.ndarray,
        q: np.ndarray,
        cfg: DecisionConfig,
        *,
        explain: bool = False,
        sensitive: np.ndarray | None = None,
    ) -> Decision:
        s = self.shrinkage
        if s > 0:
            q = (1.0 - s) * q + s * self.prior
        return super()._decide_from(X, q, cfg, explain=explain, sensitive=sensitive)

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
        nnz = (X != 0).sum(axis=0)
        self.columns = np.flatnonzero(nnz >= cfg.min_feature_count).astype(np.int64)
        if self.columns.size == 0:
            self.columns = np.arange(min(1, X.shape[1]), dtype=np.int64)
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
            "oof_ece_calibrated": expected_calibration_error(cal, y),
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
        try:
            ens = TreeEnsemble.from_booster(self._booster)
        except UnsupportedTreeError:
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
        ds_params = {"verbose": -1, "max_bin": params["max_bin"], "min_data_in_bin": 1, "feature_pre_filter": False}
        return lgb.Dataset(
            X,
            label=np.zeros(X.shape[0]),
            init_score=init,
            params=ds_params,
            reference=reference,
            free_raw_data=False,
        )

    # --- inference ---------------------------------------------------------------------------
    def predict_raw(self, X: np.ndarray) -> np.ndarray:
        """Uncalibrated success probabilities ``(n, m)``: linear head (if any) + one ensemble pass."""
        if self._booster is None:
            raise RuntimeError("LGBMPolicy: not fitted")
        X = np.asarray(X)
        n, m = X.shape[0], self.n_models
        if self._engine is not None and (n >= _NUMPY_MIN_ROWS or n == 1):
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

    # --- persistence -------------------------------------------------------------------------
    def _save_model(self, directory: Path) -> dict[str, Any] | None:
        self._booster.save_model(str(directory / "booster.txt"))
        if self.linear is not None:
            np.savez(directory / "linear.npz", W=self.linear.W, b=self.linear.b)
        cfg = asdict(self.config)
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
