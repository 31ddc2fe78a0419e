"""``LGBMConfig``: hyper-parameters of the LightGBM router (:mod:`router_rl.policies.lgbm`)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

import numpy as np
from pydantic import Field, field_validator

from router_rl.core.config import (
    Fraction,
    NonNegativeFloat,
    NonNegativeInt,
    PositiveFloat,
    PositiveInt,
    StrictConfig,
)
from router_rl.policies.boosting import FIXED_PARAMS
from router_rl.policies.costmodel import CostModelMode, CostModelSettings

#: Shared task factors of ``LGBMConfig.shared_rank=None`` on wide fleets (8 is the middle of the
#: ranks measured, not the best; see ``docs/policies.md``).
SHARED_AUTO_RANK = 8


class LGBMConfig(StrictConfig):
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
            ``linear_stack`` / ``prior_shrinkage`` switch the small-data measures on (measured
            trade-off: ``docs/policies.md``).
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
            (measured trade-off: ``docs/policies.md``).
        shared_residual: With ``shared_rank > 0``, also keep one output per model (``r + m``
            outputs: shared factors plus per-model corrections); False (default) = the factors
            alone (on BFCL the per-model corrections gave the gain back).
        shared_min_models: Fleet size from which ``shared_rank=None`` uses shared factors.
    """

    num_leaves: Annotated[int, Field(ge=2)] = 7
    max_depth: int = -1
    min_data_in_leaf: PositiveInt = 20
    learning_rate: PositiveFloat = 0.1
    num_boost_round: PositiveInt = 400
    early_stopping_rounds: PositiveInt = 30
    feature_fraction: Fraction = 0.7
    bagging_fraction: Fraction = 0.8
    bagging_freq: NonNegativeInt = 1
    lambda_l2: NonNegativeFloat = 5.0
    min_gain_to_split: NonNegativeFloat = 0.0
    max_bin: PositiveInt = 63
    min_feature_count: NonNegativeInt = 3
    cv_folds: Annotated[int, Field(ge=2)] = 3
    calibration: Literal["isotonic", "platt", "none"] = "isotonic"
    num_threads: PositiveInt = 1
    extra_params: dict[str, Any] = Field(default_factory=dict)
    linear_stack: bool | None = None
    linear_c: PositiveFloat = 1e-3
    linear_folds: Annotated[int, Field(ge=2)] = 5
    engine: Literal["numpy", "booster"] = "numpy"
    calibration_margin_z: NonNegativeFloat = 0.0
    calibrate_with_oof: bool = True
    calibration_val_must_meet: bool = True
    prior_shrinkage: Annotated[float, Field(ge=0, lt=1)] | None = None
    small_data_max_tasks: NonNegativeInt = 1000
    cost_model: CostModelMode = "auto"
    cost_model_rank: PositiveInt = 4
    cost_model_rounds: PositiveInt = 60
    shared_rank: NonNegativeInt | None = None
    shared_residual: bool = False
    shared_min_models: PositiveInt = 24

    @field_validator("extra_params")
    @classmethod
    def _not_reserved(cls, v: dict[str, Any]) -> dict[str, Any]:
        reserved = {"objective", "num_class", "seed", "deterministic"} & set(v)
        if reserved:
            raise ValueError(f"{sorted(reserved)} are set by the policy itself")
        return v

    def resolved_shared_rank(self, n_models: int) -> int:
        """Shared factors used for a fleet of ``n_models`` (resolves ``shared_rank=None``)."""
        if self.shared_rank is not None:
            return self.shared_rank
        return SHARED_AUTO_RANK if n_models >= self.shared_min_models else 0

    def scaled_to(self, n_tasks: int) -> tuple[LGBMConfig, dict[str, Any]]:
        """Small-data tree shape for ``n_tasks`` training tasks (fields set explicitly are kept).

        With a few hundred noisy 0/1 labels the library defaults (``min_data_in_leaf`` 20,
        learning rate 0.1, patience 30) stop the cross-fit after a handful of rounds: each fold's
        validation loss turns up before a tree has found anything but the per-model means (issue
        #19: 5 rounds on 172 tasks). Up to ``small_data_max_tasks`` tasks this scales the tree to the
        data: ``min_data_in_leaf = clip(n / 25, 5, 20)``, ``num_leaves = clip(n_fold / (2 ·
        min_data_in_leaf), 3, 7)`` (``n_fold`` = tasks per training fold), learning rate 0.03 below
        500 tasks and 0.05 below 1,000, patience ``max(early_stopping_rounds, 60)``. Used by the
        stacked meta-model (``lgbm-stack``); the plain ``lgbm`` keeps its measured defaults.

        Returns:
            ``(config, changes)``: the scaled config and ``{field: new value}`` of what changed.
        """
        if n_tasks > self.small_data_max_tasks:
            return self, {}
        n_fold = n_tasks * (self.cv_folds - 1) / self.cv_folds
        min_leaf = int(np.clip(round(n_tasks / 25), 5, 20))
        want: dict[str, Any] = {
            "min_data_in_leaf": min_leaf,
            "num_leaves": int(np.clip(n_fold // (2 * min_leaf), 3, 7)),
            "learning_rate": 0.03 if n_tasks < 500 else 0.05,
            "early_stopping_rounds": max(self.early_stopping_rounds, 60),
        }
        changes = {k: v for k, v in want.items() if k not in self.model_fields_set and getattr(self, k) != v}
        return (self.model_copy(update=changes) if changes else self), changes

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

    def lgb_params(self, n_models: int, seed: int) -> dict[str, Any]:
        """LightGBM parameter dict (deterministic given ``seed``)."""
        p: dict[str, Any] = {
            "num_class": n_models,
            "num_leaves": self.num_leaves,
            "max_depth": self.max_depth,
            "min_data_in_leaf": self.min_data_in_leaf,
            "learning_rate": self.learning_rate,
            "feature_fraction": self.feature_fraction,
            "bagging_fraction": self.bagging_fraction,
            "bagging_freq": self.bagging_freq,
            "lambda_l2": self.lambda_l2,
            "min_gain_to_split": self.min_gain_to_split,
            "max_bin": self.max_bin,
            "num_threads": self.num_threads,
            "seed": seed,
            **FIXED_PARAMS,
        }
        p.update(self.extra_params)
        return p
