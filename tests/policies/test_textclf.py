"""Per-model text classifiers: ``tfidf-lr`` (RouterBench's reference) and ``svm`` (LLMRouter's)."""

from __future__ import annotations

import numpy as np
import pytest

from router_rl.policies.textclf import SVMPolicy, TfidfLRPolicy, idf_weights


def test_idf_weights_formula() -> None:
    X = np.array([[1.0, 0.0, 2.0], [0.0, 0.0, 1.0], [3.0, 0.0, 1.0], [0.0, 1.0, 1.0]])
    want = np.log((1 + 4) / (1 + np.array([2, 1, 4]))) + 1
    np.testing.assert_allclose(idf_weights(X), want)


@pytest.mark.parametrize("cls", [TfidfLRPolicy, SVMPolicy])
def test_learns_the_feature_that_drives_success(cls, toy_splits) -> None:
    from sklearn.metrics import roc_auc_score

    X, m = toy_splits["train"]
    pol = cls(m.models).fit(X, m, seed=0)
    Xt, mt = toy_splits["test"]
    q = pol.predict_quality(Xt)
    assert q.shape == (mt.n_tasks, 3) and ((q >= 0) & (q <= 1)).all()
    for j in (0, 1):  # feature 0 drives both local models (AUC of the truth ~0.9)
        assert roc_auc_score(mt.quality[:, j], q[:, j]) > 0.8
    assert pol.metadata["textclf"]["n_constant_models"] == 0


def test_svm_probabilities_are_calibrated_on_average(toy_splits) -> None:
    X, m = toy_splits["train"]
    q = SVMPolicy(m.models).fit(X, m, seed=0).predict_quality(X)
    np.testing.assert_allclose(q.mean(axis=0), m.quality.mean(axis=0), atol=0.05)


@pytest.mark.parametrize("cls", [TfidfLRPolicy, SVMPolicy])
def test_a_model_with_too_few_failures_gets_its_rate_and_is_counted(cls, toy_splits) -> None:
    X, m = toy_splits["train"]
    q = m.quality.copy()
    q[:, 2] = 1.0
    q[:2, 2] = 0.0  # 2 failures < min_class_count 3
    mm = type(m)(tasks=m.tasks, models=m.models, quality=q, cost=m.cost, latency=m.latency, error=m.error,
                 input_tokens=m.input_tokens, output_tokens=m.output_tokens, catalog=m.catalog)
    pol = cls(m.models).fit(X, mm, seed=0)
    info = pol.metadata["textclf"]
    assert info["n_constant_models"] == 1 and info["constant_models"] == {"cloud": pytest.approx(1 - 2 / 240)}
    np.testing.assert_allclose(pol.predict_quality(X[:5])[:, 2], 1 - 2 / 240, atol=1e-9)
