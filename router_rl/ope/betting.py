"""Finite-sample confidence intervals for a policy value by betting (valid at any ESS).

The studentised and percentile bootstraps of :mod:`router_rl.ope.bootstrap` are asymptotic: where
an estimate rests on a few dozen rows with importance weight ``k / epsilon`` (Kish ESS 10-60),
their coverage falls to 60-85% (docs/evaluation.md, *Validation against truth*). This module gives
the interval that holds there, from the betting confidence sequences of

* I. Waudby-Smith and A. Ramdas, "Estimating means of bounded random variables by betting",
  JRSS-B 86(1), 2024 (arXiv:2010.09686): hedged capital, predictable plug-in bets;
* N. Karampatziakis, P. Mineiro and A. Ramdas, "Off-policy confidence sequences", ICML 2021
  (arXiv:2102.09540): the same construction for importance-weighted rewards, which needs *no*
  bound on the weights, only ``w >= 0`` and rewards in a known range.

Construction (rewards rescaled to ``r' = (r - lo) / (hi - lo)`` in [0, 1], weights
``w_i = pi(a_i|x_i) / pi_0(a_i|x_i)``, value ``V' = E[w r']``):

* **lower bound**: ``X_i = w_i r'_i >= 0`` has mean ``V'``. For a candidate mean ``m`` the wealth
  ``K_t(m) = prod_{i <= t} (1 + lambda_i(m) (X_i - m))`` with bets ``0 <= lambda_i(m) <= c / m``
  (``c = 1/2``) chosen from rows ``< i`` only (predictable) is a non-negative supermartingale when
  ``m >= V'``; by Ville's inequality ``max_t K_t(m) >= 2 / alpha`` has probability ``<= alpha / 2``
  there, so ``{m : max_t K_t(m) < 2 / alpha}`` contains ``V'`` with probability ``>= 1 - alpha / 2``.
  ``K_t(m)`` decreases in ``m``, so that set is ``[L, inf)`` and ``L`` is found by bisection;
* **upper bound**: ``Y_i = w_i (1 - r'_i) >= 0`` has mean ``E[w] - V' = 1 - V'`` (``E[w] = 1``
  when the logger gives every action the target can take a positive probability); its lower
  bound ``L_Y`` gives ``V' <= 1 - L_Y``.

Bets: ``lambda_i = sqrt(2 log(2 / alpha) / (n sigma2_{i-1}))`` (the fixed-``n`` tuning of
Waudby-Smith & Ramdas, section 3), ``sigma2`` the running variance with a prior of 1/4,
truncated to ``[0, c / m]``. The rows are taken in a seeded random order (valid for i.i.d. rows in
any order fixed before looking at them; the seed makes it reproducible).

Assumptions (the interval is a *guarantee* under them, not an approximation): i.i.d. rows, exact
propensities, rewards inside ``[lo, hi]`` and target support inside the logger's (otherwise
``E[w] < 1`` and the upper bound may be too low: the support check reports it). The reward model
plays no part, so the interval is the same set for every estimator; each estimator's interval
is its hull with the estimator's point estimate (:mod:`router_rl.ope.estimators`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from router_rl.core.seeding import SeedLike, as_generator
from router_rl.ope.validation import OPEInputError, as_float_vector, as_nonnegative_vector, check_alpha

#: Truncation of the bets: ``lambda <= BET_CAP / m`` (Waudby-Smith & Ramdas use 1/2 or 3/4).
BET_CAP = 0.5
#: Bisection steps of a bound (2^-50 of the range: far below any reported digit).
_BISECT_STEPS = 50


@dataclass(frozen=True)
class BettingInterval:
    """A ``1 - alpha`` interval for the value of a target policy.

    Attributes:
        lower: Lower bound, in reward units.
        upper: Upper bound, in reward units.
        alpha: Level (each side holds with probability ``>= 1 - alpha / 2``).
        reward_range: The ``(lo, hi)`` the rewards were rescaled with.
    """

    lower: float
    upper: float
    alpha: float
    reward_range: tuple[float, float]


def check_reward_range(rewards: np.ndarray, reward_range: tuple[float, float] | None) -> tuple[float, float]:
    """``reward_range`` checked against ``rewards``; None: the observed ``(min, max)`` (data-dependent).

    Raises:
        OPEInputError: ``lo >= hi`` (when given), or a reward outside the range (names the row).
    """
    r = np.asarray(rewards, dtype=np.float64)
    if reward_range is None:
        lo, hi = float(r.min()), float(r.max())
        if hi <= lo:  # every reward equal: any non-empty range is exact; keep the scale 1
            hi = lo + 1.0
        return lo, hi
    lo, hi = (float(x) for x in reward_range)
    if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
        raise OPEInputError("reward_range", f"expected finite (lo, hi) with lo < hi, got {reward_range!r}")
    bad = (r < lo) | (r > hi)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise OPEInputError(
            "rewards", f"expected a value in reward_range [{lo:g}, {hi:g}], got {r[i]}", index=i, n_bad=int(bad.sum())
        )
    return lo, hi


def _bets(x: np.ndarray, alpha: float) -> np.ndarray:
    """Predictable bets ``lambda_i`` (before truncation) from rows ``< i``."""
    n = x.size
    t = np.arange(1, n + 1, dtype=np.float64)
    mu = (0.5 + np.cumsum(x)) / (t + 1)  # running mean after row i (prior 1/2)
    mu_prev = np.concatenate([[0.5], mu[:-1]])
    s2 = (0.25 + np.cumsum((x - mu_prev) ** 2)) / (t + 1)
    s2_prev = np.concatenate([[0.25], s2[:-1]])
    return np.sqrt(2.0 * math.log(2.0 / alpha) / (n * s2_prev))


def _rejected(x: np.ndarray, lam: np.ndarray, m: float, log_threshold: float) -> bool:
    """True when ``max_t log K_t(m) >= log_threshold`` (the mean is above ``m``)."""
    cap = BET_CAP / m if m > 0 else math.inf
    lam_m = np.minimum(lam, cap)
    with np.errstate(divide="ignore"):
        log_k = np.cumsum(np.log1p(lam_m * (x - m)))
    return bool(log_k.max() >= log_threshold)


def nonnegative_mean_lower_bound(x: object, alpha: float, *, rng: SeedLike = 0) -> float:
    """Lower confidence bound, level ``1 - alpha``, on the mean of i.i.d. ``x >= 0`` (unbounded above).

    Args:
        x: ``(n,)`` non-negative values (e.g. ``w_i r_i``).
        alpha: One-sided error level.
        rng: Seed of the row order.
    """
    v = as_nonnegative_vector(x, "x")
    if v.size == 0:
        raise OPEInputError("x", "expected at least one value")
    if not 0 < alpha < 1:
        raise OPEInputError("alpha", f"expected a level in (0, 1), got {alpha!r}")
    v = v[as_generator(rng).permutation(v.size)]
    lam = _bets(v, alpha)
    thr = math.log(1.0 / alpha)
    if not _rejected(v, lam, 0.0, thr):
        return 0.0
    lo, hi = 0.0, float(v.max())  # at m >= max(x) every factor is <= 1: never rejected
    for _ in range(_BISECT_STEPS):
        mid = 0.5 * (lo + hi)
        if _rejected(v, lam, mid, thr):
            lo = mid
        else:
            hi = mid
    return lo


def _scaled_inputs(
    rewards: object, weights: object, reward_range: tuple[float, float] | None
) -> tuple[np.ndarray, np.ndarray, float, float]:
    """Checked ``(rewards rescaled to [0, 1], weights, lo, hi)``."""
    r = as_float_vector(rewards, "rewards")
    w = as_nonnegative_vector(weights, "weights", n=r.size)
    if r.size == 0:
        raise OPEInputError("rewards", "expected at least one row")
    lo, hi = check_reward_range(r, reward_range)
    return np.clip((r - lo) / (hi - lo), 0.0, 1.0), w, lo, hi


def betting_interval(
    rewards: object,
    weights: object,
    *,
    alpha: float = 0.05,
    reward_range: tuple[float, float] | None = None,
    rng: SeedLike = 0,
    versus_logger: bool = False,
) -> BettingInterval:
    """Two-sided ``1 - alpha`` interval for ``V = E[w r]`` (module docstring), or for ``V - V_logger``.

    ``versus_logger=True`` (paired, the same rows): the per-row difference ``D_i = (w_i - 1) r'_i``
    is at least ``-1`` and has mean ``V'_target - V'_logger`` (``E[w] = 1``), so ``D_i + 1 >= 0``
    gives the lower bound; the upper bound comes from ``(w_i - 1)(1 - r'_i) + 1 >= 0``, whose mean
    is ``1 - (V'_target - V'_logger)``. Rows where target and logger agree (``w_i = 1``) cost no
    width; when every ``D_i`` is the same number (the target is the logger on every logged action)
    the interval is that number, as the paired bootstrap's.

    Args:
        rewards: ``(n,)`` rewards of the logged actions.
        weights: ``(n,)`` importance weights ``>= 0`` (ones: the on-policy mean of ``rewards``).
        alpha: Level (``alpha / 2`` per side).
        reward_range: Known ``(lo, hi)`` of the rewards (quality: ``(0, 1)``); None uses the observed
            range, which is data-dependent (documented, docs/evaluation.md).
        rng: Seed of the row order (the same order for both sides).
        versus_logger: Interval of the difference to the logging policy instead of the value.

    Raises:
        OPEInputError: malformed arrays, negative weights, a reward outside ``reward_range``.
    """
    alpha = check_alpha(alpha)
    rs, w, lo, hi = _scaled_inputs(rewards, weights, reward_range)
    shift = 1.0 if versus_logger else 0.0  # D + 1 >= 0 for a difference; w r' >= 0 for a value
    x_lo, x_up = (w - shift) * rs, (w - shift) * (1.0 - rs)
    if versus_logger and np.ptp(x_lo) == 0 and np.ptp(x_up) == 0:
        v = float(x_lo[0]) * (hi - lo)
        return BettingInterval(lower=v, upper=v, alpha=alpha, reward_range=(lo, hi))
    seed = int(as_generator(rng).integers(0, 2**63 - 1))
    low = nonnegative_mean_lower_bound(np.maximum(x_lo + shift, 0.0), alpha / 2, rng=seed) - shift
    up = 1.0 - nonnegative_mean_lower_bound(np.maximum(x_up + shift, 0.0), alpha / 2, rng=seed)
    low, up = (min(max(b, -shift), 1.0) for b in (low, up))
    offset = 0.0 if versus_logger else lo  # a difference has no offset
    return BettingInterval(
        lower=offset + (hi - lo) * low, upper=offset + (hi - lo) * up, alpha=alpha, reward_range=(lo, hi)
    )
