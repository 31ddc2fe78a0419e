"""End to end on the simulated fleet: encoder -> LightGBM -> λ at quality=0.95 -> test split."""

from __future__ import annotations

import numpy as np
import pytest

from router_rl.features import FeatureEncoder
from router_rl.policies import make_policy
from router_rl.traces import simulate_fleet


@pytest.mark.slow
def test_lgbm_reaches_95_percent_of_reference_quality_on_the_simulated_fleet() -> None:
    m = simulate_fleet(1500, seed=0).matrix()
    tr, va, te = m.split("train"), m.split("val"), m.split("test")
    enc = FeatureEncoder().fit(tr.tasks)
    pol = make_policy("lgbm", m.models).attach_encoder(enc)
    pol.fit(enc.transform(tr.tasks), tr, seed=0)
    res = pol.calibrate(enc.transform(va.tasks), va, "quality=0.95")
    assert res.met
    out = pol.route_matrix(enc.transform(te.tasks), te)
    ref = te.model_index(tr.best_single_model())
    assert out.quality.mean() >= 0.94 * te.quality[:, ref].mean()  # 0.95 on val, 1 point of test slack
    assert out.cost.mean() <= 0.6 * te.cost[:, ref].mean()
    assert te.is_local()[out.actions].mean() >= 0.2
    # beats random and the cheapest model on quality, the reference on cost
    rnd = make_policy("random", m.models).route_matrix(enc.transform(te.tasks), te)
    assert out.quality.mean() > rnd.quality.mean()
    assert np.isfinite(pol.metadata["metrics"]["oof_ece_raw"])
