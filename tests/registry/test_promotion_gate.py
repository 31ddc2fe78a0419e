"""The promotion gate on a real joined log: good candidates pass, worse ones never do, refusals name their numbers."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from conftest import FAST_GATE, build_world

from router_rl.core.errors import ConfigError
from router_rl.registry import GateConfig, GateError, evaluate_gate, evaluate_gates

pytestmark = pytest.mark.slow
#: Deliberately worse candidates than the good LightGBM.
WORSE = ("random", "cheapest", "shuffled", "inverted")


def test_gate_config_validates_and_loads_files(tmp_path: Path) -> None:
    assert GateConfig().confidence == 0.95 and GateConfig().estimator == "dr" and GateConfig().local_target is None
    assert GateConfig(estimator="switch-dr").estimator == "switch_dr"  # type: ignore[arg-type]
    assert abs(GateConfig(confidence=0.9).alpha - 0.1) < 1e-12
    with pytest.raises(ConfigError, match=r"GateConfig\.confidence"):
        GateConfig(confidence=1.0)
    with pytest.raises(ConfigError, match=r"GateConfig\.estimator"):
        GateConfig(estimator="replay")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match=r"GateConfig\.min_rows"):
        GateConfig(min_rows=0)
    with pytest.raises(ConfigError, match=r"GateConfig\.canary_share"):
        GateConfig(canary_share=1.0)
    y = tmp_path / "gate.yaml"
    y.write_text("confidence: 0.9\nquality_floor: 0.9\nlocal_target: 0.5\nestimator: snips\n")
    g = GateConfig.from_file(y)
    assert (g.confidence, g.quality_floor, g.local_target, g.estimator) == (0.9, 0.9, 0.5, "snips")
    j = tmp_path / "gate.json"
    j.write_text(json.dumps(g.to_dict()))
    assert GateConfig.from_file(j) == g
    y.write_text("quality_flor: 0.9\n")
    with pytest.raises(ConfigError, match=r"gate\.yaml: GateConfig\.quality_flor: unknown setting"):
        GateConfig.from_file(y)
    y.write_text("quality_floor: high\n")
    with pytest.raises(ConfigError, match=r"gate\.yaml: GateConfig\.quality_floor"):
        GateConfig.from_file(y)
    y.write_text("a: [1, 2\n")
    with pytest.raises(ConfigError, match=r"gate\.yaml: <file>: invalid YAML"):
        GateConfig.from_file(y)
    y.write_text("- 1\n")
    with pytest.raises(ConfigError, match="expected a mapping of settings, got list"):
        GateConfig.from_file(y)
    with pytest.raises(ConfigError, match=r"missing\.yaml: <file>: cannot read the gate file"):
        GateConfig.from_file(tmp_path / "missing.yaml")


def test_good_candidate_beats_the_logger_with_every_number_recorded(world: dict[str, Any]) -> None:
    g = GateConfig(**FAST_GATE)
    v = evaluate_gate(world["policies"]["good"], "logged", world["data"], g)
    assert v.passed, v.summary_lines()
    assert v.reasons == [] and v.failed == []
    gain = v.check("utility_gain_lower")
    assert gain.value is not None and gain.value > 0 and gain.op == ">" and gain.threshold == 0.0
    ratio = v.check("quality_ratio_lower")
    assert ratio.value is not None and ratio.value >= 0.95
    assert v.check("local_share").passed is None  # not gated by default
    assert v.check("ess").value is not None and v.check("ess").value >= 50
    assert v.check("unsupported_mass").value == 0.0
    est = v.estimates
    assert est["estimator"] == "dr" and est["confidence"] == 0.95
    # every estimator, for every metric, with its interval; the paired difference vs the logger
    for metric in ("quality", "cost_usd", "utility"):
        assert set(est["candidate"][metric]) == {"dm", "ips", "snips", "dr", "switch_dr"}
        assert set(est["incumbent"][metric]) == {"on_policy"}
        d = est["difference"][metric]["dr"]
        assert d["lower"] <= d["value"] <= d["upper"]
    assert est["difference"]["utility"]["dr"]["lower"] == gain.value
    # the ratio's candidate quality is the report's DR quality (same reward model, same rows)
    qr = est["quality_ratio"]
    assert qr["candidate_quality"] == pytest.approx(est["candidate"]["quality"]["dr"]["value"], abs=1e-9)
    assert qr["value"] == pytest.approx(qr["candidate_quality"] / qr["reference_quality"])
    assert qr["lower"] == ratio.value and qr["lower"] <= qr["value"] <= qr["upper"]
    ref = est["reference"]
    assert ref["source"] == "best_estimated_quality_on_log"
    assert ref["model"] == max(ref["per_model_quality"], key=ref["per_model_quality"].get)
    d = v.to_dict()
    assert d["schema_version"] == 1 and d["passed"] is True and d["incumbent"] == "logged"
    assert json.dumps(d, sort_keys=True, allow_nan=False) == json.dumps(v.to_dict(), sort_keys=True)
    assert v.summary_lines()[0].startswith("PROMOTE: candidate good@seed0 vs incumbent logged on 2000 labeled")


def _assert_refused(v: Any, name: str) -> None:
    assert not v.passed, (name, v.summary_lines())
    gain = v.check("utility_gain_lower")
    assert gain.passed is False and gain.value is not None and gain.value <= 0
    line = next(r for r in v.reasons if r.startswith("utility_gain_lower = "))
    assert f"utility_gain_lower = {gain.value:.4g} (needs > 0) FAIL" in line


def test_worse_candidates_are_never_promoted_over_the_good_one(world: dict[str, Any]) -> None:
    pols = world["policies"]
    g = GateConfig(**FAST_GATE)
    vs = evaluate_gates({k: pols[k] for k in WORSE}, pols["good"], world["data"], g)
    assert list(vs) == list(WORSE)
    for name, v in vs.items():
        _assert_refused(v, name)
        assert v.incumbent == "good@seed0"
        assert {c.name for c in v.checks} >= {"incumbent_ess", "incumbent_unsupported_mass"}
        q = v.check("quality_ratio_lower")
        assert q.passed is False and q.value is not None and q.value < 0.95
        assert any(r.startswith(f"quality_ratio_lower = {q.value:.4g} (needs >= 0.95) FAIL") for r in v.reasons)
    # the same resamples for every candidate: one reward model, one report
    assert vs["random"].report is vs["shuffled"].report


@pytest.mark.parametrize("seed", [1, 2])
def test_worse_candidates_are_never_promoted_other_seeds(seed: int, tmp_path: Path) -> None:
    w = build_world(tmp_path, seed, n_tasks=700, n=1200)
    pols = w["policies"]
    g = GateConfig(**{**FAST_GATE, "seed": seed})
    vs = evaluate_gates({k: pols[k] for k in WORSE}, pols["good"], w["data"], g)
    for name, v in vs.items():
        _assert_refused(v, name)


def test_cheapest_and_inverted_fail_even_against_the_random_logger(world: dict[str, Any]) -> None:
    # (the shuffled model is left out: learning noise, it can by chance be truly better than random routing)
    pols = world["policies"]
    g = GateConfig(**FAST_GATE)
    vl = evaluate_gates({k: pols[k] for k in ("cheapest", "inverted")}, "logged", world["data"], g)
    for name, v in vl.items():
        q = v.check("quality_ratio_lower")
        assert not v.passed and q.passed is False and q.value is not None and q.value < 0.9, (name, v.summary_lines())


def test_the_incumbent_itself_is_not_an_improvement(world: dict[str, Any]) -> None:
    good = world["policies"]["good"]
    v = evaluate_gate(good, good, world["data"], GateConfig(**FAST_GATE))
    gain = v.check("utility_gain_lower")
    assert gain.value == 0.0 and gain.passed is False and not v.passed
    assert v.reasons[0].startswith("utility_gain_lower = 0 (needs > 0) FAIL")


def test_local_target_min_rows_and_support_refusals(world: dict[str, Any]) -> None:
    from router_rl.logs.simulate import simulate_log

    good = world["policies"]["good"]
    data = world["data"]
    v = evaluate_gate(good, "logged", data, GateConfig(**FAST_GATE, local_target=0.8, max_weight=2.0))
    assert not v.passed
    failing = {c.name for c in v.failed}
    assert failing == {"local_share", "max_weight"}
    loc = v.check("local_share")
    assert loc.value is not None and loc.value < 0.8
    assert f"local_share = {loc.value:.4g} (needs >= 0.8) FAIL" in v.reasons[0]
    few = evaluate_gate(good, "logged", data, GateConfig(**FAST_GATE, min_rows=5000))
    assert not few.passed and [c.name for c in few.checks] == ["labeled_rows"] and few.estimates == {}
    assert few.reasons == ["labeled_rows = 2000 (needs >= 5000) FAIL; rows with a quality label"]
    # a log of the deterministic cheapest policy gives the good candidate no support at all
    cheap_log = simulate_log(world["fleet"], world["policies"]["cheapest"], n=600, split="test", seed=9).logged()
    vs = evaluate_gate(good, "logged", cheap_log, GateConfig(**FAST_GATE))
    un = vs.check("unsupported_mass")
    assert un.passed is False and un.value is not None and un.value > 0.5
    assert any(w.startswith("good@seed0: ") and "probability mass" in w for w in vs.warnings)


def test_candidates_that_do_not_fit_the_log_raise(world: dict[str, Any]) -> None:
    from router_rl.features import EncoderConfig, FeatureEncoder
    from router_rl.policies import make_policy

    tr = world["fleet"].matrix().split("train")
    other = make_policy("random", world["models"])
    other.attach_encoder(FeatureEncoder(EncoderConfig(n_word_hash=32).restricted_to(tr.tasks.columns)).fit(tr.tasks))
    with pytest.raises(GateError, match="was trained with feature encoder"):
        evaluate_gate(other, "logged", world["data"], GateConfig(**FAST_GATE))
    with pytest.raises(GateError, match="policy 'incumbent random@unsaved' was trained with feature encoder"):
        evaluate_gate(world["policies"]["good"], other, world["data"], GateConfig(**FAST_GATE))
    with pytest.raises(GateError, match="reference: model 'gpt-9' is not in the log's action set"):
        evaluate_gate(world["policies"]["good"], "logged", world["data"], GateConfig(**FAST_GATE, reference="gpt-9"))
    with pytest.raises(GateError, match="incumbent: expected a RoutingPolicy or 'logged', got 'v0001'"):
        evaluate_gate(world["policies"]["good"], "v0001", world["data"], GateConfig(**FAST_GATE))


def test_the_gate_uses_the_paired_percentile_bootstrap_unless_told(world: dict[str, Any]) -> None:
    """The gate's interval is its own setting: the OPE report's default (betting) does not leak into it."""
    base = GateConfig(**FAST_GATE)
    assert base.interval == "percentile"
    good, data = world["policies"]["good"], world["data"]
    pct = evaluate_gate(good, "logged", data, base)
    bet = evaluate_gate(good, "logged", data, GateConfig(**{**FAST_GATE, "interval": "betting"}))
    assert pct.to_dict()["gate"]["interval"] == "percentile" and bet.to_dict()["gate"]["interval"] == "betting"
    d_p, d_b = (v.estimates["difference"]["utility"]["dr"] for v in (pct, bet))
    assert d_p["value"] == pytest.approx(d_b["value"], abs=1e-12)  # the same point estimate
    assert d_b["upper"] - d_b["lower"] > d_p["upper"] - d_p["lower"]
    assert pct.check("utility_gain_lower").value == d_p["lower"]
    with pytest.raises(ConfigError, match=r"GateConfig\.interval"):
        GateConfig(interval="wald")  # type: ignore[arg-type]
