"""Evaluate target policies on a router's own log: every estimator, paired differences, support.

Input is the log as arrays (``actions``, ``propensities``, the full ``logging_probs`` the router
sampled from), one ``(n, k)`` action distribution per target policy and one reward vector per
metric. Output is a :class:`LoggedEvaluation`:

* per target and metric, every estimator's value with a seeded percentile-bootstrap interval
  (the estimators of :mod:`router_rl.ope.estimators`, not re-implemented here);
* the **paired** difference to an incumbent per estimator: target and incumbent terms are
  columns of one matrix resampled by one :func:`~router_rl.ope.bootstrap.bootstrap_column_sums`
  call, so both sides of every resample use the same rows. The incumbent is either the logging
  policy (``"logged"``: its value is the on-policy mean of the logged rewards, which is exact
  for it, with its own interval) or one of the targets;
* *exact* metrics (a per-action constant such as "is the model local"): the value of a target is
  known from its distribution alone, ``mean_i sum_a pi(a|x_i) v_a``, no estimator needed; the
  interval only reflects which contexts the log happened to contain;
* a :class:`SupportCheck` per target: its probability mass on actions whose logging propensity is
  below a threshold (where IPS / DR are biased, whatever the sample size), and its mass on models
  the logger never chose for similar tasks (same group, when groups are given).

Rows whose reward is NaN (no label yet) are excluded from that metric and counted
(``n_excluded``); the reward model is held fixed across bootstrap resamples (it is cross-fitted
once, :mod:`router_rl.ope.reward_model`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from router_rl.ope.bootstrap import bootstrap_column_sums, percentile_interval
from router_rl.ope.estimators import (
    Estimate,
    LoggedFeedback,
    OffPolicyEstimator,
    WeightDiagnostics,
    default_estimators,
    weight_diagnostics,
)
from router_rl.ope.reward_model import RewardModelFit, cross_fit_reward_model
from router_rl.ope.validation import (
    OPEInputError,
    check_actions,
    check_alpha,
    check_distribution,
    check_n_bootstrap,
    check_propensities,
)

#: Name of the incumbent that is the logging policy itself.
LOGGED = "logged"
#: Label of the logging policy's on-policy estimate (mean of the logged rewards).
ON_POLICY = "on_policy"
#: Label of an exact metric's value (computed from the distribution, no estimator).
EXACT = "exact"
#: Default propensity under which an action counts as unsupported by the logger.
DEFAULT_SUPPORT_THRESHOLD = 1e-3
#: How many of the worst contexts a support check lists.
WORST_CONTEXTS = 5


@dataclass(frozen=True)
class MetricData:
    """One metric as a reward vector, with its reward model.

    Attributes:
        name: Metric name (``quality``, ``cost_usd``, ``utility``...).
        rewards: ``(n,)`` reward of the logged action; NaN = unknown (row excluded, counted).
        reward_hat: ``(n, k)`` out-of-fold reward-model predictions (finite on the included rows),
            or None (then only IPS / SNIPS can run).
        reward_model: Provenance of ``reward_hat`` (:meth:`RewardModelFit.describe`), or None.
    """

    name: str
    rewards: np.ndarray
    reward_hat: np.ndarray | None = None
    reward_model: dict[str, Any] | None = None

    @property
    def included(self) -> np.ndarray:
        """``(n,)`` bool: rows with a known reward."""
        return np.isfinite(self.rewards)


def fit_metric(
    name: str,
    X: object,
    actions: object,
    rewards: object,
    n_actions: int,
    *,
    folds: int = 5,
    kind: str = "lightgbm",
    params: Mapping[str, Any] | None = None,
    seed: int = 0,
) -> MetricData:
    """:class:`MetricData` with a reward model cross-fitted on the rows whose reward is known.

    Args:
        name: Metric name.
        X: ``(n, d)`` context features.
        actions: ``(n,)`` logged actions.
        rewards: ``(n,)`` rewards, NaN where unknown (not used for fitting, excluded later).
        n_actions: Number of actions.
        folds, kind, params, seed: See :func:`~router_rl.ope.reward_model.cross_fit_reward_model`.
    """
    r = np.asarray(rewards, dtype=np.float64)
    x = np.asarray(X)
    if r.ndim != 1 or x.ndim != 2 or x.shape[0] != r.shape[0]:
        raise OPEInputError(name, f"expected X (n, d) and rewards (n,), got {x.shape} and {r.shape}")
    keep = np.isfinite(r)
    fit: RewardModelFit = cross_fit_reward_model(
        x[keep], np.asarray(actions)[keep], r[keep], n_actions, folds=folds, kind=kind, params=params, seed=seed
    )
    q = np.full((r.shape[0], n_actions), np.nan)
    q[keep] = fit.predictions
    return MetricData(name=name, rewards=r, reward_hat=q, reward_model=fit.describe())


@dataclass(frozen=True)
class SupportContext:
    """One context (group of similar tasks, or one row) of a support check.

    Attributes:
        context: Group key (``category=...,complexity=...``) or ``row <i>``.
        n_rows: Logged rows in it.
        unsupported_mass: Mean target mass on actions with logging propensity below the threshold.
        never_tried_mass: Mean target mass on models the logger never chose in this context.
        never_tried: Those models (with target mass > 0).
    """

    context: str
    n_rows: int
    unsupported_mass: float
    never_tried_mass: float
    never_tried: tuple[str, ...]


@dataclass(frozen=True)
class SupportCheck:
    """Where a target policy leaves the logging policy's support.

    Attributes:
        threshold: Propensity under which an action counts as unsupported.
        unsupported_mass: ``mean_i sum_a pi(a|x_i) [pi_0(a|x_i) < threshold]``: the share of the
            target's decisions the log cannot speak for; > 0 biases IPS / SNIPS / DR.
        rows_unsupported: Rows where that mass is > 0.
        never_tried_mass: Mean target mass on models never chosen for similar tasks (the row's
            group, or the row itself when no groups are given).
        group_by: The grouping used (empty: per row).
        worst: Up to :data:`WORST_CONTEXTS` contexts with the largest mass, largest first.
        violated: ``unsupported_mass > 0``.
    """

    threshold: float
    unsupported_mass: float
    rows_unsupported: int
    never_tried_mass: float
    group_by: tuple[str, ...]
    worst: list[SupportContext]
    violated: bool

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        d = asdict(self)
        d["group_by"] = list(self.group_by)
        for w in d["worst"]:
            w["never_tried"] = list(w["never_tried"])
        return d


def support_check(
    target: object,
    logging_probs: object,
    actions: object,
    models: Sequence[str],
    *,
    groups: Sequence[str] | np.ndarray | None = None,
    group_by: Sequence[str] = (),
    threshold: float = DEFAULT_SUPPORT_THRESHOLD,
    row_labels: Sequence[str] | None = None,
) -> SupportCheck:
    """Target mass outside the logger's support, overall and in the worst contexts.

    Args:
        target: ``(n, k)`` target distribution.
        logging_probs: ``(n, k)`` logging distribution of every row.
        actions: ``(n,)`` logged actions.
        models: ``k`` model names (for the report).
        groups: ``(n,)`` group key per row ("similar tasks"); None = each row is its own context.
        group_by: Names of the columns the keys were built from (for the report).
        threshold: Propensity under which an action counts as unsupported (>= 0; an exact 0 is
            always unsupported).
        row_labels: ``(n,)`` labels of rows in per-row contexts (request ids); default ``row i``.
    """
    tgt = check_distribution(target, name="target")
    n, k = tgt.shape
    p0 = check_distribution(logging_probs, n=n, n_actions=k, name="logging_probs")
    a = check_actions(actions, k, n=n)
    if len(models) != k:
        raise OPEInputError("models", f"expected {k} names, got {len(models)}")
    if not (isinstance(threshold, int | float) and 0 <= threshold < 1):
        raise OPEInputError("threshold", f"expected a number in [0, 1), got {threshold!r}")
    unsupported = (p0 < threshold) | (p0 <= 0)
    row_mass = np.where(unsupported, tgt, 0.0).sum(axis=1)
    if groups is None:
        tried = ~unsupported  # per row, the logger's own distribution is what it "tried"
        keys = np.arange(n)
        labels = [f"row {i}" for i in range(n)] if row_labels is None else [str(s) for s in row_labels]
        never_mass_rows = row_mass
        group_tried = tried
        inverse = keys
        uniq_labels = labels
    else:
        g = np.asarray(groups).astype(str)
        if g.shape != (n,):
            raise OPEInputError("groups", f"expected {n} group keys, got shape {g.shape}")
        uniq, inverse = np.unique(g, return_inverse=True)
        group_tried = np.zeros((uniq.size, k), dtype=bool)
        group_tried[inverse, a] = True
        never_mass_rows = np.where(group_tried[inverse], 0.0, tgt).sum(axis=1)
        uniq_labels = [str(u) for u in uniq]
    n_ctx = len(uniq_labels)
    cnt = np.bincount(inverse, minlength=n_ctx)
    ctx_unsup = np.bincount(inverse, weights=row_mass, minlength=n_ctx) / np.maximum(cnt, 1)
    ctx_never = np.bincount(inverse, weights=never_mass_rows, minlength=n_ctx) / np.maximum(cnt, 1)
    score = np.maximum(ctx_unsup, ctx_never)
    order = [int(i) for i in np.lexsort((np.arange(n_ctx), -score)) if score[i] > 0][:WORST_CONTEXTS]
    worst = []
    for i in order:
        rows = np.flatnonzero(inverse == i)
        mass_per_model = tgt[rows].sum(axis=0)
        never = tuple(models[j] for j in range(k) if not group_tried[i, j] and mass_per_model[j] > 0)
        worst.append(
            SupportContext(
                context=uniq_labels[i],
                n_rows=int(cnt[i]),
                unsupported_mass=float(ctx_unsup[i]),
                never_tried_mass=float(ctx_never[i]),
                never_tried=never,
            )
        )
    mass = float(row_mass.mean())
    return SupportCheck(
        threshold=float(threshold),
        unsupported_mass=mass,
        rows_unsupported=int((row_mass > 0).sum()),
        never_tried_mass=float(never_mass_rows.mean()),
        group_by=tuple(group_by) if groups is not None else (),
        worst=worst,
        violated=mass > 0,
    )


@dataclass(frozen=True)
class MetricResult:
    """One metric of one policy.

    Attributes:
        metric: Metric name.
        n: Rows used.
        n_excluded: Rows without a known reward (excluded).
        exact: True when the value is computed from the distribution (no estimator).
        estimates: ``estimator -> Estimate`` (``{"exact": ...}`` for exact metrics).
        difference: ``estimator -> Estimate`` of ``policy - incumbent`` on the same resamples
            (None for the incumbent itself).
    """

    metric: str
    n: int
    n_excluded: int
    exact: bool
    estimates: dict[str, Estimate]
    difference: dict[str, Estimate] | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return {
            "metric": self.metric,
            "n": self.n,
            "n_excluded": self.n_excluded,
            "exact": self.exact,
            "estimates": {k: v.to_dict() for k, v in self.estimates.items()},
            "difference": None if self.difference is None else {k: v.to_dict() for k, v in self.difference.items()},
        }


@dataclass(frozen=True)
class PolicyResult:
    """Everything measured for one target policy (or the logging incumbent).

    Attributes:
        name: Display name.
        metrics: ``metric -> MetricResult``.
        weights: Importance-weight diagnostics on every row (ESS, max weight); None for the
            logging policy (its weights are 1).
        support: Support check; None for the logging policy.
    """

    name: str
    metrics: dict[str, MetricResult]
    weights: WeightDiagnostics | None
    support: SupportCheck | None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return {
            "name": self.name,
            "metrics": {k: v.to_dict() for k, v in self.metrics.items()},
            "weights": None if self.weights is None else self.weights.to_dict(),
            "support": None if self.support is None else self.support.to_dict(),
        }


@dataclass(frozen=True)
class LoggedEvaluation:
    """Result of :func:`evaluate_logged`.

    Attributes:
        n_rows: Logged rows.
        models: Action names (column order).
        incumbent: ``"logged"`` or the name of the target used as incumbent.
        incumbent_result: The logging policy's own values when ``incumbent == "logged"``.
        policies: ``name -> PolicyResult`` in the order given.
        estimators: Estimator labels used.
        reward_models: ``metric -> reward-model provenance`` (None: no model; exact metrics).
        alpha, n_bootstrap, seed: Interval settings.
    """

    n_rows: int
    models: tuple[str, ...]
    incumbent: str
    incumbent_result: PolicyResult | None
    policies: dict[str, PolicyResult]
    estimators: tuple[str, ...]
    reward_models: dict[str, dict[str, Any] | None]
    alpha: float
    n_bootstrap: int
    seed: int
    warnings: list[str] = field(default_factory=list)


def _interval(e_label: str, value: float, boot: np.ndarray, alpha: float, n_bootstrap: int, n: int,
              diag: WeightDiagnostics | None = None) -> Estimate:
    lo, hi = percentile_interval(boot, alpha)
    return Estimate(
        estimator=e_label, value=float(value), lower=float(lo), upper=float(hi), alpha=alpha,
        n_bootstrap=n_bootstrap, n=n, diagnostics=diag,
    )


def evaluate_logged(
    *,
    actions: object,
    propensities: object,
    logging_probs: object,
    targets: Mapping[str, np.ndarray],
    metrics: Sequence[MetricData],
    models: Sequence[str],
    exact_metrics: Mapping[str, object] | None = None,
    incumbent: str = LOGGED,
    estimators: Sequence[OffPolicyEstimator] | None = None,
    n_bootstrap: int = 1000,
    alpha: float = 0.05,
    seed: int = 0,
    groups: Sequence[str] | np.ndarray | None = None,
    group_by: Sequence[str] = (),
    support_threshold: float = DEFAULT_SUPPORT_THRESHOLD,
    row_labels: Sequence[str] | None = None,
) -> LoggedEvaluation:
    """Every estimator for every target and metric, paired differences vs the incumbent, support.

    Args:
        actions: ``(n,)`` logged actions.
        propensities: ``(n,)`` logging probability of each logged action.
        logging_probs: ``(n, k)`` full logging distribution (the support check and exact metrics
            of the logging policy need it).
        targets: ``name -> (n, k)`` target distributions.
        metrics: Estimated metrics (:class:`MetricData`; :func:`fit_metric` builds them).
        models: ``k`` action names.
        exact_metrics: ``name -> (k,)`` per-action value (e.g. ``is local``), computed exactly.
        incumbent: ``"logged"`` (the logging policy) or a key of ``targets``.
        estimators: Default: DM, IPS, SNIPS, DR, switch-DR (IPS / SNIPS only for a metric without
            a reward model).
        n_bootstrap: Resamples (shared by every target of a metric: paired).
        alpha: Interval level.
        seed: Bootstrap seed.
        groups, group_by, support_threshold, row_labels: See :func:`support_check`.

    Raises:
        OPEInputError: malformed arrays, an unknown incumbent, or a propensity that disagrees
            with ``logging_probs``.
    """
    p0 = check_distribution(logging_probs, name="logging_probs")
    n, k = p0.shape
    a = check_actions(actions, k, n=n)
    p = check_propensities(propensities, n=n)
    rows = np.arange(n)
    off = np.abs(p0[rows, a] - p) > 1e-6
    if off.any():
        i = int(np.flatnonzero(off)[0])
        raise OPEInputError(
            "propensities", f"differs from logging_probs at the logged action ({p[i]} vs {p0[i, a[i]]})",
            index=i, n_bad=int(off.sum()),
        )
    if len(models) != k:
        raise OPEInputError("models", f"expected {k} names, got {len(models)}")
    alpha = check_alpha(alpha)
    n_bootstrap = check_n_bootstrap(n_bootstrap)
    tg = {name: check_distribution(t, n=n, n_actions=k, name=f"targets[{name!r}]") for name, t in targets.items()}
    if not tg:
        raise OPEInputError("targets", "expected at least one target policy")
    if incumbent != LOGGED and incumbent not in tg:
        raise OPEInputError("incumbent", f"expected {LOGGED!r} or one of {list(tg)}, got {incumbent!r}")
    names_seen = [m.name for m in metrics] + list(exact_metrics or {})
    if len(set(names_seen)) != len(names_seen):
        raise OPEInputError("metrics", f"duplicate metric names {names_seen}")
    base = list(estimators) if estimators is not None else default_estimators()
    labels = tuple(e.label for e in base)

    per: dict[str, dict[str, MetricResult]] = {name: {} for name in tg}
    inc_metrics: dict[str, MetricResult] = {}
    reward_models: dict[str, dict[str, Any] | None] = {}
    warnings: list[str] = []

    for md in metrics:
        r_all = np.asarray(md.rewards, dtype=np.float64)
        if r_all.shape != (n,):
            raise OPEInputError(f"metrics[{md.name!r}].rewards", f"expected shape ({n},), got {r_all.shape}")
        keep = md.included
        m = int(keep.sum())
        if m == 0:
            raise OPEInputError(f"metrics[{md.name!r}].rewards", "no row has a known reward")
        q = None
        if md.reward_hat is not None:
            q = np.asarray(md.reward_hat, dtype=np.float64)[keep]
        ests = base if q is not None else [e for e in base if not _needs_reward_model(e)]
        if len(ests) < len(base):
            warnings.append(
                f"{md.name}: no reward model, so only {[e.label for e in ests]} are reported"
            )
        reward_models[md.name] = md.reward_model
        blocks: list[np.ndarray] = [r_all[keep][:, None]]  # column 0: the on-policy mean
        spans: dict[tuple[str, str], tuple[int, int]] = {}
        col = 1
        datas: dict[str, LoggedFeedback] = {}
        for name, t in tg.items():
            data = LoggedFeedback.from_arrays(
                rewards=r_all[keep], actions=a[keep], propensities=p[keep], target=t[keep], reward_hat=q
            )
            datas[name] = data
            for e in ests:
                b = np.asarray(e.columns(data), dtype=np.float64)
                blocks.append(b)
                spans[(name, e.label)] = (col, col + b.shape[1])
                col += b.shape[1]
        cols = np.concatenate(blocks, axis=1)
        sums = cols.sum(axis=0)
        boot = bootstrap_column_sums(cols, n_bootstrap, np.random.default_rng([seed, 17]))
        on_val, on_boot = sums[0] / m, boot[:, 0] / m
        values: dict[tuple[str, str], tuple[float, np.ndarray]] = {}
        for (name, lab), (lo, hi) in spans.items():
            e = next(x for x in ests if x.label == lab)
            values[(name, lab)] = (float(e.combine(sums[lo:hi], m)), np.asarray(e.combine(boot[:, lo:hi], m)))
        for name, data in datas.items():
            diag = weight_diagnostics(data.weights())
            estimates = {
                lab: _interval(lab, *values[(name, lab)], alpha, n_bootstrap, m,
                               diag if next(x for x in ests if x.label == lab).uses_weights else None)
                for lab in (e.label for e in ests)
            }
            diff = None
            if name != incumbent:
                diff = {}
                for lab in (e.label for e in ests):
                    v, bs = values[(name, lab)]
                    if incumbent == LOGGED:
                        iv, ib = float(on_val), on_boot
                    else:
                        iv, ib = values[(incumbent, lab)]
                    diff[lab] = _interval(lab, v - iv, bs - ib, alpha, n_bootstrap, m)
            per[name][md.name] = MetricResult(md.name, m, n - m, False, estimates, diff)
        inc_metrics[md.name] = MetricResult(
            md.name, m, n - m, False, {ON_POLICY: _interval(ON_POLICY, float(on_val), on_boot, alpha, n_bootstrap, m)}
        )

    for mname, v in (exact_metrics or {}).items():
        vec = np.asarray(v, dtype=np.float64)
        if vec.shape != (k,) or not np.isfinite(vec).all():
            raise OPEInputError(f"exact_metrics[{mname!r}]", f"expected {k} finite per-action values, got {vec.shape}")
        reward_models[mname] = None
        names = list(tg)
        cols = np.column_stack([p0 @ vec, *[tg[nm] @ vec for nm in names]])
        sums = cols.sum(axis=0) / n
        boot = bootstrap_column_sums(cols, n_bootstrap, np.random.default_rng([seed, 17])) / n
        inc_idx = 0 if incumbent == LOGGED else 1 + names.index(incumbent)
        for j, nm in enumerate(names, start=1):
            est = {EXACT: _interval(EXACT, sums[j], boot[:, j], alpha, n_bootstrap, n)}
            diff = None
            if nm != incumbent:
                diff = {EXACT: _interval(EXACT, sums[j] - sums[inc_idx], boot[:, j] - boot[:, inc_idx], alpha,
                                         n_bootstrap, n)}
            per[nm][mname] = MetricResult(mname, n, 0, True, est, diff)
        inc_metrics[mname] = MetricResult(
            mname, n, 0, True, {EXACT: _interval(EXACT, sums[0], boot[:, 0], alpha, n_bootstrap, n)}
        )

    policies: dict[str, PolicyResult] = {}
    for name, t in tg.items():
        sc = support_check(
            t, p0, a, models, groups=groups, group_by=group_by, threshold=support_threshold, row_labels=row_labels
        )
        if sc.violated:
            warnings.append(
                f"{name}: {100 * sc.unsupported_mass:.2f}% of its probability mass is on models the logger gives "
                f"propensity < {support_threshold:g} ({sc.rows_unsupported} rows): IPS/SNIPS/DR are biased there"
            )
        policies[name] = PolicyResult(name, per[name], weight_diagnostics(t[rows, a] / p), sc)
    inc = PolicyResult(LOGGED, inc_metrics, None, None) if incumbent == LOGGED else None
    return LoggedEvaluation(
        n_rows=n,
        models=tuple(models),
        incumbent=incumbent,
        incumbent_result=inc,
        policies=policies,
        estimators=labels,
        reward_models=reward_models,
        alpha=alpha,
        n_bootstrap=n_bootstrap,
        seed=int(seed),
        warnings=warnings,
    )


def _needs_reward_model(e: OffPolicyEstimator) -> bool:
    return e.name in ("dm", "dr", "switch_dr")
