"""Ray Tune search over :class:`~router_rl.policies.lgbm_config.LGBMConfig` (the LightGBM meta-model).

Each trial fits :class:`~router_rl.policies.lgbm.LGBMPolicy` on the train split with its own seed
and scores it on the validation split (never test): ``val_aiq`` (default) is the AIQ of the
policy's λ sweep on validation, on a cost axis fixed for every trial (0 to the dearest model's
mean validation cost); ``val_quality`` is the mean validation quality at the policy's own λ.
Rungs are boosting-round budgets ``num_boost_round · 2^(k − rungs + 1)`` (the trial refits at
each), so ASHA stops poor configs after their cheap fits.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from router_rl.core.errors import ConfigError
from router_rl.tune.runner import TuneOutcome, TuneSettings, run_trials, rung_budgets
from router_rl.tune.space import Dimension, SearchSpaceError, parse_space, sample_trials

if TYPE_CHECKING:
    from router_rl.traces.matrix import OutcomeMatrix

#: Metrics a LightGBM search can rank by (all on the validation split, all maximised).
LGBM_METRICS = ("val_aiq", "val_quality")

#: The default search (``router-rl tune lgbm`` without ``--space``).
DEFAULT_LGBM_SPACE = (
    "num_leaves=logint:7:63",
    "learning_rate=loguniform:0.02:0.2",
    "min_data_in_leaf=int:5:40",
    "feature_fraction=uniform:0.6:1.0",
    "lambda_l2=loguniform:0.001:10",
)

#: Settings held fixed by default (a lighter cross-fit than the library's, as the benchmark does).
DEFAULT_LGBM_FIXED: dict[str, Any] = {"num_boost_round": 120, "early_stopping_rounds": 20, "cv_folds": 2}


def lgbm_fields() -> tuple[str, ...]:
    """Searchable fields: every :class:`LGBMConfig` field."""
    from router_rl.policies.lgbm_config import LGBMConfig

    return tuple(LGBMConfig.model_fields)


def parse_lgbm_space(items: list[str] | tuple[str, ...]) -> dict[str, Dimension]:
    """Parse ``--space`` items for LightGBM (``DEFAULT_LGBM_SPACE`` when empty)."""
    return parse_space(list(items) or list(DEFAULT_LGBM_SPACE), fields=lgbm_fields())


def validation_lambdas() -> tuple[float, ...]:
    """The λ grid of the validation sweep (the evaluation's: 0 plus 49 points over [1e-3, 1e3])."""
    from router_rl.eval.runner import DEFAULT_LAMBDAS

    return DEFAULT_LAMBDAS


def cost_axis_max(val: OutcomeMatrix) -> float:
    """Right end of the AIQ cost axis: the dearest model's mean cost on validation.

    Raises:
        ConfigError: every model costs the same (no cost axis: AIQ is undefined; use ``val_quality``).
    """
    means = np.nanmean(np.asarray(val.cost, dtype=np.float64), axis=0)
    if not np.isfinite(means).any() or float(np.nanmax(means)) <= 0 or float(np.ptp(means[np.isfinite(means)])) <= 0:
        raise ConfigError("metric", "val_aiq needs models with different costs on validation; use val_quality")
    return float(np.nanmax(means))


def split_and_encode(traceset: Any, *, seed: int, source: str) -> tuple[Any, Any, np.ndarray, np.ndarray, list[str]]:
    """``(train, val, X_train, X_val, notes)`` of a trace set, encoded as ``router-rl train`` does.

    The encoder is fitted on train only (a user's own task columns become features when the
    traces carry no simulation truth); a missing val split is carved from train (``notes`` say so).

    Raises:
        router_rl.traces.split.MissingSplitError: no train split.
    """
    from router_rl.eval.resolve import task_encoder_config
    from router_rl.features import EncoderConfig, FeatureEncoder
    from router_rl.traces.split import require_splits

    matrix = traceset.matrix()
    parts, notes = require_splits(matrix, ("train", "val"), seed=seed, source=source)
    tr, va = parts["train"], parts["val"]
    cfg = EncoderConfig().restricted_to(tr.tasks.columns)
    if traceset.ground_truth is None:
        cfg = task_encoder_config(tr.tasks)
    enc = FeatureEncoder(cfg).fit(tr.tasks)
    return tr, va, np.asarray(enc.transform(tr.tasks)), np.asarray(enc.transform(va.tasks)), list(notes)


def lgbm_validation_metrics(
    policy: Any, X_val: np.ndarray, val: OutcomeMatrix, *, lambdas: tuple[float, ...], cost_max: float
) -> dict[str, float]:
    """``val_quality`` / ``val_cost_usd`` at the policy's own λ, and ``val_aiq`` (λ sweep on validation).

    ``val_aiq`` is left out when ``cost_max`` is not finite (no cost axis).
    """
    from router_rl.ope.metrics import aiq

    own = policy.route_matrix(X_val, val)
    out = {"val_quality": float(np.mean(own.quality)), "val_cost_usd": float(np.mean(own.cost))}
    if not np.isfinite(cost_max):
        return out
    orig = policy.decision
    costs, quals = [], []
    with policy.reuse_predictions():
        try:
            for lam in lambdas:
                policy.decision = orig.with_(lam=lam)
                r = policy.route_matrix(X_val, val)
                costs.append(float(np.mean(r.cost)))
                quals.append(float(np.mean(r.quality)))
        finally:
            policy.decision = orig
    return {"val_aiq": float(aiq(np.array(costs), np.array(quals), cost_max=cost_max)), **out}


def lgbm_trainable(
    config: dict[str, Any],
    *,
    train: OutcomeMatrix,
    val: OutcomeMatrix,
    X_train: np.ndarray,
    X_val: np.ndarray,
    rungs: int,
    cost_max: float,
) -> None:
    """One trial (run by Ray Tune): fit at each rung's round budget, report the validation metrics."""
    from ray import tune

    from router_rl.policies.lgbm import LGBMConfig, LGBMPolicy

    trial = config["trial"]
    full = int(LGBMConfig.from_dict(trial["config"]).num_boost_round)
    lambdas = validation_lambdas()
    for k, rounds in enumerate(rung_budgets(full, rungs)):
        cfg = LGBMConfig.from_dict({**trial["config"], "num_boost_round": rounds})
        pol = LGBMPolicy(train.models, config=cfg)
        pol.fit(X_train, train, seed=int(trial["seed"]))
        m = lgbm_validation_metrics(pol, X_val, val, lambdas=lambdas, cost_max=cost_max)
        tune.report({**m, "rung": k + 1, "num_boost_round": rounds, "trial_index": int(trial["index"])})


def tune_lgbm(
    train: OutcomeMatrix,
    val: OutcomeMatrix,
    X_train: np.ndarray,
    X_val: np.ndarray,
    *,
    space: dict[str, Dimension],
    fixed: dict[str, Any] | None = None,
    metric: str = "val_aiq",
    settings: TuneSettings | None = None,
) -> TuneOutcome:
    """Search LightGBM settings on Ray Tune (ASHA over boosting-round rungs), scored on ``val``.

    Args:
        train, val: Outcome matrices of the train and validation splits.
        X_train, X_val: Their encoded features (one encoder, fitted on train).
        space: Searched fields (:func:`parse_lgbm_space`).
        fixed: Settings every trial shares (default :data:`DEFAULT_LGBM_FIXED`, minus searched ones).
        metric: One of :data:`LGBM_METRICS` (maximised).
        settings: Trials, seed, rungs, Ray address, ...

    Raises:
        SearchSpaceError: A bad space or fixed setting (the field named), too few rounds for the rungs.
        ConfigError: ``metric`` unknown, or ``val_aiq`` without a cost axis.
        TuneRunError: Ray could not start, or no trial finished.
    """
    from router_rl.policies.lgbm_config import LGBMConfig

    st = settings or TuneSettings()
    if metric not in LGBM_METRICS:
        raise ConfigError("metric", f"expected one of {list(LGBM_METRICS)}, got {metric!r}")
    if X_train.shape[0] != train.n_tasks or X_val.shape[0] != val.n_tasks:
        raise ValueError(f"features do not match the splits: {X_train.shape[0]}/{train.n_tasks} train, "
                         f"{X_val.shape[0]}/{val.n_tasks} val rows")
    fx = {k: v for k, v in (DEFAULT_LGBM_FIXED if fixed is None else fixed).items() if k not in space}
    trials = sample_trials(space, n_trials=st.trials, base_seed=st.base_seed, fixed=fx, config_cls=LGBMConfig)
    for t in trials:
        rounds = int(LGBMConfig.from_dict(t.config).num_boost_round)
        if len(rung_budgets(rounds, st.rungs)) < st.rungs:
            raise SearchSpaceError(f"num_boost_round: {rounds} rounds cannot make {st.rungs} rungs "
                                   f"(needs >= {2 ** (st.rungs - 1)}); lower the rungs or raise the rounds")
    cost_max = cost_axis_max(val) if metric == "val_aiq" else float("nan")
    out = run_trials(
        lgbm_trainable, trials, metric=metric, mode="max", settings=st,
        payload={"train": train, "val": val, "X_train": np.asarray(X_train), "X_val": np.asarray(X_val),
                 "rungs": st.rungs, "cost_max": cost_max},
    )
    out.extra.update({"fixed": fx, "cost_axis_max_usd": cost_max if np.isfinite(cost_max) else None})
    return out
