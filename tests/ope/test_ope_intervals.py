"""Interval methods: studentised bootstrap, bias allowance of DM / switch-DR, tuned switch-DR."""

from __future__ import annotations

import math

import numpy as np
import pytest

from router_rl.ope import IPS, SNIPS, DirectMethod, DoublyRobust, LoggedFeedback, OPEInputError, SwitchDR
from router_rl.ope.bootstrap import mean_se, studentized_interval
from router_rl.ope.estimators import DEFAULT_TAU_GRID, default_estimators, estimate_all

TRUTH = 0.6


def _far_target_log(seed: int, n: int = 2000, k: int = 5, eps: float = 0.05) -> LoggedFeedback:
    """Epsilon-greedy logger on action 0; deterministic target on action 2 (weight k / eps = 100);
    a reward model that is wrong by -0.3 on the target's action."""
    g = np.random.default_rng(seed)
    logp = np.full(k, eps / k)
    logp[0] += 1 - eps
    a = (g.random(n)[:, None] > np.cumsum(logp)[None, :]).sum(axis=1)
    pr = np.array([0.9, 0.5, TRUTH, 0.4, 0.3])
    r = (g.random(n) < pr[a]).astype(float)
    tgt = np.zeros((n, k))
    tgt[:, 2] = 1.0
    return LoggedFeedback.from_arrays(
        rewards=r, actions=a, propensities=logp[a], target=tgt, reward_hat=np.full((n, k), 0.3)
    )


def test_mean_se_and_studentized_interval_basics() -> None:
    x = np.array([1.0, 2.0, 3.0, 6.0])
    psi = x - x.mean()
    assert float(mean_se(psi.sum(), (psi**2).sum(), 4)) == pytest.approx(np.std(x) / 2)
    # a degenerate statistic (se 0) gets [value, value]; resamples with se* = 0 are ignored
    assert studentized_interval(0.5, 0.0, np.array([0.4, 0.6]), np.array([0.1, 0.1]), 0.05) == (0.5, 0.5)
    lo, hi = studentized_interval(1.0, 0.1, np.array([0.9, 1.1, 5.0]), np.array([0.1, 0.1, 0.0]), 0.5)
    assert lo == pytest.approx(1.0 - 0.5 * 0.1) and hi == pytest.approx(1.0 + 0.5 * 0.1)
    with pytest.raises(OPEInputError, match="interval"):
        estimate_all([IPS()], _far_target_log(0), interval="bca")


@pytest.mark.slow
def test_low_ess_coverage_studentized_vs_percentile_and_bias_allowance() -> None:
    """ESS ~ 20 of 2,000 rows: the studentised IPS / SNIPS / DR intervals cover >= 90%; DM's
    variance-only interval never covers its biased value, with the bias allowance it does."""
    ests = [IPS(), SNIPS(), DirectMethod(), DoublyRobust(), SwitchDR(), SwitchDR(tau_grid=DEFAULT_TAU_GRID)]
    reps = 100
    cover = {m: dict.fromkeys([e.label for e in ests], 0) for m in ("percentile", "studentized")}
    for s in range(reps):
        data = _far_target_log(s)
        for method, allowance in (("percentile", False), ("studentized", True)):
            out = estimate_all(ests, data, n_bootstrap=200, rng=s, interval=method, bias_allowance=allowance)
            for lab, e in out.items():
                cover[method][lab] += e.lower <= TRUTH <= e.upper
                biased = lab == "dm" or lab.startswith("switch_dr")
                assert e.interval == (f"{method}+bias" if allowance and biased else method)
    old, new = cover["percentile"], cover["studentized"]
    assert old["dm"] == 0 and old["switch_dr"] == 0, old  # interval of width ~0 around a value 0.3 off
    assert all(v >= 90 for v in new.values()), new
    assert new["ips"] >= old["ips"] and new["dr"] >= old["dr"], (old, new)


def test_bias_allowance_hull_contains_the_dr_interval_and_leaves_values_alone() -> None:
    data = _far_target_log(3)
    plain = estimate_all(
        default_estimators(), data, n_bootstrap=300, rng=1, interval="studentized", bias_allowance=False
    )
    out = estimate_all(default_estimators(), data, n_bootstrap=300, rng=1, interval="studentized")
    for lab in plain:
        assert out[lab].value == plain[lab].value  # point estimates never change
    dm, dr = out["dm"], out["dr"]
    assert dm.lower <= min(dr.lower, dm.value) and dm.upper >= max(dr.upper, dm.value)
    assert dm.upper - dm.lower > 10 * (plain["dm"].upper - plain["dm"].lower)


def test_tuned_switch_dr_picks_the_threshold_by_estimated_mse() -> None:
    data = _far_target_log(0)
    tuned = SwitchDR(tau_grid=(1.0, 10.0, math.inf))
    assert tuned.label == "switch_dr(tuned)"
    # the dropped correction is ~0.3 (a detectable bias): the tuned threshold keeps it
    assert tuned.chosen_tau(data) == math.inf
    assert tuned.estimate_data(data) == DoublyRobust().estimate_data(data)
    # noiseless rewards and an exact reward model: dropping the heavy rows costs no bias, the
    # smallest tau wins (its variance is 0)
    pr = np.array([0.9, 0.5, TRUTH, 0.4, 0.3])
    exact = LoggedFeedback.from_arrays(
        rewards=pr[data.actions], actions=data.actions, propensities=data.propensities, target=data.target,
        reward_hat=np.broadcast_to(pr, data.target.shape),
    )
    assert tuned.chosen_tau(exact) == 1.0
    assert tuned.estimate_data(exact) == pytest.approx(TRUTH)
    with pytest.raises(OPEInputError, match="tau_grid"):
        SwitchDR(tau_grid=())
    with pytest.raises(OPEInputError, match="tau_grid"):
        SwitchDR(tau_grid=(1.0, -2.0))
    assert [e.label for e in default_estimators(tuned_switch=True)][-1] == "switch_dr(tuned)"


def test_snips_studentized_interval_uses_the_delta_method() -> None:
    data = _far_target_log(5)
    e = estimate_all([SNIPS()], data, n_bootstrap=400, rng=2, interval="studentized")["snips"]
    w = data.weights()
    v = float((w * data.rewards).sum() / w.sum())
    se = np.sqrt(np.mean((w * (data.rewards - v)) ** 2)) / w.mean() / np.sqrt(data.n)
    assert e.value == pytest.approx(v)
    # the interval is on the scale of the delta-method standard error (1.2 to 6 se wide each side)
    assert 1.2 * se < e.value - e.lower < 6 * se and 1.2 * se < e.upper - e.value < 6 * se
