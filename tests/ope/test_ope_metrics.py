"""Routing metrics, frontiers, AIQ / APGR / CPT on hand-computed tiny examples."""

from __future__ import annotations

import numpy as np
import pytest

from router_rl.ope import (
    OPEInputError,
    aiq,
    apgr,
    calibrate_operating_point,
    cost_at_quality,
    cpt,
    frontier_summary,
    headline_intervals,
    metrics_by_group,
    nondecreasing_hull,
    routing_metrics,
)

COST = np.array([0.0, 1.0, 2.0, 3.0, 4.0])
QUAL = np.array([0.5, 0.6, 0.9, 0.8, 0.95])


def test_hull_drops_dominated_and_interior_points() -> None:
    hc, hq = nondecreasing_hull(COST, QUAL)
    np.testing.assert_allclose(hc, [0, 2, 4])
    np.testing.assert_allclose(hq, [0.5, 0.9, 0.95])
    # decreasing tail is cut at the highest point
    hc, hq = nondecreasing_hull([0, 1, 2], [0.5, 0.9, 0.7])
    np.testing.assert_allclose(hc, [0, 1])
    # duplicate costs keep the best quality; order of input does not matter
    hc, hq = nondecreasing_hull([2, 0, 2, 1], [0.6, 0.2, 0.8, 0.3])
    np.testing.assert_allclose(hc, [0, 2])
    np.testing.assert_allclose(hq, [0.2, 0.8])


def test_aiq_hand_computed() -> None:
    assert aiq(COST, QUAL) == pytest.approx((1.4 + 1.85) / 4)
    assert aiq(COST, QUAL, cost_max=6) == pytest.approx((1.4 + 1.85 + 0.95 * 2) / 6)
    # cheapest point at cost 1: nothing is earned left of it (RouterBench normalises by max cost)
    assert aiq([1, 3], [0.5, 0.9], cost_max=3) == pytest.approx(1.4 / 3)
    assert aiq([0, 1, 2], [0.5, 0.9, 0.7]) == pytest.approx((0.7 + 0.9) / 2)
    # a router that dominates another has the larger AIQ
    assert aiq(COST, QUAL + 0.01, cost_max=4) > aiq(COST, QUAL, cost_max=4)
    with pytest.raises(OPEInputError, match="cost_max"):
        aiq([0, 1], [0.1, 0.2], cost_max=0)


def test_cost_at_quality() -> None:
    assert cost_at_quality(COST, QUAL, 0.8) == pytest.approx(1.5)
    assert cost_at_quality(COST, QUAL, 0.95) == pytest.approx(4.0)
    assert cost_at_quality(COST, QUAL, 0.4) == 0.0
    assert cost_at_quality(COST, QUAL, 0.96) is None


def test_apgr_and_cpt_hand_computed_and_match_routellm_formula() -> None:
    x = np.array([0.0, 0.5, 1.0])
    q = np.array([0.5, 0.8, 0.9])
    assert apgr(x, q, weak_quality=0.5, strong_quality=0.9) == pytest.approx(0.625)
    # RouteLLM: (trapz(acc, x) - weak_auc) / (strong_auc - weak_auc)
    routellm = (np.trapezoid(q, x) - 0.5) / (0.9 - 0.5)
    assert apgr(x[::-1], q[::-1], weak_quality=0.5, strong_quality=0.9) == pytest.approx(routellm)
    assert apgr(x, [0.9, 0.9, 0.9], weak_quality=0.5, strong_quality=0.9) == pytest.approx(1.0)
    assert apgr(x, [0.5, 0.5, 0.5], weak_quality=0.5, strong_quality=0.9) == pytest.approx(0.0)
    assert cpt(x, q, weak_quality=0.5, strong_quality=0.9, fraction=0.5) == pytest.approx(1 / 3)
    assert cpt(x, q, weak_quality=0.5, strong_quality=0.9, fraction=0.8) == pytest.approx(0.6)
    assert cpt(x, q, weak_quality=0.5, strong_quality=0.9, fraction=1.0) == pytest.approx(1.0)
    # RouteLLM uses np.interp(target, acc, x) on monotone curves: same numbers
    assert cpt(x, q, weak_quality=0.5, strong_quality=0.9, fraction=0.5) == pytest.approx(np.interp(0.7, q, x))
    # first crossing on a non-monotone curve
    assert cpt(x, [0.5, 0.95, 0.9], weak_quality=0.5, strong_quality=0.9, fraction=1.0) == pytest.approx(
        0.4 / 0.45 * 0.5
    )
    assert cpt(x, [0.5, 0.6, 0.7], weak_quality=0.5, strong_quality=0.9, fraction=0.8) is None
    with pytest.raises(OPEInputError, match="strong_quality"):
        apgr(x, q, weak_quality=0.5, strong_quality=0.5)
    with pytest.raises(OPEInputError, match="fraction"):
        cpt(x, q, weak_quality=0.5, strong_quality=0.9, fraction=1.5)


def test_frontier_summary_cost_share_at_95() -> None:
    s = frontier_summary(COST, QUAL, reference_quality=0.9, reference_cost=4.0, weak_quality=0.5)
    # target 0.95 * 0.9 = 0.855 on the hull segment (0, .5) -> (2, .9): cost 1.775
    assert s["cost_share_at_quality"] == pytest.approx(1.775 / 4)
    assert s["aiq"] == pytest.approx(3.25 / 4)
    assert s["cpt50"] == pytest.approx(np.interp(0.7, [0.5, 0.6, 0.9], [0, 0.25, 0.5]))
    s = frontier_summary(COST, QUAL, reference_quality=1.0, reference_cost=4.0, weak_quality=0.5)
    assert s["cost_share_at_quality"] == pytest.approx(1.0)  # 0.95 reached only at the top point
    s = frontier_summary(COST, QUAL, reference_quality=1.01, reference_cost=4.0, weak_quality=0.5)
    assert s["cost_share_at_quality"] is None  # 0.9595 never reached


def test_calibrated_operating_point() -> None:
    c, q = [1.0, 2.0, 3.0], [0.7, 0.86, 0.9]
    op = calibrate_operating_point(c, q, 0.85)
    assert (op.index, op.reached) == (1, True)
    op = calibrate_operating_point(c, q, 0.95)
    assert (op.index, op.reached) == (2, False)


def test_routing_metrics_numbers() -> None:
    m = routing_metrics(
        quality=[1.0, 0.0, 1.0, 1.0],
        cost=[0.1, 0.1, 0.2, 0.0],
        latency=[1.0, 2.0, np.nan, 4.0],
        local=[True, True, False, True],
        error=[False, True, False, False],
        n_calls=[1, 2, 1, 1],
        reference_quality=[1.0, 1.0, 1.0, 1.0],
        reference_cost=[0.4, 0.4, 0.4, 0.4],
        oracle_quality=[1.0, 1.0, 1.0, 1.0],
    )
    assert m.mean_quality == 0.75 and m.mean_cost == pytest.approx(0.1)
    assert m.latency_p50 == 2.0 and m.latency_known_share == 0.75
    assert m.latency_p99 == pytest.approx(np.percentile([1, 2, 4], 99))
    assert m.local_share == 0.75 and m.cloud_share == 0.25
    assert m.error_share == 0.25 and m.fallback_share == 0.25 and m.mean_calls == 1.25
    assert m.quality_ratio == 0.75 and m.cost_share == pytest.approx(0.25) and m.cost_saving == pytest.approx(0.75)
    assert m.oracle_gap == pytest.approx(0.25)
    m = routing_metrics([0.5], [0.0])
    assert m.latency_p50 is None and m.local_share is None and m.quality_ratio is None
    with pytest.raises(OPEInputError, match=r"cost: expected length 2"):
        routing_metrics([1, 0], [0.1])
    with pytest.raises(OPEInputError, match=r"local\[1\]: expected booleans"):
        routing_metrics([1, 0], [0.1, 0.1], local=[1, 2])


def test_metrics_by_group() -> None:
    g = metrics_by_group(
        ["a", "b", "a", None], quality=[1.0, 0.0, 0.0, 1.0], cost=[1.0, 2.0, 3.0, 4.0], local=[1, 0, 1, 1]
    )
    assert list(g) == ["<none>", "a", "b"]
    assert g["a"].mean_quality == 0.5 and g["a"].mean_cost == 2.0 and g["a"].n == 2
    assert g["b"].local_share == 0.0


def test_headline_intervals_consistent_and_seeded() -> None:
    rng = np.random.default_rng(0)
    n = 400
    q = rng.random(n)
    c = rng.random(n)
    kw = {"local": rng.random(n) < 0.6, "reference_quality": np.clip(q + 0.1, 0, 1), "reference_cost": c + 1}
    h = headline_intervals(q, c, **kw, oracle_quality=np.ones(n), n_bootstrap=300, rng=1)
    m = routing_metrics(q, c, **kw, oracle_quality=np.ones(n))
    for k in ("mean_quality", "mean_cost", "local_share", "quality_ratio", "cost_share", "cost_saving", "oracle_gap"):
        assert h[k].value == pytest.approx(getattr(m, k)), k
        assert h[k].lower < h[k].value < h[k].upper, k
    assert h == headline_intervals(q, c, **kw, oracle_quality=np.ones(n), n_bootstrap=300, rng=1)
    # 95% interval of a mean of U(0,1) with n=400: half-width ~ 1.96 * 0.289 / 20 = 0.028
    assert 0.02 < (h["mean_quality"].upper - h["mean_quality"].lower) / 2 < 0.036
