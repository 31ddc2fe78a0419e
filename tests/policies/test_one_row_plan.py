"""The fused one-row decision (policies/one_row.py) gives the general path's distribution, bit for bit.

The general path is ``UtilityPolicy.action_distribution`` (checks, predictions, cost model,
``decide``); the fused kernel must return the same one-hot row for every row and every decision
setting it covers, hand near ties back to the general path, and leave errors to it.
"""

from __future__ import annotations

import numpy as np
import pytest

import router_rl.policies.one_row as one_row
from router_rl.features import EncoderConfig, FeatureEncoder
from router_rl.policies.calibration import ProbabilityCalibrator
from router_rl.policies.decision import DecisionConfig
from router_rl.policies.lgbm import LGBMPolicy
from router_rl.policies.utility import UtilityPolicy
from router_rl.traces.simulate import simulate_fleet

pytest.importorskip("numba")  # a core dependency: the kernel is what is under test

FAST = {"num_boost_round": 40, "early_stopping_rounds": 10}
VARIANTS = {
    "small-data": {},  # linear head stacked + prior shrinkage chosen (<= 1000 training tasks)
    "plain": {"linear_stack": False, "prior_shrinkage": 0.0, "calibration": "none"},
    "shared-factors": {"linear_stack": False, "shared_rank": 2, "prior_shrinkage": 0.3},
    "mean-costs": {"linear_stack": False, "cost_model": "mean"},  # no per-task cost model: the means
}


@pytest.fixture(scope="module")
def data() -> tuple[object, np.ndarray, FeatureEncoder]:
    matrix = simulate_fleet(700, seed=11).matrix()
    train = matrix.split("train")
    enc = FeatureEncoder(EncoderConfig()).fit(train.tasks)
    X = enc.transform(matrix.split("test").tasks)[:120]
    return train, X, enc


@pytest.fixture(scope="module", params=list(VARIANTS))
def fitted(
    request: pytest.FixtureRequest, data: tuple[object, np.ndarray, FeatureEncoder]
) -> tuple[LGBMPolicy, np.ndarray]:
    train, X, enc = data
    pol = LGBMPolicy(train.models, config={**FAST, **VARIANTS[request.param]})  # type: ignore[attr-defined]
    pol.fit(enc.transform(train.tasks), train, seed=0)  # type: ignore[attr-defined, arg-type]
    pol.attach_encoder(enc)
    assert pol.privacy_col is not None and pol.catalog is not None
    assert (pol.cost_model is None) == (request.param == "mean-costs")
    return pol, X


def _general(pol: LGBMPolicy, x: np.ndarray) -> np.ndarray:
    return UtilityPolicy.action_distribution(pol, x)


def _check_rows(pol: LGBMPolicy, X: np.ndarray) -> tuple[int, int]:
    """Every row: fused == general (bytes); returns (rows, general runs of the plan)."""
    for i in range(X.shape[0]):
        x = X[i : i + 1]
        fast = pol.action_distribution(x)
        assert fast.dtype == np.float64 and fast.tobytes() == _general(pol, x).tobytes(), i
    plan = one_row.plan_for(pol)
    assert plan is not None
    return X.shape[0], plan.general_runs


@pytest.mark.parametrize(
    "cfg",
    [
        DecisionConfig(),
        DecisionConfig(lam=0.7, mu=0.3),
        DecisionConfig(lam=2.0, privacy_local_only=False),
        DecisionConfig(lam=0.4, nu=0.05),
        DecisionConfig(lam=0.05),
    ],
    ids=["default", "lam-mu", "no-privacy", "nu", "small-lam"],
)
def test_fused_decision_equals_the_general_path(fitted: tuple[LGBMPolicy, np.ndarray], cfg: DecisionConfig) -> None:
    pol, X = fitted
    pol.decision = cfg
    X = X.copy()
    X[::3, pol.privacy_col] = 1.0  # a third of the rows privacy-sensitive: local models only
    n, general = _check_rows(pol, X)
    assert general <= n // 10  # the kernel decided (almost) every row itself
    batch = pol.action_distribution(X)  # and the batch rows agree too
    one = np.vstack([pol.action_distribution(X[i : i + 1]) for i in range(n)])
    assert one.tobytes() == batch.tobytes()
    assert len({int(a) for a in batch.argmax(axis=1)}) >= 2


def test_exact_ties_are_decided_like_the_general_path(fitted: tuple[LGBMPolicy, np.ndarray]) -> None:
    """A flat calibration map gives every model the same quality: the first model wins on both paths."""
    pol, X = fitted
    saved, shrinkage = pol.calibrator, pol.shrinkage
    try:
        pol.calibrator = ProbabilityCalibrator("isotonic", [0.0, 1.0], [0.6, 0.6])
        pol.shrinkage = 0.0  # no blend towards the per-model prior: the qualities tie exactly
        pol.decision = DecisionConfig()
        _, general = _check_rows(pol, X[:40])
        assert general == 0  # exact on both sides: certified by the kernel, not handed back
        assert (pol.action_distribution(X[:40]).argmax(axis=1) == 0).all()
        pol.decision = DecisionConfig(lam=0.5)  # costs break the tie
        _check_rows(pol, X[:40])
    finally:
        pol.calibrator, pol.shrinkage = saved, shrinkage


def test_near_ties_go_to_the_general_path(fitted: tuple[LGBMPolicy, np.ndarray]) -> None:
    """Qualities 1e-13 apart are within the kernel's error bound: the general path decides them."""
    pol, X = fitted
    saved, shrinkage = pol.calibrator, pol.shrinkage
    try:
        pol.calibrator = ProbabilityCalibrator("isotonic", [0.0, 1.0], [0.5, 0.5 + 1e-13])
        pol.shrinkage = 0.0
        pol.decision = DecisionConfig()
        n, general = _check_rows(pol, X[:30])
        assert general == n
    finally:
        pol.calibrator, pol.shrinkage = saved, shrinkage


def test_the_plan_follows_state_changes(fitted: tuple[LGBMPolicy, np.ndarray]) -> None:
    pol, X = fitted
    pol.decision = DecisionConfig()
    x = X[:1]
    pol.action_distribution(x)
    first = one_row.plan_for(pol)
    assert first is not None and one_row.plan_for(pol) is first  # cached
    pol.decision = DecisionConfig(lam=5.0)
    second = one_row.plan_for(pol)
    assert second is not None and second is not first
    _check_rows(pol, X[:20])
    pol.decision = DecisionConfig(temperature=0.5, epsilon=0.1)  # not covered: the general path
    assert one_row.plan_for(pol) is None
    for i in range(10):
        assert pol.action_distribution(X[i : i + 1]).tobytes() == _general(pol, X[i : i + 1]).tobytes()
    pol.decision = DecisionConfig()


def test_without_numba_the_general_path_runs(fitted: tuple[LGBMPolicy, np.ndarray], monkeypatch) -> None:
    pol, X = fitted
    pol.decision = DecisionConfig(lam=0.3)
    expected = [pol.action_distribution(X[i : i + 1]) for i in range(20)]
    monkeypatch.setattr(one_row, "_kernel", lambda: None)
    pol._one_row = None
    assert one_row.plan_for(pol) is None
    for i in range(20):
        assert pol.action_distribution(X[i : i + 1]).tobytes() == expected[i].tobytes()
    pol.decision = DecisionConfig()


def test_errors_are_the_general_paths(fitted: tuple[LGBMPolicy, np.ndarray]) -> None:
    pol, X = fitted
    pol.decision = DecisionConfig()
    bad = X[:1].copy()
    bad[0, 3] = np.nan
    with pytest.raises(ValueError, match="row 0, column 3: expected a finite number"):
        pol.action_distribution(bad)
    with pytest.raises(ValueError, match="features but the policy was trained on"):
        pol.action_distribution(X[:1, :-1])
    sens = X[:1].copy()
    sens[0, pol.privacy_col] = 1.0
    catalog = pol.catalog
    try:
        pol.catalog = None
        with pytest.raises(ValueError, match="need the model locations"):
            pol.action_distribution(sens)
    finally:
        pol.catalog = catalog


def test_a_loaded_policy_decides_the_same(fitted: tuple[LGBMPolicy, np.ndarray], tmp_path) -> None:
    pol, X = fitted
    pol.decision = DecisionConfig(lam=0.6, mu=0.1)
    pol.save(tmp_path / "p")
    loaded = LGBMPolicy.load(tmp_path / "p")
    assert isinstance(loaded, LGBMPolicy)
    for i in range(40):
        x = X[i : i + 1]
        assert loaded.action_distribution(x).tobytes() == pol.action_distribution(x).tobytes() == \
            _general(loaded, x).tobytes(), i
    plan = one_row.plan_for(loaded)
    assert plan is not None and plan.general_runs <= 4
    pol.decision = DecisionConfig()
