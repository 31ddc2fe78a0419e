"""The canary of the learned policy on a real router: the seeded split, the ramp on live feedback, promotion."""

from __future__ import annotations

import logging
from pathlib import Path

import httpx
import pytest
from _live_helpers import (
    Backends,
    admin,
    chat,
    engine_version,
    feedback,
    make_registry,
    policy_state,
    start_router,
    wait_for,
)

from router_rl.core.errors import ConfigError
from router_rl.router.canary import CanaryConfig, in_canary, ramp_verdict
from router_rl.router.config import parse_config
from router_rl.router.windows import WindowStats, wilson_interval

#: ramp fast (10 labels a step), judged on the ratio to the live window; rollback out of the way
RAMP = {"canary": {"steps": [0.2, 0.5, 1.0], "min_feedback": 10, "window": 50, "floor_ratio": 0.6, "seed": 7},
        "rollback": {"min_feedback": 1000, "min_decisions": 1000}}


def test_split_is_the_seeded_hash_of_the_request_id(backends: Backends, tmp_path: Path) -> None:
    reg, (v1, v2) = make_registry(tmp_path, 2, live=["v0001"])
    names = {v1: f"{v1}/{engine_version(reg, v1)}", v2: f"{v2}/{engine_version(reg, v2)}"}
    _, srv = start_router(backends, tmp_path, reg.root, canary={"auto_ramp": False, "seed": 7})
    with srv, httpx.Client(base_url=srv.base_url, timeout=30) as http:
        r = admin(http, "/admin/canary", {"version": v2, "share": 0.2})
        assert r.status_code == 200, r.text
        st = r.json()["policy"]
        assert (st["canary_version"], st["canary_share"], st["live_version"]) == (v2, 0.2, v1)
        assert admin(http, "/admin/canary", {"version": v2, "share": 0.2}).status_code == 200  # again: no-op
        assert len(reg.records("canary")) == 1  # what the registry already says is not recorded twice
        got = {f"q{i}": chat(http, f"q{i}").headers["x-router-policy"] for i in range(200)}
        metrics = http.get("/metrics").text
    expected = {rid: names[v2] if in_canary(7, rid, 0.2) else names[v1] for rid in got}
    assert got == expected  # every request, exactly as the hash says
    n_canary = sum(v == names[v2] for v in got.values())
    assert 25 <= n_canary <= 55  # 200 * 0.2 = 40 expected (binomial sd 5.7)
    assert reg.canary is not None and (reg.canary.version, reg.canary.share) == (v2, 0.2)
    assert "router_rl_canary_share 0.2" in metrics
    assert f'router_rl_policy_info{{role="canary",version="{names[v2]}"}} 1.0' in metrics
    assert f'router_rl_policy_info{{role="live",version="{names[v1]}"}} 1.0' in metrics


def test_in_canary_share_and_determinism() -> None:
    ids = [f"r{i}" for i in range(20_000)]
    for share in (0.05, 0.2, 0.5, 0.8):
        frac = sum(in_canary(3, r, share) for r in ids) / len(ids)
        assert abs(frac - share) < 0.015
    assert [in_canary(3, r, 0.2) for r in ids[:50]] == [in_canary(3, r, 0.2) for r in ids[:50]]
    assert [in_canary(3, r, 0.2) for r in ids[:200]] != [in_canary(4, r, 0.2) for r in ids[:200]]
    assert not any(in_canary(3, r, 0.0) for r in ids[:100])
    # a request in the canary at a share stays in it at every larger share (the ramp only adds traffic)
    assert all(in_canary(3, r, 0.5) for r in ids[:2000] if in_canary(3, r, 0.2))


@pytest.mark.slow
def test_ramp_on_feedback_to_live(backends: Backends, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="router_rl.router")
    reg, (v1, v2) = make_registry(tmp_path, 2, live=["v0001"])
    _, srv = start_router(backends, tmp_path, reg.root, **RAMP)
    shares: list[float] = []
    with srv, httpx.Client(base_url=srv.base_url, timeout=30) as http:
        assert admin(http, "/admin/canary", {"version": v2, "share": 0.2}).status_code == 200
        i = 0
        while policy_state(http)["live_version"] != v2:
            assert i < 600, f"no promotion after {i} requests: {policy_state(http)}"
            rid = f"f{i}"
            r = chat(http, rid)
            assert r.status_code == 200
            feedback(http, rid, 1.0)
            i += 1
            st = policy_state(http)
            if not shares or st["canary_share"] != shares[-1]:
                shares.append(st["canary_share"])
            wait_for(lambda: not policy_state(http)["pending"], "the promotion")
        st = policy_state(http)
        assert chat(http, "after").headers["x-router-policy"].startswith(f"{v2}/")
    assert shares[:3] == [0.2, 0.5, 0.0]  # 0.2 -> 0.5 -> promoted (no canary any more)
    assert st["canary_version"] is None and st["previous_versions"] == [v1]
    assert [(s["from"], s["to"]) for s in st["canary_steps"]] == [(0.2, 0.5), (None, 1.0)]
    assert reg.live == v2 and reg.canary is None
    canary_recs = [(r["version"], r["share"], r["actor"]) for r in reg.records("canary")]
    assert canary_recs == [(v2, 0.2, "admin"), (v2, 0.5, "router")]
    live_recs = reg.records("set_live")
    assert live_recs[-1]["version"] == v2 and live_recs[-1]["actor"] == "router"
    steps = [r.getMessage() for r in caplog.records if r.getMessage().startswith(f"canary {v2}: share")]
    assert len(steps) == 2 and "0.20 -> 0.50" in steps[0] and "promoted to live" in steps[1]


def test_ramp_verdict_numbers() -> None:
    cfg = CanaryConfig(steps=(0.5, 1.0), min_feedback=20, floor_ratio=0.95)
    live = WindowStats(100, 0.8, *wilson_interval(0.8, 100))
    ok = WindowStats(100, 0.9, *wilson_interval(0.9, 100))
    assert ramp_verdict(cfg, ok, 19, live) == (False, "waiting for feedback: 19/20 labels at this step")
    go, why = ramp_verdict(cfg, ok, 20, live)
    assert go and "lower bound 0.8256 >= floor 0.7600" in why
    low = WindowStats(30, 0.8, *wilson_interval(0.8, 30))  # same mean as live, too few labels for the bound
    go, why = ramp_verdict(cfg, low, 30, live)
    assert not go and "below floor 0.7600" in why
    go, why = ramp_verdict(cfg, ok, 20, WindowStats(5, 0.8, 0.0, 1.0))
    assert not go and "waiting for live feedback: 5/20" in why
    assert cfg.next_step(0.0) == 0.5 and cfg.next_step(0.5) == 1.0 and cfg.next_step(0.3) == 0.5


@pytest.mark.parametrize(("canary", "problem"), [
    ({"steps": [0.5, 0.2, 1.0]}, "steps must increase"),
    ({"steps": [0.2, 0.5]}, "the last step must be 1.0"),
    ({"steps": [0.0, 1.0]}, "(0, 1]"),
    ({"floor": None, "floor_ratio": None}, "auto_ramp needs floor or floor_ratio"),
    ({"min_feedback": 0}, "greater than or equal to 1"),
    ({"share": 0.2}, "Extra inputs are not permitted"),
])
def test_canary_config_is_validated(backends: Backends, canary: dict[str, object], problem: str) -> None:
    local, cloud = backends
    from _router_helpers import router_config

    with pytest.raises(ConfigError) as ei:
        parse_config(router_config(local.base_url, cloud.base_url, learned={"canary": canary}))
    assert ei.value.setting.startswith("learned.canary") and problem in ei.value.problem
