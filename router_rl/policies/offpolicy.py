"""Learning a routing policy from the router's own log: partial feedback, selection bias corrected.

(Over 500 lines on purpose: the corrections, their cross-fitted reward models and the metadata
they record are one method; the docstring explains the choices at length.)

A decision log holds, per request, the features ``x``, the model the logging policy chose ``A``
(sampled with probability ``p = π₀(A | x)``, its *propensity*) and the outcome of that one model
(quality label, cost, latency). Every learner of :mod:`router_rl.policies` is fitted on a
full-information :class:`~router_rl.traces.matrix.OutcomeMatrix` (every model's outcome for every
task), so the log is turned into a **pseudo full-information matrix**: one row per labelled
decision, one column per model, each cell an estimate of that model's outcome on that task. Any
built-in learner then fits on it unchanged and its artifact serves like any other.

The unobserved cells are imputed by a **cross-fitted reward model** ``r̂(x, a)``
(:func:`router_rl.ope.reward_model.cross_fit_reward`, the module of every cross-fitted reward
model, the OPE one included; ``folds`` folds,
so a row's own outcome never enters the ``r̂`` of that row). Quality: by default one pooled
LightGBM cross-entropy booster over every logged row, the chosen model one-hot encoded, starting
from each model's weighted success rate (``reward_model="pooled"``: the task difficulty learned
from the often-chosen models carries over to the rarely chosen ones), or one booster per model
(``"per_model"``); cost and latency: one squared-loss booster per model. The logging policy
chose some models mostly on some kinds of task, so a model's logged rows are a biased sample of
the task distribution; the corrections (``OffPolicyConfig.correction``):

* ``iw`` (default): **importance-weighted regression**. The reward model of each model weights its
  rows by ``w = min(1 / p, clip)``, which reweights them towards the whole task distribution
  (the standard covariate-shift correction). Cells: the observed outcome in the chosen cell, the
  cross-fitted ``r̂`` elsewhere. Every cell stays in the outcome's range, so every learner fits
  it as is.
* ``dr``: **doubly-robust pseudo-outcomes**
  ``Γ(x, a) = r̂(x, a) + 1[a = A] · w · (r − r̂(x, a))`` (``r̂`` importance-weighted as above). Their
  expectation is the true outcome whenever the propensities are right (for ``w`` unclipped), but
  they leave [0, 1]: the chosen cell of a success at ``p = 0.1`` is ``r̂ + 10 (1 − r̂)``. Every
  built-in learner clips the quality it is fitted on to [0, 1] (the LightGBM router's quality
  model is a per-model binary cross-entropy), and for 0/1 labels the clipped ``Γ`` is exactly the
  ``iw`` matrix (a success clips to 1, a failure to 0). The number of quality cells outside
  [0, 1] is recorded (``metadata["offpolicy"]["quality_cells_out_of_range"]``), never hidden.
* ``none``: no correction, the baseline: the same imputation with an unweighted reward model.
* ``ips``: inverse propensity scores ``1[a = A] · w · r`` (no reward model). Available as an
  array (:func:`pseudo_outcomes`) for estimators; :func:`fit_from_log` refuses it, since clipped
  to [0, 1] it would teach a learner that unchosen models always fail.

Cost and latency get the same treatment as quality (latency cells with no observed value keep
``r̂``). Rows without a label (quality NaN) are excluded and counted; fallback rows are credited
to the chosen model (contract of issue #15: the fallback is part of what choosing that model
produced) and counted. The fitted policy's ``metadata["offpolicy"]`` records the correction,
clip, folds, row counts, weight statistics, the logging policy versions and the encoder
fingerprint; its encoder must be the one that produced the log's features (checked by
fingerprint).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any, Literal, Protocol, get_args

import numpy as np
from pydantic import Field

from router_rl.core.config import PositiveFloat, PositiveInt, StrictConfig
from router_rl.core.errors import ConfigError, RouterRLError
from router_rl.core.seeding import SeedLike, as_generator
from router_rl.ope.reward_model import cross_fit_reward

if TYPE_CHECKING:
    from router_rl.policies.base import RoutingPolicy
    from router_rl.traces.catalog import ModelCatalog
    from router_rl.traces.matrix import OutcomeMatrix

#: Accepted values of ``OffPolicyConfig.correction``.
Correction = Literal["iw", "dr", "ips", "none"]
#: The same values as a tuple.
CORRECTIONS: tuple[str, ...] = get_args(Correction)
#: Corrections :func:`fit_from_log` fits a learner with (``ips`` is estimator-only).
FIT_CORRECTIONS: tuple[str, ...] = ("iw", "dr", "none")
#: Quantities a reward model is fitted for (the log's outcome columns).
TARGETS: tuple[str, ...] = ("quality", "cost", "latency")


class OffPolicyError(RouterRLError, ValueError):
    """The log cannot be learned from as given (bad propensities, encoder mismatch, no labels...)."""


class OffPolicyConfig(StrictConfig):
    """How a policy is learned from a decision log (see the module docstring).

    Attributes:
        correction: ``iw`` (importance-weighted reward model, default), ``dr`` (doubly-robust
            pseudo-outcomes), ``none`` (uncorrected baseline) or ``ips`` (estimator only).
        clip: Upper bound of the importance weight ``1 / propensity`` (>= 1).
        folds: Cross-fitting folds of the reward model (>= 2).
        reward_rounds: Boosting rounds of each reward-model booster.
        reward_leaves: Leaves per tree of the reward model.
        reward_learning_rate: Learning rate of the reward model.
        reward_min_leaf_rows: Minimum (unweighted) rows per leaf of the reward model.
        reward_l2: L2 regularisation of the reward model's leaf values.
        reward_model: Quality reward model: ``pooled`` (one booster over every logged row, the
            chosen model one-hot encoded, starting from each model's weighted success rate: task
            difficulty learned from all rows is shared by the rarely chosen models) or
            ``per_model`` (one booster per model on its own rows). Cost and latency are always
            per model.
        min_model_rows: A model with fewer logged rows in a fold's training part is imputed by
            the (weighted) mean of those rows instead of a booster (counted in the metadata).
        min_feature_count: Feature columns non-zero on fewer logged rows are not used by the
            reward model.
        num_threads: LightGBM threads of the reward model.
    """

    correction: Correction = "iw"
    clip: Annotated[float, Field(ge=1.0, allow_inf_nan=False)] = 10.0
    folds: Annotated[int, Field(ge=2)] = 2
    reward_rounds: PositiveInt = 100
    reward_leaves: Annotated[int, Field(ge=2)] = 7
    reward_learning_rate: PositiveFloat = 0.05
    reward_min_leaf_rows: PositiveInt = 20
    reward_model: Literal["pooled", "per_model"] = "pooled"
    reward_l2: Annotated[float, Field(ge=0, allow_inf_nan=False)] = 5.0
    min_model_rows: PositiveInt = 20
    min_feature_count: PositiveInt = 3
    num_threads: PositiveInt = 1


class LoggedArrays(Protocol):
    """What this module reads of :class:`router_rl.logs.data.LoggedData` (plain arrays)."""

    models: tuple[str, ...]
    X: np.ndarray
    actions: np.ndarray
    propensities: np.ndarray
    quality: np.ndarray
    cost_usd: np.ndarray
    latency_s: np.ndarray
    fallback: np.ndarray
    request_ids: np.ndarray
    encoder_fingerprint: str | None


@dataclass(frozen=True)
class PseudoOutcomes:
    """Pseudo full-information outcomes of logged rows.

    Attributes:
        quality: ``(n, k)`` pseudo quality per row and model.
        cost: ``(n, k)`` pseudo cost (USD).
        latency: ``(n, k)`` pseudo latency (s); NaN where nothing could be estimated.
        reward: ``{target: (n, k)}`` the cross-fitted reward model ``r̂`` (empty for ``ips``).
        weights: ``(n,)`` clipped importance weights ``min(1 / p, clip)``.
        info: JSON-able record (correction, clip, weight statistics, reward-model fallbacks).
    """

    quality: np.ndarray
    cost: np.ndarray
    latency: np.ndarray
    reward: Mapping[str, np.ndarray]
    weights: np.ndarray
    info: dict[str, Any]


def clipped_weights(propensities: np.ndarray, clip: float) -> np.ndarray:
    """Importance weights ``min(1 / p, clip)`` of logged propensities.

    Raises:
        OffPolicyError: a propensity outside (0, 1] (naming the first rows).
    """
    p = np.asarray(propensities, dtype=np.float64)
    bad = np.flatnonzero(~((p > 0) & (p <= 1)))
    if bad.size:
        raise OffPolicyError(
            f"propensity: expected values in (0, 1], got {float(p[bad[0]])} at rows {bad[:5].tolist()} "
            f"({bad.size} rows)"
        )
    return np.minimum(1.0 / p, float(clip))


def _check_inputs(X: np.ndarray, actions: np.ndarray, n_models: int, outcomes: Mapping[str, np.ndarray]) -> None:
    n = X.shape[0]
    if X.ndim != 2 or n == 0:
        raise OffPolicyError(f"X: expected a non-empty (n, d) array, got shape {X.shape}")
    if actions.shape != (n,):
        raise OffPolicyError(f"actions: expected shape ({n},), got {actions.shape}")
    bad = np.flatnonzero((actions < 0) | (actions >= n_models))
    if bad.size:
        raise OffPolicyError(
            f"actions: expected indices in [0, {n_models}), got {int(actions[bad[0]])} at rows {bad[:5].tolist()}"
        )
    for name, y in outcomes.items():
        if y.shape != (n,):
            raise OffPolicyError(f"{name}: expected shape ({n},), got {y.shape}")
        if name != "latency":
            nf = np.flatnonzero(~np.isfinite(y))
            if nf.size:
                raise OffPolicyError(
                    f"{name}: expected finite values (exclude unlabelled rows first), rows {nf[:5].tolist()}"
                )
    q = outcomes.get("quality")
    if q is not None:
        out = np.flatnonzero((q < 0) | (q > 1))
        if out.size:
            raise OffPolicyError(
                f"quality: expected values in [0, 1], got {float(q[out[0]])} at rows {out[:5].tolist()}"
            )


def pseudo_outcomes(
    X: np.ndarray,
    actions: np.ndarray,
    propensities: np.ndarray,
    outcomes: Mapping[str, np.ndarray],
    n_models: int,
    config: OffPolicyConfig | None = None,
    *,
    seed: SeedLike = 0,
) -> PseudoOutcomes:
    """Pseudo full-information outcomes of logged rows under ``config.correction``.

    Args:
        X: ``(n, d)`` features of the logged (labelled) rows.
        actions: ``(n,)`` index of the chosen model.
        propensities: ``(n,)`` probability the logging policy gave the chosen model.
        outcomes: ``{"quality": (n,), "cost": (n,), "latency": (n,)}`` observed outcomes of the
            chosen model (quality in [0, 1] and finite; latency may be NaN). Missing keys give
            NaN columns in the result.
        n_models: Number of models (columns).
        config: Correction and reward-model settings (default :class:`OffPolicyConfig`).
        seed: Seeds the cross-fitting folds and the boosters.

    Returns:
        A :class:`PseudoOutcomes` (see the module docstring for each correction's formula).

    Raises:
        OffPolicyError: shapes, propensities outside (0, 1], non-finite or out-of-range outcomes.
    """
    cfg = config or OffPolicyConfig()
    rng = as_generator(seed)
    X = np.asarray(X)
    a = np.asarray(actions, dtype=np.int64)
    ys = {t: np.asarray(v, dtype=np.float64) for t, v in outcomes.items()}
    unknown = sorted(set(ys) - set(TARGETS))
    if unknown:
        raise OffPolicyError(f"outcomes: unknown quantities {unknown}; expected some of {list(TARGETS)}")
    _check_inputs(X, a, n_models, ys)
    raw_w = 1.0 / np.asarray(propensities, dtype=np.float64)
    w = clipped_weights(propensities, cfg.clip)
    n = X.shape[0]
    rows = np.arange(n)
    fit_w = np.ones(n) if cfg.correction == "none" else w
    fold_of = np.empty(n, dtype=np.int64)
    fold_of[rng.permutation(n)] = np.arange(n) % cfg.folds
    result: dict[str, np.ndarray] = {}
    reward: dict[str, np.ndarray] = {}
    reward_info: dict[str, Any] = {}
    for t in TARGETS:
        y = ys.get(t)
        if y is None:
            result[t] = np.full((n, n_models), np.nan)
            continue
        seen = np.isfinite(y)
        if cfg.correction == "ips":
            P = np.zeros((n, n_models))
            P[rows[seen], a[seen]] = w[seen] * y[seen]
            P[~seen] = np.nan
            result[t] = P
            continue
        r_hat, info = cross_fit_reward(X, a, y, fit_w, n_models, target=t, config=cfg, rng=rng, fold_of=fold_of)
        reward[t], reward_info[t] = r_hat, info
        P = r_hat.copy()
        obs_rows, obs_a = rows[seen], a[seen]
        if cfg.correction == "dr":
            base = np.nan_to_num(r_hat[obs_rows, obs_a])
            P[obs_rows, obs_a] = base + w[seen] * (y[seen] - base)
        else:  # iw / none: the observed outcome in the chosen cell
            P[obs_rows, obs_a] = y[seen]
        result[t] = P
    q = result["quality"]
    fin = np.isfinite(q)
    counts = np.bincount(a, minlength=n_models)
    ess = []
    for j in range(n_models):
        wj = w[a == j]
        ess.append(float(wj.sum() ** 2 / (wj**2).sum()) if wj.size else 0.0)
    info_all: dict[str, Any] = {
        "correction": cfg.correction,
        "clip": float(cfg.clip),
        "folds": int(cfg.folds),
        "weights": {
            "n_clipped": int((raw_w > cfg.clip).sum()),
            "max_unclipped": float(raw_w.max()),
            "mean": float(w.mean()),
        },
        "rows_per_model": counts.tolist(),
        "ess_per_model": ess,
        "quality_cells_out_of_range": int(((q < 0) | (q > 1))[fin].sum()),
        "reward_model": reward_info,
    }
    return PseudoOutcomes(
        quality=result["quality"],
        cost=result["cost"],
        latency=result["latency"],
        reward=reward,
        weights=w,
        info=info_all,
    )


@dataclass(frozen=True)
class PseudoMatrix:
    """A log turned into a learner's training data.

    Attributes:
        X: ``(n_labeled, d)`` float32 features of the labelled rows.
        matrix: The pseudo full-information :class:`OutcomeMatrix` (task ids = request ids).
        info: The ``metadata["offpolicy"]`` record (without the logging policy versions).
    """

    X: np.ndarray
    matrix: OutcomeMatrix
    info: dict[str, Any]


def pseudo_matrix(
    data: LoggedArrays,
    config: OffPolicyConfig | None = None,
    *,
    seed: SeedLike = 0,
    catalog: ModelCatalog | None = None,
) -> PseudoMatrix:
    """The labelled rows of a log as a pseudo full-information matrix (see the module docstring).

    Args:
        data: The joined log (:class:`router_rl.logs.data.LoggedData` or the same arrays).
        config: Correction and reward-model settings.
        seed: Seeds the cross-fitting.
        catalog: Model catalog of ``data.models`` (locations, prices), attached to the matrix.

    Raises:
        OffPolicyError: no labelled row, or a problem :func:`pseudo_outcomes` names.
    """
    import polars as pl

    from router_rl.traces.matrix import OutcomeMatrix

    cfg = config or OffPolicyConfig()
    models = tuple(data.models)
    quality = np.asarray(data.quality, dtype=np.float64)
    n_rows = int(quality.shape[0])
    labeled = np.isfinite(quality)
    n_labeled = int(labeled.sum())
    if n_labeled == 0:
        raise OffPolicyError(f"the log has {n_rows} rows but none with a quality label (join the feedback first)")
    if catalog is not None and tuple(catalog.models) != models:
        raise OffPolicyError(f"catalog: models {list(catalog.models)} differ from the log's {list(models)}")
    X = np.ascontiguousarray(np.asarray(data.X)[labeled], dtype=np.float32)
    po = pseudo_outcomes(
        X,
        np.asarray(data.actions)[labeled],
        np.asarray(data.propensities)[labeled],
        {
            "quality": quality[labeled],
            "cost": np.asarray(data.cost_usd, dtype=np.float64)[labeled],
            "latency": np.asarray(data.latency_s, dtype=np.float64)[labeled],
        },
        len(models),
        cfg,
        seed=seed,
    )
    n = n_labeled
    ids = [str(r) for r in np.asarray(data.request_ids)[labeled].tolist()]
    matrix = OutcomeMatrix(
        tasks=pl.DataFrame({"task_id": ids}, schema={"task_id": pl.Utf8}),
        models=models,
        quality=po.quality,
        cost=po.cost,
        latency=po.latency,
        error=np.zeros((n, len(models)), dtype=bool),
        input_tokens=np.full((n, len(models)), np.nan),
        output_tokens=np.full((n, len(models)), np.nan),
        catalog=catalog,
    )
    fallback = np.asarray(data.fallback, dtype=bool)
    info = dict(po.info)
    info.update(
        {
            "n_rows": n_rows,
            "n_labeled": n_labeled,
            "n_unlabeled": n_rows - n_labeled,
            "n_fallback": int(fallback[labeled].sum()),
            "fallback_credit": "chosen_model",
            "encoder_fingerprint": data.encoder_fingerprint,
        }
    )
    return PseudoMatrix(X=X, matrix=matrix, info=info)


def check_encoder_matches(encoder: Any, data: LoggedArrays) -> None:
    """Refuse an encoder that did not produce the log's features.

    Raises:
        OffPolicyError: the log has no fingerprint, or another one, or another feature width.
    """
    fp = str(getattr(encoder, "fingerprint", ""))
    if data.encoder_fingerprint is None:
        raise OffPolicyError(
            "the log carries no encoder_fingerprint, so the encoder cannot be checked against its features"
        )
    if fp != data.encoder_fingerprint:
        raise OffPolicyError(
            f"the encoder has fingerprint {fp}, but the log's features come from encoder {data.encoder_fingerprint}"
        )
    width = getattr(encoder, "n_features", None)
    d = int(np.asarray(data.X).shape[1])
    if isinstance(width, int) and width != d:
        raise OffPolicyError(f"the encoder produces {width} features, but the log's feature vectors have {d}")


def fit_from_log(
    policy: RoutingPolicy,
    data: LoggedArrays,
    config: OffPolicyConfig | None = None,
    *,
    seed: SeedLike = 0,
    encoder: Any | None = None,
    catalog: ModelCatalog | None = None,
    logging_policy_versions: Mapping[str, int] | Sequence[str] | None = None,
) -> RoutingPolicy:
    """Fit ``policy`` from a decision log (partial feedback) and record how in its metadata.

    Args:
        policy: An unfitted policy over ``data.models`` (any kind that fits on a matrix).
        data: The joined log.
        config: Correction and reward-model settings (``ips`` is refused, see the module docstring).
        seed: Seeds the cross-fitting and the learner.
        encoder: The feature encoder that produced the log's features (checked by fingerprint),
            attached to the artifact so the router can serve it.
        catalog: Model catalog of ``data.models``.
        logging_policy_versions: The logging policies' versions (version -> rows, or a list).

    Returns:
        ``policy``, fitted, with ``metadata["offpolicy"]``.

    Raises:
        ConfigError: ``correction="ips"``.
        OffPolicyError: an encoder mismatch or a problem with the log.
    """
    cfg = config or OffPolicyConfig()
    if cfg.correction not in FIT_CORRECTIONS:
        raise ConfigError(
            "correction",
            f"{cfg.correction!r} cannot train a learner: every built-in learner clips quality to [0, 1], "
            f"which turns IPS pseudo-outcomes into 'unchosen models always fail'; use one of {list(FIT_CORRECTIONS)}",
        )
    policy.check_models(data.models, what="log")
    if encoder is not None:
        check_encoder_matches(encoder, data)
    rng = as_generator(seed)
    pm = pseudo_matrix(data, cfg, seed=rng, catalog=catalog)
    policy.fit(pm.X, pm.matrix, seed=int(rng.integers(0, 2**31 - 1)))
    if encoder is not None:
        policy.attach_encoder(encoder)
    if isinstance(logging_policy_versions, Mapping):
        versions: Any = {str(k): int(v) for k, v in logging_policy_versions.items()}
    elif logging_policy_versions is not None:
        versions = sorted({str(v) for v in logging_policy_versions})
    else:
        versions = None
    info = dict(pm.info, logging_policy_versions=versions, learner=policy.kind)
    info["learner_quality_range"] = "clipped to [0, 1] by the learner"
    policy.metadata["offpolicy"] = info
    return policy
