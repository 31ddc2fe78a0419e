"""Stacked meta-model (``lgbm-stack``): LightGBM over cross-fitted base learners, selected by
cross-validated utility.

Issue #19: on a 172-task chat matrix the plain ``lgbm`` booster stopped after 5 rounds (it was each
model's mean) and lost to kNN and a TF-IDF logistic regression. This policy is robust by
construction:

1. **Cheap base learners, cross-fitted.** ``base_learners`` (default: ``linear`` = the multi-output
   L2 logistic regression of :mod:`router_rl.policies.linear` and ``knn`` = RouterBench's kNN, the
   registered ``knn`` policy; ``mf`` = RouteLLM's matrix factorisation, the ``mf`` policy, can be
   added: on RouterBench carves of 150-300 tasks it was the weakest learner and the slowest;
   ``cells`` = the smoothed (agent type, complexity) lookup table of the ``cells`` policy, whose
   attributes are resolved from the attached encoder) are
   fitted on ``folds`` task folds; each training task gets their out-of-fold
   per-model logits, and the learners refitted on all tasks serve inference.
2. **LightGBM over features + base logits.** An inner :class:`~router_rl.policies.lgbm.LGBMPolicy`
   is trained on ``[X, out-of-fold logits]`` (its own cross-fit picks rounds, calibration and the
   class-prior shrinkage), with the small-data tree shape of :meth:`LGBMConfig.scaled_to` (leaf
   size, leaves, learning rate and patience scaled to the training-set size).
3. **Selection by cross-validated utility.** The candidates (the stacked booster, every base
   learner alone, and the per-model training means) are scored by the AIQ of their out-of-fold
   predictions on the training tasks (λ swept with the training mean costs; with a flat cost axis,
   the mean quality of the argmax). The stacked booster is kept unless another candidate is ahead
   by more than ``select_margin`` and by more than ``select_z`` bootstrap standard errors of the
   paired lead; the served predictor is the winner.

What was chosen and why is in ``metadata["stack"]``: the candidates' out-of-fold criteria, the
chosen candidate, the reason, the small-data changes to the booster config and its rounds.
Expected cost / latency per task use the same cost model as ``lgbm`` (fitted on ``X``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

import numpy as np
from pydantic import BeforeValidator, Field

from router_rl.core.config import NonNegativeFloat, PositiveFloat, PositiveInt, StrictConfig, as_tuple
from router_rl.policies.base import PolicyLoadError, RoutingPolicy, register_policy
from router_rl.policies.decision import DecisionConfig
from router_rl.policies.linear import LinearHead
from router_rl.policies.utility import UtilityPolicy

if TYPE_CHECKING:
    from router_rl.policies.costmodel import CostLatencyModel
    from router_rl.policies.lgbm import LGBMPolicy
    from router_rl.traces.matrix import OutcomeMatrix

__all__ = ["StackConfig", "StackedPolicy", "oof_utility"]

BaseLearner = Literal["linear", "knn", "mf", "cells"]
#: λ grid of the out-of-fold utility criterion (λ in units of the reference model's mean cost).
SELECTION_LAMBDAS = np.concatenate([[0.0], np.geomspace(1e-3, 1e3, 49)])
_EPS = 1e-3


class StackConfig(StrictConfig):
    """Hyper-parameters of the stacked meta-model.

    Attributes:
        base_learners: Cross-fitted learners whose per-model logits feed the booster.
        folds: Task folds of the base learners' cross-fit (>= 2).
        linear_c: Inverse L2 strength of the ``linear`` learner (on standardised features).
        knn_k: Neighbours of the ``knn`` learner.
        mf: :class:`~router_rl.policies.supervised.MFConfig` fields of the ``mf`` learner.
        lgbm: :class:`~router_rl.policies.lgbm_config.LGBMConfig` fields of the inner booster
            (``linear_stack`` defaults to False: the linear learner is already an input).
        scale_to_data: Apply :meth:`LGBMConfig.scaled_to` (small-data tree shape) to the booster.
        select: ``cv_aiq`` (serve the candidate with the best out-of-fold utility) or ``stack``
            (always the stacked booster).
        select_margin: AIQ lead another candidate needs over the stacked booster to replace it.
        select_z: ... and the lead must exceed this many standard errors of the paired lead
            (task bootstrap of the training tasks, ``select_bootstrap`` resamples): with a few
            hundred tasks the out-of-fold criterion is noisy, and switching on noise costs more
            than it gains.
        select_bootstrap: Resamples of that standard error (seeded by the fit).
    """

    base_learners: Annotated[tuple[BaseLearner, ...], BeforeValidator(as_tuple), Field(min_length=1)] = (
        "linear", "knn",
    )
    folds: Annotated[int, Field(ge=2)] = 5
    linear_c: PositiveFloat = 1e-3
    knn_k: PositiveInt = 20
    mf: dict[str, Any] = Field(default_factory=lambda: {"dim": 8, "epochs": 150})
    lgbm: dict[str, Any] = Field(default_factory=dict)
    scale_to_data: bool = True
    select: Literal["cv_aiq", "stack"] = "cv_aiq"
    select_margin: NonNegativeFloat = 0.0
    select_z: NonNegativeFloat = 1.0
    select_bootstrap: Annotated[int, Field(ge=10)] = 100


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, _EPS, 1 - _EPS)
    return np.asarray(np.log(p / (1 - p)), dtype=np.float32)


def oof_utility(score: np.ndarray, quality: np.ndarray, cost: np.ndarray) -> float:
    """Selection criterion of a predictor's out-of-fold ``score`` on the training tasks.

    The decision ``argmax_j score_j − λ·c̄_j / c̄_ref`` (``c̄`` = training mean costs, ``ref`` = the
    best single model) is swept over :data:`SELECTION_LAMBDAS`; the criterion is the AIQ of the
    resulting (mean cost, mean quality) points on ``[0, max_j c̄_j]``. Without a cost axis (every
    model costs the same) it is the mean quality of the argmax.
    """
    from router_rl.ope.metrics import aiq

    n = quality.shape[0]
    rows = np.arange(n)
    c_mean = cost.mean(axis=0)
    if float(np.ptp(c_mean)) <= 1e-12 * max(float(np.abs(c_mean).max()), 1e-300):
        return float(quality[rows, score.argmax(axis=1)].mean())
    ref = int(quality.mean(axis=0).argmax())
    c_ref = float(c_mean[ref]) or 1.0
    pts_c, pts_q = [], []
    for lam in SELECTION_LAMBDAS:
        a = (score - lam * c_mean / c_ref).argmax(axis=1)
        pts_c.append(float(cost[rows, a].mean()))
        pts_q.append(float(quality[rows, a].mean()))
    return float(aiq(pts_c, pts_q, cost_max=float(c_mean.max())))


@register_policy
class StackedPolicy(UtilityPolicy):
    """LightGBM over cross-fitted base learners, served or replaced by cross-validated utility.

    Args:
        models: Candidate model ids.
        config: :class:`StackConfig` or its dict.
        decision: Decision rule knobs (λ, μ, temperature, epsilon, floors).
        metadata: Extra artifact metadata.
    """

    kind = "lgbm-stack"

    def __init__(
        self,
        models: Sequence[str],
        *,
        config: StackConfig | Mapping[str, Any] | None = None,
        decision: DecisionConfig | dict[str, Any] | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(models, decision=decision, metadata=metadata)
        self.config = config if isinstance(config, StackConfig) else StackConfig.from_dict(dict(config or {}))
        self._check_inner_config()
        self.linear: LinearHead | None = None
        self.bases: dict[str, UtilityPolicy] = {}  # knn / mf fitted on all training tasks
        self.inner: LGBMPolicy | None = None
        self.prior = np.zeros(self.n_models)
        self.chosen = "stack"
        self.shrinkage = 0.0  # prior weight in the decision score of the chosen candidate
        self._oof: tuple[np.ndarray, np.ndarray, OutcomeMatrix] | None = None

    def _check_inner_config(self) -> None:
        from router_rl.policies.lgbm_config import LGBMConfig
        from router_rl.policies.supervised import MFConfig

        LGBMConfig.from_dict(self._inner_config_dict())
        MFConfig.from_dict(self.config.mf)

    def _inner_config_dict(self) -> dict[str, Any]:
        return {"linear_stack": False, "cost_model": "mean", **self.config.lgbm}

    # --- base learners -----------------------------------------------------------------------
    def _fit_base(self, name: str, X: np.ndarray, matrix: OutcomeMatrix, seed: int) -> Any:
        cfg = self.config
        if name == "linear":
            return LinearHead.fit(X, np.clip(matrix.quality, 0.0, 1.0), C=cfg.linear_c)
        from router_rl.policies.base import make_policy

        if name == "cells":
            columns, groups = self._cell_groups()
            return make_policy("cells", self.models, columns=columns, feature_groups=groups).fit(X, matrix, seed=seed)
        kwargs: dict[str, Any] = {"k": cfg.knn_k} if name == "knn" else {"config": cfg.mf}
        return make_policy(name, self.models, **kwargs).fit(X, matrix, seed=seed)

    def _cell_groups(self) -> tuple[list[str], list[list[int]]]:
        """The ``cells`` learner's attributes and one-hot column groups, from the attached encoder."""
        from router_rl.core.errors import ConfigError
        from router_rl.policies.cells import DEFAULT_COLUMNS, resolve_cell_columns
        from router_rl.policies.signals import feature_names

        names = feature_names(self.encoder) if getattr(self, "encoder", None) is not None else None
        if names is None:
            raise ConfigError("lgbm-stack.base_learners", "'cells' needs the fitted feature encoder "
                                                           "(attach_encoder before fit)")
        groups, _, used = resolve_cell_columns(names, DEFAULT_COLUMNS, skip_missing=True)
        return used, groups

    @staticmethod
    def _base_logits(model: Any, X: np.ndarray) -> np.ndarray:
        if isinstance(model, LinearHead):
            return np.asarray(model.logits(X), dtype=np.float32)
        return _logit(model.predict_quality(X))

    def _stack_inputs(self, X: np.ndarray) -> np.ndarray:
        parts = [np.asarray(X, dtype=np.float32)]
        for name in self.config.base_learners:
            model = self.linear if name == "linear" else self.bases[name]
            parts.append(self._base_logits(model, X))
        return np.hstack(parts)

    # --- training ----------------------------------------------------------------------------
    def _fit_quality(self, X: np.ndarray, matrix: OutcomeMatrix, rng: np.random.Generator) -> None:
        from router_rl.policies.lgbm import LGBMPolicy
        from router_rl.policies.lgbm_config import LGBMConfig

        cfg = self.config
        n, m = matrix.n_tasks, self.n_models
        if n < 2 * cfg.folds:
            raise ValueError(f"lgbm-stack.fit: needs at least {2 * cfg.folds} training tasks, got {n}")
        y = np.clip(matrix.quality, 0.0, 1.0)
        self.prior = y.mean(axis=0)
        fold_of = np.empty(n, dtype=np.int64)
        fold_of[rng.permutation(n)] = np.arange(n) % cfg.folds
        oof = {name: np.zeros((n, m), dtype=np.float32) for name in cfg.base_learners}
        for k in range(cfg.folds):
            tr = np.flatnonzero(fold_of != k)
            va = np.flatnonzero(fold_of == k)
            sub = matrix.take(tr)
            for name in cfg.base_learners:
                model = self._fit_base(name, X[tr], sub, int(rng.integers(0, 2**31 - 1)))
                oof[name][va] = self._base_logits(model, X[va])
        self.linear = None
        self.bases = {}
        for name in cfg.base_learners:
            model = self._fit_base(name, X, matrix, int(rng.integers(0, 2**31 - 1)))
            if name == "linear":
                self.linear = model
            else:
                self.bases[name] = model
        inner_cfg = LGBMConfig.from_dict(self._inner_config_dict())
        changes: dict[str, Any] = {}
        if cfg.scale_to_data:
            inner_cfg, changes = inner_cfg.scaled_to(n)
        Xa = np.hstack([np.asarray(X, dtype=np.float32), *(oof[name] for name in cfg.base_learners)])
        self.inner = LGBMPolicy(self.models, config=inner_cfg, decision=self.decision)
        self.inner.fit(Xa, matrix, seed=int(rng.integers(0, 2**31 - 1)))
        inner_oof = self.inner._training_oof()
        assert inner_oof is not None
        q_stack = inner_oof[0]
        s_stack = self.inner.shrinkage
        # candidates: name -> (out-of-fold quality, decision shrinkage)
        cands: dict[str, tuple[np.ndarray, float]] = {"stack": (q_stack, s_stack)}
        for name in cfg.base_learners:
            cands[name] = (1.0 / (1.0 + np.exp(-oof[name].astype(np.float64))), 0.0)
        cands["prior"] = (np.broadcast_to(self.prior, (n, m)).copy(), 0.0)
        scores = {c: (1 - s) * q + s * self.prior for c, (q, s) in cands.items()}
        crit = {c: oof_utility(sc, matrix.quality, matrix.cost) for c, sc in scores.items()}
        best = max(crit, key=lambda c: crit[c])
        lead = crit[best] - crit["stack"]
        se = 0.0
        if cfg.select == "stack":
            chosen, reason = "stack", "select='stack' (selection off)"
        elif best == "stack":
            chosen, reason = "stack", "the stacked booster has the best out-of-fold utility"
        elif lead <= cfg.select_margin:
            chosen, reason = "stack", f"{best} leads by {lead:.4f} <= select_margin {cfg.select_margin}"
        else:
            boot = np.random.default_rng(int(rng.integers(0, 2**31 - 1)))
            diffs = []
            for _ in range(cfg.select_bootstrap):
                i = boot.integers(0, n, n)
                qi, ci = matrix.quality[i], matrix.cost[i]
                diffs.append(oof_utility(scores[best][i], qi, ci) - oof_utility(scores["stack"][i], qi, ci))
            se = float(np.std(diffs, ddof=1))
            if lead > cfg.select_z * se:
                chosen = best
                reason = f"{best} leads the stacked booster by {lead:.4f} out-of-fold (> {cfg.select_z} x SE {se:.4f})"
            else:
                chosen, reason = "stack", f"{best} leads by {lead:.4f}, within {cfg.select_z} x SE {se:.4f} (noise)"
        self.chosen = chosen
        self.shrinkage = cands[chosen][1]
        self._oof = (cands[chosen][0], np.asarray(X), matrix)
        inner_metrics = self.inner.metadata.get("metrics", {})
        self.metadata["stack"] = {
            "chosen": chosen,
            "reason": reason,
            "criterion": "oof_aiq" if np.ptp(matrix.cost.mean(axis=0)) > 0 else "oof_mean_quality_at_argmax",
            "oof_criterion": crit,
            "lead_se": se,
            "base_learners": list(cfg.base_learners),
            "folds": cfg.folds,
            "n_tasks": n,
            "lgbm_small_data_changes": changes,
            "lgbm_rounds": inner_metrics.get("rounds"),
            "lgbm_fold_best_rounds": inner_metrics.get("fold_best_rounds"),
            "lgbm_prior_shrinkage": s_stack,
        }
        self.metadata["metrics"] = {k: inner_metrics.get(k) for k in ("oof_ece_calibrated", "oof_brier", "rounds")}

    def _fit_cost_model(
        self, X: np.ndarray, matrix: OutcomeMatrix, rng: np.random.Generator
    ) -> CostLatencyModel | None:
        from router_rl.policies.costmodel import fit_cost_model
        from router_rl.policies.lgbm_config import LGBMConfig

        settings = LGBMConfig.from_dict({**self.config.lgbm, "linear_stack": False}).cost_model_settings()
        model, info = fit_cost_model(X, matrix, settings, rng)
        self.metadata["cost_model"] = info
        return model

    def _training_oof(self) -> tuple[np.ndarray, np.ndarray, OutcomeMatrix] | None:
        return self._oof

    @property
    def pool_training_oof(self) -> bool:  # type: ignore[override]
        """:meth:`calibrate` pools the chosen candidate's out-of-fold predictions (as ``lgbm``)."""
        return True

    # --- inference ---------------------------------------------------------------------------
    def _predict_quality(self, X: np.ndarray) -> np.ndarray:
        if self.chosen == "stack":
            assert self.inner is not None
            return self.inner._predict_quality(self._stack_inputs(X))
        if self.chosen == "prior":
            return np.broadcast_to(self.prior, (X.shape[0], self.n_models)).copy()
        model = self.linear if self.chosen == "linear" else self.bases[self.chosen]
        return 1.0 / (1.0 + np.exp(-self._base_logits(model, X).astype(np.float64)))


    # --- persistence -------------------------------------------------------------------------
    def _save_model(self, directory: Path) -> dict[str, Any] | None:
        assert self.inner is not None
        self.inner.save(directory / "stack_booster")
        for name, model in self.bases.items():
            model.save(directory / f"base_{name}")
        if self.linear is not None:
            np.savez(directory / "base_linear.npz", W=self.linear.W, b=self.linear.b)
        return {
            "config": self.config.to_dict(),
            "chosen": self.chosen,
            "shrinkage": self.shrinkage,
            "prior": self.prior.tolist(),
        }

    def _load_model(self, directory: Path, state: dict[str, Any]) -> None:
        from router_rl.policies.lgbm import LGBMPolicy

        try:
            self.config = StackConfig.from_dict(state["config"])
            self.chosen = str(state["chosen"])
            self.shrinkage = float(state["shrinkage"])
            self.prior = np.asarray(state["prior"], dtype=np.float64)
        except (KeyError, ValueError) as e:
            raise PolicyLoadError(f"{directory / 'policy.json'}: corrupt lgbm-stack state ({e})") from e
        inner = RoutingPolicy.load(directory / "stack_booster", models=self.models)
        if not isinstance(inner, LGBMPolicy):
            raise PolicyLoadError(f"{directory / 'stack_booster'}: expected an lgbm artifact, got {inner.kind!r}")
        self.inner = inner
        self.bases = {}
        self.linear = None
        for name in self.config.base_learners:
            if name == "linear":
                path = directory / "base_linear.npz"
                if not path.is_file():
                    raise PolicyLoadError(f"{path}: missing linear base learner")
                with np.load(path) as z:
                    self.linear = LinearHead(W=z["W"], b=z["b"])
                continue
            base = RoutingPolicy.load(directory / f"base_{name}", models=self.models)
            if not isinstance(base, UtilityPolicy):
                raise PolicyLoadError(f"{directory / f'base_{name}'}: not a quality router ({base.kind!r})")
            self.bases[name] = base
        if self.chosen not in {"stack", "prior", *self.config.base_learners}:
            raise PolicyLoadError(f"{directory / 'policy.json'}: unknown chosen candidate {self.chosen!r}")
        self._oof = None
