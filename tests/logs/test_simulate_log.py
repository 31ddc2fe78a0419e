"""simulate_log: decision rows as the router writes them, feedback, the truth behind them."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import polars as pl
import pytest

from router_rl.logs.simulate import NO_ANSWER_ERROR, SIMULATED_FAILURE, LogSimulationConfig, simulate_log
from router_rl.logs.truth import load_truth
from router_rl.policies.exploration import ExplorationConfig, explore
from router_rl.traces.decision_log import read_decision_log, validate_row
from router_rl.traces.feedback import read_feedback, validate_feedback_row
from router_rl.traces.schema import DECISION_LOG_SCHEMA, FEEDBACK_SCHEMA
from router_rl.traces.traceset import TraceSet


def _sim(fleet: TraceSet, policy: Any, **kw: Any) -> Any:
    cfg = kw.pop("config", None)
    return simulate_log(fleet, policy, n=kw.pop("n", 3000), exploration=kw.pop("exploration", None),
                        split=kw.pop("split", "test"), seed=kw.pop("seed", 5), config=cfg, **kw)


def test_rows_are_router_rows_with_exact_propensities(fleet: TraceSet, lgbm_policy: Any) -> None:
    expl = ExplorationConfig(epsilon=0.2, temperature=2.0)
    log = _sim(fleet, lgbm_policy, exploration=expl)
    dec = log.decisions
    assert dict(dec.schema) == DECISION_LOG_SCHEMA
    assert dec.height == 3000 and dec["request_id"].n_unique() == 3000
    for i, r in enumerate(dec.head(300).to_dicts()):
        validate_row(r, index=i)
    # the logged distribution is exactly explore(policy distribution) on the request's features
    X = np.asarray(dec["features"].to_list(), dtype=np.float32)
    want = explore(lgbm_policy.action_distribution(X), expl)
    got = np.asarray(dec["action_probs"].to_list())
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-12)
    a = np.array([lgbm_policy.models.index(m) for m in dec["chosen_model"]])
    np.testing.assert_array_equal(dec["propensity"].to_numpy(), got[np.arange(3000), a])
    assert dec["quality"].null_count() == 3000  # labels arrive as feedback, like the router
    assert set(dec["exploration"].unique()) == {json.dumps({"epsilon": 0.2, "temperature": 2.0}, sort_keys=True)}
    assert dec["encoder_fingerprint"].unique().to_list() == [lgbm_policy.encoder.fingerprint]
    # sampling follows the distribution: empirical action frequencies within sampling noise
    freq = np.bincount(a, minlength=7) / 3000
    assert np.abs(freq - got.mean(axis=0)).max() < 0.03
    # test split tasks only
    test_tasks = fleet.matrix().split("test").tasks["task_id"].to_list()
    assert set(log.truth.task_ids.tolist()) <= set(test_tasks)


def test_no_fallback_outcomes_come_from_the_chosen_model(fleet: TraceSet, lgbm_policy: Any) -> None:
    log = _sim(fleet, lgbm_policy, exploration=ExplorationConfig(epsilon=0.3))
    dec, tr = log.decisions, log.truth
    assert (dec["served_model"] == dec["chosen_model"]).all() and not dec["fallback_used"].any()
    a = np.array([tr.models.index(m) for m in dec["chosen_model"]])
    m = fleet.matrix()
    rows = np.array([m.tasks["task_id"].to_list().index(t) for t in tr.task_ids[:50]])
    np.testing.assert_array_equal(tr.quality[:50], m.quality[rows])
    np.testing.assert_allclose(dec["cost_usd"].to_numpy(), tr.cost_usd[np.arange(3000), a])
    fb = log.feedback
    assert dict(fb.schema) == FEEDBACK_SCHEMA and fb.height == 3000  # feedback_rate 1
    q = dict(zip(fb["request_id"], fb["quality"], strict=True))
    np.testing.assert_array_equal([q[r] for r in dec["request_id"]], tr.quality[np.arange(3000), a])
    assert (fb["ts"] >= dec["ts"]).all()
    assert tr.expected_quality is not None and np.isfinite(tr.expected_quality).all()


def test_fallbacks_and_no_answers_follow_the_documented_rule(fleet: TraceSet, lgbm_policy: Any) -> None:
    cfg = LogSimulationConfig(fallback_rate=0.3, no_answer_rate=0.25, fallback_model="qwen2.5-coder:7b",
                              failure_latency_s=2.0)
    log = _sim(fleet, lgbm_policy, exploration=ExplorationConfig(epsilon=0.5), config=cfg)
    dec, tr = log.decisions, log.truth
    fb = tr.models.index("qwen2.5-coder:7b")
    assert not tr.failed[:, fb].any()
    a = np.array([tr.models.index(m) for m in dec["chosen_model"]])
    ar = np.arange(dec.height)
    failed, none = tr.failed[ar, a], tr.no_answer[ar, a]
    assert 0.15 < failed.mean() < 0.3 and none.sum() > 20
    used = dec["fallback_used"].to_numpy()
    np.testing.assert_array_equal(used, failed & ~none)
    assert (dec.filter(pl.Series(used))["served_model"] == "qwen2.5-coder:7b").all()
    assert dec.filter(pl.Series(used))["fallback_reason"].to_list() == [SIMULATED_FAILURE] * int(used.sum())
    no = dec.filter(pl.Series(none))
    assert no["served_model"].null_count() == no.height and (no["error"] == NO_ANSWER_ERROR).all()
    assert no["cost_usd"].null_count() == no.height
    assert no["attempts"].list.len().to_list() == [2] * no.height
    # the truth of a failed action is the fallback model's answer, plus the failed attempt's latency
    i, j = np.argwhere(tr.failed & ~tr.no_answer)[0]
    assert tr.quality[i, j] == tr.model_quality[i, fb]
    m = fleet.matrix()
    row = m.tasks["task_id"].to_list().index(tr.task_ids[i])
    assert tr.latency_s[i, j] == pytest.approx(m.latency[row, fb] + 2.0)
    assert tr.local[i, j] == 1.0
    assert (tr.quality[tr.no_answer] == 0).all() and (tr.local[tr.no_answer] == 0).all()
    # no feedback for a request nobody answered
    assert not set(no["request_id"]) & set(log.feedback["request_id"])


def test_feedback_rate_and_delay(fleet: TraceSet, lgbm_policy: Any) -> None:
    log = _sim(fleet, lgbm_policy, config=LogSimulationConfig(feedback_rate=0.6, label_delay_s=300.0))
    share = log.feedback.height / log.decisions.height
    assert 0.55 < share < 0.65
    j = log.feedback.join(log.decisions.select("request_id", pl.col("ts").alias("dts")), on="request_id")
    delay = (j["ts"] - j["dts"]).dt.total_microseconds().to_numpy() / 1e6
    assert delay.min() >= 0 and 250 < delay.mean() < 350


def test_seeded_and_reproducible(fleet: TraceSet, lgbm_policy: Any) -> None:
    a = _sim(fleet, lgbm_policy, n=500, seed=9, exploration=ExplorationConfig(epsilon=0.1))
    b = _sim(fleet, lgbm_policy, n=500, seed=9, exploration=ExplorationConfig(epsilon=0.1))
    c = _sim(fleet, lgbm_policy, n=500, seed=10, exploration=ExplorationConfig(epsilon=0.1))
    assert a.decisions.equals(b.decisions) and a.feedback.equals(b.feedback)
    assert not a.decisions["chosen_model"].equals(c.decisions["chosen_model"])


def test_privacy_local_keeps_cloud_at_zero(fleet: TraceSet, lgbm_policy: Any) -> None:
    log = _sim(fleet, lgbm_policy, split=None, exploration=ExplorationConfig(epsilon=0.5),
               config=LogSimulationConfig(privacy_local=True))
    m = fleet.matrix()
    priv = dict(zip(m.tasks["task_id"], m.tasks["privacy"], strict=True))
    mask = np.array([priv[t] for t in log.truth.task_ids])
    assert mask.sum() > 0
    probs = np.asarray(log.decisions["action_probs"].to_list())[mask]
    cloud = np.array([loc == "cloud" for loc in log.truth.locations])
    assert (probs[:, cloud] == 0).all()
    assert (probs[:, ~cloud] > 0).all()


def test_truth_value_is_the_mean_of_the_distribution_weighted_truth(fleet: TraceSet, lgbm_policy: Any) -> None:
    log = _sim(fleet, lgbm_policy, n=1000)
    tr = log.truth
    one = np.zeros((tr.n, tr.k))
    one[:, 0] = 1.0
    v = tr.value(one)
    assert v["quality"] == pytest.approx(tr.quality[:, 0].mean())
    assert v["cost_usd"] == pytest.approx(tr.cost_usd[:, 0].mean())
    assert v["local_share"] == 1.0  # model 0 is local
    half = np.full((tr.n, tr.k), 1 / tr.k)
    assert tr.value(half)["quality"] == pytest.approx(tr.quality.mean())
    with pytest.raises(ValueError, match="shape"):
        tr.value(np.ones((3, tr.k)))


def test_write_goes_through_the_writers_and_reads_back(tmp_path: Any, fleet: TraceSet, lgbm_policy: Any) -> None:
    log = _sim(fleet, lgbm_policy, n=1200, config=LogSimulationConfig(fallback_rate=0.1, feedback_rate=0.8))
    log.write(tmp_path, batch_size=500)
    parts = sorted((tmp_path / "decisions").glob("part-*.parquet"))
    assert len(parts) == 3
    back = read_decision_log(tmp_path / "decisions")
    assert back.equals(log.decisions)
    assert read_feedback(tmp_path / "feedback").equals(log.feedback)
    truth = load_truth(tmp_path / "truth.parquet")
    np.testing.assert_array_equal(truth.quality, log.truth.quality)
    np.testing.assert_array_equal(truth.failed, log.truth.failed)
    assert truth.models == log.truth.models and truth.locations == log.truth.locations
    assert (tmp_path / "catalog.json").is_file()
    meta = json.loads((tmp_path / "meta.json").read_text())
    assert meta["counts"]["decisions"] == 1200 and meta["counts"]["feedback"] == log.feedback.height


def test_refusals_name_the_problem(fleet: TraceSet, lgbm_policy: Any) -> None:
    with pytest.raises(ValueError, match="n must be >= 1"):
        _sim(fleet, lgbm_policy, n=0)
    with pytest.raises(ValueError, match="no task in split 'nope'"):
        _sim(fleet, lgbm_policy, split="nope")
    with pytest.raises(ValueError, match="fallback_model"):
        _sim(fleet, lgbm_policy, config=LogSimulationConfig(fallback_rate=0.1, fallback_model="gpt-9"))
    sub = fleet.matrix().select_models(list(fleet.matrix().models[:3]))
    with pytest.raises(ValueError, match="routes between"):
        simulate_log(sub, lgbm_policy, n=10)


def test_feedback_row_validation() -> None:
    ok = {"feedback_id": "f1", "request_id": "r1", "quality": 1, "source": "agent", "ts": 0.0, "received_ts": 1.0}
    assert validate_feedback_row(ok)["quality"] == 1.0
    with pytest.raises(ValueError, match="field 'quality'"):
        validate_feedback_row({**ok, "quality": 1.5}, index=3)
    with pytest.raises(ValueError, match="field 'source': required"):
        validate_feedback_row({**ok, "source": None})


@pytest.mark.data
def test_simulate_log_on_an_imported_matrix(datasets_root: Any, tmp_path: Any) -> None:
    from router_rl.features import EncoderConfig, FeatureEncoder
    from router_rl.logs.join import join_logs
    from router_rl.policies import make_policy
    from router_rl.traces.importers import IMPORTERS

    ts = IMPORTERS["routerbench"](datasets_root / "routerbench-subset-via-routerdc", drop_invalid=True, seed=0)
    m = ts.matrix()
    tr = m.split("train")
    enc = FeatureEncoder(EncoderConfig().restricted_to(tr.tasks.columns)).fit(tr.tasks)
    pol = make_policy("cheapest", m.models).attach_encoder(enc).fit(enc.transform(tr.tasks), tr)
    log = simulate_log(ts, pol, n=4000, exploration=ExplorationConfig(epsilon=0.25), split="test", seed=0,
                       config=LogSimulationConfig(fallback_rate=0.05, feedback_rate=0.9))
    assert log.truth.k == 11 and log.truth.expected_quality is None  # no ground truth for real data
    assert np.isnan(log.truth.latency_s).all()  # routerbench has no latency
    d = log.logged()
    assert d.n == 4000 and 0.85 < d.n_labeled / d.n < 0.95
    cheapest = int(np.argmax(d.logging_probs[0]))
    assert d.logging_probs[0, cheapest] == pytest.approx(0.75 + 0.25 / 11)
    log.write(tmp_path)
    _, rep = join_logs(tmp_path / "decisions", tmp_path / "feedback", catalog=log.catalog)
    assert rep.rows == 4000 and rep.labeled == log.feedback.height and rep.fallbacks == int(d.fallback.sum())


def test_the_policy_model_order_is_the_logged_order(fleet: TraceSet) -> None:
    from router_rl.features import EncoderConfig, FeatureEncoder
    from router_rl.policies import make_policy

    m = fleet.matrix()
    order = tuple(reversed(m.models))
    enc = FeatureEncoder(EncoderConfig().restricted_to(m.tasks.columns)).fit(m.tasks)
    pol = make_policy("random", order, weights=[0.4, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1]).attach_encoder(enc)
    log = simulate_log(fleet, pol, n=400, seed=1)
    assert log.truth.models == order and log.decisions["action_models"][0].to_list() == list(order)
    assert log.decisions["action_probs"][0].to_list() == pytest.approx([0.4] + [0.1] * 6)
    rows = [m.tasks["task_id"].to_list().index(t) for t in log.truth.task_ids[:20]]
    np.testing.assert_array_equal(log.truth.model_quality[:20], m.quality[rows][:, ::-1])
    assert log.truth.locations == tuple(m.catalog[x].location for x in order)
    exp = fleet.ground_truth_matrix()[rows][:, ::-1]
    np.testing.assert_array_equal(log.truth.expected_quality[:20], exp)
