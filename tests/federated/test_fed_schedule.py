"""The round scheduler over real trajectory stores: due only when every node has >= N new accepted ones."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from router_rl.federated.schedule import RoundScheduler, ScheduleStateError

pytestmark = [pytest.mark.federated]


def _log(store: Path, start: int, n: int, *, quality: float | None = 1.0, feedback: bool = False) -> None:
    from router_rl.traces.decision_log import DecisionLogWriter

    t0 = datetime(2026, 12, 1, tzinfo=UTC)
    with DecisionLogWriter(store / "decisions", flush_interval_s=None, log_prompts=True, log_responses=True) as w:
        for i in range(start, start + n):
            w.append({"request_id": f"r{i}", "ts": t0 + timedelta(seconds=i), "policy_version": "p",
                      "action_models": ["m"], "action_probs": [1.0], "chosen_model": "m", "propensity": 1.0,
                      "outcome_model": "m", "prompt": f"p{i}", "response": f"a{i}",
                      "quality": None if feedback else quality})


def _label(store: Path, ids: range, quality: float) -> None:
    from router_rl.traces.feedback import FeedbackWriter

    t = datetime(2026, 12, 2, tzinfo=UTC)
    with FeedbackWriter(store / "feedback", flush_interval_s=None) as w:
        for i in ids:
            w.append({"feedback_id": f"f{i}", "request_id": f"r{i}", "quality": quality, "source": "judge",
                      "ts": t, "received_ts": t})


def test_round_is_due_only_when_every_node_has_enough_new_accepted(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    _log(a, 0, 30)
    _log(b, 0, 12)
    _log(b, 100, 20, quality=0.0)  # rejected by the quality threshold: never counted
    sched = RoundScheduler({"a": a, "b": b}, tmp_path / "state.json", min_new=20)
    chk = sched.check()
    assert not chk.due and chk.waiting_for == ("b",) and chk.new == {"a": 30, "b": 12}
    ran: list[int] = []
    assert sched.run_if_due(lambda c: ran.append(c.round)) == (chk, None) and ran == []
    assert not (tmp_path / "state.json").exists()

    _log(b, 12, 8)
    chk, out = sched.run_if_due(lambda c: {"eval_loss": 1.5})
    assert chk.due and chk.round == 1 and chk.new == {"a": 30, "b": 20} and out == {"eval_loss": 1.5}
    state = json.loads((tmp_path / "state.json").read_text())
    assert state["rounds"][0]["new"] == {"a": 30, "b": 20} and state["rounds"][0]["result"] == {"eval_loss": 1.5}
    # nothing new since: not due, counts restart from 0
    chk = sched.check()
    assert not chk.due and chk.new == {"a": 0, "b": 0} and chk.accepted == {"a": 30, "b": 20} and chk.round == 2


def test_default_is_1000_and_late_labels_count_once(tmp_path: Path) -> None:
    a = tmp_path / "a"
    _log(a, 0, 5, feedback=True)  # logged, not labeled yet
    sched = RoundScheduler({"a": a}, tmp_path / "s.json")
    assert sched.min_new == 1000
    fast = RoundScheduler({"a": a}, tmp_path / "s.json", min_new=3)
    assert fast.check().new == {"a": 0}
    _label(a, range(0, 3), 1.0)  # labels arrive later: the trajectories become accepted now
    chk, _ = fast.run_if_due(lambda c: None)
    assert chk.due and chk.new == {"a": 3}
    _label(a, range(3, 5), 1.0)
    assert fast.check().new == {"a": 2}  # the first three are never counted twice


def test_a_failed_round_is_not_committed_and_bad_state_is_an_error(tmp_path: Path) -> None:
    a = tmp_path / "a"
    _log(a, 0, 4)
    sched = RoundScheduler({"a": a}, tmp_path / "s.json", min_new=2)

    def boom(_c: object) -> None:
        raise RuntimeError("client crashed")

    with pytest.raises(RuntimeError, match="client crashed"):
        sched.run_if_due(boom)
    assert sched.check().due and sched.check().new == {"a": 4}
    chk = sched.check()
    sched.commit(chk)
    with pytest.raises(ScheduleStateError, match=r"round 1 was checked but the state has 1 rounds"):
        sched.commit(chk)
    (tmp_path / "s.json").write_text("{not json")
    with pytest.raises(ScheduleStateError, match=r"s\.json: unreadable schedule state"):
        sched.check()
    (tmp_path / "s.json").write_text(json.dumps({"version": 1, "rounds": [], "seen": {"zz": []}}))
    with pytest.raises(ScheduleStateError, match=r"node\(s\) \['zz'\] are not among the stores \['a'\]"):
        sched.check()
    with pytest.raises(ValueError, match="min_new must be >= 1"):
        RoundScheduler({"a": a}, tmp_path / "x.json", min_new=0)
