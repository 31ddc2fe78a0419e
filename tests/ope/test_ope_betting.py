"""The finite-sample betting interval (Waudby-Smith & Ramdas; Karampatziakis, Mineiro & Ramdas)."""

from __future__ import annotations

import numpy as np
import pytest
from test_ope_intervals import TRUTH, _far_target_log

from router_rl.ope import IPS, SNIPS, DirectMethod, DoublyRobust, OPEInputError, SwitchDR
from router_rl.ope.betting import (
    betting_interval,
    nonnegative_mean_lower_bound,
)
from router_rl.ope.estimators import DEFAULT_INTERVAL, DEFAULT_TAU_GRID, estimate_all


def test_default_interval_is_betting_and_covers_at_ess_20() -> None:
    """ESS ~ 20 of 2,000 rows (weight 100): every estimator's default interval covers >= 90%,
    where the studentised SNIPS does not."""
    assert DEFAULT_INTERVAL == "betting"
    ests = [IPS(), SNIPS(), DirectMethod(), DoublyRobust(), SwitchDR(), SwitchDR(tau_grid=DEFAULT_TAU_GRID)]
    reps = 100
    cover = dict.fromkeys([e.label for e in ests], 0)
    snips_student = 0
    widths = []
    for s in range(reps):
        data = _far_target_log(s)
        out = estimate_all(ests, data, n_bootstrap=200, rng=s, reward_range=(0.0, 1.0))
        for lab, e in out.items():
            assert e.interval == "betting" and e.n_bootstrap is None
            assert e.lower <= e.value <= e.upper
            cover[lab] += e.lower <= TRUTH <= e.upper
        widths.append(out["ips"].upper - out["ips"].lower)
        st = estimate_all([SNIPS()], data, n_bootstrap=200, rng=s, interval="studentized")["snips"]
        snips_student += st.lower <= TRUTH <= st.upper
    assert all(v >= 93 for v in cover.values()), cover
    assert snips_student < min(cover.values()), (snips_student, cover)
    # honest but not vacuous: most of [0, 1] is excluded at ESS 20
    assert 0.3 < float(np.mean(widths)) < 0.9


def test_on_policy_width_is_close_to_the_normal_one_and_covers() -> None:
    n, reps, covered, widths = 2000, 200, 0, []
    for s in range(reps):
        r = (np.random.default_rng(s).random(n) < 0.7).astype(float)
        b = betting_interval(r, np.ones(n), reward_range=(0.0, 1.0), rng=s)
        covered += b.lower <= 0.7 <= b.upper
        widths.append(b.upper - b.lower)
    clt = 2 * 1.96 * np.sqrt(0.21 / n)
    assert covered >= 0.93 * reps
    assert clt < float(np.mean(widths)) < 1.4 * clt


def test_edge_cases_and_errors() -> None:
    r = np.array([0.0, 1.0, 1.0, 0.0])
    # no weight on any logged row: nothing is known, the interval is the whole range
    b = betting_interval(r, np.zeros(4), reward_range=(0.0, 1.0))
    assert (b.lower, b.upper) == (0.0, 1.0)
    # rescaling: rewards in [-2, 3]
    b = betting_interval(5 * r - 2, np.ones(4), reward_range=(-2.0, 3.0), rng=1)
    assert -2.0 <= b.lower < 0.5 < b.upper <= 3.0
    # the same seed, the same interval; another seed, another row order
    x = np.random.default_rng(0).exponential(size=300)
    assert nonnegative_mean_lower_bound(x, 0.05, rng=4) == nonnegative_mean_lower_bound(x, 0.05, rng=4)
    assert 0 < nonnegative_mean_lower_bound(x, 0.05, rng=4) < x.mean()
    with pytest.raises(OPEInputError, match=r"rewards\[1\]: expected a value in reward_range \[0, 0.5\]"):
        betting_interval(r, np.ones(4), reward_range=(0.0, 0.5))
    with pytest.raises(OPEInputError, match="reward_range"):
        betting_interval(r, np.ones(4), reward_range=(1.0, 1.0))
    with pytest.raises(OPEInputError, match=r"weights\[2\]: expected >= 0"):
        betting_interval(r, np.array([1.0, 1.0, -1.0, 1.0]))
    with pytest.raises(OPEInputError, match="x"):
        nonnegative_mean_lower_bound(np.array([1.0, -0.5]), 0.05)


def test_paired_difference_vs_the_logger() -> None:
    data = _far_target_log(0)
    w, r = data.weights(), data.rewards
    # the target is the logger on every row: exactly 0
    d0 = betting_interval(r, np.ones_like(r), reward_range=(0.0, 1.0), versus_logger=True)
    assert (d0.lower, d0.upper) == (0.0, 0.0)
    # true difference: target 0.6 - logger (0.95 * 0.9 + 0.01 * (0.9 + 0.5 + 0.6 + 0.4 + 0.3))
    true_diff = TRUTH - (0.96 * 0.9 + 0.01 * (0.5 + 0.6 + 0.4 + 0.3))
    covered = 0
    for s in range(60):
        dd = _far_target_log(s)
        iv = betting_interval(dd.rewards, dd.weights(), reward_range=(0.0, 1.0), rng=s, versus_logger=True)
        covered += iv.lower <= true_diff <= iv.upper
    assert covered >= 56
    iv = betting_interval(r, w, reward_range=(0.0, 1.0), versus_logger=True)
    assert -1.0 <= iv.lower < true_diff < iv.upper <= 1.0
