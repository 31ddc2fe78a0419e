"""Evaluate target policies on a router's own log: every estimator, paired differences, support.

(Over 500 lines on purpose: one concept, OPE of policies on a log: the input checks, every
estimator per metric and the paired differences use the same arrays and resamples.)

Input is the log as arrays (``actions``, ``propensities``, the full ``logging_probs`` the router
sampled from), one ``(n, k)`` action distribution per target policy and one reward vector per
metric. Output is a :class:`LoggedEvaluation`:

* per target and metric, every estimator's value with an interval (the estimators and interval
  methods of :mod:`router_rl.ope.estimators`, not re-implemented here: the finite-sample
  betting interval by default, :mod:`router_rl.ope.betting`; or a seeded studentised /
  percentile bootstrap, DM / switch-DR with the bias allowance);
* the **paired** difference to an incumbent per estimator: target and incumbent terms are
  columns of one matrix resampled by one :func:`~router_rl.ope.bootstrap.bootstrap_column_sums`
  call, so both sides of every resample use the same rows; a studentised difference uses the
  per-row difference of the two sides' influence values as its ``se``; a betting difference vs
  the logging policy is the paired betting interval of ``(w_i - 1) r_i``
  (:func:`~router_rl.ope.betting.betting_interval` with ``versus_logger``), vs another target
  ``[L_target - U_incumbent, U_target - L_incumbent]`` from the two sides' betting intervals at
  level ``alpha / 2`` each (a union bound: ``1 - alpha`` jointly; exactly the difference when the
  two have the same weight on every row). The incumbent is either the logging
  policy (``"logged"``: its value is the on-policy mean of the logged rewards, which is exact
  for it, with its own interval) or one of the targets;
* *exact* metrics (a per-action constant such as "is the model local"): the value of a target is
  known from its distribution alone, ``mean_i sum_a pi(a|x_i) v_a``, no estimator needed; the
  interval only reflects which contexts the log happened to contain (with ``betting``: the
  betting interval of those per-row values, bounded by ``[min v, max v]``, unit weights; with a
  bootstrap method: the percentile bootstrap of their mean);
* a :class:`~router_rl.ope.support.SupportCheck` per target (:mod:`router_rl.ope.support`).

Rows whose reward is NaN (no label yet) are excluded from that metric and counted
(``n_excluded``); the reward model is held fixed across bootstrap resamples (it is cross-fitted
once, :mod:`router_rl.ope.reward_model`): its error enters DM's and switch-DR's intervals through
the bias allowance, not through refitting.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from router_rl.ope.betting import BettingInterval, betting_interval
from router_rl.ope.bootstrap import (
    ColumnBook,
    bootstrap_column_sums,
    mean_se,
    percentile_interval,
    se_floor,
    studentized_interval,
)
from router_rl.ope.estimators import (
    BOOTSTRAP_METHODS,
    DEFAULT_INTERVAL,
    Estimate,
    LoggedFeedback,
    OffPolicyEstimator,
    RowTerms,
    WeightDiagnostics,
    add_row_terms,
    betting_hull,
    check_interval,
    default_estimators,
    interval_from_book,
    row_terms,
    weight_diagnostics,
)
from router_rl.ope.reward_model import RewardModelFit, cross_fit_reward_model
from router_rl.ope.support import DEFAULT_SUPPORT_THRESHOLD, SupportCheck, support_check
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


@dataclass(frozen=True)
class MetricData:
    """One metric as a reward vector, with its reward model.

    Attributes:
        name: Metric name (``quality``, ``cost_usd``, ``utility``...).
        rewards: ``(n,)`` reward of the logged action; NaN = unknown (row excluded, counted).
        reward_hat: ``(n, k)`` out-of-fold reward-model predictions (finite on the included rows),
            or None (then only IPS / SNIPS can run).
        reward_model: Provenance of ``reward_hat`` (:meth:`RewardModelFit.describe`), or None.
        reward_range: Known ``(lo, hi)`` of the rewards (quality: ``(0, 1)``) for the betting
            interval; None: the observed range of the included rows.
    """

    name: str
    rewards: np.ndarray
    reward_hat: np.ndarray | None = None
    reward_model: dict[str, Any] | None = None
    reward_range: tuple[float, float] | None = None

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
    reward_range: tuple[float, float] | None = None,
) -> MetricData:
    """:class:`MetricData` with a reward model cross-fitted on the rows whose reward is known.

    Args:
        name: Metric name.
        X: ``(n, d)`` context features.
        actions: ``(n,)`` logged actions.
        rewards: ``(n,)`` rewards, NaN where unknown (not used for fitting, excluded later).
        n_actions: Number of actions.
        folds, kind, params, seed: See :func:`~router_rl.ope.reward_model.cross_fit_reward_model`.
        reward_range: Known range of the rewards (:class:`MetricData`).
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
    return MetricData(name=name, rewards=r, reward_hat=q, reward_model=fit.describe(), reward_range=reward_range)


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


def _interval(
    e_label: str,
    value: float,
    boot: np.ndarray,
    alpha: float,
    n_bootstrap: int,
    n: int,
    diag: WeightDiagnostics | None = None,
) -> Estimate:
    lo, hi = percentile_interval(boot, alpha)
    return Estimate(
        estimator=e_label,
        value=float(value),
        lower=float(lo),
        upper=float(hi),
        alpha=alpha,
        n_bootstrap=n_bootstrap,
        n=n,
        diagnostics=diag,
        interval="percentile",
    )


def _estimate(
    label: str,
    value: float,
    lo: float,
    hi: float,
    method: str,
    alpha: float,
    n_bootstrap: int | None,
    n: int,
    diag: WeightDiagnostics | None = None,
) -> Estimate:
    return Estimate(
        estimator=label,
        value=float(value),
        lower=float(lo),
        upper=float(hi),
        alpha=alpha,
        n_bootstrap=n_bootstrap,
        n=n,
        diagnostics=diag,
        interval=method,
    )


def _diff_bounds(
    value: float,
    boot: np.ndarray,
    book: ColumnBook,
    key: object,
    alpha: float,
    interval: str,
) -> tuple[float, float]:
    """Interval of a paired difference whose per-row influence ``psi`` is block ``key`` of ``book``."""
    if interval == "percentile":
        lo, hi = percentile_interval(boot, alpha)
        return float(lo), float(hi)
    s, b = book.sum_of(key), book.boot_of(key)
    n = book.n
    return studentized_interval(
        value, float(mean_se(s[0], s[1], n)), boot, mean_se(b[:, 0], b[:, 1], n), alpha,
        se_floor=book.floors.get(key, 0.0),
    )


def _exact_bootstrap(boot: np.ndarray, alpha: float, n_bootstrap: int) -> Any:
    """Percentile bootstrap intervals of an exact metric (``boot``: resampled column means, paired)."""

    def interval(col: np.ndarray, j: int, i: int | None = None) -> Estimate:
        b = boot[:, j] if i is None else boot[:, j] - boot[:, i]
        return _interval(EXACT, float(col.mean()), b, alpha, n_bootstrap, col.size)

    return interval


def _exact_betting(vec: np.ndarray, alpha: float, seed: int) -> Any:
    """Betting intervals of an exact metric's per-row values (``pi(x_i) @ vec``, weights 1).

    The rows' values lie in ``[min(vec), max(vec)]`` and a difference of two policies' values in
    ``[-range, range]``: known bounds, so the interval of their mean is the finite-sample betting
    one (:func:`~router_rl.ope.betting.betting_interval` with unit weights), as for the estimated
    metrics. Every row the same value (e.g. the local share of an all-local policy): that value,
    as the bootstrap's.
    """
    lo_v, hi_v = float(vec.min()), float(vec.max())

    def interval(col: np.ndarray, j: int, i: int | None = None) -> Estimate:
        v = float(col.mean())
        if np.ptp(col) == 0 or hi_v == lo_v:
            return _estimate(EXACT, v, v, v, "betting", alpha, None, col.size)
        rr = (lo_v, hi_v) if i is None else (lo_v - hi_v, hi_v - lo_v)
        b = _cs(np.clip(col, *rr), np.ones(col.size), alpha, rr, seed)
        return _estimate(EXACT, v, min(b.lower, v), max(b.upper, v), "betting", alpha, None, col.size)

    return interval


def _cs(
    r: np.ndarray, w: np.ndarray, level: float, reward_range: tuple[float, float] | None, seed: int,
    versus_logger: bool = False,
) -> BettingInterval:
    """The betting interval of a metric's rows, in the row order seeded ``[seed, 23]`` (one per metric)."""
    return betting_interval(r, w, alpha=level, reward_range=reward_range, rng=np.random.default_rng([seed, 23]),
                            versus_logger=versus_logger)


def _betting_diff(value: float, target: BettingInterval, incumbent: BettingInterval) -> tuple[float, float, str]:
    """Union-bound interval of ``target - incumbent`` from two ``alpha / 2`` betting intervals."""
    return betting_hull(value, target.lower - incumbent.upper, target.upper - incumbent.lower)


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
    interval: str = DEFAULT_INTERVAL,
    bias_allowance: bool = True,
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
        interval: ``betting`` (default), ``studentized`` or ``percentile`` intervals
            (:func:`router_rl.ope.estimators.estimate_all`); exact metrics use the betting
            interval of their per-row values with ``betting``, the percentile bootstrap otherwise.
        bias_allowance: Widen DM / switch-DR bootstrap intervals by their estimated bias.

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
            "propensities",
            f"differs from logging_probs at the logged action ({p[i]} vs {p0[i, a[i]]})",
            index=i,
            n_bad=int(off.sum()),
        )
    if len(models) != k:
        raise OPEInputError("models", f"expected {k} names, got {len(models)}")
    alpha = check_alpha(alpha)
    interval = check_interval(interval)
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
    betting = interval not in BOOTSTRAP_METHODS
    allowance = bias_allowance and not betting

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
            warnings.append(f"{md.name}: no reward model, so only {[e.label for e in ests]} are reported")
        reward_models[md.name] = md.reward_model
        r_keep = r_all[keep]
        on_terms = RowTerms(r_keep[:, None], r_keep - r_keep.mean())
        book = ColumnBook(m)
        add_row_terms(book, ON_POLICY, on_terms)
        datas: dict[str, LoggedFeedback] = {}
        terms: dict[tuple[str, str], RowTerms] = {}
        for name, t in tg.items():
            data = LoggedFeedback.from_arrays(
                rewards=r_keep, actions=a[keep], propensities=p[keep], target=t[keep], reward_hat=q
            )
            datas[name] = data
            for e in ests:
                terms[(name, e.label)] = tt = row_terms(e, data, bias_allowance=allowance)
                add_row_terms(book, (name, e.label), tt)
        # paired differences: per-row influence of (policy - incumbent), and of the corrected terms
        for name in tg:
            if name == incumbent:
                continue
            for e in ests:
                tt = terms[(name, e.label)]
                it = on_terms if incumbent == LOGGED else terms[(incumbent, e.label)]
                dpsi = tt.psi - it.psi
                book.add((name, e.label, "dpsi"), np.column_stack([dpsi, dpsi**2]))
                book.floors[(name, e.label, "dpsi")] = se_floor(dpsi)
                if tt.corrected is not None:
                    ic = it.corrected if it.corrected is not None else it.columns[:, 0]
                    dc = (tt.corrected - tt.corrected.mean()) - (ic - ic.mean())
                    book.add((name, e.label, "dcorr"), np.column_stack([tt.corrected - ic, dc, dc**2]))
                    book.floors[(name, e.label, "dcorr")] = se_floor(dc)
        book.run(None if betting else n_bootstrap, np.random.default_rng([seed, 17]))
        cs: dict[str, tuple[BettingInterval, BettingInterval]] = {}
        paired_logged: dict[str, tuple[float, float, str]] = {}
        if betting:  # (level alpha for the estimate, alpha / 2 for a difference), one row order per metric
            rr = md.reward_range
            weights_of = {ON_POLICY: np.ones(m), **{name: d.weights() for name, d in datas.items()}}
            for name, w in weights_of.items():
                cs[name] = (_cs(r_keep, w, alpha, rr, seed), _cs(r_keep, w, alpha / 2, rr, seed))
            on_val = float(r_keep.mean())
            on_lo, on_hi, on_method = betting_hull(on_val, cs[ON_POLICY][0].lower, cs[ON_POLICY][0].upper)
            on_boot = np.empty(0)
            if incumbent == LOGGED:  # paired: the target's and the logger's terms on the same rows
                for name in datas:
                    pd_ = _cs(r_keep, weights_of[name], alpha, rr, seed, versus_logger=True)
                    paired_logged[name] = (pd_.lower, pd_.upper, "betting")
        else:
            on_val, on_lo, on_hi, on_method = interval_from_book(_OnPolicy(), book, ON_POLICY, alpha, interval)
            on_boot = book.boot_of((ON_POLICY, "cols"))[:, 0] / m
        n_boot_used = None if betting else n_bootstrap
        values: dict[tuple[str, str], tuple[float, np.ndarray]] = {}
        for name in tg:
            for e in ests:
                key = (name, e.label)
                values[key] = (
                    float(e.combine(book.sum_of((key, "cols")), m)),
                    np.empty(0) if betting else np.asarray(e.combine(book.boot_of((key, "cols")), m)),
                )
        for name, data in datas.items():
            diag = weight_diagnostics(data.weights())
            estimates = {}
            for e in ests:
                if betting:
                    v = values[(name, e.label)][0]
                    lo, hi, method = betting_hull(v, cs[name][0].lower, cs[name][0].upper)
                else:
                    v, lo, hi, method = interval_from_book(e, book, (name, e.label), alpha, interval)
                estimates[e.label] = _estimate(
                    e.label, v, lo, hi, method, alpha, n_boot_used, m, diag if e.uses_weights else None
                )
            diff = None
            if name != incumbent:
                diff = {}
                for e in ests:
                    lab = e.label
                    v, bs = values[(name, lab)]
                    iv: float
                    if incumbent == LOGGED:
                        iv, ib = float(on_val), on_boot
                    else:
                        iv, ib = values[(incumbent, lab)]
                    dv = v - iv
                    if betting:
                        if incumbent == LOGGED:
                            lo, hi, method = paired_logged[name]
                        elif np.array_equal(datas[name].weights(), datas[incumbent].weights()):
                            lo, hi, method = dv, dv, "betting"  # the same terms on every row: exactly dv
                        else:
                            lo, hi, method = _betting_diff(dv, cs[name][1], cs[incumbent][1])
                        lo, hi, method = betting_hull(dv, lo, hi)
                        diff[lab] = _estimate(lab, dv, lo, hi, method, alpha, None, m)
                        continue
                    db = bs - ib
                    lo, hi = _diff_bounds(dv, db, book, (name, lab, "dpsi"), alpha, interval)
                    method = interval
                    if (name, lab, "dcorr") in book:
                        sdc, bdc = book.sum_of((name, lab, "dcorr")), book.boot_of((name, lab, "dcorr"))
                        if interval == "percentile":
                            lo2, hi2 = (float(x) for x in percentile_interval(bdc[:, 0] / m, alpha))
                        else:
                            lo2, hi2 = studentized_interval(
                                float(sdc[0] / m), float(mean_se(sdc[1], sdc[2], m)), bdc[:, 0] / m,
                                mean_se(bdc[:, 1], bdc[:, 2], m), alpha,
                                se_floor=book.floors.get((name, lab, "dcorr"), 0.0),
                            )
                        lo, hi, method = min(lo, lo2), max(hi, hi2), f"{interval}+bias"
                    diff[lab] = _estimate(lab, dv, lo, hi, method, alpha, n_bootstrap, m)
            per[name][md.name] = MetricResult(md.name, m, n - m, False, estimates, diff)
        inc_metrics[md.name] = MetricResult(
            md.name, m, n - m, False, {ON_POLICY: _estimate(ON_POLICY, on_val, on_lo, on_hi, on_method, alpha,
                                                            n_boot_used, m)}
        )

    for mname, per_action in (exact_metrics or {}).items():
        vec = np.asarray(per_action, dtype=np.float64)
        if vec.shape != (k,) or not np.isfinite(vec).all():
            raise OPEInputError(f"exact_metrics[{mname!r}]", f"expected {k} finite per-action values, got {vec.shape}")
        reward_models[mname] = None
        names = list(tg)
        cols = np.column_stack([p0 @ vec, *[tg[nm] @ vec for nm in names]])
        inc_idx = 0 if incumbent == LOGGED else 1 + names.index(incumbent)
        if betting:
            exact_interval = _exact_betting(vec, alpha, seed)
        else:
            boot = bootstrap_column_sums(cols, n_bootstrap, np.random.default_rng([seed, 17])) / n
            exact_interval = _exact_bootstrap(boot, alpha, n_bootstrap)
        for j, nm in enumerate(names, start=1):
            est = {EXACT: exact_interval(cols[:, j], j)}
            diff_exact = None
            if nm != incumbent:
                diff_exact = {EXACT: exact_interval(cols[:, j] - cols[:, inc_idx], j, inc_idx)}
            per[nm][mname] = MetricResult(mname, n, 0, True, est, diff_exact)
        inc_metrics[mname] = MetricResult(mname, n, 0, True, {EXACT: exact_interval(cols[:, 0], 0)})

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


class _OnPolicy(OffPolicyEstimator):
    """The logging policy's on-policy mean of the logged rewards (its value, exactly unbiased)."""

    name = ON_POLICY
    uses_weights = False

    def columns(self, data: LoggedFeedback) -> np.ndarray:  # pragma: no cover - built as RowTerms directly
        return data.rewards[:, None]


def _needs_reward_model(e: OffPolicyEstimator) -> bool:
    return e.name in ("dm", "dr", "switch_dr")
