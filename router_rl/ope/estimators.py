"""Policy-value estimators over plain numpy arrays (Open Bandit Pipeline style).

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

Every estimator is a mean (or ratio of means) of per-row columns, so intervals come from the
vectorised bootstrap in :mod:`router_rl.ope.bootstrap`.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any, ClassVar

import numpy as np

from router_rl.core.seeding import SeedLike
from router_rl.ope.bootstrap import bootstrap_column_sums, percentile_interval
from router_rl.ope.validation import (
    OPEInputError,
    as_float_vector,
    check_actions,
    check_alpha,
    check_distribution,
    check_matrix,
    check_propensities,
)


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
    w = as_float_vector(weights, "weights")
    if w.size == 0:
        raise OPEInputError("weights", "expected at least one weight")
    if (w < 0).any():
        i = int(np.flatnonzero(w < 0)[0])
        raise OPEInputError("weights", f"expected >= 0, got {w[i]}", index=i)
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
    """

    estimator: str
    value: float
    lower: float | None = None
    upper: float | None = None
    alpha: float | None = None
    n_bootstrap: int | None = None
    n: int = 0
    diagnostics: WeightDiagnostics | None = None

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
    ) -> Estimate:
        """Point estimate, seeded percentile-bootstrap interval and weight diagnostics.

        Args:
            rewards, actions, propensities, target, reward_hat: As in :meth:`estimate`.
            n_bootstrap: Number of resamples of the rows.
            alpha: ``0.05`` gives a 95% interval.
            rng: Seed or generator; the same seed gives the same interval.
        """
        data = LoggedFeedback.from_arrays(
            rewards=rewards, actions=actions, propensities=propensities, target=target, reward_hat=reward_hat
        )
        return estimate_all([self], data, n_bootstrap=n_bootstrap, alpha=alpha, rng=rng)[self.label]

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
    """

    tau: float = 10.0
    name: ClassVar[str] = "switch_dr"

    def __post_init__(self) -> None:
        if not (isinstance(self.tau, int | float) and not math.isnan(self.tau) and self.tau >= 0):
            raise OPEInputError("tau", f"expected a number >= 0, got {self.tau!r}")

    def columns(self, data: LoggedFeedback) -> np.ndarray:
        """``dm_i + 1{w_i <= tau} w_i (r_i - q_hat(x_i, a_i))`` per row."""
        w = data.weights()
        keep = w <= self.tau
        corr = np.where(keep, w * (data.rewards - data.factual_hat(self.name)), 0.0)
        return (data.dm_term(self.name) + corr)[:, None]

    @property
    def label(self) -> str:
        """``switch_dr`` (the default tau) or ``switch_dr(tau=...)``."""
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


def default_estimators(*, with_reward_model: bool = True, tau: float = 10.0) -> list[OffPolicyEstimator]:
    """IPS and SNIPS, plus DM, DR and switch-DR when a reward model is available."""
    ests: list[OffPolicyEstimator] = [IPS(), SNIPS()]
    if with_reward_model:
        ests = [DirectMethod(), *ests, DoublyRobust(), SwitchDR(tau=tau)]
    return ests


def estimate_all(
    estimators: Sequence[OffPolicyEstimator],
    data: LoggedFeedback,
    *,
    n_bootstrap: int | None = 1000,
    alpha: float = 0.05,
    rng: SeedLike = 0,
) -> dict[str, Estimate]:
    """Run several estimators on the same data, sharing one set of bootstrap resamples.

    Args:
        estimators: Estimator instances (labels must be distinct).
        data: Validated feedback (:meth:`LoggedFeedback.from_arrays`).
        n_bootstrap: Resamples for the intervals; ``None`` skips them (point estimates only).
        alpha: Interval level.
        rng: Seed or generator.

    Returns:
        ``label -> Estimate`` in the order given.
    """
    labels = [e.label for e in estimators]
    if len(set(labels)) != len(labels):
        raise OPEInputError("estimators", f"duplicate labels {labels}")
    alpha = check_alpha(alpha)
    blocks = [np.asarray(e.columns(data), dtype=np.float64) for e in estimators]
    widths = [b.shape[1] for b in blocks]
    cols = np.concatenate(blocks, axis=1)
    offsets = np.cumsum([0, *widths])
    sums = cols.sum(axis=0)
    diag = weight_diagnostics(data.weights()) if any(e.uses_weights for e in estimators) else None
    boot = bootstrap_column_sums(cols, n_bootstrap, rng) if n_bootstrap is not None else None
    out: dict[str, Estimate] = {}
    for e, lo_i, hi_i in zip(estimators, offsets[:-1], offsets[1:], strict=True):
        value = float(e.combine(sums[lo_i:hi_i], data.n))
        lower = upper = None
        if boot is not None:
            lo, hi = percentile_interval(e.combine(boot[:, lo_i:hi_i], data.n), alpha)
            lower, upper = float(lo), float(hi)
        out[e.label] = Estimate(
            estimator=e.label,
            value=value,
            lower=lower,
            upper=upper,
            alpha=alpha if boot is not None else None,
            n_bootstrap=n_bootstrap,
            n=data.n,
            diagnostics=diag if e.uses_weights else None,
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
        )

