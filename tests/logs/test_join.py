"""join_logs: the label rule, exclusions and every count of JoinReport, on real part files."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest

from router_rl.logs.data import LoggedData, LoggedDataError, load_logged
from router_rl.logs.join import JoinError, join_logs
from router_rl.logs.simulate import LogSimulationConfig, simulate_log
from router_rl.policies.exploration import ExplorationConfig
from router_rl.traces.decision_log import DecisionLogWriter
from router_rl.traces.feedback import FeedbackWriter
from router_rl.traces.schema import LOGGED_SCHEMA
from router_rl.traces.traceset import TraceSet


@pytest.fixture(scope="module")
def sim(fleet: TraceSet, lgbm_policy: Any) -> Any:
    cfg = LogSimulationConfig(fallback_rate=0.2, no_answer_rate=0.5, feedback_rate=0.5)
    return simulate_log(fleet, lgbm_policy, n=200, exploration=ExplorationConfig(epsilon=0.3), split="test",
                        seed=4, config=cfg)


def _move_parts(src: Path, dst: Path) -> None:
    # a second PartWriter on the same folder in the same second and process would reuse the part
    # name part-<second>-<pid>-000001 and replace the first writer's file: write elsewhere, move in
    for p in src.glob("part-*.parquet"):
        p.rename(dst / f"part-extra-{p.name[len('part-'):]}")


@pytest.fixture
def logdir(tmp_path: Path, sim: Any) -> dict[str, Any]:
    """The simulated log plus hand-made rows: rejected, duplicate, featureless, other encoder; extra feedback."""
    sim.write(tmp_path)
    dec = sim.decisions
    rows = dec.to_dicts()
    labeled = set(sim.feedback["request_id"].to_list())
    answered = dec.filter(pl.col("outcome_model").is_not_null())["request_id"].to_list()
    no_answer = dec.filter(pl.col("outcome_model").is_null())["request_id"].to_list()
    assert no_answer, "the fixture needs a request nobody answered"
    r_lab = next(r for r in answered if r in labeled)  # has simulated feedback
    r_unl = next(r for r in answered if r not in labeled)  # no feedback yet
    base = rows[0]
    t0 = base["ts"]
    rejected = {**base, "request_id": "rej-1", "strategy": "rejected", "decided_by": "rejected", "served_model": None,
                "outcome_model": None, "served_propensity": None, "fallback_used": False, "error": "unknown model",
                "action_probs": [1.0] + [0.0] * 6, "chosen_model": base["action_models"][0], "propensity": 1.0,
                "features": None, "encoder_fingerprint": None}
    duplicate = {**base, "ts": t0 + timedelta(seconds=5)}
    featureless = {**base, "request_id": "rule-1", "features": None, "encoder_fingerprint": None,
                   "strategy": "quality_optimized", "decided_by": "quality_optimized"}
    other_enc = {**base, "request_id": "enc-1", "encoder_fingerprint": "ffffffffffffffff"}
    with DecisionLogWriter(tmp_path / "extra-decisions", flush_interval_s=None) as w:
        w.extend([rejected, duplicate, featureless, other_enc])
    _move_parts(tmp_path / "extra-decisions", tmp_path / "decisions")
    sim_q = dict(zip(sim.feedback["request_id"], sim.feedback["quality"], strict=True))
    sim_ts = dict(zip(sim.feedback["request_id"], sim.feedback["ts"], strict=True))
    late = sim_ts[r_lab] + timedelta(hours=1)

    def fb(fid: str, rid: str, q: float, source: str, ts: Any) -> dict[str, Any]:
        return {"feedback_id": fid, "request_id": rid, "quality": q, "source": source, "ts": ts, "received_ts": ts}

    extra = [
        fb("j-old", r_lab, 0.9, "judge:pytest", late - timedelta(minutes=30)),  # superseded by j-new
        fb("j-new", r_lab, 0.2, "judge:pytest", late),
        fb("j-new", r_lab, 0.0, "judge:pytest", late + timedelta(minutes=1)),  # same key: not stored twice
        fb("h-1", r_unl, 0.6, "human", t0 + timedelta(hours=2)),
        fb("orphan-1", "nope-1", 1.0, "agent", t0),
        fb("rej-fb", "rej-1", 1.0, "agent", t0),
        fb("na-fb", no_answer[0], 1.0, "agent", t0 + timedelta(hours=3)),
    ]
    with FeedbackWriter(tmp_path / "extra-feedback", flush_interval_s=None) as fw:
        fw.extend(extra)
    _move_parts(tmp_path / "extra-feedback", tmp_path / "feedback")
    return {"dir": tmp_path, "r_lab": r_lab, "r_unl": r_unl, "no_answer": no_answer, "sim_q": sim_q,
            "n_sim_fb": sim.feedback.height}


def _row(table: pl.DataFrame, rid: str) -> dict[str, Any]:
    return table.filter(pl.col("request_id") == rid).to_dicts()[0]


def test_default_rule_mean_over_sources_and_every_count(logdir: dict[str, Any], sim: Any) -> None:
    d = logdir["dir"]
    table, rep = join_logs(d / "decisions", d / "feedback", catalog=sim.catalog)
    assert dict(table.schema) == LOGGED_SCHEMA
    assert rep.decisions == 204 and rep.rejected == 1 and rep.duplicate_decisions == 1
    assert rep.rows == table.height == 202  # 200 + featureless + other encoder
    assert rep.rows == rep.labeled + rep.no_answer + rep.unlabeled
    assert rep.no_answer == len(logdir["no_answer"])
    assert rep.feedback_rows == logdir["n_sim_fb"] + 7
    assert rep.duplicate_feedback_ids == 1 and rep.orphan_feedback == 1 and rep.feedback_for_rejected == 1
    assert rep.feedback_on_no_answer == 1 and rep.superseded_feedback == 1
    assert rep.sources == {"agent": 3, "human": 1, "judge:pytest": 2, "simulated": logdir["n_sim_fb"]}
    assert rep.no_features == 1 and rep.fingerprint_mismatches == 1
    assert rep.reference_fingerprint == sim.meta["encoder_fingerprint"]
    assert rep.fingerprints == {sim.meta["encoder_fingerprint"]: 200, "ffffffffffffffff": 1, "null": 1}
    assert rep.fallbacks == int(sim.decisions["fallback_used"].sum())
    # labels: mean of the newest per source; the human label of an unlabeled row; no answer = 0
    r = _row(table, logdir["r_lab"])
    assert r["quality"] == pytest.approx((logdir["sim_q"][logdir["r_lab"]] + 0.2) / 2)
    assert r["label_sources"] == ["judge:pytest", "simulated"] and r["n_feedback"] == 3
    u = _row(table, logdir["r_unl"])
    assert u["quality"] == 0.6 and u["label_sources"] == ["human"]
    na = _row(table, logdir["no_answer"][0])
    assert na["quality"] == 0.0 and na["label_sources"] == [] and na["n_feedback"] == 1
    assert rep.labeled == logdir["n_sim_fb"] + 1  # + the human label of a row without simulated feedback
    # the kept duplicate is the first decision row (the simulated one, earlier ts)
    assert table["request_id"].n_unique() == table.height
    # locations from the catalog
    assert _row(table, logdir["r_lab"])["action_locations"] == [sim.catalog[m].location for m in sim.truth.models]
    # from_table refuses the mixed encoders / featureless rows, names them
    with pytest.raises(LoggedDataError, match="column 'features'"):
        LoggedData.from_table(table)


def test_drop_unusable_excludes_and_counts(logdir: dict[str, Any], sim: Any) -> None:
    d = logdir["dir"]
    table, rep = join_logs(d / "decisions", d / "feedback", catalog=sim.catalog, drop_unusable=True)
    assert rep.excluded_no_features == 1 and rep.excluded_fingerprint == 1 and rep.rows == 200
    data = LoggedData.from_table(table)
    assert data.n == 200 and data.encoder_fingerprint == sim.meta["encoder_fingerprint"]
    assert data.n_labeled == rep.labeled + rep.no_answer
    # expecting the other fingerprint makes the 200 simulated rows the mismatches
    _, rep2 = join_logs(d / "decisions", d / "feedback", expect_fingerprint="ffffffffffffffff", drop_unusable=True)
    assert rep2.rows == 1 and rep2.excluded_fingerprint == 200 and rep2.feedback_for_excluded > 0


def test_newest_and_priority_rules(logdir: dict[str, Any], sim: Any) -> None:
    d = logdir["dir"]
    t_new, rep = join_logs(d / "decisions", d / "feedback", label_rule="newest")
    r = _row(t_new, logdir["r_lab"])
    assert r["quality"] == 0.2 and r["label_sources"] == ["judge:pytest"]
    t_pri, rep = join_logs(d / "decisions", d / "feedback", label_rule="priority",
                           source_priority=["human", "simulated"])
    assert rep.unused_source_feedback == 2  # the judge rows (duplicate id already removed)
    assert _row(t_pri, logdir["r_lab"])["quality"] == logdir["sim_q"][logdir["r_lab"]]
    assert _row(t_pri, logdir["r_unl"])["label_sources"] == ["human"]
    _, rep_h = join_logs(d / "decisions", d / "feedback", label_rule="priority", source_priority=["human"])
    assert rep_h.labeled == 1 and rep_h.unlabeled == rep_h.rows - rep_h.no_answer - 1
    with pytest.raises(JoinError, match="source_priority"):
        join_logs(d / "decisions", d / "feedback", label_rule="priority")
    with pytest.raises(JoinError, match="label_rule"):
        join_logs(d / "decisions", label_rule="vote")


def test_without_feedback_every_answered_row_is_unlabeled(tmp_path: Path, sim: Any) -> None:
    sim.write(tmp_path)
    table, rep = join_logs(tmp_path / "decisions")
    assert rep.labeled == 0 and rep.unlabeled == 200 - rep.no_answer and rep.feedback_rows == 0
    assert table["action_locations"].null_count() == 200
    with pytest.raises(LoggedDataError, match="action_locations"):
        LoggedData.from_table(table)
    data = LoggedData.from_table(table, catalog=sim.catalog)
    assert data.n_labeled == rep.no_answer


def test_round_trip_matches_the_simulation_exactly(tmp_path: Path, sim: Any) -> None:
    sim.write(tmp_path, batch_size=64)
    table, _ = join_logs(tmp_path / "decisions", tmp_path / "feedback", catalog=sim.catalog)
    p = tmp_path / "logged.parquet"
    table.write_parquet(p)
    got, want = load_logged(p), sim.logged()
    for f in ("X", "actions", "propensities", "logging_probs", "quality", "cost_usd", "latency_s",
              "outcome_actions", "fallback"):
        np.testing.assert_array_equal(getattr(got, f), getattr(want, f), err_msg=f)
    assert got.request_ids.tolist() == want.request_ids.tolist() == sim.truth.request_ids.tolist()
    assert got.models == want.models and got.locations == want.locations
    assert got.encoder_fingerprint == want.encoder_fingerprint
    with pytest.raises(JoinError, match="not in the catalog"):
        join_logs(tmp_path / "decisions", catalog=sim.catalog.subset(sim.catalog.models[:2]))


def test_an_empty_log_joins_into_an_empty_table(tmp_path: Path) -> None:
    (tmp_path / "decisions").mkdir()
    table, rep = join_logs(tmp_path / "decisions")
    assert table.height == 0 and dict(table.schema) == LOGGED_SCHEMA and rep.rows == rep.decisions == 0
    with pytest.raises(LoggedDataError, match="no rows, and no models= given"):
        LoggedData.from_table(table)
    data = LoggedData.from_table(table, models=["a", "b"], locations=["local", "cloud"])
    assert data.n == 0 and data.k == 2
    with pytest.raises(FileNotFoundError):
        join_logs(tmp_path / "none")
