"""Automatic rollback of the learned policy on a real router: a regression injected through ``/v1/feedback``."""

from __future__ import annotations

import asyncio
import logging
import threading
from pathlib import Path

import httpx
import pytest
from _live_helpers import (
    Backends,
    admin,
    chat,
    feedback,
    make_registry,
    policy_state,
    start_router,
    wait_for,
)
from _router_helpers import save_random_policy

from router_rl.router.canary import CanaryConfig
from router_rl.router.live_policy import LivePolicies
from router_rl.router.policy_client import InProcessPolicyClient
from router_rl.router.policy_slot import PolicySlot
from router_rl.router.rollback import RollbackConfig, labels_to_rollback, rollback_verdict
from router_rl.router.telemetry import RouterMetrics
from router_rl.router.windows import OutcomeWindow, QualityWindow, wilson_interval

#: absolute floor 0.5 from 5 labels: all-zero labels roll back at the 5th (labels_to_rollback)
GUARD = {"rollback": {"min_feedback": 5, "floor": 0.5, "floor_ratio": None, "min_decisions": 1000},
         "canary": {"auto_ramp": False}}


class Traffic:
    """Background clients sending requests for the whole test (every status kept)."""

    def __init__(self, base_url: str, n: int = 3) -> None:
        self.statuses: list[int] = []
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, args=(base_url, k)) for k in range(n)]

    def _run(self, base_url: str, k: int) -> None:
        with httpx.Client(base_url=base_url, timeout=30) as http:
            i = 0
            while not self._stop.is_set():
                self.statuses.append(chat(http, f"bg{k}-{i}").status_code)
                i += 1

    def __enter__(self) -> Traffic:
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for t in self._threads:
            t.join()


def _decided_by(http: httpx.Client, version: str, n: int, prefix: str) -> list[str]:
    """``n`` request ids the given registry version decided."""
    out: list[str] = []
    i = 0
    while len(out) < n:
        rid = f"{prefix}{i}"
        r = chat(http, rid)
        assert r.status_code == 200
        if r.headers["x-router-policy"].startswith(f"{version}/"):
            out.append(rid)
        i += 1
    return out


@pytest.mark.slow
def test_live_regression_rolls_back_at_the_stated_label(
    backends: Backends, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="router_rl.router")
    reg, (v1, v2) = make_registry(tmp_path, 2, live=["v0001", "v0002"])
    n_stated = labels_to_rollback(RollbackConfig(min_feedback=5, floor=0.5, floor_ratio=None), 0.5)
    assert n_stated == 5
    _, srv = start_router(backends, tmp_path, reg.root, **GUARD)
    with srv, httpx.Client(base_url=srv.base_url, timeout=30) as http, Traffic(srv.base_url) as traffic:
        bad = _decided_by(http, v2, n_stated, "bad")
        for k, rid in enumerate(bad[:-1]):
            feedback(http, rid, 0.0)
            st = policy_state(http)
            assert st["live_version"] == v2 and st["rollback_count"] == 0, f"rolled back after {k + 1} label(s)"
        feedback(http, bad[-1], 0.0)
        wait_for(lambda: policy_state(http)["live_version"] == v1 and not policy_state(http)["pending"],
                 "the rollback to v0001")
        st = policy_state(http)
        assert chat(http, "after").headers["x-router-policy"].startswith(f"{v1}/")
        metrics = http.get("/metrics").text
    assert traffic.statuses and set(traffic.statuses) == {200}
    assert st["rollback_count"] == 1
    ev = st["rollbacks"][0]
    assert (ev["role"], ev["version"], ev["to"], ev["reason"], ev["actor"]) == ("live", v2, v1, "quality", "router")
    assert 'router_rl_policy_rollbacks_total{reason="quality",role="live"} 1.0' in metrics
    alerts = [r for r in caplog.records if r.getMessage().startswith("ALERT policy rollback")]
    assert len(alerts) == 1 and alerts[0].levelno == logging.WARNING
    assert f"live version {v2} -> {v1}" in alerts[0].getMessage() and "n=5" in alerts[0].getMessage()
    assert reg.live == v1
    recs = reg.records("rollback")
    assert len(recs) == 1 and recs[0]["from"] == v2 and recs[0]["to"] == v1 and recs[0]["actor"] == "router"
    assert recs[0]["evidence"]["feedback"]["n"] == 5 and recs[0]["evidence"]["feedback"]["mean"] == 0.0


def test_one_bad_label_never_rolls_back(backends: Backends, tmp_path: Path) -> None:
    reg, (_, v2) = make_registry(tmp_path, 2, live=["v0001", "v0002"])
    # min_feedback 1: only the interval protects; one 0-label has upper bound 0.79 > floor 0.5
    _, srv = start_router(backends, tmp_path, reg.root,
                               rollback={"min_feedback": 1, "floor": 0.5, "floor_ratio": None},
                               canary={"auto_ramp": False})
    with srv, httpx.Client(base_url=srv.base_url, timeout=30) as http:
        (rid,) = _decided_by(http, v2, 1, "one")
        feedback(http, rid, 0.0)
        feedback(http, rid, 0.0)  # the same label again: a duplicate, not a second label
        st = policy_state(http)
        assert st["live_version"] == v2 and st["rollback_count"] == 0
        assert st["live_evidence"]["feedback"]["n"] == 1
        assert st["live_evidence"]["feedback"]["high"] == pytest.approx(wilson_interval(0.0, 1)[1])
        good = _decided_by(http, v2, 4, "good")
        for g in good:
            feedback(http, g, 1.0)
        assert policy_state(http)["rollback_count"] == 0 and reg.live == v2
    assert reg.records("rollback") == []


@pytest.mark.slow
def test_canary_regression_stops_the_canary(
    backends: Backends, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    reg, (v1, v2) = make_registry(tmp_path, 2, live=["v0001"])
    _, srv = start_router(backends, tmp_path, reg.root, **GUARD)
    with srv, httpx.Client(base_url=srv.base_url, timeout=30) as http, Traffic(srv.base_url, 2) as traffic:
        assert admin(http, "/admin/canary", {"version": v2, "share": 0.5}).status_code == 200
        bad = _decided_by(http, v2, 5, "cbad")
        for rid in bad:
            feedback(http, rid, 0.0)
        wait_for(lambda: policy_state(http)["canary_version"] is None and not policy_state(http)["pending"],
                 "the canary rollback")
        st = policy_state(http)
        heads = {chat(http, f"post{i}").headers["x-router-policy"].split("/")[0] for i in range(30)}
        metrics = http.get("/metrics").text
    assert set(traffic.statuses) == {200}
    assert heads == {v1} and st["canary_share"] == 0.0 and st["live_version"] == v1
    assert 'router_rl_policy_rollbacks_total{reason="quality",role="canary"} 1.0' in metrics
    assert "router_rl_canary_share 0.0" in metrics
    assert reg.canary is None and reg.live == v1
    (rec,) = reg.records("rollback")
    assert (rec["role"], rec["from"], rec["to"], rec["rollback_reason"]) == ("canary", v2, v1, "quality")
    assert any(r.getMessage().startswith(f"ALERT policy rollback: canary version {v2}") for r in caplog.records)


def test_manual_rollback_of_the_canary_and_refusals(backends: Backends, tmp_path: Path) -> None:
    reg, (v1, v2) = make_registry(tmp_path, 2, live=["v0001"])
    _, srv = start_router(backends, tmp_path, reg.root, canary={"auto_ramp": False})
    with srv, httpx.Client(base_url=srv.base_url, timeout=30) as http:
        r = admin(http, "/admin/rollback", {"role": "canary"})
        assert r.status_code == 409 and "no canary is running" in r.json()["error"]["message"]
        r = admin(http, "/admin/rollback", {"role": "live"})  # the registry has no previous version
        assert r.status_code == 409 and "no previous version" in r.json()["error"]["message"]
        assert admin(http, "/admin/canary", {"version": v2, "share": 0.3}).status_code == 200
        r = admin(http, "/admin/canary", {"version": v2, "share": 1.0})
        assert r.status_code == 409 and r.json()["error"]["param"] == "share"
        r = admin(http, "/admin/canary", {"version": v1, "share": 0.3})
        assert r.status_code == 409 and "is the live version" in r.json()["error"]["message"]
        r = admin(http, "/admin/rollback", {"reason": "looks off"})  # default: the canary
        assert r.status_code == 200, r.text
        st = r.json()["policy"]
        metrics = http.get("/metrics").text
    assert st["canary_version"] is None and st["rollbacks"][0]["reason"] == "manual"
    assert 'router_rl_policy_rollbacks_total{reason="manual",role="canary"} 1.0' in metrics
    assert reg.canary is None and reg.records("rollback")[0]["detail"] == "looks off"


def test_error_ratio_rolls_back(tmp_path: Path) -> None:
    """The outcome window: more than max_error_ratio bad decisions over min_decisions rolls back."""
    a = save_random_policy(tmp_path / "a", ("m1", "m2"), [0.5, 0.5])
    b = save_random_policy(tmp_path / "b", ("m1", "m2"), [0.9, 0.1])

    async def run() -> None:
        cfg = RollbackConfig(min_decisions=10, decision_window=10, max_error_ratio=0.3)
        metrics = RouterMetrics()
        pols = LivePolicies(PolicySlot(InProcessPolicyClient.from_dir(a), source=a), lambda c, s: None, metrics,
                            CanaryConfig(), cfg)
        await pols.swap(policy_dir=b)
        label = pols.live.label if pols.live else ""
        for k in range(10):  # 3 bad of 10 = 0.3: not above the threshold
            pols.on_outcome(label, k >= 7)
        assert pols.live is not None and pols.live.source == b and not pols.rollbacks
        pols.on_outcome(label, True)  # window of 10: now 4 bad
        await pols.idle()
        assert pols.live is not None and pols.live.source == a
        assert [(r.role, r.reason) for r in pols.rollbacks] == [("live", "errors")]
        assert "4/10 bad decisions" in pols.rollbacks[0].detail
        await pols.aclose()

    asyncio.run(run())


def test_rollback_verdict_and_stated_labels() -> None:
    cfg = RollbackConfig(min_feedback=30, floor=None, floor_ratio=0.95)
    q = QualityWindow(200)
    for _ in range(40):
        q.add(0.5)
    empty = OutcomeWindow(10)
    assert rollback_verdict(cfg, q.stats(), empty, None) is None  # no reference, no absolute floor
    hit = rollback_verdict(cfg, q.stats(), empty, 0.9)  # floor 0.855; 40 labels of 0.5: upper bound 0.65
    assert hit is not None and hit[0] == "quality" and "< floor 0.8550" in hit[1]
    assert rollback_verdict(cfg, q.stats(), empty, 0.6) is None  # floor 0.57 < upper bound 0.65
    # all-zero labels: z^2 / (n + z^2) < floor
    assert labels_to_rollback(RollbackConfig(min_feedback=1), 0.5) == 4
    assert labels_to_rollback(RollbackConfig(min_feedback=1), 0.8) == 1
    assert labels_to_rollback(RollbackConfig(min_feedback=30), 0.5) == 30
    for floor in (0.3, 0.5, 0.9):
        n = labels_to_rollback(RollbackConfig(min_feedback=1), floor)
        assert wilson_interval(0.0, n)[1] < floor <= wilson_interval(0.0, n - 1)[1] if n > 1 else True


def test_two_artifacts_with_one_engine_version_keep_separate_evidence(tmp_path: Path) -> None:
    a = save_random_policy(tmp_path / "a", ("m1", "m2"), [0.5, 0.5])
    b = save_random_policy(tmp_path / "b", ("m1", "m2"), [0.9, 0.1])
    import json

    meta_a = json.loads((a / "policy.json").read_text())
    meta_b = json.loads((b / "policy.json").read_text())
    meta_b["metadata"]["version"] = meta_a["metadata"]["version"]  # saved in the same second: one engine version
    (b / "policy.json").write_text(json.dumps(meta_b))
    version = meta_a["metadata"]["version"]

    async def run() -> None:
        pols = LivePolicies(PolicySlot(InProcessPolicyClient.from_dir(a), source=a), lambda c, s: None,
                            RouterMetrics(), CanaryConfig(), RollbackConfig())
        await pols.swap(policy_dir=b)
        assert pols.live is not None and pols.live.name == version  # the logged version is unchanged
        assert pols.live.label.startswith(version + "~")
        assert pols.state()["previous_versions"] == [version]
        await pols.aclose()

    asyncio.run(run())


def test_fallbacks_from_a_failing_backend_roll_back_by_error_ratio(backends: Backends, tmp_path: Path) -> None:
    """v0002 prefers big-local; big-local answers 503, so most of v0002's requests are served by a fallback."""
    local, _ = backends
    reg, (v1, v2) = make_registry(tmp_path, 2, live=["v0001", "v0002"])
    _, srv = start_router(
        backends, tmp_path, reg.root,
        rollback={"floor": None, "floor_ratio": None, "min_decisions": 20, "decision_window": 20,
                  "max_error_ratio": 0.5},
        canary={"auto_ramp": False},
        extra={"breaker": {"consecutive_failures": 1000, "window": 1000, "min_calls": 1000}},
    )
    local.backend.faults.add([{"kind": "http_5xx", "model": "big-local", "status": 503}])
    statuses: list[int] = []
    with srv, httpx.Client(base_url=srv.base_url, timeout=30) as http:
        for i in range(60):
            statuses.append(chat(http, f"e{i}").status_code)
            if policy_state(http)["rollback_count"]:
                break
        wait_for(lambda: not policy_state(http)["pending"], "the rollback")
        st = policy_state(http)
        metrics = http.get("/metrics").text
    assert set(statuses) == {200}
    assert 20 <= len(statuses) < 60  # the rule needs min_decisions; it fires well before 60
    (ev,) = st["rollbacks"]
    assert (ev["role"], ev["version"], ev["to"], ev["reason"]) == ("live", v2, v1, "errors")
    assert "bad decisions" in ev["detail"] and st["live_version"] == v1 and reg.live == v1
    assert 'router_rl_policy_rollbacks_total{reason="errors",role="live"} 1.0' in metrics
