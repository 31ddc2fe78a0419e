"""Cross-fitted reward models ``q_hat(x, a)`` for the direct method and doubly robust estimators.

(Just over 500 lines on purpose: the one reward-model implementation of the project, OPE's and
off-policy training's entry points over one LightGBM core; splitting them again is what this
module undid.)

The reward model of DM / DR / switch-DR is fitted on the log itself, so it must never predict a
row it was trained on (an in-sample fit memorises the logged rewards and DR's correction term
collapses to 0 on exactly the rows it should correct). :func:`cross_fit_reward_model` splits the
rows into ``folds`` seeded folds; the model trained on the other folds predicts ``q_hat(x_i, a)``
for **every** action ``a`` of each held-out row ``i``.

Kinds (recorded in :class:`RewardModelFit` and in every report that uses it):

* ``lightgbm`` (default): one LightGBM regression on ``[features, action]`` with the action as a
  categorical feature (one joint model shares what it learns about the context across actions,
  which matters when exploration gives rare actions a handful of rows). Deterministic given the
  seed (``deterministic=True``, one thread).
* ``ridge``: ridge regression on ``[1, x, one-hot(a), x * one-hot(a)]``; only when chosen
  explicitly (there is no silent fallback from one kind to the other).

Either kind takes ``params={"pca_components": c}``: the features are standardised and projected
onto their first ``c`` principal components, computed on each fold's *training* rows, before
the model sees them (seeded randomised PCA; a compact input for wide encoders, several times
faster on 500+ features).

**Weighted reward models for off-policy training** (:func:`cross_fit_reward`, used by
:mod:`router_rl.policies.offpolicy` to impute the unobserved cells of a pseudo full-information
matrix): the same cross-fitting, with sample weights (the importance weights of the ``iw`` / ``dr``
corrections), the LightGBM cross-entropy objective for quality (predictions in (0, 1)), and
either one booster per model or one pooled booster whose init score is each model's success
logit.

**One implementation.** Both entry points fit through the same core: :func:`train_booster` (every
LightGBM fit of the module), :func:`joint_features` / :func:`predict_every_action` (a joint model
of ``[x, a]`` predicting every action) and :func:`fit_joint_fold` (one fold of the joint model:
OPE's model with a categorical action column and the identity link, and training's pooled
quality model with one-hot actions, importance weights and a per-action logit to start from).
What differs is only what each consumer needs (OPE: an unweighted model whose residuals DR
corrects; training: a weighted, calibrated probability, per model or pooled).

Arrays in, dataclasses out: nothing here knows about policy objects or log files.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

import numpy as np

from router_rl.core.seeding import SeedLike, as_generator
from router_rl.ope.validation import OPEInputError, as_float_vector, check_actions

RewardModelKind = Literal["lightgbm", "ridge"]
REWARD_MODEL_KINDS: tuple[str, ...] = ("lightgbm", "ridge")

#: LightGBM parameters of the default reward model (overridable with ``params``).
DEFAULT_LGBM_PARAMS: dict[str, Any] = {
    "objective": "regression",
    "learning_rate": 0.1,
    "num_leaves": 15,
    "min_data_in_leaf": 20,
    "lambda_l2": 1.0,
    "num_boost_round": 60,
    "max_cat_to_onehot": 64,
    "pca_components": None,
}
_LGBM_RESERVED = frozenset({"seed", "deterministic", "verbose", "verbosity"})
#: Ridge penalty of the ``ridge`` kind (overridable with ``params={"alpha": ...}``).
DEFAULT_RIDGE_PARAMS: dict[str, Any] = {"alpha": 1.0, "pca_components": None}


@dataclass(frozen=True)
class RewardModelFit:
    """Out-of-fold reward-model predictions and how they were made.

    Attributes:
        predictions: ``(n, n_actions)`` ``q_hat(x_i, a)``; row ``i`` comes from the model that did
            not see row ``i``.
        kind: ``lightgbm`` or ``ridge``.
        folds: Number of cross-fitting folds.
        params: The model parameters used (defaults merged with overrides).
        seed: Seed of the fold assignment and of the models.
        fold_of_row: ``(n,)`` fold index of each row.
    """

    predictions: np.ndarray
    kind: str
    folds: int
    params: dict[str, Any]
    seed: int | None
    fold_of_row: np.ndarray = field(repr=False)

    def describe(self) -> dict[str, Any]:
        """``{kind, folds, params, seed}``: what reports record as ``reward_model``."""
        return {"kind": self.kind, "folds": self.folds, "params": dict(self.params), "seed": self.seed}


def assign_folds(n: int, folds: int, rng: SeedLike) -> np.ndarray:
    """A seeded, balanced fold index per row (a permutation of ``0..folds-1`` repeated)."""
    if n < folds:
        raise OPEInputError("folds", f"expected at most one fold per row: {folds} folds for {n} rows")
    gen = as_generator(rng)
    return np.resize(np.arange(folds), n)[gen.permutation(n)].astype(np.int64)


def cross_fit_reward_model(
    X: object,
    actions: object,
    rewards: object,
    n_actions: int,
    *,
    folds: int = 5,
    kind: str = "lightgbm",
    params: Mapping[str, Any] | None = None,
    seed: int = 0,
) -> RewardModelFit:
    """Fit ``folds`` reward models, each predicting every action of the rows it did not see.

    Args:
        X: ``(n, d)`` context features.
        actions: ``(n,)`` logged action indices.
        rewards: ``(n,)`` observed rewards (finite).
        n_actions: Number of actions.
        folds: Number of folds, >= 2.
        kind: ``lightgbm`` or ``ridge``.
        params: Overrides of :data:`DEFAULT_LGBM_PARAMS` / :data:`DEFAULT_RIDGE_PARAMS`.
        seed: Seed of the fold assignment and of the models.

    Returns:
        The out-of-fold predictions and their provenance.

    Raises:
        OPEInputError: malformed arrays, unknown kind, fewer rows than folds.
    """
    x = np.asarray(X, dtype=np.float64)
    if x.ndim != 2:
        raise OPEInputError("X", f"expected an (n, d) array, got shape {x.shape}")
    n = x.shape[0]
    if not np.isfinite(x).all():
        r, c = np.argwhere(~np.isfinite(x))[0]
        raise OPEInputError("X", f"expected a finite number, got {x[r, c]}", index=(int(r), int(c)))
    if not isinstance(n_actions, int | np.integer) or n_actions < 1:
        raise OPEInputError("n_actions", f"expected an integer >= 1, got {n_actions!r}")
    a = check_actions(actions, int(n_actions), n=n)
    r = as_float_vector(rewards, "rewards", n=n)
    if isinstance(folds, bool) or not isinstance(folds, int | np.integer) or folds < 2:
        raise OPEInputError("folds", f"expected an integer >= 2, got {folds!r}")
    if kind not in REWARD_MODEL_KINDS:
        raise OPEInputError("kind", f"unknown reward model {kind!r}; known: {list(REWARD_MODEL_KINDS)}")
    defaults = DEFAULT_LGBM_PARAMS if kind == "lightgbm" else DEFAULT_RIDGE_PARAMS
    given = set(params or {})
    if kind == "ridge" and given - set(defaults):
        bad = sorted(given - set(defaults))
        raise OPEInputError("params", f"unknown ridge parameters {bad}; known: {sorted(defaults)}")
    if kind == "lightgbm" and given & _LGBM_RESERVED:
        raise OPEInputError("params", f"{sorted(given & _LGBM_RESERVED)} are set from `seed` (reproducibility)")
    merged = {**defaults, **dict(params or {})}
    pca = merged["pca_components"]
    if pca is not None and (isinstance(pca, bool) or not isinstance(pca, int | np.integer) or pca < 1):
        raise OPEInputError("params", f"pca_components: expected an integer >= 1 or None, got {pca!r}")
    fold_of_row = assign_folds(n, int(folds), np.random.default_rng([seed, 101]))
    pred = np.empty((n, int(n_actions)), dtype=np.float64)
    for f in range(int(folds)):
        tr, te = fold_of_row != f, fold_of_row == f
        x_tr, x_te = (x[tr], x[te]) if pca is None else _pca(x[tr], x[te], int(pca), seed + f)
        if kind == "lightgbm":
            pred[te] = _lgbm_fold(x_tr, a[tr], r[tr], x_te, int(n_actions), merged, seed + f)
        else:
            pred[te] = _ridge_fold(x_tr, a[tr], r[tr], x_te, int(n_actions), float(merged["alpha"]))
    return RewardModelFit(
        predictions=pred, kind=kind, folds=int(folds), params=merged, seed=seed, fold_of_row=fold_of_row
    )


def _pca(x_tr: np.ndarray, x_te: np.ndarray, c: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Both blocks projected on the first ``c`` principal components of the standardised ``x_tr``.

    Randomised range finder (Halko, Martinsson & Tropp 2011: 10 extra directions, 2 power
    iterations), seeded: a few matrix products instead of a full eigendecomposition.
    """
    mu, sd = x_tr.mean(axis=0), x_tr.std(axis=0)
    sd = np.where(sd > 0, sd, 1.0)
    z_tr, z_te = (x_tr - mu) / sd, (x_te - mu) / sd
    c = min(c, *z_tr.shape)
    width = min(c + 10, z_tr.shape[1])
    y = z_tr @ np.random.default_rng([seed, 211]).standard_normal((z_tr.shape[1], width))
    for _ in range(2):
        y, _r = np.linalg.qr(y)
        y = z_tr @ (z_tr.T @ y)
    q, _r = np.linalg.qr(y)
    _u, _s, vt = np.linalg.svd(q.T @ z_tr, full_matrices=False)
    top = vt[:c].T
    return z_tr @ top, z_te @ top


def _all_actions(x: np.ndarray, n_actions: int) -> tuple[np.ndarray, np.ndarray]:
    """Every (row, action) pair: rows repeated ``n_actions`` times and the action column."""
    m = x.shape[0]
    return np.repeat(x, n_actions, axis=0), np.tile(np.arange(n_actions), m)


# --- the one LightGBM reward-model core (OPE and off-policy training) ---------------------------
ActionEncoding = Literal["categorical", "onehot"]


def joint_features(x: np.ndarray, actions: np.ndarray, n_actions: int, encoding: ActionEncoding) -> np.ndarray:
    """``[x, action]`` rows of a joint model: the action as one categorical column or one-hot columns."""
    if encoding == "categorical":
        return np.column_stack([x, actions.astype(np.float64)])
    return np.hstack([x, np.eye(n_actions, dtype=x.dtype)[actions]])


def train_booster(
    x: np.ndarray,
    y: np.ndarray,
    *,
    params: Mapping[str, Any],
    rounds: int,
    dataset_params: Mapping[str, Any],
    weights: np.ndarray | None = None,
    init_score: np.ndarray | None = None,
    categorical: list[int] | None = None,
) -> Any:
    """One LightGBM booster on ``(x, y)``: the fit every reward model of this module is made of."""
    import lightgbm as lgb

    extra: dict[str, Any] = {} if categorical is None else {"categorical_feature": categorical}
    ds = lgb.Dataset(
        x, label=y, weight=weights, init_score=init_score, free_raw_data=True, params=dict(dataset_params), **extra
    )
    return lgb.train(dict(params), ds, num_boost_round=int(rounds))


def predict_every_action(
    booster: Any,
    x: np.ndarray,
    n_actions: int,
    encoding: ActionEncoding,
    *,
    raw_score: bool = False,
    num_threads: int = 1,
) -> np.ndarray:
    """``(m, n_actions)`` predictions of a joint booster for every action of every row of ``x``."""
    xr, ar = _all_actions(x, n_actions)
    out = booster.predict(joint_features(xr, ar, n_actions, encoding), raw_score=raw_score, num_threads=num_threads)
    return np.asarray(out, dtype=np.float64).reshape(x.shape[0], n_actions)


def fit_joint_fold(
    x_tr: np.ndarray,
    a_tr: np.ndarray,
    y_tr: np.ndarray,
    x_te: np.ndarray,
    n_actions: int,
    *,
    encoding: ActionEncoding,
    params: Mapping[str, Any],
    rounds: int,
    dataset_params: Mapping[str, Any],
    weights: np.ndarray | None = None,
    base: np.ndarray | None = None,
    num_threads: int = 1,
) -> np.ndarray:
    """One fold of the joint reward model ``q(x, a)``: fit on the training rows, predict every action.

    The model of both consumers: OPE's (``categorical`` action, unweighted, identity link) and the
    pooled quality model of off-policy training (``onehot`` action, importance weights, and
    ``base``: a per-action logit the booster starts from, ``q = sigmoid(base_a + f(x, a))``).

    Returns:
        ``(len(x_te), n_actions)`` predictions.
    """
    booster = train_booster(
        joint_features(x_tr, a_tr, n_actions, encoding), y_tr, weights=weights,
        init_score=None if base is None else base[a_tr], params=params, rounds=rounds,
        dataset_params=dataset_params, categorical=[x_tr.shape[1]] if encoding == "categorical" else None,
    )
    if base is None:
        return predict_every_action(booster, x_te, n_actions, encoding, num_threads=num_threads)
    raw = predict_every_action(booster, x_te, n_actions, encoding, raw_score=True, num_threads=num_threads)
    return 1.0 / (1.0 + np.exp(-(raw + base[None, :])))


def _lgbm_fold(
    x_tr: np.ndarray,
    a_tr: np.ndarray,
    r_tr: np.ndarray,
    x_te: np.ndarray,
    n_actions: int,
    params: dict[str, Any],
    seed: int,
) -> np.ndarray:
    p = dict(params)
    rounds = int(p.pop("num_boost_round"))
    p.pop("pca_components", None)
    p.update(
        {
            "seed": int(seed),
            "deterministic": True,
            "force_col_wise": True,
            "verbose": -1,
            "num_threads": int(p.get("num_threads", 1)),
        }
    )
    if np.ptp(r_tr) == 0:  # constant target: LightGBM would fit nothing useful; the constant is exact
        return np.full((x_te.shape[0], n_actions), float(r_tr[0]))
    return fit_joint_fold(
        x_tr, a_tr, r_tr, x_te, n_actions, encoding="categorical", params=p, rounds=rounds,
        dataset_params={"verbose": -1}, num_threads=p["num_threads"],
    )


def _ridge_design(x: np.ndarray, a: np.ndarray, n_actions: int) -> np.ndarray:
    oh = np.zeros((x.shape[0], n_actions))
    oh[np.arange(x.shape[0]), a] = 1.0
    inter = (x[:, :, None] * oh[:, None, :]).reshape(x.shape[0], -1)
    return np.column_stack([np.ones(x.shape[0]), x, oh, inter])


def _ridge_fold(
    x_tr: np.ndarray, a_tr: np.ndarray, r_tr: np.ndarray, x_te: np.ndarray, n_actions: int, alpha: float
) -> np.ndarray:
    mu, sd = x_tr.mean(axis=0), x_tr.std(axis=0)
    sd = np.where(sd > 0, sd, 1.0)
    z_tr, z_te = (x_tr - mu) / sd, (x_te - mu) / sd
    D = _ridge_design(z_tr, a_tr, n_actions)
    pen = np.full(D.shape[1], alpha)
    pen[0] = 0.0  # the intercept is not shrunk
    coef = np.linalg.solve(D.T @ D + np.diag(pen), D.T @ r_tr)
    xr, ar = _all_actions(z_te, n_actions)
    return (_ridge_design(xr, ar, n_actions) @ coef).reshape(x_te.shape[0], n_actions)


# --- weighted reward models of off-policy training ---------------------------------------------
class WeightedRewardSettings(Protocol):
    """Settings :func:`cross_fit_reward` reads (``router_rl.policies.offpolicy.OffPolicyConfig``)."""

    @property
    def folds(self) -> int: ...
    @property
    def reward_model(self) -> str: ...
    @property
    def reward_leaves(self) -> int: ...
    @property
    def reward_learning_rate(self) -> float: ...
    @property
    def reward_min_leaf_rows(self) -> int: ...
    @property
    def reward_l2(self) -> float: ...
    @property
    def reward_rounds(self) -> int: ...
    @property
    def min_model_rows(self) -> int: ...
    @property
    def min_feature_count(self) -> int: ...
    @property
    def num_threads(self) -> int: ...


#: LightGBM ``Dataset`` parameters of the weighted (training) reward models.
_WEIGHTED_DATASET_PARAMS: dict[str, Any] = {"verbose": -1, "max_bin": 63, "feature_pre_filter": False}


def _weighted_params(config: WeightedRewardSettings, objective: str, seed: int | None = None) -> dict[str, Any]:
    """The booster parameters of the weighted reward models (the LightGBM router's fixed ones + settings)."""
    from router_rl.policies.boosting import FIXED_PARAMS

    params = dict(
        FIXED_PARAMS,
        objective=objective,
        num_leaves=config.reward_leaves,
        learning_rate=config.reward_learning_rate,
        min_data_in_leaf=config.reward_min_leaf_rows,
        lambda_l2=config.reward_l2,
        num_threads=config.num_threads,
    )
    if seed is not None:
        params["seed"] = seed
    params.pop("metric", None)
    return params


def cross_fit_reward(
    X: np.ndarray,
    actions: np.ndarray,
    y: np.ndarray,
    weights: np.ndarray,
    n_models: int,
    *,
    target: str,
    config: WeightedRewardSettings,
    rng: np.random.Generator,
    fold_of: np.ndarray | None = None,
) -> tuple[np.ndarray, dict[str, Any]]:
    """Cross-fitted reward model ``r̂(x, a)`` of one quantity for every row and model.

    For fold ``f``, the booster of model ``a`` is fitted on the rows outside ``f`` where ``a``
    was chosen (and ``y`` is finite), weighted by ``weights``, and predicts every row of ``f``.
    ``quality`` uses LightGBM's cross-entropy objective (labels in [0, 1], predictions in (0, 1));
    cost and latency the squared loss.

    Args:
        X: ``(n, d)`` features.
        actions: ``(n,)`` chosen model index.
        y: ``(n,)`` observed outcome of the chosen model (NaN = not observed, latency only).
        weights: ``(n,)`` sample weights (ones = no correction).
        n_models: Number of models.
        target: ``quality``, ``cost`` or ``latency`` (picks the objective; names the record).
        config: Reward-model settings.
        rng: Seeds the folds (unless ``fold_of`` is given) and LightGBM.
        fold_of: ``(n,)`` fold of each row (shared by the targets of one log).

    Returns:
        ``(r_hat (n, k), info)``; ``info["mean_imputed"]`` counts (model -> folds) where a model had
        fewer than ``min_model_rows`` rows and its weighted mean was used (``"none"`` where the
        model had no row at all: NaN cells).
    """
    from router_rl.policies.boosting import select_columns

    n = X.shape[0]
    folds = config.folds
    if fold_of is None:
        fold_of = np.empty(n, dtype=np.int64)
        fold_of[rng.permutation(n)] = np.arange(n) % folds
    columns = select_columns(X, config.min_feature_count)
    Xs = np.ascontiguousarray(X[:, columns], dtype=np.float32)
    r_hat = np.full((n, n_models), np.nan)
    objective = "cross_entropy" if target == "quality" else "regression"
    seen = np.isfinite(y)
    if target == "quality" and config.reward_model == "pooled":
        return _cross_fit_pooled(Xs, actions, y, weights, n_models, fold_of, config=config, rng=rng)
    mean_imputed: dict[str, int] = {}
    for f in range(folds):
        pred_rows = fold_of == f
        if not pred_rows.any():
            continue
        for a in range(n_models):
            tr = (fold_of != f) & (actions == a) & seen
            k = int(tr.sum())
            seed = int(rng.integers(0, 2**31 - 1))
            if k < config.min_model_rows:
                mean_imputed[str(a)] = mean_imputed.get(str(a), 0) + 1
                if k > 0:
                    r_hat[pred_rows, a] = float(np.average(y[tr], weights=weights[tr]))
                continue
            ys = y[tr]
            if target != "quality" and float(ys.std()) == 0.0:  # constant (e.g. a fixed price)
                r_hat[pred_rows, a] = float(ys[0])
                continue
            booster = train_booster(
                Xs[tr], ys, weights=weights[tr], params=_weighted_params(config, objective, seed),
                rounds=config.reward_rounds, dataset_params=_WEIGHTED_DATASET_PARAMS,
            )
            r_hat[pred_rows, a] = np.asarray(booster.predict(Xs[pred_rows], num_threads=config.num_threads))
    return r_hat, {"target": target, "objective": objective, "model": "per_model", "mean_imputed": mean_imputed}


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, 1e-4, 1 - 1e-4)
    return np.log(p / (1 - p))


def _cross_fit_pooled(
    Xs: np.ndarray,
    actions: np.ndarray,
    y: np.ndarray,
    weights: np.ndarray,
    n_models: int,
    fold_of: np.ndarray,
    *,
    config: WeightedRewardSettings,
    rng: np.random.Generator,
) -> tuple[np.ndarray, dict[str, Any]]:
    """Quality reward model pooled over models: ``σ(base_a + f(x, onehot(a)))``, cross-fitted.

    ``base_a`` is the logit of model ``a``'s weighted success rate on the training folds (the
    pooled rate where the model has fewer than ``min_model_rows`` rows, counted); the booster
    learns the deviation from it over every logged row, so a rarely chosen model inherits the
    task difficulty the other models' rows reveal.
    """
    n = Xs.shape[0]
    r_hat = np.full((n, n_models), np.nan)
    mean_imputed: dict[str, int] = {}
    params = _weighted_params(config, "cross_entropy")
    for f in range(config.folds):
        pred_rows = np.flatnonzero(fold_of == f)
        tr = np.flatnonzero(fold_of != f)
        seed = int(rng.integers(0, 2**31 - 1))
        if pred_rows.size == 0:
            continue
        pooled = float(np.average(y[tr], weights=weights[tr])) if tr.size else 0.5
        base = np.full(n_models, _logit(np.array(pooled)).item())
        for a in range(n_models):
            mine = tr[actions[tr] == a]
            if mine.size < config.min_model_rows:
                mean_imputed[str(a)] = mean_imputed.get(str(a), 0) + 1
            else:
                base[a] = _logit(np.array(np.average(y[mine], weights=weights[mine]))).item()
        if tr.size < config.min_model_rows:
            r_hat[pred_rows] = 1.0 / (1.0 + np.exp(-base))
            continue
        r_hat[pred_rows] = fit_joint_fold(
            Xs[tr], actions[tr], y[tr], Xs[pred_rows], n_models, encoding="onehot", params=dict(params, seed=seed),
            rounds=config.reward_rounds, dataset_params=_WEIGHTED_DATASET_PARAMS, weights=weights[tr], base=base,
            num_threads=config.num_threads,
        )
    return r_hat, {"target": "quality", "objective": "cross_entropy", "model": "pooled", "mean_imputed": mean_imputed}
