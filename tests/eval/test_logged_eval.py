"""OPE on a simulated router log through eval/logged.py: real LightGBM logger, real part files, real join."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from _logged_helpers import joined_sim_log

from router_rl.eval.logged import (
    LOG_OPE_SCHEMA_VERSION,
    LogOPEConfig,
    LogOPEError,
    auto_cost_ref,
    evaluate_log,
    group_keys,
    resolve_log_policies,
    resolve_log_policy,
    target_distribution,
)

FAST = {"n_bootstrap": 200, "folds": 3, "reward_model_params": {"pca_components": 16}}


@pytest.fixture(scope="module")
def sim(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A LightGBM logger exploring 20% on a 400-task fleet, 1500 decisions (80% labeled), joined."""
    import polars as pl

    from router_rl.features import EncoderConfig, FeatureEncoder
    from router_rl.logs.data import load_logged
    from router_rl.logs.simulate import LogSimulationConfig
    from router_rl.policies import make_policy

    d = tmp_path_factory.mktemp("ope_log")
    m, tr, log, _, logger = joined_sim_log(
        d, n_tasks=400, fleet_seed=3, num_boost_round=30, early_stopping_rounds=10, n=1500, epsilon=0.2, log_seed=1,
        log_config=LogSimulationConfig(feedback_rate=0.8),
    )
    cheap = copy.copy(logger)
    cheap.decision = logger.decision.with_(lam=3.0)  # type: ignore[attr-defined]
    cheap.metadata = {**logger.metadata, "version": "lgbm(lam=3)"}
    cheap.save(d / "lgbm_lam3")
    other = FeatureEncoder(EncoderConfig(n_word_hash=64).restricted_to(tr.tasks.columns)).fit(tr.tasks)
    foreign = make_policy("random", m.models)
    foreign.attach_encoder(other)
    foreign.save(d / "foreign")
    make_policy("random", list(reversed(m.models[:3]))).save(d / "subset")
    data = load_logged(d / "logged.parquet")
    return {
        "dir": d,
        "data": data,
        "table": pl.read_parquet(d / "logged.parquet"),
        "truth": log.truth.align(data.request_ids),
        "models": m.models,
    }


def test_artifacts_map_onto_the_log_and_refuse_what_does_not_fit(sim: dict[str, Any]) -> None:
    from router_rl.policies.base import RoutingPolicy

    data, d = sim["data"], sim["dir"]
    sub = RoutingPolicy.load(d / "subset")
    pi = target_distribution(sub, data)
    assert pi.shape == (data.n, len(data.models))
    np.testing.assert_allclose(pi[:, :3], 1 / 3)  # a permutation of the first three models
    np.testing.assert_array_equal(pi[:, 3:], 0.0)
    with pytest.raises(LogOPEError, match=r"policy 'foreign' was trained with feature encoder .* re-train"):
        target_distribution(RoutingPolicy.load(d / "foreign"), data, name="foreign")
    alien = resolve_log_policy("single:model=" + data.models[0], data)
    alien.models = ("gpt-9", *alien.models[1:])
    with pytest.raises(LogOPEError, match=r"routes to model\(s\) \['gpt-9'\] the log does not know"):
        target_distribution(alien, data, name="alien")


def test_names_the_log_alone_can_build(sim: dict[str, Any]) -> None:
    data = sim["data"]
    pols = resolve_log_policies(["random", f"single:model={data.models[2]}", str(sim["dir"] / "logger")], data)
    assert list(pols) == ["random", f"single:model={data.models[2]}", "logger"]
    assert target_distribution(pols[f"single:model={data.models[2]}"], data)[:, 2].min() == 1.0
    with pytest.raises(LogOPEError, match=r"only \['random', 'single'\] can be built from a log alone"):
        resolve_log_policy("lgbm", data)
    with pytest.raises(LogOPEError, match=r"give the model, e.g. single:model="):
        resolve_log_policy("single", data)
    with pytest.raises(LogOPEError, match="given twice"):
        resolve_log_policies(["random", "random"], data)


def test_estimates_cover_the_truth_and_local_share_is_exact(sim: dict[str, Any]) -> None:
    from router_rl.policies.base import RoutingPolicy

    data, truth, d = sim["data"], sim["truth"], sim["dir"]
    pols = {"lgbm_lam3": RoutingPolicy.load(d / "lgbm_lam3"), "logger": RoutingPolicy.load(d / "logger")}
    rep = evaluate_log(data, pols, config=LogOPEConfig(**FAST))
    ev = rep.evaluation
    for name, pol in pols.items():
        pi = target_distribution(pol, data)
        tv = truth.value(pi)
        q = ev.policies[name].metrics["quality"]
        assert q.n == data.n_labeled and q.n_excluded == data.n - data.n_labeled
        for est in ("snips", "dr"):  # IPS of a deterministic target at ESS ~27 is the noisy one here
            e = q.estimates[est]
            assert e.lower <= tv["quality"] <= e.upper, (name, est, e, tv)
        ips = q.estimates["ips"]
        assert ips.diagnostics is not None and ips.diagnostics.ess < data.n
        c = ev.policies[name].metrics["cost_usd"]
        assert c.n == data.n and c.n_excluded == 0
        assert c.estimates["dr"].lower <= tv["cost_usd"] <= c.estimates["dr"].upper
        loc = ev.policies[name].metrics["local_share"]
        assert loc.exact and loc.estimates["exact"].value == pytest.approx(tv["local_share"])
    # the logger's own on-policy value is the mean of its labeled rewards
    on = ev.incumbent_result.metrics["quality"].estimates["on_policy"]
    assert on.value == pytest.approx(float(np.nanmean(data.quality)))
    assert ev.policies["lgbm_lam3"].weights.max_weight > 1 and ev.policies["lgbm_lam3"].support.violated is False


def test_paired_difference_of_the_logging_distribution_is_zero(sim: dict[str, Any]) -> None:
    data = sim["data"]
    rep = evaluate_log(data, {"same": data.logging_probs}, config=LogOPEConfig(**FAST, metrics=["quality"]))
    mr = rep.evaluation.policies["same"].metrics["quality"]
    assert set(mr.estimates) == {"dm", "ips", "snips", "dr", "switch_dr"}
    for est in ("ips", "snips"):
        diff = mr.difference[est]
        assert (diff.value, diff.lower, diff.upper) == pytest.approx((0.0, 0.0, 0.0), abs=1e-12)
    assert list(rep.evaluation.policies["same"].metrics) == ["quality", "local_share"]


def test_report_records_reward_models_utility_and_schema(sim: dict[str, Any]) -> None:
    data = sim["data"]
    rep = evaluate_log(data, {"random": resolve_log_policy("random", data)}, config=LogOPEConfig(**FAST, lam=0.5))
    d = rep.to_dict()
    assert d["schema_version"] == LOG_OPE_SCHEMA_VERSION == 1
    assert d["metrics"] == ["quality", "cost_usd", "local_share", "utility"]
    assert d["log"]["n_rows"] == data.n and d["log"]["n_labeled"] == data.n_labeled
    assert d["log"]["n_fallback"] == int(data.fallback.sum()) == 0
    for m in ("quality", "cost_usd", "utility"):
        assert d["reward_models"][m]["kind"] == "lightgbm" and d["reward_models"][m]["folds"] == 3
        assert d["reward_models"][m]["params"]["pca_components"] == 16
    assert d["reward_models"]["local_share"] is None
    cref, model = auto_cost_ref(data)
    assert d["utility"] == {
        "definition": "quality - lam * cost_usd / cost_ref_usd",
        "lam": 0.5,
        "cost_ref_usd": cref,
        "cost_ref_source": f"auto:{model}",
    }
    per_model = [np.nanmean(data.cost_usd[data.actions == j]) for j in range(len(data.models))]
    assert cref == pytest.approx(max(per_model)) and model == data.models[int(np.argmax(per_model))]
    pol = d["policies"]["random"]
    assert pol["spec"] == "random" and pol["kind"] == "random"
    assert set(pol["metrics"]["utility"]["estimates"]) == {"dm", "ips", "snips", "dr", "switch_dr"}
    assert set(pol["metrics"]["utility"]["difference"]["dr"]) >= {"value", "lower", "upper", "alpha", "n"}
    assert set(pol["support"]) >= {"unsupported_mass", "never_tried_mass", "worst", "group_by", "threshold"}
    assert d["incumbent"]["name"] == "logged" and "on_policy" in d["incumbent"]["metrics"]["quality"]["estimates"]
    # the IPS value of the utility on the labeled rows, from the arrays
    lab = np.isfinite(data.quality)
    w = (1 / len(data.models)) / data.propensities
    u = data.quality - 0.5 * data.cost_usd / cref
    assert pol["metrics"]["utility"]["estimates"]["ips"]["value"] == pytest.approx(float((w * u)[lab].mean()))


def test_support_groups_and_violation_warning(sim: dict[str, Any]) -> None:
    data, table = sim["data"], sim["table"]
    groups, cols = group_keys(table, data)
    assert cols == ("category", "complexity")
    assert groups is not None and groups[0].startswith("category=") and ",complexity=" in groups[0]
    # exploration gives every model 0.2 / 7 ~ 0.029: a threshold of 0.05 makes the non-top ones unsupported
    pol = resolve_log_policy(f"single:model={data.models[0]}", data)
    rep = evaluate_log(
        data,
        {"first": pol},
        config=LogOPEConfig(**FAST, metrics=["quality"], support_threshold=0.05),
        groups=groups,
        group_by=cols,
    )
    sc = rep.evaluation.policies["first"].support
    expected = float((data.logging_probs[:, 0] < 0.05).mean())
    assert sc.violated and sc.unsupported_mass == pytest.approx(expected)
    assert sc.group_by == ("category", "complexity") and sc.worst[0].context.startswith("category=")
    assert any("first:" in w and "IPS/SNIPS/DR are biased" in w for w in rep.evaluation.warnings)


def test_incumbent_must_be_logged_or_evaluated(sim: dict[str, Any]) -> None:
    data = sim["data"]
    with pytest.raises(LogOPEError, match="incumbent: expected 'logged' or one of the evaluated policies"):
        evaluate_log(data, {"r": data.logging_probs}, config=LogOPEConfig(**FAST, incumbent="x"))
    rep = evaluate_log(
        data,
        {"r": resolve_log_policy("random", data), "same": data.logging_probs},
        config=LogOPEConfig(**FAST, incumbent="r", metrics=["cost_usd"]),
    )
    assert rep.evaluation.incumbent_result is None
    assert rep.evaluation.policies["r"].metrics["cost_usd"].difference is None
    assert rep.to_dict()["incumbent"] == {"name": "r", "metrics": None}


def test_written_json_is_reloadable(sim: dict[str, Any], tmp_path: Path) -> None:
    import json

    data = sim["data"]
    rep = evaluate_log(data, {"random": data.logging_probs}, config=LogOPEConfig(**FAST, metrics=["quality"]))
    out = rep.write_json(tmp_path / "r.json")
    assert json.loads(out.read_text())["policies"]["random"]["kind"] == "distribution"
