"""The sliding evidence windows of live policy versions and their 95% Wilson interval."""

from __future__ import annotations

import pytest

from router_rl.router.windows import OutcomeWindow, QualityWindow, wilson_interval


def test_wilson_interval_known_values() -> None:
    low, high = wilson_interval(0.5, 100)
    assert (round(low, 4), round(high, 4)) == (0.4038, 0.5962)
    low, high = wilson_interval(0.0, 10)
    assert low == 0.0 and high == pytest.approx(0.2775, abs=1e-4)
    low, high = wilson_interval(1.0, 10)
    assert high == 1.0 and low == pytest.approx(0.7225, abs=1e-4)
    assert wilson_interval(0.3, 0) == (0.0, 1.0)
    with pytest.raises(ValueError, match="mean"):
        wilson_interval(1.2, 5)


def test_quality_window_slides_and_validates() -> None:
    w = QualityWindow(3)
    assert w.stats().n == 0 and w.stats().mean is None
    for q in (1.0, 1.0, 0.0, 0.0):
        w.add(q)
    st = w.stats()
    assert (st.n, w.total) == (3, 4) and st.mean == pytest.approx(1 / 3)
    assert (st.low, st.high) == pytest.approx(wilson_interval(1 / 3, 3))
    with pytest.raises(ValueError, match="quality"):
        w.add(-0.1)


def test_outcome_window_ratio_slides() -> None:
    w = OutcomeWindow(4)
    for bad in (True, True, False, False):
        w.add(bad)
    assert (w.bad, w.ratio) == (2, 0.5)
    w.add(False)  # the first bad one slides out
    assert (w.bad, len(w), w.total) == (1, 4, 5)
