"""The RoutingPolicy contract, over EVERY registered kind (as SB3 parametrises over its model list).

For each kind: ``fit`` -> ``action_distribution`` is ``(n, n_models)``, non-negative, rows sum to 1;
``act`` (argmax and seeded sampling) agrees with it; ``save`` / ``load`` reproduces it exactly; and
an operation the kind cannot do is refused only if listed in ``refuses``, with
:class:`PolicyCapabilityError`. A newly registered kind fails ``test_every_registered_kind_is_covered``
until it gets a builder here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from router_rl.policies import POLICY_REGISTRY, RoutingPolicy, make_policy
from router_rl.policies.base import PolicyCapabilityError, _import_builtin_policies

MODELS = ("small", "big", "cloud")
PPO_ARTIFACT = Path(__file__).parent / "fixtures" / "ppo_v2_artifact"

#: kind -> constructor kwargs for the toy matrix (kinds fitted on it).
KWARGS: dict[str, dict[str, Any]] = {
    "lgbm": {"config": {"num_boost_round": 30, "early_stopping_rounds": 5}},
    "knn": {"k": 15},
    "mlp": {"config": {"hidden": [8], "max_iter": 100}},
    "mf": {"config": {"dim": 3, "epochs": 60}},
    "linucb": {"dim": 4},
    "thompson": {"dim": 4, "n_samples": 32},
    "cascade": {"scorer": "knn", "threshold": 0.7},
    "random": {},
    "single": {},
    "cheapest": {},
    "rules": {"complexity_spec": {"rank": 0}},
    "oracle": {},
    "cells": {"columns": ["a", "b"], "feature_groups": [[0], [1, 2]]},
    "tfidf-lr": {},
    "svm": {},
    "sw-ranking": {},
    "lgbm-stack": {"config": {"folds": 3, "lgbm": {"num_boost_round": 30, "early_stopping_rounds": 5}}},
}
#: Kinds that cannot be fitted on a matrix: built otherwise (a saved artifact) with their own X.
BUILT_ELSEWHERE = ("ppo",)

_import_builtin_policies()
KINDS = sorted(POLICY_REGISTRY)


def test_every_registered_kind_is_covered() -> None:
    assert set(KINDS) == set(KWARGS) | set(BUILT_ELSEWHERE)


def _build(kind: str, toy_splits: dict) -> tuple[RoutingPolicy, np.ndarray, Any]:
    """A fitted policy, observations it accepts and the matrix of those rows (None for PPO)."""
    if kind == "ppo":
        pol = RoutingPolicy.load(PPO_ARTIFACT)
        with np.load(PPO_ARTIFACT / "expected.npz") as z:
            return pol, z["X"], None
    X, m = toy_splits["train"]
    pol = make_policy(kind, MODELS, **KWARGS[kind])
    if "fit" not in pol.refuses:
        pol.fit(X, m, seed=0)
    Xt, mt = toy_splits["test"]
    return pol, Xt, mt


@pytest.mark.parametrize("kind", KINDS)
def test_contract_or_an_explicit_typed_refusal(kind: str, toy_splits: dict, tmp_path: Path) -> None:
    pol, X, m = _build(kind, toy_splits)
    cls = type(pol)
    assert set(cls.refuses) <= {"fit", "action_distribution"}, cls.refuses
    if "fit" in cls.refuses:
        Xf, mf = toy_splits["train"]
        with pytest.raises(PolicyCapabilityError) as ei:
            make_policy(kind, mf.models).fit(Xf, mf, seed=0) if kind != "ppo" else pol.fit(Xf, mf, seed=0)
        assert ei.value.kind == kind and ei.value.operation == "fit" and cls.refuses["fit"] in str(ei.value)
    if "action_distribution" in cls.refuses:
        for call in (lambda: pol.action_distribution(X), lambda: pol.act(X)):
            with pytest.raises(PolicyCapabilityError) as ei:
                call()
            assert ei.value.operation == "action_distribution"
        out = pol.route_matrix(X, m)  # what the refusal points to instead
        assert out.actions.shape == (m.n_tasks,) and (out.propensities == 1.0).all()
        p = None
    else:
        p = pol.action_distribution(X)
        assert p.shape == (X.shape[0], pol.n_models) and p.dtype == np.float64
        assert (p >= 0).all()
        np.testing.assert_allclose(p.sum(axis=1), 1.0, atol=1e-9)
        a, prop = pol.act(X)  # argmax, except kinds without one (random samples with its own seed)
        np.testing.assert_array_equal(prop, p[np.arange(len(a)), a])
        if kind != "random":
            np.testing.assert_array_equal(a, p.argmax(axis=1))
        a2, prop2 = pol.act(X, rng=np.random.default_rng(0))
        np.testing.assert_array_equal(prop2, p[np.arange(len(a2)), a2])
        assert (prop2 > 0).all()
    pol.save(tmp_path / kind)
    back = RoutingPolicy.load(tmp_path / kind)
    assert type(back) is cls and back.models == pol.models
    if p is not None:
        np.testing.assert_array_equal(back.action_distribution(X), p)
    else:
        np.testing.assert_array_equal(back.route_matrix(X, m).actions, pol.route_matrix(X, m).actions)
