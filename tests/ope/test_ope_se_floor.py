"""The standard-error floor of the studentised bootstrap, on adversarial importance weights."""

from __future__ import annotations

import numpy as np
import pytest

from router_rl.ope import IPS, LoggedFeedback
from router_rl.ope.bootstrap import bootstrap_column_sums, mean_se, se_floor, studentized_interval
from router_rl.ope.estimators import estimate_all


def _three_heavy_rows(n: int = 2000) -> LoggedFeedback:
    """3 rows of weight 200 (explored action); every other row weight ~0.995 with 1e-5 jitter, reward 1.

    A resample that draws none of the 3 heavy rows (about 5% of them) has a standard error of
    ~6e-8, so its ``t*`` is ~1e7: the failure seen once on RouterBench at ESS 9.
    """
    g = np.random.default_rng(0)
    a = np.zeros(n, dtype=np.int64)
    a[:3] = 1
    p = np.where(a == 1, 0.005, 0.995)
    tgt = np.zeros((n, 2))
    tgt[:, 0] = 0.995 * (1 + 1e-5 * g.random(n))
    tgt[:, 1] = 1 - tgt[:, 0]
    tgt[a == 1] = [0.0, 1.0]
    return LoggedFeedback.from_arrays(rewards=np.ones(n), actions=a, propensities=p, target=tgt)


def test_the_floor_is_one_rows_resolution() -> None:
    psi = np.array([-1.0, 0.0, 3.0, np.nan])
    assert se_floor(psi) == pytest.approx(4.0 / 4)
    assert se_floor(np.zeros(5)) == 0.0
    # equal terms keep se = 0 and the degenerate interval, floor or not
    assert studentized_interval(0.5, 0.0, np.array([0.5, 0.5]), np.array([0.0, 0.0]), 0.05, se_floor=0.0) == (0.5, 0.5)


def test_adversarial_weights_blow_up_the_unfloored_interval_not_the_floored_one() -> None:
    data = _three_heavy_rows()
    x = data.weights() * data.rewards
    n = x.size
    psi = x - x.mean()
    boot = bootstrap_column_sums(np.column_stack([x, psi, psi**2]), 400, 0)
    v, se = float(x.mean()), float(mean_se(psi.sum(), (psi**2).sum(), n))
    bse = mean_se(boot[:, 1], boot[:, 2], n)
    assert 0 < float(np.min(bse)) < 1e-6  # resamples without the heavy rows: se* ~ 6e-8
    lo0, hi0 = studentized_interval(v, se, boot[:, 0] / n, bse, 0.05)
    floor = se_floor(psi)
    assert floor == pytest.approx(np.ptp(x) / n)  # (200 - 0.995) / 2000 ~ 0.0995: 1 / ESS-ish
    lo1, hi1 = studentized_interval(v, se, boot[:, 0] / n, bse, 0.05, se_floor=floor)
    assert hi0 - lo0 > 1e4  # the defect
    assert hi1 - lo1 < 5 * se * 2  # bounded: within a few standard errors each side
    assert lo1 == pytest.approx(lo0) and lo1 < v < hi1
    # estimate_all applies the floor: the same bounded interval
    e = estimate_all([IPS()], data, n_bootstrap=400, rng=0, interval="studentized")["ips"]
    assert e.upper - e.lower < 10 * se and e.lower < e.value < e.upper
