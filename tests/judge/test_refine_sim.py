"""Refinement in the simulated fleet: the assumed gain curve and the replayed loop."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from router_rl.traces.refinement import RefinementModel, simulate_refinement
from router_rl.traces.simulate import simulate_fleet

POLICY = {"qwen2.5-coder:7b": (3, 0.90), "devstral-small-2:24b": (5, 0.95), "qwen2.5-coder:32b": (7, 0.98)}


@pytest.fixture(scope="module")
def fleet():  # type: ignore[no-untyped-def]
    return simulate_fleet(400, seed=3)


def test_gain_curve_diminishes_and_is_bounded() -> None:
    rm = RefinementModel()
    p0 = np.array([0.05, 0.3, 0.7])
    ps = np.stack([rm.p_after(p0, k) for k in range(8)])
    steps = np.diff(ps, axis=0)
    assert (steps > 0).all()
    logit = np.log(ps / (1 - ps))
    gains = np.diff(logit, axis=0)
    assert gains[:, 0] == pytest.approx(0.25 * 0.5 ** np.arange(7))  # each step half the previous one
    assert (logit[-1] - logit[0]).max() < rm.gain / (1 - rm.decay)
    assert rm.p_after(np.array([0.3]), 1)[0] == pytest.approx(0.3550, abs=1e-4)
    with pytest.raises(ValueError, match="decay"):
        RefinementModel(decay=1.0)


def test_refinement_accounting(fleet) -> None:  # type: ignore[no-untyped-def]
    f = simulate_refinement(fleet, POLICY, seed=1)
    assert f.height == 400 * 3 and set(f["model"]) == set(POLICY)
    assert (f["quality"] >= f["base_quality"]).all()
    cap = np.array([POLICY[m][0] for m in f["model"]])
    it = f["iterations"].to_numpy()
    assert ((it >= 0) & (it <= cap)).all() and it.max() == 7
    assert np.allclose(f["cost_usd"], f["base_cost_usd"] * (1 + 1.2 * it))
    assert np.allclose(f["latency_s"], f["base_latency_s"] * (1 + 1.2 * it) + 2.0 * (it + 1))
    # an attempt that already passed is not refined; a recorded error is never refined
    thr = np.array([POLICY[m][1] for m in f["model"]])
    assert (it[f["base_quality"].to_numpy() >= thr] == 0).all()
    errored = fleet.outcomes.filter(pl.col("error").is_not_null() & pl.col("model").is_in(list(POLICY)))
    joined = f.join(errored.select("task_id", "model"), on=["task_id", "model"])
    assert joined.height > 0 and (joined["iterations"] == 0).all()
    # seeded
    assert simulate_refinement(fleet, POLICY, seed=1).equals(f)
    assert not simulate_refinement(fleet, POLICY, seed=2).equals(f)


def test_refinement_pays_more_on_complex_tasks(fleet) -> None:  # type: ignore[no-untyped-def]
    f = simulate_refinement(fleet, POLICY, seed=0)
    g = f.group_by("complexity").agg((pl.col("quality") - pl.col("base_quality")).mean().alias("gain"))
    gain = dict(zip(g["complexity"], g["gain"], strict=True))
    assert gain["COMPLEX"] > gain["SIMPLE"] > 0


def test_off_or_zero_gain_changes_nothing(fleet) -> None:  # type: ignore[no-untyped-def]
    off = simulate_refinement(fleet, {m: (0, t) for m, (_, t) in POLICY.items()})
    assert (off["iterations"] == 0).all() and off["quality"].equals(off["base_quality"])
    flat = simulate_refinement(fleet, POLICY, model=RefinementModel(gain=0.0))
    assert flat["quality"].equals(flat["base_quality"])  # iterations spent, nothing gained
    with pytest.raises(ValueError, match="not in the catalog"):
        simulate_refinement(fleet, {"gpt-9": (3, 0.9)})
