"""Policy-value estimators over plain numpy arrays (Open Bandit Pipeline style).

(Over 500 lines on purpose: the estimator family DM / IPS / SNIPS / DR / switch-DR shares one
interface, one bootstrap and one interval machinery; one file keeps them comparable line by line.)

Notation: ``n`` logged decisions ``(x_i, a_i, r_i)`` with logging propensity
``p_i = pi_0(a_i | x_i)``; the target policy's action distribution ``pi(a | x_i)`` is an
``(n, n_actions)`` array; ``q_hat(x_i, a)`` an optional reward-model prediction ``(n, n_actions)``.
Importance weight ``w_i = pi(a_i | x_i) / p_i``.

=============  ===========================================================================
estimator      value
=============  ===========================================================================
``replay``     full information: ``mean_i sum_a pi(a|x_i) r(x_i, a)`` (exact, no logging)
``dm``         ``mean_i sum_a pi(a|x_i) q_hat(x_i, a)``
``ips``        ``mean_i w_i r_i``
``snips``      ``sum_i w_i r_i / sum_i w_i``
``dr``         ``mean_i [sum_a pi(a|x_i) q_hat(x_i, a) + w_i (r_i - q_hat(x_i, a_i))]``
``switch_dr``  like ``dr`` but the correction term is kept only where ``w_i <= tau``
               (Open Bandit Pipeline's ``SwitchDoublyRobust``; ``tau=inf`` is DR, ``tau=0`` DM)
=============  ===========================================================================

Every estimator is a mean (or ratio of means) of per-row columns, so bootstrap intervals come
from the vectorised bootstrap in :mod:`router_rl.ope.bootstrap`. Three interval methods
(``interval=``):

* ``betting`` (default since 2026-12-01): the finite-sample betting interval of the target's value
  (:mod:`router_rl.ope.betting`; Waudby-Smith & Ramdas 2024, Karampatziakis, Mineiro & Ramdas
  2021), valid at any ESS for rewards in a known range; it does not use the reward model, so it is
  the same set for every estimator, reported as its hull with the estimator's point estimate.
  No resamples (``n_bootstrap`` of the estimate is None);
* ``studentized``: bootstrap-t on the estimator's influence values (``x_i - mean`` for
  the means; the delta-method ``w_i (r_i - V) / mean(w)`` for SNIPS), which keeps its coverage
  where a few large importance weights make the estimate skewed, with a floor on the standard
  errors (:func:`router_rl.ope.bootstrap.se_floor`);
* ``percentile``: the plain percentile bootstrap (the method before 2026-12-01).

and a **bias allowance** (``bias_allowance=True``, default) for the estimators that do not
correct the reward model's error everywhere (DM; switch-DR on rows with ``w_i > tau``): their
bias is estimated by the correction they drop, ``mean_i w_i (r_i - q_hat(x_i, a_i))`` (held-out
residuals of the cross-fitted reward model on the logged actions, importance weighted), and the
reported interval is the hull of the estimator's own interval and the interval of the
estimator plus that bias estimate (which is DR); bootstrap methods only (a betting interval
does not depend on the reward model). Without it the interval only reflects the
resampling of rows and ignores the reward model's error (docs/evaluation.md, coverage table).
The point estimates never depend on these options.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any, ClassVar

import numpy as np

from router_rl.core.seeding import SeedLike, as_generator
from router_rl.ope.betting import betting_interval
from router_rl.ope.bootstrap import (
    ColumnBook,
    bootstrap_column_sums,
    mean_se,
    percentile_interval,
    se_floor,
    studentized_interval,
)
from router_rl.ope.validation import (
    OPEInputError,
    as_float_vector,
    as_nonnegative_vector,
    check_actions,
    check_alpha,
    check_distribution,
    check_matrix,
    check_n_bootstrap,
    check_propensities,
)

#: Interval methods of :func:`estimate_all` (see the module docstring).
INTERVAL_METHODS: tuple[str, ...] = ("betting", "studentized", "percentile")
#: The interval method that meets issue #15's coverage bar (docs/evaluation.md).
DEFAULT_INTERVAL = "betting"
#: Interval methods that resample rows (the others need no ``n_bootstrap``).
BOOTSTRAP_METHODS: tuple[str, ...] = ("studentized", "percentile")
#: Candidate thresholds of the tuned switch-DR (``SwitchDR(tau_grid=...)``).
DEFAULT_TAU_GRID: tuple[float, ...] = (1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0, 1000.0, math.inf)


def check_interval(interval: str) -> str:
    """``interval`` if it is one of :data:`INTERVAL_METHODS`, else a clear error."""
    if interval not in INTERVAL_METHODS:
        raise OPEInputError("interval", f"expected one of {list(INTERVAL_METHODS)}, got {interval!r}")
    return interval


@dataclass(frozen=True)
class WeightDiagnostics:
    """Effective-sample-size diagnostics of importance weights.

    Attributes:
        n: Number of logged decisions.
        ess: Kish effective sample size ``(sum w)^2 / sum w^2`` (``n`` for constant weights).
        ess_ratio: ``ess / n`` in ``(0, 1]``; small values mean a few rows dominate.
        max_weight: Largest importance weight.
        mean_weight: Mean weight (close to 1 when the logging propensities are right).
    """

    n: int
    ess: float
    ess_ratio: float
    max_weight: float
    mean_weight: float

    def to_dict(self) -> dict[str, float]:
        """JSON-ready dict (field names are stable, see docs/evaluation.md)."""
        return asdict(self)


def weight_diagnostics(weights: np.ndarray) -> WeightDiagnostics:
    """Kish ESS, max and mean of importance ``weights`` (``(n,)``, finite, >= 0)."""
    w = as_nonnegative_vector(weights, "weights")
    if w.size == 0:
        raise OPEInputError("weights", "expected at least one weight")
    s2 = float(np.dot(w, w))
    ess = float(w.sum() ** 2 / s2) if s2 > 0 else 0.0
    return WeightDiagnostics(
        n=int(w.size), ess=ess, ess_ratio=ess / w.size, max_weight=float(w.max()), mean_weight=float(w.mean())
    )


@dataclass(frozen=True)
class Estimate:
    """A policy-value estimate with its bootstrap interval and weight diagnostics.

    Attributes:
        estimator: Registry name (``"ips"``, ``"dr"``...).
        value: Point estimate.
        lower: Lower bound of the ``1 - alpha`` percentile bootstrap interval (None: no interval).
        upper: Upper bound.
        alpha: Interval level (0.05 = 95%).
        n_bootstrap: Number of resamples used.
        n: Number of rows.
        diagnostics: Importance-weight diagnostics (None for ``replay`` / ``dm``).
        interval: How the interval was made: ``betting``, ``percentile``, ``studentized``, the
            last two with ``+bias`` (bias allowance, see the module docstring); None without an
            interval.
    """

    estimator: str
    value: float
    lower: float | None = None
    upper: float | None = None
    alpha: float | None = None
    n_bootstrap: int | None = None
    n: int = 0
    diagnostics: WeightDiagnostics | None = None
    interval: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict with stable field names (docs/evaluation.md)."""
        d = asdict(self)
        d["diagnostics"] = self.diagnostics.to_dict() if self.diagnostics is not None else None
        return d


@dataclass(frozen=True)
class LoggedFeedback:
    """Validated logged bandit feedback plus the target distribution to evaluate.

    Build it with :meth:`from_arrays`, which checks every array and raises
    :class:`~router_rl.ope.validation.OPEInputError` naming the argument and first bad index.
    """

    rewards: np.ndarray
    actions: np.ndarray
    propensities: np.ndarray
    target: np.ndarray
    reward_hat: np.ndarray | None = None

    @classmethod
    def from_arrays(
        cls,
        *,
        rewards: object,
        actions: object,
        propensities: object,
        target: object,
        reward_hat: object = None,
    ) -> LoggedFeedback:
        """Validate and bundle the arrays.

        Args:
            rewards: ``(n,)`` observed rewards of the logged actions.
            actions: ``(n,)`` logged action indices.
            propensities: ``(n,)`` logging probabilities of the logged actions, in (0, 1].
            target: ``(n, n_actions)`` target-policy action distribution (rows sum to 1).
            reward_hat: Optional ``(n, n_actions)`` reward-model predictions.
        """
        tgt = check_distribution(target, name="target")
        n, k = tgt.shape
        if n == 0:
            raise OPEInputError("target", "expected at least one row")
        r = as_float_vector(rewards, "rewards", n=n)
        a = check_actions(actions, k, n=n)
        p = check_propensities(propensities, n=n)
        q = None if reward_hat is None else check_matrix(reward_hat, n=n, n_actions=k, name="reward_hat")
        return cls(rewards=r, actions=a, propensities=p, target=tgt, reward_hat=q)

    @property
    def n(self) -> int:
        """Number of logged decisions."""
        return int(self.rewards.shape[0])

    @property
    def n_actions(self) -> int:
        """Number of actions (models)."""
        return int(self.target.shape[1])

    def weights(self) -> np.ndarray:
        """Importance weights ``pi(a_i|x_i) / p_i``."""
        return self.target[np.arange(self.n), self.actions] / self.propensities

    def require_reward_hat(self, estimator: str) -> np.ndarray:
        """The reward model, or a clear error that ``estimator`` needs one."""
        if self.reward_hat is None:
            raise OPEInputError("reward_hat", f"estimator {estimator!r} needs reward-model predictions; got None")
        return self.reward_hat

    def dm_term(self, estimator: str) -> np.ndarray:
        """``sum_a pi(a|x_i) q_hat(x_i, a)`` per row."""
        q = self.require_reward_hat(estimator)
        return np.einsum("ij,ij->i", self.target, q)

    def factual_hat(self, estimator: str) -> np.ndarray:
        """``q_hat(x_i, a_i)`` per row."""
        q = self.require_reward_hat(estimator)
        return q[np.arange(self.n), self.actions]


class OffPolicyEstimator(ABC):
    """Base class: an estimator is a function of per-row column sums.

    Subclasses implement :meth:`columns` (``(n, c)`` per-row terms) and :meth:`combine`
    (vectorised map from ``(..., c)`` sums and ``n`` to values).
    """

    name: ClassVar[str] = "base"
    uses_weights: ClassVar[bool] = True

    @abstractmethod
    def columns(self, data: LoggedFeedback) -> np.ndarray:
        """Per-row terms whose column sums determine the estimate."""

    def combine(self, sums: np.ndarray, n: int) -> np.ndarray:
        """Estimate(s) from column sums (default: the mean of the single column)."""
        return np.asarray(sums)[..., 0] / n

    def influence(self, data: LoggedFeedback, columns: np.ndarray) -> np.ndarray:
        """``(n,)`` influence values at the full-sample estimate (default: ``x_i - mean(x)``).

        Their standard deviation over ``sqrt(n)`` is the estimate's standard error (the
        studentised interval's ``se``).
        """
        x = np.asarray(columns)[:, 0]
        return x - x.mean()

    def se_scale(self, boot_sums: np.ndarray, sums: np.ndarray) -> np.ndarray | None:
        """Per-resample factor on the influence-based ``se*`` (None: 1; SNIPS: its normaliser)."""
        return None

    def bias_term(self, data: LoggedFeedback) -> np.ndarray | None:
        """``(n,)`` per-row estimate of the estimator's bias (None: the estimator corrects it).

        DM and switch-DR drop (part of) the importance-weighted residual ``w_i (r_i - q_hat)``;
        that dropped part is their bias estimate (used by the bias allowance).
        """
        return None

    # --- public API --------------------------------------------------------------------------
    def estimate(
        self,
        *,
        rewards: object,
        actions: object,
        propensities: object,
        target: object,
        reward_hat: object = None,
    ) -> float:
        """Point estimate of the target policy's value (see the module table)."""
        data = LoggedFeedback.from_arrays(
            rewards=rewards, actions=actions, propensities=propensities, target=target, reward_hat=reward_hat
        )
        return self.estimate_data(data)

    def estimate_data(self, data: LoggedFeedback) -> float:
        """Like :meth:`estimate` on already validated data."""
        return float(self.combine(self.columns(data).sum(axis=0), data.n))

    def estimate_interval(
        self,
        *,
        rewards: object,
        actions: object,
        propensities: object,
        target: object,
        reward_hat: object = None,
        n_bootstrap: int = 1000,
        alpha: float = 0.05,
        rng: SeedLike = 0,
        interval: str = DEFAULT_INTERVAL,
        bias_allowance: bool = True,
        reward_range: tuple[float, float] | None = None,
    ) -> Estimate:
        """Point estimate, seeded bootstrap interval and weight diagnostics.

        Args:
            rewards, actions, propensities, target, reward_hat: As in :meth:`estimate`.
            n_bootstrap: Number of resamples of the rows.
            alpha: ``0.05`` gives a 95% interval.
            rng: Seed or generator; the same seed gives the same interval.
            interval, bias_allowance, reward_range: See :func:`estimate_all`.
        """
        data = LoggedFeedback.from_arrays(
            rewards=rewards, actions=actions, propensities=propensities, target=target, reward_hat=reward_hat
        )
        return estimate_all(
            [self], data, n_bootstrap=n_bootstrap, alpha=alpha, rng=rng, interval=interval,
            bias_allowance=bias_allowance, reward_range=reward_range,
        )[self.label]

    def diagnostics(self, *, actions: object, propensities: object, target: object) -> WeightDiagnostics:
        """Importance-weight diagnostics (Kish ESS, max weight) of this target vs the log."""
        tgt = check_distribution(target, name="target")
        n, k = tgt.shape
        a = check_actions(actions, k, n=n)
        p = check_propensities(propensities, n=n)
        return weight_diagnostics(tgt[np.arange(n), a] / p)

    @property
    def label(self) -> str:
        """Name used as key in results (includes hyper-parameters when any)."""
        return self.name


@dataclass(frozen=True)
class DirectMethod(OffPolicyEstimator):
    """Direct method: average the reward model under the target distribution."""

    name: ClassVar[str] = "dm"
    uses_weights: ClassVar[bool] = False

    def columns(self, data: LoggedFeedback) -> np.ndarray:
        """``sum_a pi(a|x) q_hat(x, a)`` per row."""
        return data.dm_term(self.name)[:, None]

    def bias_term(self, data: LoggedFeedback) -> np.ndarray:
        """``w_i (r_i - q_hat(x_i, a_i))``: DM + this is DR."""
        return data.weights() * (data.rewards - data.factual_hat(self.name))


@dataclass(frozen=True)
class IPS(OffPolicyEstimator):
    """Inverse propensity scoring: ``mean(w * r)`` (unbiased, high variance)."""

    name: ClassVar[str] = "ips"

    def columns(self, data: LoggedFeedback) -> np.ndarray:
        """``w_i r_i`` per row."""
        return (data.weights() * data.rewards)[:, None]


@dataclass(frozen=True)
class SNIPS(OffPolicyEstimator):
    """Self-normalised IPS: ``sum(w r) / sum(w)``; always within ``[min r, max r]``."""

    name: ClassVar[str] = "snips"

    def columns(self, data: LoggedFeedback) -> np.ndarray:
        """``(w_i r_i, w_i)`` per row."""
        w = data.weights()
        return np.stack([w * data.rewards, w], axis=1)

    def combine(self, sums: np.ndarray, n: int) -> np.ndarray:
        """Ratio of the two sums (NaN when every weight is 0)."""
        s = np.asarray(sums)
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(s[..., 1] > 0, s[..., 0] / np.where(s[..., 1] > 0, s[..., 1], 1.0), np.nan)

    def influence(self, data: LoggedFeedback, columns: np.ndarray) -> np.ndarray:
        """Delta method: ``w_i (r_i - V) / mean(w)`` (0 when every weight is 0)."""
        c = np.asarray(columns)
        sw = c[:, 1].sum()
        if not sw > 0:
            return np.zeros(c.shape[0])
        v = c[:, 0].sum() / sw
        return (c[:, 0] - v * c[:, 1]) / (sw / c.shape[0])

    def se_scale(self, boot_sums: np.ndarray, sums: np.ndarray) -> np.ndarray:
        """``mean(w) / mean*(w)``: each resample's own normaliser."""
        b = np.asarray(boot_sums)[..., 1]
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(b > 0, float(np.asarray(sums)[1]) / np.where(b > 0, b, 1.0), np.nan)


@dataclass(frozen=True)
class DoublyRobust(OffPolicyEstimator):
    """Doubly robust: DM plus an importance-weighted correction of the reward model's error."""

    name: ClassVar[str] = "dr"

    def columns(self, data: LoggedFeedback) -> np.ndarray:
        """``dm_i + w_i (r_i - q_hat(x_i, a_i))`` per row."""
        return (data.dm_term(self.name) + data.weights() * (data.rewards - data.factual_hat(self.name)))[:, None]


@dataclass(frozen=True)
class SwitchDR(OffPolicyEstimator):
    """Switch doubly robust: the DR correction is dropped for rows whose weight exceeds ``tau``.

    Attributes:
        tau: Weight threshold, ``>= 0`` (``inf`` gives DR, ``0`` gives DM).
        tau_grid: When given, ``tau`` is ignored and chosen on the data from these candidates by
            estimated MSE, the criterion of Open Bandit Pipeline's ``SwitchDoublyRobustTuning``
            (Su et al. 2020): ``var(per-row terms) / n + B(tau)^2`` with the high-probability
            bias bound ``B = |mean((w - w 1{w <= tau}) (r - q_hat))| + sqrt(2 mean(w^2)
            log(2/delta) / n) + 2 max(w) log(2/delta) / (3 n)``, ``delta = 0.05``. Label
            ``switch_dr(tuned)``; :meth:`chosen_tau` says which threshold was used.
    """

    tau: float = 10.0
    tau_grid: tuple[float, ...] | None = None
    name: ClassVar[str] = "switch_dr"

    def __post_init__(self) -> None:
        if not (isinstance(self.tau, int | float) and not math.isnan(self.tau) and self.tau >= 0):
            raise OPEInputError("tau", f"expected a number >= 0, got {self.tau!r}")
        if self.tau_grid is not None:
            g = tuple(self.tau_grid)
            if not g or any(not isinstance(t, int | float) or math.isnan(t) or t < 0 for t in g):
                raise OPEInputError("tau_grid", f"expected a non-empty sequence of numbers >= 0, got {g!r}")
            object.__setattr__(self, "tau_grid", tuple(float(t) for t in g))

    def chosen_tau(self, data: LoggedFeedback) -> float:
        """``tau``, or the grid value of smallest estimated MSE on ``data`` (first on ties)."""
        if self.tau_grid is None:
            return float(self.tau)
        w = data.weights()
        resid = data.rewards - data.factual_hat(self.name)
        dm = data.dm_term(self.name)
        n = data.n
        log_term = math.log(2 / 0.05)
        slack = math.sqrt(2 * float(np.mean(w**2)) * log_term / n) + 2 * float(w.max()) * log_term / (3 * n)
        best, best_mse = self.tau_grid[0], math.inf
        for t in self.tau_grid:
            keep = w <= t
            terms = dm + np.where(keep, w * resid, 0.0)
            bias = abs(float(np.mean(np.where(keep, 0.0, w * resid)))) + slack
            mse = float(np.var(terms)) / n + bias**2
            if mse < best_mse:
                best, best_mse = t, mse
        return float(best)

    def columns(self, data: LoggedFeedback) -> np.ndarray:
        """``dm_i + 1{w_i <= tau} w_i (r_i - q_hat(x_i, a_i))`` per row."""
        w = data.weights()
        keep = w <= self.chosen_tau(data)
        corr = np.where(keep, w * (data.rewards - data.factual_hat(self.name)), 0.0)
        return (data.dm_term(self.name) + corr)[:, None]

    def bias_term(self, data: LoggedFeedback) -> np.ndarray:
        """The dropped correction ``1{w_i > tau} w_i (r_i - q_hat(x_i, a_i))``."""
        w = data.weights()
        return np.where(w > self.chosen_tau(data), w * (data.rewards - data.factual_hat(self.name)), 0.0)

    @property
    def label(self) -> str:
        """``switch_dr`` (the default tau), ``switch_dr(tau=...)`` or ``switch_dr(tuned)``."""
        if self.tau_grid is not None:
            return f"{self.name}(tuned)"
        return self.name if self.tau == 10.0 else f"{self.name}(tau={self.tau:g})"


#: name -> estimator class. One registry for the concept.
ESTIMATOR_REGISTRY: dict[str, type[OffPolicyEstimator]] = {
    c.name: c for c in (DirectMethod, IPS, SNIPS, DoublyRobust, SwitchDR)
}


def make_estimator(name: str, **kwargs: Any) -> OffPolicyEstimator:
    """Instantiate a registered estimator (``dm``, ``ips``, ``snips``, ``dr``, ``switch_dr``)."""
    try:
        cls = ESTIMATOR_REGISTRY[name]
    except KeyError:
        raise OPEInputError("estimator", f"unknown estimator {name!r}; known: {sorted(ESTIMATOR_REGISTRY)}") from None
    return cls(**kwargs)


def default_estimators(
    *, with_reward_model: bool = True, tau: float = 10.0, tuned_switch: bool = False
) -> list[OffPolicyEstimator]:
    """IPS and SNIPS, plus DM, DR and switch-DR when a reward model is available.

    Args:
        with_reward_model: Include the reward-model estimators.
        tau: Threshold of the (fixed) switch-DR.
        tuned_switch: Also add switch-DR with a data-driven threshold (``switch_dr(tuned)``,
            :data:`DEFAULT_TAU_GRID`).
    """
    ests: list[OffPolicyEstimator] = [IPS(), SNIPS()]
    if with_reward_model:
        ests = [DirectMethod(), *ests, DoublyRobust(), SwitchDR(tau=tau)]
        if tuned_switch:
            ests.append(SwitchDR(tau_grid=DEFAULT_TAU_GRID))
    return ests


@dataclass(frozen=True)
class RowTerms:
    """The per-row arrays an estimator's value and interval are built from.

    Attributes:
        columns: ``(n, c)`` value columns (:meth:`OffPolicyEstimator.columns`).
        psi: ``(n,)`` influence values at the full-sample estimate.
        corrected: ``(n,)`` per-row terms of the estimator plus its bias estimate (DM, switch-DR
            under the bias allowance), else None.
    """

    columns: np.ndarray
    psi: np.ndarray
    corrected: np.ndarray | None = None


def row_terms(e: OffPolicyEstimator, data: LoggedFeedback, *, bias_allowance: bool = True) -> RowTerms:
    """:class:`RowTerms` of estimator ``e`` on ``data``."""
    cols = np.asarray(e.columns(data), dtype=np.float64)
    psi = np.asarray(e.influence(data, cols), dtype=np.float64)
    b = e.bias_term(data) if bias_allowance else None
    corrected = None if b is None else cols[:, 0] + np.asarray(b, dtype=np.float64)
    return RowTerms(cols, psi, corrected)


def add_row_terms(book: ColumnBook, key: object, terms: RowTerms) -> None:
    """Register ``terms`` in ``book`` under ``(key, ...)`` blocks (value, influence, corrected)."""
    book.add((key, "cols"), terms.columns)
    book.add((key, "psi"), np.column_stack([terms.psi, terms.psi**2]))
    book.floors[(key, "psi")] = se_floor(terms.psi)
    if terms.corrected is not None:
        y = terms.corrected
        py = y - y.mean()
        book.add((key, "corr"), np.column_stack([y, py, py**2]))
        book.floors[(key, "corr")] = se_floor(py)


def _bounds(
    value: float,
    boot_values: np.ndarray,
    se: float,
    boot_se: np.ndarray,
    alpha: float,
    interval: str,
    floor: float = 0.0,
) -> tuple[float, float]:
    if interval == "percentile":
        lo, hi = percentile_interval(boot_values, alpha)
        return float(lo), float(hi)
    return studentized_interval(value, se, boot_values, boot_se, alpha, se_floor=floor)


def interval_from_book(
    e: OffPolicyEstimator, book: ColumnBook, key: object, alpha: float, interval: str
) -> tuple[float, float, float, str]:
    """``(value, lower, upper, method)`` of estimator ``e`` from the blocks of ``key``."""
    n = book.n
    s, b = book.sum_of((key, "cols")), book.boot_of((key, "cols"))
    value = float(e.combine(s, n))
    bv = np.asarray(e.combine(b, n), dtype=np.float64)
    sp, bp = book.sum_of((key, "psi")), book.boot_of((key, "psi"))
    se = float(mean_se(sp[0], sp[1], n))
    bse = mean_se(bp[:, 0], bp[:, 1], n)
    scale = e.se_scale(b, s)
    if scale is not None:
        bse = bse * scale
    lo, hi = _bounds(value, bv, se, bse, alpha, interval, book.floors.get((key, "psi"), 0.0))
    method = interval
    if (key, "corr") in book:
        sc, bc = book.sum_of((key, "corr")), book.boot_of((key, "corr"))
        lo2, hi2 = _bounds(
            float(sc[0] / n), bc[:, 0] / n, float(mean_se(sc[1], sc[2], n)), mean_se(bc[:, 1], bc[:, 2], n), alpha,
            interval, book.floors.get((key, "corr"), 0.0),
        )
        lo, hi, method = min(lo, lo2), max(hi, hi2), f"{interval}+bias"
    return value, lo, hi, method


def betting_hull(value: float, lower: float, upper: float) -> tuple[float, float, str]:
    """``(lower, upper, "betting")``: the betting interval widened to contain the point estimate."""
    if not math.isfinite(value):
        return lower, upper, "betting"
    return min(lower, value), max(upper, value), "betting"


def estimate_all(
    estimators: Sequence[OffPolicyEstimator],
    data: LoggedFeedback,
    *,
    n_bootstrap: int | None = 1000,
    alpha: float = 0.05,
    rng: SeedLike = 0,
    interval: str = DEFAULT_INTERVAL,
    bias_allowance: bool = True,
    reward_range: tuple[float, float] | None = None,
) -> dict[str, Estimate]:
    """Run several estimators on the same data, sharing one set of bootstrap resamples.

    Args:
        estimators: Estimator instances (labels must be distinct).
        data: Validated feedback (:meth:`LoggedFeedback.from_arrays`).
        n_bootstrap: Resamples for the bootstrap intervals; ``None`` skips every interval (point
            estimates only). ``betting`` intervals use none (their ``n_bootstrap`` is None).
        alpha: Interval level.
        rng: Seed or generator (bootstrap resamples; row order of the betting interval).
        interval: ``betting`` (default), ``studentized`` or ``percentile`` (module docstring).
        bias_allowance: Widen DM / switch-DR bootstrap intervals by their estimated bias.
        reward_range: Known ``(lo, hi)`` of the rewards for ``betting`` (quality: ``(0, 1)``); None:
            the observed range (:func:`router_rl.ope.betting.betting_interval`).

    Returns:
        ``label -> Estimate`` in the order given.
    """
    labels = [e.label for e in estimators]
    if len(set(labels)) != len(labels):
        raise OPEInputError("estimators", f"duplicate labels {labels}")
    alpha = check_alpha(alpha)
    interval = check_interval(interval)
    if n_bootstrap is not None:
        n_bootstrap = check_n_bootstrap(n_bootstrap)
    betting = interval not in BOOTSTRAP_METHODS
    book = ColumnBook(data.n)
    for e in estimators:
        add_row_terms(book, e.label, row_terms(e, data, bias_allowance=bias_allowance and not betting))
    gen = as_generator(rng)
    book.run(None if betting else n_bootstrap, gen)
    cs = None
    if betting and n_bootstrap is not None:
        cs = betting_interval(data.rewards, data.weights(), alpha=alpha, reward_range=reward_range, rng=gen)
    diag = weight_diagnostics(data.weights()) if any(e.uses_weights for e in estimators) else None
    out: dict[str, Estimate] = {}
    for e in estimators:
        lower = upper = None
        method = None
        if cs is not None:
            value = float(e.combine(book.sum_of((e.label, "cols")), data.n))
            lower, upper, method = betting_hull(value, cs.lower, cs.upper)
        elif n_bootstrap is not None:
            value, lower, upper, method = interval_from_book(e, book, e.label, alpha, interval)
        else:
            value = float(e.combine(book.sum_of((e.label, "cols")), data.n))
        out[e.label] = Estimate(
            estimator=e.label,
            value=value,
            lower=lower,
            upper=upper,
            alpha=alpha if n_bootstrap is not None else None,
            n_bootstrap=None if betting else n_bootstrap,
            n=data.n,
            diagnostics=diag if e.uses_weights else None,
            interval=method,
        )
    return out


# --- full information ---------------------------------------------------------------------------
def replay_rows(target: object, reward_matrix: object) -> np.ndarray:
    """Per-row expected reward ``sum_a pi(a|x_i) r(x_i, a)`` on a full-information matrix."""
    tgt = check_distribution(target, name="target")
    r = check_matrix(reward_matrix, n=tgt.shape[0], n_actions=tgt.shape[1], name="reward_matrix")
    return np.einsum("ij,ij->i", tgt, r)


@dataclass(frozen=True)
class Replay:
    """Exact replay on a full-information outcome matrix (every action's reward is known)."""

    name: ClassVar[str] = "replay"

    def estimate(self, *, target: object, reward_matrix: object) -> float:
        """``mean_i sum_a pi(a|x_i) r(x_i, a)``.

        Args:
            target: ``(n, n_actions)`` action distribution.
            reward_matrix: ``(n, n_actions)`` reward of every action on every row.
        """
        return float(replay_rows(target, reward_matrix).mean())

    def estimate_interval(
        self,
        *,
        target: object,
        reward_matrix: object,
        n_bootstrap: int = 1000,
        alpha: float = 0.05,
        rng: SeedLike = 0,
    ) -> Estimate:
        """Value and seeded bootstrap interval over rows (tasks)."""
        rows = replay_rows(target, reward_matrix)
        if rows.size == 0:
            raise OPEInputError("target", "expected at least one row")
        alpha = check_alpha(alpha)
        boot = bootstrap_column_sums(rows[:, None], n_bootstrap, rng)[:, 0] / rows.size
        lo, hi = percentile_interval(boot, alpha)
        return Estimate(
            estimator=self.name,
            value=float(rows.mean()),
            lower=float(lo),
            upper=float(hi),
            alpha=alpha,
            n_bootstrap=n_bootstrap,
            n=int(rows.size),
            interval="percentile",
        )

