"""The ``cells`` baseline: smoothed training means per (agent type, complexity) cell."""

from __future__ import annotations

import numpy as np
import pytest

from router_rl.core.errors import ConfigError
from router_rl.features.encoder import EncoderConfig, FeatureEncoder
from router_rl.policies import RoutingPolicy, make_policy
from router_rl.traces import simulate_fleet


@pytest.fixture(scope="module")
def fleet():
    m = simulate_fleet(1200, seed=3).matrix()
    return m.split("train"), m.split("test")


def _encoder(train, declared: bool) -> FeatureEncoder:
    cats = ("agent_type", "category", "complexity") if declared else ("agent_type", "category")
    return FeatureEncoder(EncoderConfig(categorical_columns=cats)).fit(train.tasks)


@pytest.mark.parametrize("declared", [False, True])
def test_cells_predict_the_smoothed_mean_of_the_cell(fleet, declared: bool, tmp_path) -> None:
    train, test = fleet
    enc = _encoder(train, declared)
    pol = make_policy("cells", train.models, prior_strength=5.0).attach_encoder(enc)
    X = enc.transform(train.tasks)
    pol.fit(X, train, seed=0)
    info = pol.metadata["cells"]
    assert info["sources"] == ["cat:agent_type=", "cat:complexity=" if declared else "cx:"]
    # hand-computed cell of the first training task
    keys = pol._cell_keys(X)
    same = keys == keys[0]
    q = np.clip(train.quality, 0, 1)
    expect = (q[same].sum(axis=0) + 5.0 * q.mean(axis=0)) / (same.sum() + 5.0)
    np.testing.assert_allclose(pol.predict_quality(X[:1])[0], expect)
    if declared:  # the declared level is the simulator's own label: cells = exact (agent, complexity) groups
        ct = train.tasks["agent_type"] + "|" + train.tasks["complexity"]
        assert info["n_cells"] == ct.n_unique()
    pol.save(tmp_path / "cells")
    back = RoutingPolicy.load(tmp_path / "cells")
    Xt = enc.transform(test.tasks)
    np.testing.assert_array_equal(back.action_distribution(Xt), pol.action_distribution(Xt))


def test_cells_unknown_column_names_the_encoder_columns(fleet) -> None:
    train, _ = fleet
    enc = _encoder(train, False)
    pol = make_policy("cells", train.models, columns=["agent_type", "repo"]).attach_encoder(enc)
    with pytest.raises(ConfigError, match=r"'repo'.*categorical columns: \['agent_type', 'category'\]"):
        pol.fit(enc.transform(train.tasks), train, seed=0)


def test_cells_without_encoder_or_groups_is_a_clear_error(fleet) -> None:
    train, _ = fleet
    X = _encoder(train, False).transform(train.tasks)
    with pytest.raises(ConfigError, match="attach_encoder"):
        make_policy("cells", train.models).fit(X, train, seed=0)
    with pytest.raises(ConfigError, match="feature_groups"):
        make_policy("cells", train.models, feature_groups=[[0]])


def test_default_columns_use_what_the_encoder_has(fleet) -> None:
    """A user's own traces without an agent type: the cells are the complexity levels alone."""
    train, _ = fleet
    enc = FeatureEncoder(EncoderConfig(categorical_columns=("category",))).fit(train.tasks)
    pol = make_policy("cells", train.models).attach_encoder(enc)
    pol.fit(enc.transform(train.tasks), train, seed=0)
    assert pol.metadata["cells"]["columns"] == ["complexity"] and pol.metadata["cells"]["sources"] == ["cx:"]
    assert pol.metadata["cells"]["n_cells"] <= 5
    bare = FeatureEncoder(EncoderConfig(categorical_columns=("category",), use_complexity=False)).fit(train.tasks)
    with pytest.raises(ConfigError, match=r"none of \['agent_type', 'complexity'\]"):
        make_policy("cells", train.models).attach_encoder(bare).fit(bare.transform(train.tasks), train, seed=0)


@pytest.mark.slow
def test_cells_as_a_base_learner_of_the_stacked_booster(fleet, tmp_path) -> None:
    from router_rl.policies.stacking import StackedPolicy

    train, test = fleet
    enc = _encoder(train, declared=True)
    X, Xte = enc.transform(train.tasks), enc.transform(test.tasks)
    pol = StackedPolicy(train.models, config={"folds": 3, "base_learners": ["cells"], "select": "cv_aiq",
                                              "lgbm": {"num_boost_round": 30}}).attach_encoder(enc)
    pol.fit(X, train, seed=0)
    assert set(pol.metadata["stack"]["oof_criterion"]) == {"stack", "cells", "prior"}
    table = make_policy("cells", train.models).attach_encoder(enc).fit(X, train, seed=0)
    # the base learner refitted on all tasks is exactly the cells baseline
    np.testing.assert_allclose(pol.bases["cells"].predict_quality(Xte), table.predict_quality(Xte))
    pol.chosen = "cells"
    np.testing.assert_allclose(pol.predict_quality(Xte), table.predict_quality(Xte), rtol=1e-5)
    pol.save(tmp_path / "s")
    back = RoutingPolicy.load(tmp_path / "s")
    np.testing.assert_array_equal(back.predict_quality(Xte), pol.predict_quality(Xte))
    with pytest.raises(ConfigError, match="attach_encoder"):
        StackedPolicy(train.models, config={"folds": 3, "base_learners": ["cells"]}).fit(X, train, seed=0)
